//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/tabbynet/tabby/explain"
	"github.com/tabbynet/tabby/internal/sysctl"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/nat"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// explainCmd is `tabbyctl explain`: the seed's walk-through for one pod on
// this node, on live kernel state, each step PASS or FAIL.
func (a *app) explainCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("explain", stderr)
	ip := fs.String("ip", "", "the pod's address (required)")
	to := fs.String("to", "", "a destination: the path the pod's packets take to it")
	podNS := fs.String("pod-netns", "", "the pod's network namespace path (default: searched in /var/run/netns)")
	nodeNS := fs.String("netns", "", "the node's network namespace path (default: this one)")
	ifname := fs.String("ifname", explain.DefaultPodIfName, "the pod-side interface")
	probe := fs.Bool("probe", true, "send one ARP request for 169.254.1.1 from inside the pod")
	out := outputFlag(fs) // table: one PASS/FAIL line per step
	if err := parse(fs, args); err != nil {
		return err
	}
	pod, err := netip.ParseAddr(*ip)
	if err != nil {
		return fmt.Errorf("%w: --ip %q: %v", errUsage, *ip, err)
	}
	in := explain.Input{PodAddr: pod, PodIfName: *ifname}
	if *to != "" {
		if in.Dest, err = netip.ParseAddr(*to); err != nil {
			return fmt.Errorf("%w: --to %q: %v", errUsage, *to, err)
		}
	}
	host, closeHost, err := handleAt(*nodeNS)
	if err != nil {
		return err
	}
	defer closeHost()
	in.Host = host
	in.ProxyARPSysctl = sysctl.NS{Path: *nodeNS}.Sysctl
	if m, err := ipam.New(a.st, nil); err == nil {
		if pools, err := m.ListPools(ctx); err == nil {
			for _, p := range pools {
				in.Pools = append(in.Pools, p.CIDR)
			}
		}
	}
	if in.Dest.IsValid() {
		fd := 0
		if *nodeNS != "" {
			if ns, err := netns.GetFromPath(*nodeNS); err == nil {
				defer ns.Close()
				fd = int(ns)
			}
		}
		if nt, err := nat.Open(fd, nil); err == nil {
			in.NATRules, _ = nt.Dump(ctx)
			nt.Close()
		}
	}
	path := *podNS
	if path == "" {
		path = findPodNS(pod, *ifname)
	}
	if path != "" {
		ph, closePod, err := handleAt(path)
		if err != nil {
			return err
		}
		defer closePod()
		in.Pod = ph
		if *probe {
			in.ProbeARP = explain.ProbeARP(path, *ifname)
		}
	}
	r := explain.Pod(ctx, in)
	if path == "" {
		r.Checks = append(r.Checks, explain.Check{Step: "pod namespace", Detail: "not found in /var/run/netns: give --pod-netns for the pod-side checks"})
	}
	if *out == "json" {
		b, err := r.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n", b)
	} else if err := r.WriteText(a.stdout); err != nil {
		return err
	}
	if !r.OK() {
		return errProblems
	}
	return nil
}

func handleAt(path string) (*netlink.Handle, func(), error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, nil, fmt.Errorf("netlink: %w", err)
		}
		return h, h.Close, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, func() { h.Close(); ns.Close() }, nil
}

// findPodNS looks for the namespace under /var/run/netns whose ifname has
// the pod's address.
func findPodNS(pod netip.Addr, ifname string) string {
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return ""
	}
	for _, e := range ents {
		path := filepath.Join("/var/run/netns", e.Name())
		h, done, err := handleAt(path)
		if err != nil {
			continue
		}
		found := false
		if l, err := h.LinkByName(ifname); err == nil {
			addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
			for _, ad := range addrs {
				if a, ok := netip.AddrFromSlice(ad.IP); ok && a.Unmap() == pod {
					found = true
				}
			}
		}
		done()
		if found {
			return path
		}
	}
	return ""
}
