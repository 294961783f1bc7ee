//go:build !linux

package nlbatch

import "errors"

// MaxBatch is how many requests go out in one send.
const MaxBatch = 128

// Conn is Linux only; elsewhere Dial fails.
type Conn struct{}

// Dial fails: rtnetlink is Linux only.
func Dial(path string) (*Conn, error) { return nil, errors.New("nlbatch: rtnetlink is Linux only") }

// Close does nothing.
func (c *Conn) Close() error { return nil }

// WriteBatch fails every write.
func (c *Conn) WriteBatch(ws []Write) []error {
	errs := make([]error, len(ws))
	for i := range errs {
		errs[i] = ErrNoAck
	}
	return errs
}
