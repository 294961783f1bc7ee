//go:build linux

package cnimain

import (
	"os"

	"golang.org/x/sys/unix"
)

// rewind returns a file that reads data from its start: an anonymous
// memory file, which can also become an exec'd program's stdin.
func rewind(data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("tabby-cni-stdin", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "stdin")
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
