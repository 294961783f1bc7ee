//go:build linux

package nat

import (
	"context"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NewWatcher returns a Watcher for the network namespace netnsFd refers to
// (0: the caller's own). Each WatchTables call opens its own netlink socket
// subscribed to the nftables notification group (NFNLGRP_NFTABLES) in that
// namespace; no thread of the caller changes namespace. Safe for
// concurrent use.
func NewWatcher(netnsFd int) Watcher { return kernelWatcher{netnsFd: netnsFd} }

type kernelWatcher struct{ netnsFd int }

// watchReadBuffer is the receive buffer of the notification socket: a
// rebuild of a 5,000-peer table is a few hundred KiB of notifications.
const watchReadBuffer = 4 << 20

func (w kernelWatcher) WatchTables(ctx context.Context, name string, changed chan<- struct{}) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: w.netnsFd})
	if err != nil {
		return fmt.Errorf("nat: watch: dial netfilter netlink (netns fd %d): %w", w.netnsFd, err)
	}
	defer c.Close()
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("nat: watch: join nftables group: %w", err)
	}
	// Best effort: a smaller buffer only means more overruns, which are
	// reported as changes anyway.
	_ = c.SetReadBuffer(watchReadBuffer)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	signal(changed)
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			// Notifications were lost: the table may have changed.
			signal(changed)
			continue
		}
		if err != nil {
			return fmt.Errorf("nat: watch: receive: %w", err)
		}
		for _, m := range msgs {
			if touches(m, name) {
				signal(changed)
				break
			}
		}
	}
}

func signal(changed chan<- struct{}) {
	select {
	case changed <- struct{}{}:
	default:
	}
}

// touches reports whether the nftables notification m is about a table
// named name of family ip or ip6, or about something in it. Every object
// message (table, chain, rule, set, element list) carries the table name
// as attribute 1 (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE,
// NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE) after the 4-byte nfgenmsg
// whose first byte is the family.
func touches(m netlink.Message, name string) bool {
	if uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return false
	}
	switch uint16(m.Header.Type) & 0xff {
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE,
		unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN,
		unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE,
		unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET,
		unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
	default:
		return false
	}
	if len(m.Data) < 4 {
		return false
	}
	if fam := m.Data[0]; fam != unix.NFPROTO_IPV4 && fam != unix.NFPROTO_IPV6 {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return false
	}
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String() == name
		}
	}
	return false
}

// Watch runs the Manager's Watcher on its table names until ctx is done
// (see Watcher: one signal once subscribed, then one per change of the ip
// or ip6 table, coalesced by a full channel). A caller that runs Sync
// after every signal therefore restores the tables within one Sync of any
// change by someone else (`nft flush ruleset`, a deleted rule or element),
// and misses none that happened before Watch subscribed.
//
// Own writes are tolerated, not filtered: every Sync that writes is itself
// followed by a signal, and the Sync that answers it finds nothing to
// change and writes nothing, so the loop settles after one extra read-only
// Sync.
//
// The Watcher is Config.Watcher if set, else the Conn if it is one (as
// nattest.Conn is), else the kernel's in the namespace Open dialled;
// otherwise Watch returns ErrNoWatcher.
func (m *Manager) Watch(ctx context.Context, changed chan<- struct{}) error {
	w := m.cfg.Watcher
	if w == nil {
		if cw, ok := m.conn.(Watcher); ok {
			w = cw
		} else {
			w = m.watcher
		}
	}
	if w == nil {
		return ErrNoWatcher
	}
	return w.WatchTables(ctx, m.cfg.Table, changed)
}
