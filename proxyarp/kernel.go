package proxyarp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/internal/sysctl"
)

// Sysctl reads and writes /proc/sys keys in one network namespace, keys in
// slash form relative to /proc/sys. SysctlAt returns the real one;
// netlinktest's fake kernel has the same two methods.
type Sysctl interface {
	SetSysctl(key, value string) error
	Sysctl(key string) (string, error)
}

// SysctlAt returns the /proc/sys of the namespace at netnsPath (empty: the
// caller's namespace).
func SysctlAt(netnsPath string) Sysctl { return sysctl.At(netnsPath) }

func kernelKeys(iface string) (proxyARP, proxyDelay string, err error) {
	if iface == "" || len(iface) > 15 || iface == "." || iface == ".." ||
		strings.ContainsAny(iface, "/ \t\n\x00:") {
		return "", "", fmt.Errorf("%w: %q", ErrInvalidInterface, iface)
	}
	return "net/ipv4/conf/" + iface + "/proxy_arp", "net/ipv4/neigh/" + iface + "/proxy_delay", nil
}

// EnableKernel switches iface to the kernel's own proxy ARP, Calico's way:
// proxy_arp=1 and neigh proxy_delay=0 (answer at once instead of after a
// random delay of up to 800 ms). Values already in place are not written
// again. The kernel answers only for targets it has a route to through
// another interface, so the host needs a route for 169.254.1.1 or a
// default route.
func EnableKernel(s Sysctl, iface string) error {
	arpKey, delayKey, err := kernelKeys(iface)
	if err != nil {
		return err
	}
	var errs []error
	for _, kv := range [][2]string{{arpKey, "1"}, {delayKey, "0"}} {
		if v, err := s.Sysctl(kv[0]); err == nil && v == kv[1] {
			continue
		}
		if err := s.SetSysctl(kv[0], kv[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proxyarp: enable kernel proxy arp on %s: %w", iface, err)
	}
	return nil
}

// DisableKernel sets proxy_arp=0 on iface (proxy_delay is left alone).
func DisableKernel(s Sysctl, iface string) error {
	arpKey, _, err := kernelKeys(iface)
	if err != nil {
		return err
	}
	if v, err := s.Sysctl(arpKey); err == nil && v == "0" {
		return nil
	}
	if err := s.SetSysctl(arpKey, "0"); err != nil {
		return fmt.Errorf("proxyarp: disable kernel proxy arp on %s: %w", iface, err)
	}
	return nil
}

// KernelEnabled reports whether iface has proxy_arp=1 and proxy_delay=0.
func KernelEnabled(s Sysctl, iface string) (bool, error) {
	arpKey, delayKey, err := kernelKeys(iface)
	if err != nil {
		return false, err
	}
	a, err := s.Sysctl(arpKey)
	if err != nil {
		return false, fmt.Errorf("proxyarp: %w", err)
	}
	d, err := s.Sysctl(delayKey)
	if err != nil {
		return false, fmt.Errorf("proxyarp: %w", err)
	}
	return a == "1" && d == "0", nil
}
