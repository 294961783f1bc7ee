//go:build !linux

package cnimain

import (
	"bytes"
	"errors"
	"io"
	"os"
)

// rewind returns a file that reads data from its start (a pipe fed by a
// goroutine).
func rewind(data []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		io.Copy(w, bytes.NewReader(data))
		w.Close()
	}()
	return r, nil
}

// execPlugin: handing off is Linux only.
func execPlugin(string, *os.File) error {
	return errors.ErrUnsupported
}
