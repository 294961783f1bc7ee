// Package sysctl reads and writes /proc/sys keys inside a given network
// namespace, with the same method names as netlinktest.Kernel so that code
// can take either through a two-method interface.
//
// /proc/sys and network namespaces exist only on Linux: elsewhere an NS
// without a Root, or with a Path, returns errors wrapping
// errors.ErrUnsupported.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tabbynet/tabby/internal/nsenter"
)

// ErrInvalidKey is returned for keys that are empty, absolute or escape
// /proc/sys.
var ErrInvalidKey = errors.New("sysctl: invalid key")

// NS is the sysctl tree of one network namespace. The zero value (and an NS
// with an empty Path) is the caller's own namespace. Safe for concurrent use.
type NS struct {
	// Path names the namespace (/var/run/netns/x, /proc/<pid>/ns/net).
	Path string
	// Root is the sysctl mount point; empty means /proc/sys.
	Root string
}

// At returns the sysctl tree of the namespace at path.
func At(path string) NS { return NS{Path: path} }

func (s NS) file(key string) (string, error) {
	k := strings.ReplaceAll(key, ".", "/")
	// Interface names may contain dots; accept the slash form verbatim.
	if strings.Contains(key, "/") {
		k = key
	}
	if k == "" || strings.HasPrefix(k, "/") || strings.Contains(k, "..") {
		return "", fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	root := s.Root
	if root == "" {
		root = defaultRoot
	}
	if root == "" {
		return "", fmt.Errorf("sysctl: %s: no /proc/sys on this system: %w", key, errors.ErrUnsupported)
	}
	return filepath.Join(root, k), nil
}

// SetSysctl writes value to key, given relative to /proc/sys in slash form
// ("net/ipv4/conf/eth0/forwarding"); the dotted form is accepted when no
// component contains a dot.
func (s NS) SetSysctl(key, value string) error {
	f, err := s.file(key)
	if err != nil {
		return err
	}
	err = nsenter.DoPath(s.Path, func() error {
		return os.WriteFile(f, []byte(value), 0o644)
	})
	if err != nil {
		return fmt.Errorf("sysctl: set %s=%s: %w", key, value, err)
	}
	return nil
}

// Sysctl reads key, trimmed of surrounding white space.
func (s NS) Sysctl(key string) (string, error) {
	f, err := s.file(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = nsenter.DoPath(s.Path, func() error {
		var rerr error
		b, rerr = os.ReadFile(f)
		return rerr
	})
	if err != nil {
		return "", fmt.Errorf("sysctl: get %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}
