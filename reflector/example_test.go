package reflector_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/reflector"
)

// Two nodes announce themselves through an in-memory store; worker1 watches
// and sees worker2, then sees it withdrawn when worker2 shuts down.
func Example() {
	ctx := context.Background()
	store := memory.New(nil)
	r, _ := reflector.New(store, &reflector.Config{HoldTime: 30 * time.Second})

	peers, _ := r.Watch(ctx, "worker1")
	fmt.Println("peers:", len((<-peers).Peers))

	w2, _ := r.Announce(ctx, reflector.Announcement{
		Node:      "worker2",
		NodeIP:    netip.MustParseAddr("10.4.7.62"),
		TunnelIP:  netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x80},
		Blocks:    []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26")},
	})
	for _, p := range (<-peers).Peers {
		fmt.Println(p.Node, p.NodeIP, p.TunnelIP, p.TunnelMAC, p.Blocks)
	}
	_ = w2.Stop(ctx, false) // clean shutdown: withdrawn at once
	fmt.Println("peers:", len((<-peers).Peers))
	// Output:
	// peers: 0
	// worker2 10.4.7.62 10.244.189.64 66:4e:1c:2e:3c:80 [10.244.189.64/26]
	// peers: 0
}

// A Validator refuses blocks a node does not own in IPAM.
func ExampleValidatorFunc() {
	ctx := context.Background()
	owned := map[string]netip.Prefix{"worker2": netip.MustParsePrefix("10.244.189.64/26")}
	v := reflector.ValidatorFunc(func(_ context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
		for _, b := range blocks {
			if owned[node] != b {
				return fmt.Errorf("%s is not affine to %s", b, node)
			}
		}
		for _, a := range addrs {
			if !owned[node].Contains(a) {
				return fmt.Errorf("%s is not assigned to %s", a, node)
			}
		}
		return nil
	})
	r, _ := reflector.New(memory.New(nil), &reflector.Config{Validator: v})
	peers, _ := r.Watch(ctx, "worker1")
	<-peers
	_, _ = r.Announce(ctx, reflector.Announcement{
		Node:      "worker2",
		NodeIP:    netip.MustParseAddr("10.4.7.62"),
		TunnelIP:  netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x80},
		Blocks: []netip.Prefix{
			netip.MustParsePrefix("10.244.189.64/26"),
			netip.MustParsePrefix("10.244.235.128/26"), // worker1's: refused
		},
	})
	p := (<-peers).Peers[0]
	fmt.Println(p.Node, p.Blocks)
	// Output:
	// worker2 [10.244.189.64/26]
}

// A dual-stack node announces one VTEP per family; an IPv6-only node
// leaves the IPv4 fields zero.
func Example_dualStack() {
	ctx := context.Background()
	r, _ := reflector.New(memory.New(nil), nil)
	peers, _ := r.Watch(ctx, "worker1")
	<-peers
	an, err := r.Announce(ctx, reflector.Announcement{
		Node:        "worker2",
		NodeIP:      netip.MustParseAddr("10.4.7.62"),
		TunnelIP:    netip.MustParseAddr("10.244.189.64"),
		TunnelMAC:   net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x80},
		NodeIPv6:    netip.MustParseAddr("2001:db8::62"),
		TunnelIPv6:  netip.MustParseAddr("fd00:10:244:bd40::"),
		TunnelMACv6: net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x86},
		Blocks: []netip.Prefix{
			netip.MustParsePrefix("10.244.189.64/26"),
			netip.MustParsePrefix("fd00:10:244:bd40::/122"),
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer an.Stop(ctx, false)
	p := (<-peers).Peers[0]
	fmt.Println(p.Node, p.HasIPv4(), p.HasIPv6(), p.TunnelIPv6, p.TunnelMACv6, p.Blocks)
	// Output:
	// worker2 true true fd00:10:244:bd40:: 66:4e:1c:2e:3c:86 [10.244.189.64/26 fd00:10:244:bd40::/122]
}

// An announcing node learns what the Validator refuses of its own
// announcement: Err wraps ErrRefused, Refusal lists it.
func ExampleAnnouncer_Refusal() {
	ctx := context.Background()
	mine := netip.MustParsePrefix("10.244.189.64/26")
	v := reflector.ValidatorFunc(func(_ context.Context, node string, blocks []netip.Prefix, addrs []netip.Addr) error {
		for _, b := range blocks {
			if b != mine {
				return fmt.Errorf("%s is not affine to %s", b, node)
			}
		}
		for _, a := range addrs {
			if !mine.Contains(a) {
				return fmt.Errorf("%s is not assigned to %s", a, node)
			}
		}
		return nil
	})
	r, _ := reflector.New(memory.New(nil), &reflector.Config{Validator: v})
	an, _ := r.Announce(ctx, reflector.Announcement{
		Node:      "worker2",
		NodeIP:    netip.MustParseAddr("10.4.7.62"),
		TunnelIP:  netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x80},
		Blocks:    []netip.Prefix{mine, netip.MustParsePrefix("10.244.235.128/26")},
	})
	defer an.Stop(ctx, false)
	fmt.Println(errors.Is(an.Err(), reflector.ErrRefused), an.Refusal().Blocks)
	// Output:
	// true [10.244.235.128/26]
}

// On a store with leases (memory, bolt, etcd) liveness costs no writes.
func ExampleReflector_Leases() {
	r, _ := reflector.New(memory.New(nil), nil)
	hb, _ := reflector.New(memory.New(nil), &reflector.Config{DisableLeases: true})
	fmt.Println(r.Leases(), hb.Leases())
	// Output:
	// true false
}
