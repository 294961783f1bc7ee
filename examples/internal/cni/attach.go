package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/veth"
)

// hostLinker is what finding an attachment needs from the host's netlink
// beyond veth.Netlink; *netlink.Handle and *netlinktest.Kernel have it.
type hostLinker interface {
	LinkByIndex(index int) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	LinkSetAlias(link netlink.Link, alias string) error
}

// aliasPrefix starts the alias ADD gives the host interface,
// "tabby:<network>:<workload key>", so that DEL, CHECK and GC can tell
// whose it is when CNI_ARGS do not say (network names have no ':').
const aliasPrefix = "tabby:"

// maxAlias is IFALIASZ - 1.
const maxAlias = 255

func hostAlias(network, key string) string {
	a := aliasPrefix + network + ":" + key
	if len(a) > maxAlias {
		return ""
	}
	return a
}

func parseAlias(a string) (network, key string, ok bool) {
	rest, ok := strings.CutPrefix(a, aliasPrefix)
	if !ok {
		return "", "", false
	}
	network, key, ok = strings.Cut(rest, ":")
	return network, key, ok && network != "" && key != ""
}

// attachment is a pod's host interface as DEL and CHECK find it.
type attachment struct {
	key  string // workload key; "" when only the interface is known
	name string // host interface name
}

// findAttachment finds the host interface of the call's attachment,
// whatever CNI_ARGS say: from the workload key that IPAM recorded at ADD
// (m may be nil), else CNI_ARGS' key if its interface exists, else
// prevResult's host interface (prev may be nil), else the peer of the
// pod's interface in CNI_NETNS, else CNI_ARGS' key.
func (c *call) findAttachment(ctx context.Context, m *ipam.IPAM, pl *veth.Plumber, prev *types100.Result) attachment {
	if m != nil {
		if key, ok := c.recordedKey(ctx, m); ok {
			return attachment{key: key, name: pl.HostIfName(key)}
		}
	}
	byArgs := attachment{key: c.key, name: pl.HostIfName(c.key)}
	if c.pod.Namespace != "" && c.pod.Name != "" {
		if l, _ := linkByName(c.host, byArgs.name); l != nil {
			return byArgs
		}
	}
	if prev != nil {
		for _, ifc := range prev.Interfaces {
			if ifc.Sandbox != "" || !strings.HasPrefix(ifc.Name, veth.DefaultPrefix) {
				continue
			}
			if l, _ := linkByName(c.host, ifc.Name); l != nil && l.Type() == "veth" {
				return c.fromLink(l)
			}
		}
	}
	if l := c.podPeer(); l != nil {
		return c.fromLink(l)
	}
	return byArgs
}

// recordedKey is the workload key stored with the handle's addresses.
func (c *call) recordedKey(ctx context.Context, m *ipam.IPAM) (string, bool) {
	held, err := m.HandleAddrs(ctx, c.handle)
	if err != nil || len(held) == 0 {
		return "", false
	}
	al, found, err := m.AddrAllocation(ctx, held[0])
	if err != nil || !found || al.Handle != c.handle {
		return "", false
	}
	key := keyFromAttrs(al.Attrs)
	return key, key != ""
}

// fromLink is the attachment of host interface l: its key from the alias
// ADD gave it, if the alias is this network's and names l.
func (c *call) fromLink(l netlink.Link) attachment {
	a := attachment{name: l.Attrs().Name}
	if network, key, ok := parseAlias(l.Attrs().Alias); ok && network == c.conf.Name &&
		veth.HostIfName(veth.DefaultPrefix, key) == a.name {
		a.key = key
	}
	return a
}

// podPeer is the host end of the veth pair whose pod end is CNI_IFNAME in
// CNI_NETNS, or nil. It never opens the host's own namespace.
func (c *call) podPeer() netlink.Link {
	hl, ok := c.host.(hostLinker)
	if !ok || c.args.Netns == "" || c.p.env.CheckNetNS(c.args.Netns) != nil {
		return nil
	}
	open := c.p.env.OpenNetNS
	if open == nil {
		open = veth.OpenNetNS
	}
	ns, err := open(c.args.Netns)
	if err != nil {
		return nil
	}
	defer ns.Close()
	podl, err := ns.LinkByName(c.args.IfName)
	if err != nil || podl.Type() != "veth" || podl.Attrs().ParentIndex == 0 {
		return nil
	}
	l, err := hl.LinkByIndex(podl.Attrs().ParentIndex)
	if err != nil || l.Type() != "veth" || l.Attrs().ParentIndex != podl.Attrs().Index ||
		!strings.HasPrefix(l.Attrs().Name, veth.DefaultPrefix) {
		return nil
	}
	return l
}

