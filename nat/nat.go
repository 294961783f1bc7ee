package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// Defaults used when a Config field is left zero.
const (
	DefaultTable     = "tabby"
	DefaultVXLANPort = 4789
	// DefaultPortGuardMark is outside the bits kube-proxy (0x4000, 0x8000)
	// and Cilium (0x0f00) use.
	DefaultPortGuardMark = 0x01000000
)

// Sentinel errors, matched with errors.Is. Validation failures are returned
// as *ValidationError wrapping one of them.
var (
	// ErrInvalidPrefix: a prefix or address is not valid, or a prefix has
	// host bits set (10.244.1.5/16).
	ErrInvalidPrefix = errors.New("nat: invalid prefix or address")
	// ErrWrongFamily: an IPv4-mapped IPv6 prefix or address (::ffff:a.b.c.d),
	// an address of a family that has no pool (there is no table for it),
	// or an SNATTo / SNATTo6 of the other family.
	ErrWrongFamily = errors.New("nat: wrong address family")
	// ErrNoPools: the desired state lists no pool.
	ErrNoPools = errors.New("nat: no pools")
	// ErrInvalidInterface: a workload interface name is empty or longer than
	// 15 bytes (IFNAMSIZ-1).
	ErrInvalidInterface = errors.New("nat: invalid interface name")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("nat: invalid config")
	// ErrNoDesiredState: Sync was called before any successful SetDesired.
	ErrNoDesiredState = errors.New("nat: no desired state")
)

