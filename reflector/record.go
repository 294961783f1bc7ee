package reflector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Announcement is what one node tells the others: where its pod blocks and
// borrowed addresses live and how to reach its VXLAN endpoint, one VTEP per
// address family. At least one family is complete (node IP, tunnel IP and
// MAC all set); a family is either complete or entirely zero, and each
// family's addresses are of that family. It is a plain value (Announce and
// Watch copy it); not safe for concurrent mutation.
type Announcement struct {
	// Node is the node name: 1-253 bytes of [a-z0-9.-_] (case-insensitive
	// letters allowed), no "/".
	Node string

	// NodeIP is the IPv4 underlay address, TunnelIP the address of the
	// IPv4 VXLAN device (vxlan.calico) and TunnelMAC its MAC. All zero in
	// an IPv6-only cluster.
	NodeIP, TunnelIP netip.Addr
	TunnelMAC        net.HardwareAddr

	// NodeIPv6 is the IPv6 underlay address, TunnelIPv6 the address of the
	// IPv6 VXLAN device (vxlan-v6.calico) and TunnelMACv6 its MAC. All zero
	// when the node has no IPv6 VTEP.
	NodeIPv6, TunnelIPv6 netip.Addr
	TunnelMACv6          net.HardwareAddr

	// Blocks are the node's affine pod blocks, both families mixed.
	Blocks []netip.Prefix
	// Addrs are single addresses the node borrowed from other nodes'
	// blocks, both families mixed.
	Addrs []netip.Addr
}

// HasIPv4 reports whether the IPv4 VTEP is announced.
func (a Announcement) HasIPv4() bool { return a.TunnelIP.IsValid() }

// HasIPv6 reports whether the IPv6 VTEP is announced.
func (a Announcement) HasIPv6() bool { return a.TunnelIPv6.IsValid() }

// Equal reports whether a and b announce the same thing.
func (a Announcement) Equal(b Announcement) bool {
	return a.Node == b.Node && a.NodeIP == b.NodeIP && a.TunnelIP == b.TunnelIP &&
		bytes.Equal(a.TunnelMAC, b.TunnelMAC) &&
		a.NodeIPv6 == b.NodeIPv6 && a.TunnelIPv6 == b.TunnelIPv6 && bytes.Equal(a.TunnelMACv6, b.TunnelMACv6) &&
		slices.Equal(a.Blocks, b.Blocks) && slices.Equal(a.Addrs, b.Addrs)
}

// Clone returns a deep copy.
func (a Announcement) Clone() Announcement {
	a.TunnelMAC = slices.Clone(a.TunnelMAC)
	a.TunnelMACv6 = slices.Clone(a.TunnelMACv6)
	a.Blocks = slices.Clone(a.Blocks)
	a.Addrs = slices.Clone(a.Addrs)
	return a
}

// ErrInvalidAnnouncement: an Announcement or a stored record is malformed.
var ErrInvalidAnnouncement = errors.New("reflector: invalid announcement")

// ValidNodeName reports whether name can be announced.
func ValidNodeName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// normalize validates a and returns a canonical copy (sorted, deduplicated).
func (a Announcement) normalize() (Announcement, error) {
	if !ValidNodeName(a.Node) {
		return a, fmt.Errorf("%w: node name %q", ErrInvalidAnnouncement, a.Node)
	}
	b := a.Clone()
	b.NodeIP, b.TunnelIP = b.NodeIP.Unmap(), b.TunnelIP.Unmap()
	var err error
	if b.TunnelMAC, err = checkFamily(a.Node, "IPv4", b.NodeIP, b.TunnelIP, b.TunnelMAC, netip.Addr.Is4); err != nil {
		return a, err
	}
	if b.TunnelMACv6, err = checkFamily(a.Node, "IPv6", b.NodeIPv6, b.TunnelIPv6, b.TunnelMACv6, is6); err != nil {
		return a, err
	}
	if !b.HasIPv4() && !b.HasIPv6() {
		return a, fmt.Errorf("%w: %s: neither an IPv4 nor an IPv6 VTEP", ErrInvalidAnnouncement, a.Node)
	}
	for _, p := range b.Blocks {
		if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return a, fmt.Errorf("%w: %s: block %v", ErrInvalidAnnouncement, a.Node, p)
		}
	}
	for i, x := range b.Addrs {
		if !x.IsValid() || x.Zone() != "" {
			return a, fmt.Errorf("%w: %s: address %v", ErrInvalidAnnouncement, a.Node, x)
		}
		b.Addrs[i] = x.Unmap()
	}
	slices.SortFunc(b.Blocks, comparePrefix)
	b.Blocks = slices.Compact(b.Blocks)
	slices.SortFunc(b.Addrs, netip.Addr.Compare)
	b.Addrs = slices.Compact(b.Addrs)
	return b, nil
}

func is6(x netip.Addr) bool { return x.Is6() && !x.Is4In6() }

// checkFamily: a family is all zero, or complete with addresses of the
// family and a unicast, non-zero 6-byte MAC. It returns the MAC (nil for an
// absent family).
func checkFamily(node, fam string, nodeIP, tunIP netip.Addr, mac net.HardwareAddr, of func(netip.Addr) bool) (net.HardwareAddr, error) {
	if !nodeIP.IsValid() && !tunIP.IsValid() && len(mac) == 0 {
		return nil, nil
	}
	okAddr := func(x netip.Addr) bool {
		return x.IsValid() && of(x) && x.Zone() == "" && !x.IsUnspecified() && !x.IsMulticast()
	}
	if !okAddr(nodeIP) {
		return nil, fmt.Errorf("%w: %s: %s node IP %v", ErrInvalidAnnouncement, node, fam, nodeIP)
	}
	if !okAddr(tunIP) {
		return nil, fmt.Errorf("%w: %s: %s tunnel IP %v", ErrInvalidAnnouncement, node, fam, tunIP)
	}
	if len(mac) != 6 || mac[0]&1 != 0 || bytes.Equal(mac, make([]byte, 6)) {
		return nil, fmt.Errorf("%w: %s: %s tunnel MAC %v", ErrInvalidAnnouncement, node, fam, mac)
	}
	return mac, nil
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}

