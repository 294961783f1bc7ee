package nat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
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
	// ErrWrongFamily: an IPv6 (or IPv4-mapped IPv6) prefix or address where
	// the IPv4 table needs an IPv4 one.
	ErrWrongFamily = errors.New("nat: address family does not match the table")
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
// sentinel (ErrInvalidPrefix, ErrWrongFamily, ...).
type ValidationError struct {
	Field string // "Pools[2].CIDR", "VXLANPeers[0]", ...
	Value string // the offending value as given
	Err   error  // a sentinel
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s %q", e.Err, e.Field, e.Value)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// Config is the static part of a Manager. A nil *Config means defaults.
type Config struct {
	// Table is the name of the one nftables table (family ip) the Manager
	// owns. Default "tabby".
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
	// PortGuardMark is the one packet-mark bit tabby's NAT rules set on the
	// packet that creates a translation, so that the port guard after NAT
	// can tell tabby's flows from other tools' (see doc.go). The guard
	// clears it again. Default DefaultPortGuardMark; it must be one bit.
	PortGuardMark uint32
	// Logger receives debug records of every applied change; nil discards.
	Logger *slog.Logger
}

// Pool is one IP pool.
type Pool struct {
	CIDR netip.Prefix
	// NATOutgoing: traffic from this pool to destinations outside all pools
	// is masqueraded (or SNATed to Desired.SNATTo).
	NATOutgoing bool
}

// Workload is one pod interface on this node and the addresses the pod may
// send from.
type Workload struct {
	Interface string // host-side interface name, e.g. "cali6ff8e3ade03"
	Addrs     []netip.Addr
}

// Desired is the whole intended state. Slices are copied by SetDesired.
type Desired struct {
	// Pools, at least one. Traffic between pool addresses is never NATed.
	Pools []Pool
	// SNATTo, when valid, replaces masquerade with SNAT to this fixed
	// address (for nodes whose egress address is not the outgoing
	// interface's primary address).
	SNATTo netip.Addr
	// ExcludeDestinations are extra destinations that are never NATed
	// (for example the underlay network, a VPN, a cloud metadata range).
	ExcludeDestinations []netip.Prefix
	// VXLANPeers are the underlay addresses of the other nodes, the only
	// sources from which UDP to the VXLAN port is accepted.
	VXLANPeers []netip.Addr
	// Workloads are the local pod interfaces and their addresses.
	Workloads []Workload
}

// Manager owns one nftables table (family ip) and nothing else: it never
// lists, changes or flushes other tables, and Cleanup deletes only its own.
//
// SetDesired validates and stores the intended state in memory; Sync reads
// the table back from the kernel and applies the difference as a single
// nftables transaction. A Sync with nothing to change sends nothing.
//
// A Manager is safe for concurrent use; calls are serialised.
type Manager struct {
	conn Conn
	cfg  Config
	log  *slog.Logger

	mu      sync.Mutex
	desired *ruleset // nil until the first successful SetDesired
}

// New returns a Manager writing through conn (an *nftables.Conn from Dial,
// or a nattest.Conn). A nil cfg means defaults.
func New(conn Conn, cfg *Config) (*Manager, error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: nil Conn", ErrInvalidConfig)
	}
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if len(c.Table) > 255 || strings.ContainsRune(c.Table, 0) {
		return nil, &ValidationError{Field: "Config.Table", Value: c.Table, Err: ErrInvalidConfig}
	}
	if c.VXLANPort == 0 {
		c.VXLANPort = DefaultVXLANPort
	}
	if c.VXLANPort < 1024 {
		// The masquerade port range [VXLANPort+1, 65535] or
		// [1024, VXLANPort-1] must stay within unprivileged ports.
		return nil, &ValidationError{Field: "Config.VXLANPort", Value: fmt.Sprint(c.VXLANPort), Err: ErrInvalidConfig}
	}
	if c.PortGuardMark == 0 {
		c.PortGuardMark = DefaultPortGuardMark
	}
	if c.PortGuardMark&(c.PortGuardMark-1) != 0 {
		return nil, &ValidationError{Field: "Config.PortGuardMark", Value: fmt.Sprintf("%#x", c.PortGuardMark), Err: ErrInvalidConfig}
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Manager{conn: conn, cfg: c, log: log}, nil
}

// Table returns the name of the table the Manager owns.
func (m *Manager) Table() string { return m.cfg.Table }

// SetDesired validates d and makes it the state the next Sync applies. It
// touches no kernel state. On invalid input it returns a *ValidationError and
// keeps the previous desired state.
func (m *Manager) SetDesired(d Desired) error {
	rs, err := build(m.cfg, d)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.desired = rs
	m.mu.Unlock()
	return nil
}

// Render returns the desired ruleset in `nft list table` style, or "" before
// the first SetDesired. It touches no kernel state.
func (m *Manager) Render() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.desired == nil {
		return ""
	}
	return m.desired.render()
}

// Sync makes the kernel's table equal to the desired state. It reads the
// table (sets, elements, chains, rules) and then:
//   - nothing differs: no write at all;
//   - only set contents differ: adds and deletes exactly the changed
//     elements;
//   - anything structural differs (a chain, a rule, a set definition, or
//     the table is missing): deletes and recreates the table;
//
// in one transaction, so a failed Sync leaves the previous ruleset intact.
func (m *Manager) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nat: sync: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.desired == nil {
		return ErrNoDesiredState
	}
	obs, err := m.observe()
	if err != nil {
		return fmt.Errorf("nat: sync: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nat: sync: %w", err)
	}
	n, err := m.apply(m.desired, obs)
	if err != nil {
		return fmt.Errorf("nat: sync table %s: %w", m.cfg.Table, err)
	}
	if n > 0 {
		m.log.Debug("nat: synced", "table", m.cfg.Table, "changes", n)
	}
	return nil
}

// Cleanup deletes the Manager's table, and with it every rule and set it
// holds. Other tables are untouched. Without the table it writes nothing.
func (m *Manager) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nat: cleanup: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.findTable()
	if err != nil {
		return fmt.Errorf("nat: cleanup: %w", err)
	}
	if t == nil {
		return nil
	}
	m.conn.DelTable(t)
	if err := m.conn.Flush(); err != nil {
		return fmt.Errorf("nat: delete table %s: %w", m.cfg.Table, err)
	}
	m.log.Debug("nat: deleted table", "table", m.cfg.Table)
	return nil
}

// Dump reads the Manager's table from the kernel and renders it in the same
// format as Render, decoding rules from their expressions. It returns "" if
// the table does not exist.
func (m *Manager) Dump(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("nat: dump: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	obs, err := m.observe()
	if err != nil {
		return "", fmt.Errorf("nat: dump: %w", err)
	}
	if obs == nil {
		return "", nil
	}
	return obs.render(m.cfg.Table), nil
}

func (m *Manager) findTable() (*nftables.Table, error) {
	ts, err := m.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	i := slices.IndexFunc(ts, func(t *nftables.Table) bool { return t.Name == m.cfg.Table })
	if i < 0 {
		return nil, nil
	}
	return ts[i], nil
}