// teardown removes the attachment's host interface (and so its peer and
// routes); nothing to remove is success.
func (c *call) teardown(ctx context.Context, pl *veth.Plumber, a attachment) error {
	if a.key != "" {
		return pl.Teardown(ctx, a.key)
	}
	l, err := linkByName(c.host, a.name)
	if err != nil {
		return fmt.Errorf("get %s: %w", a.name, err)
	}
	if l == nil || l.Type() != "veth" || !strings.HasPrefix(a.name, veth.DefaultPrefix) {
		return nil
	}
	if err := c.host.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s: %w", a.name, err)
	}
	return nil
}

// label gives the host interface of a fresh ADD its alias (best effort:
// without it DEL and CHECK still find the attachment from IPAM's record
// or the pod's interface).
func (c *call) label(name string) {
	want := hostAlias(c.conf.Name, c.key)
	hl, ok := c.host.(hostLinker)
	if !ok || want == "" {
		return
	}
	l, err := linkByName(c.host, name)
	if err != nil || l == nil || l.Attrs().Alias == want {
		return
	}
	if err := hl.LinkSetAlias(l, want); err != nil {
		c.log.Warn("set host interface alias", "host", name, "err", err)
	}
}

// gcInterfaces removes the host's tabby veths that no allocation accounts
// for: this network's (by alias) whose workload key no allocation has,
// and unlabelled ones whose every routed address lies in a pool and is
// allocated to no one. Interfaces without routes and without a tabby
// alias are not provably tabby's and stay.
func (c *call) gcInterfaces(ctx context.Context, m *ipam.IPAM, pl *veth.Plumber) []error {
	hl, ok := c.host.(hostLinker)
	if !ok {
		return nil
	}
	allocs, err := m.Allocations(ctx)
	if err != nil {
		return []error{fmt.Errorf("ipam: list allocations: %w", err)}
	}
	keys := map[string]bool{}
	names := map[string]bool{}
	for _, a := range allocs {
		if k := keyFromAttrs(a.Attrs); k != "" {
			keys[k] = true
			names[pl.HostIfName(k)] = true
		}
	}
	pools, err := m.ListPools(ctx)
	if err != nil {
		return []error{fmt.Errorf("ipam: list pools: %w", err)}
	}
	links, err := hl.LinkList()
	if err != nil {
		return []error{fmt.Errorf("list host interfaces: %w", err)}
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() != "veth" || !strings.HasPrefix(name, veth.DefaultPrefix) || names[name] {
			continue
		}
		if network, key, ok := parseAlias(l.Attrs().Alias); ok {
			if network != c.conf.Name || keys[key] {
				continue
			}
		} else if !c.unallocatedRoutes(ctx, m, pools, l) {
			continue
		}
		if err := c.host.LinkDel(l); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete orphan interface %s: %w", name, err))
			continue
		}
		c.log.Info("gc removed interface without allocation", "host", name)
	}
	return errs
}

// unallocatedRoutes: l routes at least one address, and every address it
// routes is in a pool and allocated to no one.
func (c *call) unallocatedRoutes(ctx context.Context, m *ipam.IPAM, pools []ipam.Pool, l netlink.Link) bool {
	n := 0
	for _, fam := range []int{familyV4, familyV6} {
		routes, err := c.host.RouteList(l, fam)
		if err != nil {
			return false
		}
		for _, r := range routes {
			if r.Dst == nil {
				return false
			}
			a, ok := netip.AddrFromSlice(r.Dst.IP)
			if !ok {
				return false
			}
			a = a.Unmap()
			inPool := false
			for _, p := range pools {
				inPool = inPool || p.CIDR.Contains(a)
			}
			if !inPool {
				return false
			}
			if _, found, err := m.AddrAllocation(ctx, a); err != nil || found {
				return false
			}
			n++
		}
	}
	return n > 0
}

func notFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &lnf) || errors.Is(err, errNoDev))
}

func linkByName(h veth.Netlink, name string) (netlink.Link, error) {
	if h == nil {
		return nil, nil
	}
	l, err := h.LinkByName(name)
	if notFound(err) {
		return nil, nil
	}
	return l, err
}