// recordVersion is the format version inside the value; the key prefix
// carries the schema version too (/tabby/v1/...).
const recordVersion = 1

// record is the stored JSON form of an announcement plus its liveness.
// Records written before dual stack (IPv4 fields only) still decode.
type record struct {
	Version     int            `json:"version"`
	Node        string         `json:"node"`
	NodeIP      netip.Addr     `json:"nodeIP"`
	TunnelIP    netip.Addr     `json:"tunnelIP"`
	TunnelMAC   string         `json:"tunnelMAC"`
	NodeIPv6    netip.Addr     `json:"nodeIPv6,omitzero"`
	TunnelIPv6  netip.Addr     `json:"tunnelIPv6,omitzero"`
	TunnelMACv6 string         `json:"tunnelMACv6,omitempty"`
	Blocks      []netip.Prefix `json:"blocks,omitempty"`
	Addrs       []netip.Addr   `json:"addrs,omitempty"`
	// HoldMillis is the announcer's hold time: in heartbeat mode watchers
	// withdraw the node when they have seen no heartbeat for that long.
	HoldMillis int64 `json:"holdMillis"`
	// Lease, when not 0, says the record is attached to this datastore
	// lease: the store deletes it when the announcer stops keeping the
	// lease alive, so watchers never expire it themselves and it carries
	// no heartbeats. A restarting announcer keeps this lease alive to take
	// the record over without writing.
	Lease int64 `json:"lease,omitempty"`
	// Heartbeat counts heartbeats (heartbeat mode); every one changes the
	// value, so every one is a new revision that watchers see.
	Heartbeat uint64 `json:"heartbeat"`
	// Time is the announcer's wall clock at the write (informational:
	// liveness is judged on the watcher's own clock, never on this).
	Time time.Time `json:"time"`
}

func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

func encodeRecord(a Announcement, hold time.Duration, lease datastore.LeaseID, beat uint64, now time.Time) []byte {
	r := record{
		Version: recordVersion, Node: a.Node, NodeIP: a.NodeIP, TunnelIP: a.TunnelIP,
		TunnelMAC: macString(a.TunnelMAC), NodeIPv6: a.NodeIPv6, TunnelIPv6: a.TunnelIPv6,
		TunnelMACv6: macString(a.TunnelMACv6), Blocks: a.Blocks, Addrs: a.Addrs,
		HoldMillis: hold.Milliseconds(), Lease: int64(lease), Heartbeat: beat, Time: now.UTC().Truncate(time.Millisecond),
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // cannot happen: every field marshals
	}
	return b
}

// Limits on a record's hold time, whatever it says.
const (
	minHold = 10 * time.Millisecond
	maxHold = time.Hour
)

func parseMAC(name, fam, s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s tunnel MAC: %w", ErrInvalidAnnouncement, name, fam, err)
	}
	return mac, nil
}

// decodeRecord parses a stored value; key's last element must equal the
// node name inside. It enforces lim before and after decoding, so that an
// oversized record costs no more than its length check.
func decodeRecord(name string, v []byte, lim Limits) (Announcement, time.Duration, record, error) {
	var r record
	if len(v) > lim.MaxRecordBytes {
		return Announcement{}, 0, r, fmt.Errorf("%w: %s: record of %d bytes (limit %d)", ErrTooLarge, name, len(v), lim.MaxRecordBytes)
	}
	d := json.NewDecoder(bytes.NewReader(v))
	if err := d.Decode(&r); err != nil {
		return Announcement{}, 0, r, fmt.Errorf("%w: %s: %w", ErrInvalidAnnouncement, name, err)
	}
	if r.Version != recordVersion {
		return Announcement{}, 0, r, fmt.Errorf("%w: %s: record version %d", ErrInvalidAnnouncement, name, r.Version)
	}
	if r.Node != name {
		return Announcement{}, 0, r, fmt.Errorf("%w: key %q holds node %q", ErrInvalidAnnouncement, name, r.Node)
	}
	if err := lim.check(name, len(r.Blocks), len(r.Addrs)); err != nil {
		return Announcement{}, 0, r, err
	}
	mac, err := parseMAC(name, "IPv4", r.TunnelMAC)
	if err != nil {
		return Announcement{}, 0, r, err
	}
	mac6, err := parseMAC(name, "IPv6", r.TunnelMACv6)
	if err != nil {
		return Announcement{}, 0, r, err
	}
	a, err := Announcement{
		Node: r.Node, NodeIP: r.NodeIP, TunnelIP: r.TunnelIP, TunnelMAC: mac,
		NodeIPv6: r.NodeIPv6, TunnelIPv6: r.TunnelIPv6, TunnelMACv6: mac6,
		Blocks: r.Blocks, Addrs: r.Addrs,
	}.normalize()
	if err != nil {
		return Announcement{}, 0, r, err
	}
	hold := time.Duration(r.HoldMillis) * time.Millisecond
	hold = min(max(hold, minHold), maxHold)
	return a, hold, r, nil
}

// nodeFromKey returns the node name of a key under prefix.
func nodeFromKey(prefix, key string) (string, bool) {
	name, ok := strings.CutPrefix(key, prefix)
	return name, ok && ValidNodeName(name)
}
