//go:build linux

package cnimain

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// rewind returns a file that reads data from its start, which can also
// become an exec'd program's stdin: an anonymous memory file, or where
// memfd_create is not allowed an unlinked temporary file.
func rewind(data []byte) (*os.File, error) {
	var f *os.File
	if fd, err := unix.MemfdCreate("tabby-cni-stdin", unix.MFD_CLOEXEC); err == nil {
		f = os.NewFile(uintptr(fd), "stdin")
	} else {
		tf, terr := os.CreateTemp("", "tabby-cni-stdin-")
		if terr != nil {
			return nil, errors.Join(err, terr)
		}
		os.Remove(tf.Name())
		f = tf
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// execPlugin replaces this process with the plugin at path: stdin is in,
// the environment is this one plus HandoffEnv. It returns only on failure.
func execPlugin(path string, in *os.File) error {
	if err := unix.Dup3(int(in.Fd()), 0, 0); err != nil {
		return err
	}
	return unix.Exec(path, []string{path}, append(os.Environ(), HandoffEnv+"="+os.Args[0]))
}
