package netlinktest

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysctlDefault is one key (relative to /proc/sys) and its default value.
type sysctlDefault struct{ key, value string }

// sysctlKey normalises a key like internal/sysctl does: slash form as
// given, dotted form converted when it has no slash.
func sysctlKey(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	if k == "" || strings.HasPrefix(k, "/") || strings.Contains(k, "..") {
		return "", fmt.Errorf("netlinktest: sysctl: invalid key %q: %w", key, unix.EINVAL)
	}
	return k, nil
}

// Sysctl reads a key relative to /proc/sys (slash form, e.g.
// "net/ipv4/conf/eth0/forwarding"). Keys of a link exist only while the
// link exists; unknown keys give an error wrapping unix.ENOENT.
func (k *Kernel) Sysctl(key string) (string, error) {
	var v string
	err := k.read("Sysctl", func() error {
		kk, err := sysctlKey(key)
		if err != nil {
			return err
		}
		val, ok := k.ns.sysctl[kk]
		if !ok {
			return fmt.Errorf("netlinktest: sysctl: get %s: %w", key, unix.ENOENT)
		}
		v = val
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
		if _, ok := ns.sysctl[kk]; !ok {
			return fmt.Errorf("netlinktest: sysctl: set %s=%s: %w", key, value, unix.ENOENT)
		}
		v := strings.TrimSpace(value)
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("netlinktest: sysctl: set %s=%s: %w", key, value, unix.EINVAL)
		}
		v = strconv.Itoa(n)
		ns.sysctl[kk] = v
		switch kk {
		case "net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding":
			ns.sysctl["net/ipv4/ip_forward"] = v
			ns.sysctl["net/ipv4/conf/all/forwarding"] = v
			ns.sysctl["net/ipv4/conf/default/forwarding"] = v
			for _, l := range ns.links {
				ns.sysctl["net/ipv4/conf/"+l.name+"/forwarding"] = v
			}
		case "net/ipv6/conf/all/forwarding":
			ns.sysctl["net/ipv6/conf/default/forwarding"] = v
			for _, l := range ns.links {
				ns.sysctl["net/ipv6/conf/"+l.name+"/forwarding"] = v
			}
		}
		return nil
	})
}

// linkSysctlTemplate returns the per-link key template matching key for
// link name, e.g. "net/ipv4/conf/%s/forwarding".
func linkSysctlKey(tmpl, name string) string { return strings.Replace(tmpl, "%s", name, 1) }

// defaultSource is the namespace key a new link's value is copied from.
func defaultSource(tmpl string) string { return strings.Replace(tmpl, "%s", "default", 1) }

func (ns *namespace) addLinkSysctls(l *link) {
	for _, d := range linkSysctlDefaults() {
		v := d.value
		if src, ok := ns.sysctl[defaultSource(d.key)]; ok {
			v = src
		}
		if d.key == "net/ipv6/conf/%s/mtu" {
			v = strconv.Itoa(l.mtu)
		}
		ns.sysctl[linkSysctlKey(d.key, l.name)] = v
	}
}

func (ns *namespace) delLinkSysctls(l *link) {
	for _, d := range linkSysctlDefaults() {
		delete(ns.sysctl, linkSysctlKey(d.key, l.name))
	}
}

func (ns *namespace) renameSysctls(from, to string) {
	for _, d := range linkSysctlDefaults() {
		old := linkSysctlKey(d.key, from)
		if v, ok := ns.sysctl[old]; ok {
			delete(ns.sysctl, old)
			ns.sysctl[linkSysctlKey(d.key, to)] = v
		}
	}
}

// nonDefaultSysctls lists "key=value" for every key whose value differs
// from a fresh namespace's, sorted by key.
func (ns *namespace) nonDefaultSysctls() []string {
	def := map[string]string{}
	for _, d := range globalSysctlDefaults() {
		def[d.key] = d.value
	}
	for _, l := range ns.links {
		for _, d := range linkSysctlDefaults() {
			v := d.value
			if d.key == "net/ipv6/conf/%s/mtu" {
				v = strconv.Itoa(l.mtu)
			}
			def[linkSysctlKey(d.key, l.name)] = v
		}
	}
	var out []string
	for k, v := range ns.sysctl {
		if def[k] != v {
			out = append(out, k+"="+v)
		}
	}
	sortStrings(out)
	return out
}
