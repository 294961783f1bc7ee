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
)

// Announcement is what one node tells the others: where its pod blocks and
// borrowed addresses live and how to reach its VXLAN endpoint. It is a plain
// value (Announce and Watch copy it); not safe for concurrent mutation.
type Announcement struct {
	// Node is the node name: 1-253 bytes of [a-z0-9.-_] (case-insensitive
	// letters allowed), no "/".
	Node string
	// NodeIP is the underlay address.
	NodeIP netip.Addr
	// TunnelIP is the address of the node's VXLAN device.
	TunnelIP netip.Addr
	// TunnelMAC is the VTEP MAC.
	TunnelMAC net.HardwareAddr
	// Blocks are the node's affine pod blocks.
	Blocks []netip.Prefix
	// Addrs are single addresses the node borrowed from other nodes' blocks.
	Addrs []netip.Addr
}

// Equal reports whether a and b announce the same thing.
func (a Announcement) Equal(b Announcement) bool {
	return a.Node == b.Node && a.NodeIP == b.NodeIP && a.TunnelIP == b.TunnelIP &&
		bytes.Equal(a.TunnelMAC, b.TunnelMAC) && slices.Equal(a.Blocks, b.Blocks) && slices.Equal(a.Addrs, b.Addrs)
}

// Clone returns a deep copy.
func (a Announcement) Clone() Announcement {
	a.TunnelMAC = slices.Clone(a.TunnelMAC)
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
	if !b.NodeIP.IsValid() || b.NodeIP.IsUnspecified() || b.NodeIP.IsMulticast() {
		return a, fmt.Errorf("%w: %s: node IP %v", ErrInvalidAnnouncement, a.Node, a.NodeIP)
	}
	if !b.TunnelIP.IsValid() || b.TunnelIP.IsUnspecified() || b.TunnelIP.IsMulticast() {
		return a, fmt.Errorf("%w: %s: tunnel IP %v", ErrInvalidAnnouncement, a.Node, a.TunnelIP)
	}
	if len(b.TunnelMAC) != 6 || b.TunnelMAC[0]&1 != 0 || bytes.Equal(b.TunnelMAC, make([]byte, 6)) {
		return a, fmt.Errorf("%w: %s: tunnel MAC %v", ErrInvalidAnnouncement, a.Node, a.TunnelMAC)
	}
	for _, p := range b.Blocks {
		if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" {
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
type record struct {
	Version   int            `json:"version"`
	Node      string         `json:"node"`
	NodeIP    netip.Addr     `json:"nodeIP"`
	TunnelIP  netip.Addr     `json:"tunnelIP"`
	TunnelMAC string         `json:"tunnelMAC"`
	Blocks    []netip.Prefix `json:"blocks,omitempty"`
	Addrs     []netip.Addr   `json:"addrs,omitempty"`
	// HoldMillis is the announcer's hold time: watchers withdraw the node
	// when they have seen no heartbeat for that long.
	HoldMillis int64 `json:"holdMillis"`
	// Heartbeat counts heartbeats; every one changes the value, so every
	// one is a new revision that watchers see.
	Heartbeat uint64 `json:"heartbeat"`
	// Time is the announcer's wall clock at the heartbeat (informational:
	// liveness is judged on the watcher's own clock, never on this).
	Time time.Time `json:"time"`
}

func encodeRecord(a Announcement, hold time.Duration, beat uint64, now time.Time) []byte {
	r := record{
		Version: recordVersion, Node: a.Node, NodeIP: a.NodeIP, TunnelIP: a.TunnelIP,
		TunnelMAC: a.TunnelMAC.String(), Blocks: a.Blocks, Addrs: a.Addrs,
		HoldMillis: hold.Milliseconds(), Heartbeat: beat, Time: now.UTC().Truncate(time.Millisecond),
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

// decodeRecord parses a stored value; key's last element must equal the
// node name inside.
func decodeRecord(name string, v []byte) (Announcement, time.Duration, record, error) {
	var r record
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
	mac, err := net.ParseMAC(r.TunnelMAC)
	if err != nil {
		return Announcement{}, 0, r, fmt.Errorf("%w: %s: %w", ErrInvalidAnnouncement, name, err)
	}
	a, err := Announcement{Node: r.Node, NodeIP: r.NodeIP, TunnelIP: r.TunnelIP, TunnelMAC: mac, Blocks: r.Blocks, Addrs: r.Addrs}.normalize()
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
