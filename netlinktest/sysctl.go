package netlinktest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

// sysctlDefault is one key (relative to /proc/sys) and its default value.
// Per-link keys have "%s" where the interface name goes.
type sysctlDefault struct{ key, value string }

// sysctlTables are the defaults, computed once per machine.
type sysctlTables struct {
	global  map[string]string
	link    map[string]string // template -> default
	linkSeq []string          // templates in order
}

func newSysctlTables() *sysctlTables {
	t := &sysctlTables{global: map[string]string{}, link: map[string]string{}}
	for _, d := range globalSysctlDefaults() {
		t.global[d.key] = d.value
	}
	for _, d := range linkSysctlDefaults() {
		t.link[d.key] = d.value
		t.linkSeq = append(t.linkSeq, d.key)
	}
	return t
}

const ipv6MTUKey = "net/ipv6/conf/%s/mtu"

// sysctlKey normalises a key like internal/sysctl does: slash form as
// given, dotted form converted when it has no slash.
func sysctlKey(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	if k == "" || strings.HasPrefix(k, "/") || strings.Contains(k, "..") {
		return "", fmt.Errorf("netlinktest: sysctl: invalid key %q: %w", key, abi.EINVAL)
	}
	return k, nil
}

// sysctlSlot finds where a key lives: a link's table (with the template)
// or the namespace's.
func (ns *namespace) sysctlSlot(key string) (l *link, tmpl string, ok bool) {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) == 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") &&
		parts[3] != "all" && parts[3] != "default" {
		tmpl = strings.Join([]string{parts[0], parts[1], parts[2], "%s", parts[4]}, "/")
		if _, known := ns.m.sysctls.link[tmpl]; !known {
			return nil, "", false
		}
		l = ns.linkByName(parts[3])
		return l, tmpl, l != nil
	}
	_, known := ns.m.sysctls.global[key]
	return nil, "", known
}

// Sysctl reads a key relative to /proc/sys (slash form, e.g.
// "net/ipv4/conf/eth0/forwarding"). Keys of a link exist only while the
// link exists; unknown keys give an error wrapping ENOENT.
func (k *Kernel) Sysctl(key string) (string, error) {
	var v string
	err := k.read("Sysctl", func() error {
		kk, err := sysctlKey(key)
		if err != nil {
			return err
		}
		l, tmpl, ok := k.ns.sysctlSlot(kk)
		if !ok {
			return fmt.Errorf("netlinktest: sysctl: get %s: %w", key, abi.ENOENT)
		}
		if l != nil {
			v = l.getSysctl(tmpl)
		} else {
			v = k.ns.getSysctl(kk)
		}
		return nil
	})
	return v, err
}

// SetSysctl writes a key. The value must be an integer (EINVAL
// otherwise); unknown keys give ENOENT. Writing
// net/ipv4/conf/all/forwarding or net/ipv4/ip_forward sets forwarding on
// every interface and default, as the kernel does; likewise
// net/ipv6/conf/all/forwarding.
func (k *Kernel) SetSysctl(key, value string) error {
	return k.do("SetSysctl", func() error {
		kk, err := sysctlKey(key)
		if err != nil {
			return err
		}
		ns := k.ns
		l, tmpl, ok := ns.sysctlSlot(kk)
		if !ok {
			return fmt.Errorf("netlinktest: sysctl: set %s=%s: %w", key, value, abi.ENOENT)
		}
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("netlinktest: sysctl: set %s=%s: %w", key, value, abi.EINVAL)
		}
		v := strconv.Itoa(n)
		if l != nil {
			l.setSysctl(tmpl, v)
			if tmpl == "net/ipv6/conf/%s/disable_ipv6" {
				if v != "0" {
					ns.dropIPv6(l)
				} else {
					ns.autoconf(l)
				}
			}
			return nil
		}
		ns.setSysctl(kk, v)
		switch kk {
		case "net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding":
			ns.setSysctl("net/ipv4/ip_forward", v)
			ns.setSysctl("net/ipv4/conf/all/forwarding", v)
			ns.setSysctl("net/ipv4/conf/default/forwarding", v)
			for _, l := range ns.links {
				l.setSysctl("net/ipv4/conf/%s/forwarding", v)
			}
		case "net/ipv6/conf/all/forwarding":
			ns.setSysctl("net/ipv6/conf/default/forwarding", v)
			for _, l := range ns.links {
				l.setSysctl("net/ipv6/conf/%s/forwarding", v)
			}
		}
		return nil
	})
}

// getSysctl reads a namespace-wide key; ns.sysctl holds only the values
// that differ from a fresh namespace's.
func (ns *namespace) getSysctl(key string) string {
	if v, ok := ns.sysctl[key]; ok {
		return v
	}
	return ns.m.sysctls.global[key]
}

func (ns *namespace) setSysctl(key, v string) {
	if v == ns.m.sysctls.global[key] {
		delete(ns.sysctl, key)
		return
	}
	ns.sysctl[key] = v
}

// getSysctl reads a per-link key; l.sysctl holds only the values that
// differ from the kernel's defaults.
func (l *link) getSysctl(tmpl string) string {
	if v, ok := l.sysctl[tmpl]; ok {
		return v
	}
	if tmpl == ipv6MTUKey {
		return strconv.Itoa(l.mtu)
	}
	return l.ns.m.sysctls.link[tmpl]
}

func (l *link) setSysctl(tmpl, v string) {
	def := l.ns.m.sysctls.link[tmpl]
	if tmpl == ipv6MTUKey {
		def = strconv.Itoa(l.mtu)
	}
	if v == def {
		delete(l.sysctl, tmpl)
		return
	}
	l.sysctl[tmpl] = v
}

// addLinkSysctls gives a new link its keys, copied from the namespace's
// "default" ones like the kernel does.
func (ns *namespace) addLinkSysctls(l *link) {
	t := ns.m.sysctls
	l.sysctl = map[string]string{}
	for _, tmpl := range t.linkSeq {
		if src, ok := ns.sysctl[strings.Replace(tmpl, "%s", "default", 1)]; ok && src != t.link[tmpl] && tmpl != ipv6MTUKey {
			// conf/default differs from the kernel's default: copy it.
			l.sysctl[tmpl] = src
		}
	}
}

// nonDefaultSysctls lists "key=value" for every key whose value differs
// from a fresh namespace's, sorted by key.
func (ns *namespace) nonDefaultSysctls() []string {
	var out []string
	for k, v := range ns.sysctl {
		out = append(out, k+"="+v)
	}
	for _, l := range ns.links {
		for tmpl, v := range l.sysctl {
			out = append(out, strings.Replace(tmpl, "%s", l.name, 1)+"="+v)
		}
	}
	sort.Strings(out)
	return out
}
