package ipam

import (
	"fmt"
	"net/netip"
)

// VXLANMode says when traffic between nodes for a pool's addresses is
// encapsulated. The zero value is invalid. A plain value.
type VXLANMode int

const (
	// VXLANAlways encapsulates all traffic between nodes.
	VXLANAlways VXLANMode = iota + 1
	// VXLANCrossSubnet encapsulates only traffic to nodes on another subnet.
	VXLANCrossSubnet
	// VXLANNever never encapsulates.
	VXLANNever
)

func (m VXLANMode) String() string {
	switch m {
	case VXLANAlways:
		return "Always"
	case VXLANCrossSubnet:
		return "CrossSubnet"
	case VXLANNever:
		return "Never"
	}
	return fmt.Sprintf("VXLANMode(%d)", int(m))
}

// Valid reports whether m is one of the defined modes.
func (m VXLANMode) Valid() bool { return m >= VXLANAlways && m <= VXLANNever }

// MarshalText encodes a valid mode as "Always", "CrossSubnet" or "Never".
func (m VXLANMode) MarshalText() ([]byte, error) {
	if !m.Valid() {
		return nil, fmt.Errorf("%w: vxlan mode %d", ErrInvalid, int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText is the inverse of MarshalText.
func (m *VXLANMode) UnmarshalText(b []byte) error {
	v, err := ParseVXLANMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseVXLANMode parses "Always", "CrossSubnet" or "Never".
func ParseVXLANMode(s string) (VXLANMode, error) {
	for m := VXLANAlways; m <= VXLANNever; m++ {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: vxlan mode %q (want Always, CrossSubnet or Never)", ErrInvalid, s)
}

// Default and allowed block sizes (prefix lengths).
const (
	DefaultBlockSize4 = 26
	DefaultBlockSize6 = 122
	MinBlockSize4     = 20
	MaxBlockSize4     = 32
	MinBlockSize6     = 116
	MaxBlockSize6     = 128
)

// Pool is a range of addresses that IPAM carves into blocks. Name, CIDR and
// BlockSize are immutable once created; Disabled, NATOutgoing and VXLANMode
// can be changed with UpdatePool. A Pool is a plain value.
type Pool struct {
	// Name identifies the pool: 1–63 characters of [a-z0-9.-_].
	Name string `json:"name"`
	// CIDR must be masked (no host bits), must not overlap another pool and
	// must not touch an address range that cannot carry pod traffic (see
	// Validate).
	CIDR netip.Prefix `json:"cidr"`
	// BlockSize is the prefix length of the pool's blocks: 20–32 for IPv4
	// (0 means 26), 116–128 for IPv6 (0 means 122). Not larger than the pool.
	BlockSize int `json:"blockSize"`
	// Disabled pools are never allocated from.
	Disabled bool `json:"disabled,omitempty"`
	// NATOutgoing: masquerade traffic from the pool to outside every pool
	// (kept for the nat package; IPAM does not use it).
	NATOutgoing bool `json:"natOutgoing,omitempty"`
	// VXLANMode (kept for the vxlan and reflector users; IPAM does not use
	// it). Optional: 0 means not set, which users treat as VXLANAlways.
	VXLANMode VXLANMode `json:"vxlanMode,omitempty"`
}

// unusable lists the ranges a pool may not touch: they cannot be routed to a
// pod (RFC 6890 special-purpose addresses that are not forwardable or not
// unicast). A function, not a table, so that no package state exists.
func unusable(is4 bool) []struct {
	p    netip.Prefix
	what string
} {
	type r = struct {
		p    netip.Prefix
		what string
	}
	if is4 {
		return []r{
			{netip.MustParsePrefix("0.0.0.0/8"), "this-network (0.0.0.0/8, includes the unspecified address)"},
			{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
			{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
			{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
			{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4, includes the broadcast address 255.255.255.255)"},
		}
	}
	return []r{
		{netip.MustParsePrefix("::/128"), "unspecified"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
		{netip.MustParsePrefix("ff00::/8"), "multicast"},
	}
}

// withDefaults fills BlockSize.
func (p Pool) withDefaults() Pool {
	if p.BlockSize == 0 && p.CIDR.IsValid() {
		if p.CIDR.Addr().Is4() {
			p.BlockSize = DefaultBlockSize4
		} else {
			p.BlockSize = DefaultBlockSize6
		}
	}
	return p
}

// validName reports whether s is a valid pool name.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Validate checks the pool on its own (not against other pools). BlockSize 0
// is accepted and means the default. The CIDR must be canonical (no host
// bits, plain IPv4 or IPv6) and must not touch 0.0.0.0/8, 127.0.0.0/8,
// 169.254.0.0/16, 224.0.0.0/4 or 240.0.0.0/4 (IPv4), ::/128, ::1/128,
// ::ffff:0:0/96, fe80::/10 or ff00::/8 (IPv6). Every error wraps ErrInvalid
// with the reason.
func (p Pool) Validate() error {
	p = p.withDefaults()
	if !validName(p.Name) {
		return fmt.Errorf("%w: pool name %q (1-63 characters of a-z 0-9 . - _)", ErrInvalid, p.Name)
	}
	if !p.CIDR.IsValid() {
		return fmt.Errorf("%w: pool %s: no CIDR", ErrInvalid, p.Name)
	}
	if p.CIDR.Addr().Is4In6() || p.CIDR.Addr().Zone() != "" {
		return fmt.Errorf("%w: pool %s: CIDR %s must be plain IPv4 or IPv6", ErrInvalid, p.Name, p.CIDR)
	}
	if p.CIDR.Masked() != p.CIDR {
		return fmt.Errorf("%w: pool %s: CIDR %s has host bits set (use %s)", ErrInvalid, p.Name, p.CIDR, p.CIDR.Masked())
	}
	lo, hi := MinBlockSize4, MaxBlockSize4
	if p.CIDR.Addr().Is6() {
		lo, hi = MinBlockSize6, MaxBlockSize6
	}
	if p.BlockSize < lo || p.BlockSize > hi {
		return fmt.Errorf("%w: pool %s: block size /%d outside /%d-/%d", ErrInvalid, p.Name, p.BlockSize, lo, hi)
	}
	if p.BlockSize < p.CIDR.Bits() {
		return fmt.Errorf("%w: pool %s: block size /%d larger than the pool %s", ErrInvalid, p.Name, p.BlockSize, p.CIDR)
	}
	for _, r := range unusable(p.CIDR.Addr().Is4()) {
		if p.CIDR.Overlaps(r.p) {
			return fmt.Errorf("%w: pool %s: %s overlaps %s %s, which cannot be given to pods", ErrInvalid, p.Name, p.CIDR, r.what, r.p)
		}
	}
	if p.VXLANMode != 0 && !p.VXLANMode.Valid() {
		return fmt.Errorf("%w: pool %s: vxlan mode %d (want Always, CrossSubnet or Never)", ErrInvalid, p.Name, int(p.VXLANMode))
	}
	return nil
}
