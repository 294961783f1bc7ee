//go:build linux

package nat

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
)

// Manager owns one nftables table (family ip) and nothing else: it never
// lists, changes or flushes other tables, and Cleanup deletes only its own.
//
// SetDesired validates and stores the intended state in memory; Sync reads
// the table back from the kernel and applies the difference as a single
// nftables transaction. A Sync with nothing to change sends nothing.
//
// LastResult and Totals report what Syncs wrote, for metrics.
//
// A Manager is safe for concurrent use; calls are serialised (LastResult and
// Totals never wait for a Sync in progress). Several Managers may run in one
// process, each on its own Conn.
type Manager struct {
	conn Conn
	cfg  Config
	log  *slog.Logger

	closer  func() error // closes a connection Open dialled; nil otherwise
	watcher Watcher      // the kernel's in the namespace Open dialled; nil otherwise

	mu      sync.Mutex
	desired *plan  // nil until the first successful SetDesired
	setID   uint32 // the last set ID of the transaction being queued

	statMu sync.Mutex // guards last and totals
	last   Result
	totals Totals
}

// Open dials nftables in the network namespace netnsFd refers to (0: the
// caller's own, see Dial) and returns a Manager that owns the connection;
// Close releases it.
func Open(netnsFd int, cfg *Config) (*Manager, error) {
	c, err := Dial(netnsFd)
	if err != nil {
		return nil, err
	}
	m, err := New(c, cfg)
	if err != nil {
		_ = c.CloseLasting()
		return nil, err
	}
	m.closer = c.CloseLasting
	m.watcher = NewWatcher(netnsFd)
	return m, nil
}

// Close closes the connection if Open dialled it; a Manager from New leaves
// its Conn to the caller. The table stays in place (see Cleanup).
func (m *Manager) Close() error {
	if m.closer == nil {
		return nil
	}
	return m.closer()
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
		// The SNAT port range [VXLANPort+1, 65535] or
		// [1024, VXLANPort-1] must stay within unprivileged ports.
		return nil, &ValidationError{Field: "Config.VXLANPort", Value: fmt.Sprint(c.VXLANPort), Err: ErrInvalidConfig}
	}
	if len(c.TunnelInterface) > 15 || strings.ContainsRune(c.TunnelInterface, 0) {
		return nil, &ValidationError{Field: "Config.TunnelInterface", Value: c.TunnelInterface, Err: ErrInvalidInterface}
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
// LastResult then says what it wrote.
func (m *Manager) Sync(ctx context.Context) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res Result
	defer func() {
		m.statMu.Lock()
		m.last = res
		m.totals.add(res, err)
		m.statMu.Unlock()
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nat: sync: %w", err)
	}
	if m.desired == nil {
		return ErrNoDesiredState
	}
	obs, err := m.observeAll()
	if err != nil {
		return fmt.Errorf("nat: sync: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nat: sync: %w", err)
	}
	m.setID = 0
	r, err := m.apply(m.desired, obs)
	if err != nil {
		return fmt.Errorf("nat: sync table %s: %w", m.cfg.Table, err)
	}
	res = r
	if r.Writes > 0 {
		m.log.Debug("nat: synced", "table", m.cfg.Table, "rebuilt", r.Rebuilt, "added", r.Added, "removed", r.Removed)
	}
	return nil
}

// LastResult returns what the last Sync wrote (zero before the first Sync,
// and after a Sync that failed or found nothing to change).
func (m *Manager) LastResult() Result {
	m.statMu.Lock()
	defer m.statMu.Unlock()
	return m.last
}

// Totals returns the Manager's counters since New.
func (m *Manager) Totals() Totals {
	m.statMu.Lock()
	defer m.statMu.Unlock()
	return m.totals
}

// Cleanup deletes the Manager's table, and with it every rule and set it
// holds. Other tables are untouched. Without the table it writes nothing.
func (m *Manager) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nat: cleanup: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var found bool
	for _, f := range families() {
		t, err := m.findTable(f)
		if err != nil {
			return fmt.Errorf("nat: cleanup: %w", err)
		}
		if t != nil {
			m.conn.DelTable(t)
			found = true
		}
	}
	if !found {
		return nil
	}
	if err := m.conn.Flush(); err != nil {
		return fmt.Errorf("nat: delete table %s: %w", m.cfg.Table, err)
	}
	m.statMu.Lock()
	m.totals.Writes++
	m.statMu.Unlock()
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
	obs, err := m.observeAll()
	if err != nil {
		return "", fmt.Errorf("nat: dump: %w", err)
	}
	var b strings.Builder
	for _, f := range families() {
		if o := obs[f.tf]; o != nil {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString(o.render(m.cfg.Table))
		}
	}
	return b.String(), nil
}

func (m *Manager) findTable(f family) (*nftables.Table, error) {
	ts, err := m.conn.ListTablesOfFamily(f.tf)
	if err != nil {
		return nil, fmt.Errorf("list %s tables: %w", f.name, err)
	}
	i := slices.IndexFunc(ts, func(t *nftables.Table) bool { return t.Name == m.cfg.Table })
	if i < 0 {
		return nil, nil
	}
	return ts[i], nil
}
