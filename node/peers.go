package node

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/vxlan"
)

// VXLANPeers converts the reflector's announcements into package vxlan's
// peers of one family: for IPv4 (v6 false) the IPv4 VTEP and the IPv4
// blocks and addresses, for IPv6 the IPv6 ones. Announcements without a
// VTEP of that family are left out. The result shares no memory with anns.
func VXLANPeers(anns []reflector.Announcement, v6 bool) []vxlan.Peer {
	out := make([]vxlan.Peer, 0, len(anns))
	for _, a := range anns {
		nodeIP, tunIP, mac := a.NodeIP, a.TunnelIP, a.TunnelMAC
		if v6 {
			nodeIP, tunIP, mac = a.NodeIPv6, a.TunnelIPv6, a.TunnelMACv6
		}
		if !nodeIP.IsValid() || !tunIP.IsValid() || nodeIP.Is6() != v6 || tunIP.Is6() != v6 {
			continue
		}
		p := vxlan.Peer{Name: a.Node, NodeIP: nodeIP, TunnelIP: tunIP, TunnelMAC: append([]byte(nil), mac...)}
		for _, b := range a.Blocks {
			if b.Addr().Is6() == v6 {
				p.Blocks = append(p.Blocks, b)
			}
		}
		for _, ad := range a.Addrs {
			if ad.Is6() == v6 {
				p.Addrs = append(p.Addrs, ad)
			}
		}
		out = append(out, p)
	}
	return out
}

// Validator returns the reflector.Validator that checks announcements
// against IPAM: *ipam.IPAM itself (its Owns method): every announced block
// must be a confirmed affinity of the announcing node and every address
// allocated for it, checked in a bounded number of datastore reads whatever
// the announcement's size. What is refused is dropped by every watcher and
// reported to the announcing node (Stats.Refused).
func Validator(m *ipam.IPAM) reflector.Validator { return m }

// snapshotValidator answers the common case of a watcher's validation —
// blocks, no borrowed addresses — from one listing of every block's
// affinity, taken at most snapshotTTL ago, instead of a datastore read per
// announcement: at start a node validates every peer, and on a bolt store
// each read opens the file. Only a positive answer comes from the snapshot
// (a block the snapshot shows affine to that node); anything else, and any
// announcement with addresses, goes to IPAM itself. A block re-assigned to
// another node is thus still accepted for its old owner for at most
// snapshotTTL. The node's own IPAM figures come from the same listing
// (usage), so that a start lists the blocks once, not three times. Safe
// for concurrent use.
type snapshotValidator struct {
	m   *ipam.IPAM
	now func() time.Time

	mu  sync.Mutex
	at  time.Time
	u   ipam.Usage
	aff map[netip.Prefix]string // nil: no listing (or it failed)
}

const snapshotTTL = time.Second

func (v *snapshotValidator) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	if len(addrs) == 0 && len(blocks) > 0 {
		if aff, _, err := v.snapshot(ctx, snapshotTTL); err == nil && allAffine(aff, node, blocks) {
			return nil
		}
	}
	return v.m.Owns(ctx, node, blocks, addrs)
}

func allAffine(aff map[netip.Prefix]string, node string, blocks []netip.Prefix) bool {
	for _, b := range blocks {
		if aff[b] != node {
			return false
		}
	}
	return true
}

// usage returns IPAM's usage report, listed again when older than maxAge.
// The report is shared: callers must not modify it.
func (v *snapshotValidator) usage(ctx context.Context, maxAge time.Duration) (ipam.Usage, error) {
	_, u, err := v.snapshot(ctx, maxAge)
	return u, err
}

// snapshot returns the block affinities and the usage report they come
// from, listed again when older than maxAge.
func (v *snapshotValidator) snapshot(ctx context.Context, maxAge time.Duration) (map[netip.Prefix]string, ipam.Usage, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.aff != nil && v.now().Sub(v.at) < maxAge {
		return v.aff, v.u, nil
	}
	u, err := v.m.Usage(ctx)
	if err != nil {
		v.aff, v.u = nil, ipam.Usage{}
		return nil, ipam.Usage{}, err
	}
	aff := make(map[netip.Prefix]string, len(u.Blocks))
	for _, b := range u.Blocks {
		if b.Affinity != "" {
			aff[b.CIDR] = b.Affinity
		}
	}
	v.aff, v.u, v.at = aff, u, v.now()
	return aff, u, nil
}
