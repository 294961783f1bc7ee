//go:build !linux

package nat

import "context"

// Conn stands for the nftables connection, which exists only on Linux.
type Conn interface{}

// Manager is a stub on systems other than Linux: every method returns
// ErrUnsupported. Safe for concurrent use.
type Manager struct{}

// New returns ErrUnsupported on systems other than Linux.
func New(Conn, *Config) (*Manager, error) { return nil, ErrUnsupported }

// Open returns ErrUnsupported on systems other than Linux.
func Open(int, *Config) (*Manager, error) { return nil, ErrUnsupported }

// Dial returns ErrUnsupported on systems other than Linux.
func Dial(int) (Conn, error) { return nil, ErrUnsupported }

// Table returns "".
func (*Manager) Table() string { return "" }

// SetDesired returns ErrUnsupported.
func (*Manager) SetDesired(Desired) error { return ErrUnsupported }

// Render returns "".
func (*Manager) Render() string { return "" }

// Sync returns ErrUnsupported.
func (*Manager) Sync(context.Context) error { return ErrUnsupported }

// Cleanup returns ErrUnsupported.
func (*Manager) Cleanup(context.Context) error { return ErrUnsupported }

// Dump returns ErrUnsupported.
func (*Manager) Dump(context.Context) (string, error) { return "", ErrUnsupported }

// LastResult returns a zero Result.
func (*Manager) LastResult() Result { return Result{} }

// Totals returns zero Totals.
func (*Manager) Totals() Totals { return Totals{} }

// NewWatcher returns a Watcher whose WatchTables returns ErrUnsupported.
func NewWatcher(int) Watcher { return unsupportedWatcher{} }

type unsupportedWatcher struct{}

func (unsupportedWatcher) WatchTables(context.Context, string, chan<- struct{}) error {
	return ErrUnsupported
}

// Watch returns ErrUnsupported.
func (*Manager) Watch(context.Context, chan<- struct{}) error { return ErrUnsupported }

// Close returns nil.
func (*Manager) Close() error { return nil }

// SendBuffer is the send buffer Dial asks for on Linux: room for a
// transaction of about 250,000 address elements.
const SendBuffer = 8 << 20