// ValidationError says which input was rejected and why. Unwrap returns the
// sentinel (ErrInvalidPrefix, ErrWrongFamily, ...). Immutable once returned;
// safe for concurrent use.
type ValidationError struct {
	Field string // "Pools[2].CIDR", "VXLANPeers[0]", ...
	Value string // the offending value as given
	Err   error  // a sentinel
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s %q", e.Err, e.Field, e.Value)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// Config is the static part of a Manager. A nil *Config means defaults. New
// copies it; a plain value, not safe for concurrent mutation.
type Config struct {
	// Table is the name of the nftables tables (one of family ip, one of
	// family ip6) the Manager owns. Default "tabby".
	Table string
	// VXLANPort is the UDP port of the VXLAN underlay. It is kept out of the
	// source ports masquerade may choose for UDP, and guarded by the VXLAN
	// allow-list. Default 4789.
	VXLANPort uint16
	// DisableVXLANGuard leaves out the VXLAN ingress allow-list (for nodes
	// that do not use VXLAN, or run another VXLAN user on the same port).
	DisableVXLANGuard bool
	// DisableWorkloadGuard leaves out the workload source-address guard.
	DisableWorkloadGuard bool
	// TunnelInterface, when set, is the VXLAN device (e.g. "vxlan.calico").
	// Host traffic leaving through it with a local source address that is
	// not the device's own (typically the underlay address) is masqueraded
	// to the device's address, so that remote nodes can answer it, as
	// Calico does. Empty: no such rule. It applies to the IPv4 table.
	TunnelInterface string
	// TunnelInterface6 is the same for the IPv6 table (e.g.
	// "vxlan-v6.calico").
	TunnelInterface6 string
	// PortGuardMark is the one packet-mark bit tabby's NAT rules set on the
	// packet that creates a translation, so that the port guard after NAT
	// can tell tabby's flows from other tools' (see doc.go). The guard
	// clears it again on every packet that carries it, so the bit must be
	// reserved for tabby on the node. Default DefaultPortGuardMark; it must
	// be one bit.
	PortGuardMark uint32
	// Watcher, when set, is what Manager.Watch uses (for a Manager from New
	// over a real connection: nat.NewWatcher(netnsFd)). Linux only; nil
	// elsewhere.
	Watcher Watcher
	// Logger receives debug records of every applied change; nil discards.
	Logger *slog.Logger
}

// Pool is one IP pool. A plain value.
type Pool struct {
	CIDR netip.Prefix
	// NATOutgoing: traffic from this pool to destinations outside all pools
	// is masqueraded (or SNATed to Desired.SNATTo).
	NATOutgoing bool
}

// Workload is one pod interface on this node and the addresses the pod may
// send from, of either family. A workload listed without addresses of a
// family may send nothing of that family (IPv6 link-local and unspecified
// sources excepted, see doc.go). A plain value.
type Workload struct {
	Interface string // host-side interface name, e.g. "cali6ff8e3ade03"
	Addrs     []netip.Addr
}

// Desired is the whole intended state, both families. SetDesired copies
// what it needs, so the caller may reuse the slices afterwards; not safe for
// concurrent mutation while SetDesired runs.
//
// The families present among Pools decide which tables exist: a family
// with a pool gets its table (ip or ip6), a family without one has none
// (and a table of it left from before is deleted). Every other prefix or
// address must be of a family that has a pool.
type Desired struct {
	// Pools, at least one, IPv4 or IPv6. Traffic between pool addresses is
	// never NATed.
	Pools []Pool
	// SNATTo, when valid, replaces masquerade of IPv4 traffic with SNAT to
	// this fixed IPv4 address (for nodes whose egress address is not the
	// outgoing interface's primary address).
	SNATTo netip.Addr
	// SNATTo6 is the same for IPv6 traffic, an IPv6 address.
	SNATTo6 netip.Addr
	// ExcludeDestinations are extra destinations that are never NATed
	// (for example the underlay network, a VPN, a cloud metadata range).
	ExcludeDestinations []netip.Prefix
	// VXLANPeers are the underlay addresses of the other nodes, the only
	// sources from which UDP to the VXLAN port is accepted.
	VXLANPeers []netip.Addr
	// Workloads are the local pod interfaces and their addresses.
	Workloads []Workload
}

// Names of the sets and chains in each table. They are part of the API in
// the sense that `nft list table ip tabby` and `nft list table ip6 tabby`
// show them; the ip6 table's address sets are of type ipv6_addr.
const (
	SetNATPools       = "nat_pools"       // pools with NATOutgoing
	SetAllPools       = "all_pools"       // every pool
	SetNATExclude     = "nat_exclude"     // Desired.ExcludeDestinations
	SetVXLANPeers     = "vxlan_peers"     // Desired.VXLANPeers
	SetWorkloadIfaces = "workload_ifaces" // guarded interfaces
	SetWorkloadAddrs  = "workload_addrs"  // interface . address pairs

	ChainPostrouting = "postrouting"    // nat, srcnat: masquerade / SNAT
	ChainPortGuard   = "nat_port_guard" // filter, srcnat + 1: no translated UDP flow on the VXLAN port
	ChainInput       = "input"          // filter, filter: VXLAN allow-list
	ChainPrerouting  = "prerouting"     // filter, raw: workload source guard
)

// SNATPortRange returns the source ports SNAT to a fixed address may
// pick for UDP: every unprivileged port on the far side of vxlanPort, so that
// a translated flow can never use the VXLAN port (Calico #12244).
func SNATPortRange(vxlanPort uint16) (lo, hi uint16) {
	if vxlanPort < 32768 {
		return vxlanPort + 1, 65535
	}
	return 1024, vxlanPort - 1
}

// ErrUnsupported is returned by every Manager method on systems other than
// Linux, where nftables does not exist.
var ErrUnsupported = errors.ErrUnsupported

// Result describes what the last Sync wrote. A plain value, safe to keep and
// read from any goroutine.
//
// Elements are counted as the caller gives them: a pool or excluded prefix,
// a peer address, a workload interface, an interface-address pair (the
// kernel stores an interval as two elements; it counts as one here).
type Result struct {
	// Writes is the number of nftables transactions the Sync sent and the
	// kernel applied: 1, or 0 when nothing differed or the Sync failed (a
	// transaction applies entirely or not at all, so a failed Sync wrote
	// nothing and its Result is zero).
	Writes int
	// Rebuilt: the transaction deleted (if present) and recreated the whole
	// table, because something other than set contents differed.
	Rebuilt bool
	// Reason says why the table was rebuilt ("table missing", "chain input
	// missing", ...); "" when it was not.
	Reason string
	// Added and Removed count the set elements the transaction added and
	// removed. A rebuild adds every desired element and removes every
	// element the old table held (of the sets whose type tabby reads).
	Added, Removed int
}

// Totals are a Manager's counters since New, for metrics. A plain value.
type Totals struct {
	Syncs    uint64 // Sync calls
	Errors   uint64 // Syncs that returned an error
	Writes   uint64 // transactions applied, by Sync and by Cleanup
	Rebuilds uint64 // Syncs that rebuilt the table
	Added    uint64 // set elements added by Syncs
	Removed  uint64 // set elements removed by Syncs (not by Cleanup)
}

func (t *Totals) add(r Result, err error) {
	t.Syncs++
	if err != nil {
		t.Errors++
	}
	t.Writes += uint64(r.Writes)
	if r.Rebuilt {
		t.Rebuilds++
	}
	t.Added += uint64(r.Added)
	t.Removed += uint64(r.Removed)
}

// Watcher reports changes to nftables tables. WatchTables blocks until ctx
// is done (then it returns nil) or the subscription fails. Once subscribed
// it sends one signal, then one whenever a table named name of family ip
// or ip6, or anything in it (chains, rules, sets, elements), is created,
// changed or deleted, by anyone. Sends never block: a signal that finds
// changed full is dropped, so a channel with a buffer of one coalesces a
// burst into one pending signal.
//
// NewWatcher returns the kernel's (Linux only); nattest.Conn is one for
// tests.
type Watcher interface {
	WatchTables(ctx context.Context, name string, changed chan<- struct{}) error
}

// ErrNoWatcher: Manager.Watch has no Watcher to use (a Manager from New
// over a Conn that is not one, without Config.Watcher).
var ErrNoWatcher = errors.New("nat: no watcher")
