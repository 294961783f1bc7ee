//go:build linux

package nodetest

import (
	"context"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/nat/nattest"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/proxyarp/proxyarptest"
	"github.com/tabbynet/tabby/veth"
	"github.com/vishvananda/netlink"
)

// Kernel is a node.Kernel on fakes, with the fakes exposed for assertions.
// Safe for concurrent use.
type Kernel struct {
	// Kernel is what node.Config.Kernel takes.
	*node.Kernel
	// Netlink is the fake namespace the node runs in.
	Netlink *netlinktest.Kernel
	// NAT is the fake nftables connection.
	NAT *nattest.Conn
	// ARP is the in-memory network the proxy-ARP responder serves: every
	// cali* link of Netlink appears on it (Wire gives its far end).
	ARP *proxyarptest.Network

	mu    sync.Mutex
	wires map[string]wire
}

// wire is a mirrored pod link: the proxy-ARP network's far end and the
// fake link's index it stands for (the network numbers its links itself).
type wire struct {
	*proxyarptest.Wire
	index int
}

// NewKernel returns a node.Kernel on the fake namespace k: k itself for
// netlink and sysctls, a fresh nattest.Conn, and an in-memory proxy-ARP
// network that mirrors k's pod interfaces. Link events come from
// k.LinkSubscribe.
func NewKernel(k *netlinktest.Kernel) *Kernel {
	fk := &Kernel{Netlink: k, NAT: &nattest.Conn{}, ARP: proxyarptest.NewNetwork(), wires: map[string]wire{}}
	fk.Kernel = &node.Kernel{
		Netlink: k, Sysctl: k, NAT: fk.NAT,
		ARPLinks: (*arpLinks)(fk), ARPListen: fk.ARP.Listen,
		OpenPodNS: veth.Opener(k.NamespaceAt),
		Events: func(ctx context.Context, changed chan<- struct{}) error {
			return subscribe(ctx, k, changed)
		},
		Namespace: "fake",
	}
	return fk
}

// Wire returns the pod's end of the host interface name as the proxy-ARP
// responder sees it (send an ARP request on it, read the reply), or nil if
// the responder has not seen that interface.
func (fk *Kernel) Wire(name string) *proxyarptest.Wire {
	fk.mirror()
	fk.mu.Lock()
	defer fk.mu.Unlock()
	return fk.wires[name].Wire
}

// mirror makes the proxy-ARP network hold exactly the fake's pod links.
func (fk *Kernel) mirror() {
	links, err := fk.Netlink.LinkList()
	if err != nil {
		return
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	seen := map[string]bool{}
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, node.HostPrefix) {
			continue
		}
		seen[a.Name] = true
		if w, ok := fk.wires[a.Name]; ok && w.index == a.Index {
			// The same link: keep its wire, which the responder serves
			// and a test may hold.
			continue
		}
		if _, ok := fk.wires[a.Name]; ok {
			fk.ARP.RemoveLink(a.Name)
		}
		fk.wires[a.Name] = wire{Wire: fk.ARP.AddLink(a.Name, a.HardwareAddr), index: a.Index}
	}
	for name := range fk.wires {
		if !seen[name] {
			fk.ARP.RemoveLink(name)
			delete(fk.wires, name)
		}
	}
}

// arpLinks is the responder's LinkSource: the mirrored network, refreshed
// from the fake on every listing and link event.
type arpLinks Kernel

func (a *arpLinks) Links() ([]proxyarp.Link, error) {
	(*Kernel)(a).mirror()
	return a.ARP.Links()
}

func (a *arpLinks) Watch(ctx context.Context, changed chan<- struct{}) error {
	inner := make(chan struct{}, 1)
	go func() { _ = subscribe(ctx, a.Netlink, inner) }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-inner:
			(*Kernel)(a).mirror()
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

// subscribe turns the fake's link updates into change hints until ctx
// ends. The first hint is sent at once (changes may have raced the start).
func subscribe(ctx context.Context, k *netlinktest.Kernel, changed chan<- struct{}) error {
	ch := make(chan netlink.LinkUpdate, 16)
	if err := k.LinkSubscribe(ch, ctx.Done()); err != nil {
		return err
	}
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	kick()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ch:
			if !ok {
				return nil
			}
			kick()
		}
	}
}
