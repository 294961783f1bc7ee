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
// snapshotTTL. The node's own IPAM figures are listed through it (usage),
// so that a start lists the blocks once, not three times. Safe for
// concurrent use.
type snapshotValidator struct {
	m   *ipam.IPAM
	now func() time.Time

	mu  sync.Mutex
	at  time.Time
	aff map[netip.Prefix]string // nil: no listing (or it failed)
}

const snapshotTTL = time.Second

func (v *snapshotValidator) Owns(ctx context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
	if len(addrs) == 0 && len(blocks) > 0 {
		if aff := v.snapshot(ctx); aff != nil && allAffine(aff, node, blocks) {
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

// snapshot returns the block affinities, listed again when older than
// snapshotTTL (nil if the listing fails: IPAM then answers).
func (v *snapshotValidator) snapshot(ctx context.Context) map[netip.Prefix]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.aff != nil && v.now().Sub(v.at) < snapshotTTL {
		return v.aff
	}
	if _, err := v.list(ctx); err != nil {
		return nil
	}
	return v.aff
}

// usage lists IPAM's usage report and keeps its affinities as the
// snapshot.
func (v *snapshotValidator) usage(ctx context.Context) (ipam.Usage, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.list(ctx)
}

func (v *snapshotValidator) list(ctx context.Context) (ipam.Usage, error) {
	u, err := v.m.Usage(ctx)
	if err != nil {
		v.aff = nil
		return ipam.Usage{}, err
	}
	aff := make(map[netip.Prefix]string, len(u.Blocks))
	for _, b := range u.Blocks {
		if b.Affinity != "" {
			aff[b.CIDR] = b.Affinity
		}
	}
	v.aff, v.at = aff, v.now()
	return u, nil
}

// forget drops the snapshot (it is listed again when next needed): after
// the start's burst of validations there is no reason to hold every
// block's affinity (0.4 MB at 5,000 nodes).
func (v *snapshotValidator) forget() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.aff = nil
}
