package cni_test

import (
	"context"
	"testing"
	"time"

	"github.com/tabbynet/tabby/examples/internal/cni"
)

func TestFileLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := cni.FileLock(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder (another open file description, as another process
	// would have) waits, and gives up with "try again later" at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := cni.FileLock(ctx, dir); cni.ToError(err).Code != cni.CodeTryAgainLater {
		t.Fatalf("second lock: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := cni.FileLock(context.Background(), dir)
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
