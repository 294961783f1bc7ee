//go:build !linux

package cnimain

import (
	"errors"
	"os"
)

// rewind returns a file that reads data from its start.
func rewind(data []byte) (*os.File, error) { return readerFile(data), nil }

// execPlugin: handing off is Linux only.
func execPlugin(string, *os.File) error {
	return errors.ErrUnsupported
}
