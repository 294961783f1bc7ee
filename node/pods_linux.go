//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/veth"
)

// Pod is a workload to plumb on the node: what a container runtime knows.
type Pod struct {
	// Key identifies the workload (veth.WorkloadKey(namespace, name) for
	// Kubernetes, else the container ID); the host interface is named after
	// it. Required.
	Key string
	// Handle is the IPAM handle of its addresses (default: Key).
	Handle string
	// NetNS is the path of the pod's network namespace. Required.
	NetNS string
	// IfName is the pod-side interface (default eth0).
	IfName string
	// Attrs are stored with the IPAM allocation (namespace, pod name).
	Attrs map[string]string
}

// PodResult is what AddPod made. A plain value.
type PodResult struct {
	Addrs      []netip.Addr
	HostIfName string
	HostIndex  int
	PodIndex   int
	// NewBlocks are blocks the node claimed for this pod (announced on
	// the next sync, which AddPod triggers).
	NewBlocks []netip.Prefix
}

// AddPod gives a pod an address from the node's blocks and its veth pair
// (package veth: /32 address, the 169.254.1.1 gateway, the host route).
// The pod gets one address per family the node runs (dual stack: both).
// On any failure what was made is undone: the address released, the veth
// removed. Call it once the node has started (Started is closed): the node
// re-reads its blocks and resyncs at once, so a new block is announced
// right away. Safe for concurrent use for different keys.
func (n *Node) AddPod(ctx context.Context, p Pod) (PodResult, error) {
	if p.Key == "" || p.NetNS == "" {
		return PodResult{}, fmt.Errorf("%w: pod needs Key and NetNS", ErrInvalidConfig)
	}
	pl, err := n.plumber()
	if err != nil {
		return PodResult{}, err
	}
	handle := p.Handle
	if handle == "" {
		handle = p.Key
	}
	n.mu.Lock()
	v4, v6 := n.v4, n.v6
	n.mu.Unlock()
	if !v4 && !v6 {
		return PodResult{}, fmt.Errorf("%w: the node has not started", ErrNotStarted)
	}
	args := ipam.AutoAssignArgs{Handle: handle, Host: n.cfg.Name, Attrs: p.Attrs}
	if v4 {
		args.Num4 = 1
	}
	if v6 {
		args.Num6 = 1
	}
	as, err := n.ipm.AutoAssign(ctx, args)
	if err != nil {
		return PodResult{}, fmt.Errorf("node: assign address for %s: %w", p.Key, err)
	}
	res := PodResult{}
	pod := veth.Pod{Key: p.Key, NetNS: p.NetNS, IfName: p.IfName, MTU: n.podMTU()}
	for _, a := range as {
		res.Addrs = append(res.Addrs, a.Addr)
		if a.NewBlock {
			res.NewBlocks = append(res.NewBlocks, a.Block)
		}
		pod.Addrs = append(pod.Addrs, netip.PrefixFrom(a.Addr, a.Addr.BitLen()))
	}
	vr, err := pl.Setup(ctx, pod)
	if err != nil {
		_, rerr := n.ipm.ReleaseByHandle(context.WithoutCancel(ctx), handle)
		return PodResult{}, errors.Join(fmt.Errorf("node: plumb %s: %w", p.Key, err), rerr)
	}
	res.HostIfName, res.HostIndex, res.PodIndex = vr.HostIfName, vr.HostIndex, vr.PodIndex
	n.poke()
	return res, nil
}

// DeletePod removes the pod's veth pair and releases its addresses (by
// handle, default key). Deleting a pod that is not there is not an error.
func (n *Node) DeletePod(ctx context.Context, key, handle string) error {
	if key == "" {
		return fmt.Errorf("%w: pod needs a key", ErrInvalidConfig)
	}
	if handle == "" {
		handle = key
	}
	pl, err := n.plumber()
	if err != nil {
		return err
	}
	var errs []error
	if err := pl.Teardown(ctx, key); err != nil {
		errs = append(errs, fmt.Errorf("node: unplumb %s: %w", key, err))
	}
	if _, err := n.ipm.ReleaseByHandle(ctx, handle); err != nil {
		errs = append(errs, fmt.Errorf("node: release %s: %w", handle, err))
	}
	n.poke()
	return errors.Join(errs...)
}

func (n *Node) plumber() (*veth.Plumber, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pl != nil {
		return n.pl, nil
	}
	arp := veth.ARPUserspace
	if n.cfg.ProxyARP == ProxyARPKernel {
		arp = veth.ARPKernel
	}
	pl, err := veth.New(n.k.Netlink, &veth.Config{
		Prefix: HostPrefix, MTU: n.podMTU(), ARP: arp, Sysctl: n.k.Sysctl,
		Open: n.k.OpenPodNS, Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: veth: %w", ErrInvalidConfig, err)
	}
	n.pl = pl
	return pl, nil
}

// podMTU is the configured MTU, or the uplink's minus the VXLAN overhead.
func (n *Node) podMTU() int {
	if n.cfg.MTU != 0 {
		return n.cfg.MTU
	}
	if up, err := n.k.Netlink.LinkByName(n.cfg.Uplink); err == nil {
		if n.cfg.NodeIPv6.IsValid() {
			return up.Attrs().MTU - 70 // fits the IPv6 tunnel too
		}
		return up.Attrs().MTU - 50
	}
	return veth.DefaultMTU
}

// Poke asks a running node to re-read its blocks and resync now, as if its
// interval had passed (for embedders that know something changed, e.g. a
// pod plumbed by other code). It does not wait.
func (n *Node) Poke() { n.poke() }

// poke asks a running node to re-read its blocks and resync.
func (n *Node) poke() {
	select {
	case n.pokes <- struct{}{}:
	default:
	}
}
