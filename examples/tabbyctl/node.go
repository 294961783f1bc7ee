package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/reflector"
)

// nodeWithdraw withdraws a node's announcement for good: every peer drops
// its routes at once (a stopped agent keeps it for the hold time by
// default, for a graceful restart). Its IPAM stays; `ipam release-host`
// frees that.
func (a *app) nodeWithdraw(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("node withdraw", stderr)
	prefix := fs.String("prefix", reflector.DefaultPrefix, "announcement key prefix")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || !reflector.ValidNodeName(fs.Arg(0)) {
		return fmt.Errorf("%w: node withdraw NAME", errUsage)
	}
	name := fs.Arg(0)
	for {
		kv, err := a.st.Get(ctx, *prefix+name)
		if errors.Is(err, datastore.ErrNotFound) {
			return fmt.Errorf("node %s: not announced", name)
		}
		if err != nil {
			return err
		}
		err = a.st.Delete(ctx, kv.Key, kv.Revision)
		if errors.Is(err, datastore.ErrConflict) {
			continue // a heartbeat raced: the node is still running; try again
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "node %s withdrawn (a running agent announces it again; stop it first)\n", name)
		return nil
	}
}
