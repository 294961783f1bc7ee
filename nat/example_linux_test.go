//go:build linux

package nat_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/nat/nattest"
)

// The seed's worker1: pool 10.244.0.0/16 with NAT, master and worker2 as
// VXLAN peers, two local pods. With root, pass nat.Dial(fd) instead of the
// fake connection.
func Example() {
	conn := &nattest.Conn{} // nat.Dial(int(netnsFd)) on a real node
	m, err := nat.New(conn, nil)
	if err != nil {
		panic(err)
	}
	err = m.SetDesired(nat.Desired{
		Pools:               []nat.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true}},
		ExcludeDestinations: []netip.Prefix{netip.MustParsePrefix("10.4.7.0/24")},
		VXLANPeers:          []netip.Addr{netip.MustParseAddr("10.4.7.60"), netip.MustParseAddr("10.4.7.62")},
		Workloads: []nat.Workload{
			{Interface: "cali6ff8e3ade03", Addrs: []netip.Addr{netip.MustParseAddr("10.244.235.135")}},
			{Interface: "cali1292bd788a2", Addrs: []netip.Addr{netip.MustParseAddr("10.244.235.140")}},
		},
	})
	if err != nil {
		panic(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		panic(err)
	}
	out, _ := m.Dump(context.Background())
	fmt.Print(out)
	// Output:
	// table ip tabby {
	// 	set all_pools {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = { 10.244.0.0/16 }
	// 	}
	// 	set nat_exclude {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = { 10.4.7.0/24 }
	// 	}
	// 	set nat_pools {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = { 10.244.0.0/16 }
	// 	}
	// 	set vxlan_peers {
	// 		type ipv4_addr
	// 		elements = { 10.4.7.60,
	// 			     10.4.7.62 }
	// 	}
	// 	set workload_addrs {
	// 		type ifname . ipv4_addr
	// 		elements = { "cali1292bd788a2" . 10.244.235.140,
	// 			     "cali6ff8e3ade03" . 10.244.235.135 }
	// 	}
	// 	set workload_ifaces {
	// 		type ifname
	// 		elements = { "cali1292bd788a2",
	// 			     "cali6ff8e3ade03" }
	// 	}
	//
	// 	chain postrouting {
	// 		type nat hook postrouting priority srcnat; policy accept;
	// 		ip saddr @nat_pools ip daddr != @all_pools ip daddr != @nat_exclude meta mark set meta mark | 0x01000000 masquerade fully-random comment "tabby:nat:28cb25ff"
	// 	}
	//
	// 	chain nat_port_guard {
	// 		type filter hook postrouting priority srcnat + 1; policy accept;
	// 		meta mark & 0x01000000 != 0x0 meta l4proto udp th sport 4789 counter drop comment "tabby:nat-port-guard:7b796f35"
	// 		meta mark & 0x01000000 != 0x0 meta mark set meta mark & 0xfeffffff comment "tabby:nat-mark-clear:10d0f29f"
	// 	}
	//
	// 	chain input {
	// 		type filter hook input priority filter; policy accept;
	// 		meta l4proto udp th dport 4789 ip saddr != @vxlan_peers counter drop comment "tabby:vxlan-guard:a62789dd"
	// 	}
	//
	// 	chain prerouting {
	// 		type filter hook prerouting priority raw; policy accept;
	// 		iifname @workload_ifaces iifname . ip saddr != @workload_addrs counter drop comment "tabby:workload-guard:94cbf49e"
	// 	}
	// }
}

// Only the changed elements are written: a new peer is one element added,
// in one transaction; the same state again writes nothing.
func ExampleManager_Sync() {
	conn := &nattest.Conn{}
	m, _ := nat.New(conn, &nat.Config{DisableWorkloadGuard: true})
	d := nat.Desired{
		Pools:      []nat.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true}},
		VXLANPeers: []netip.Addr{netip.MustParseAddr("10.4.7.60")},
	}
	sync := func(what string) {
		before := conn.Stats()
		_ = m.SetDesired(d)
		if err := m.Sync(context.Background()); err != nil {
			panic(err)
		}
		after := conn.Stats()
		fmt.Printf("%s: %d transaction(s), %d message(s)\n", what, after.Flushes-before.Flushes, after.Messages-before.Messages)
	}
	sync("create")
	d.VXLANPeers = append(d.VXLANPeers, netip.MustParseAddr("10.4.7.62"))
	sync("add a peer")
	sync("unchanged")
	// Output:
	// create: 1 transaction(s), 15 message(s)
	// add a peer: 1 transaction(s), 1 message(s)
	// unchanged: 0 transaction(s), 0 message(s)
}

// Bad input is rejected with a typed error and changes nothing.
func ExampleManager_SetDesired() {
	m, _ := nat.New(&nattest.Conn{}, nil)
	err := m.SetDesired(nat.Desired{Pools: []nat.Pool{{CIDR: netip.MustParsePrefix("::ffff:10.244.0.0/112")}}})
	var ve *nat.ValidationError
	fmt.Println(errors.Is(err, nat.ErrWrongFamily), errors.As(err, &ve) && ve.Field == "Pools[0].CIDR")
	fmt.Println(err)
	err = m.SetDesired(nat.Desired{})
	fmt.Println(errors.Is(err, nat.ErrNoPools))
	// Output:
	// true true
	// nat: wrong address family: Pools[0].CIDR "::ffff:10.244.0.0/112 (IPv4-mapped)"
	// true
}

// On a node: a Manager in the namespace of a netns handle (here the
// agent's own, fd 0), synced whenever pools, peers or pods change.
func ExampleOpen() {
	m, err := nat.Open(0, &nat.Config{VXLANPort: 4789})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	_ = m.SetDesired(nat.Desired{
		Pools:      []nat.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true}},
		VXLANPeers: []netip.Addr{netip.MustParseAddr("10.4.7.60")},
	})
	if err := m.Sync(context.Background()); err != nil {
		fmt.Println(err)
	}
}

// LastResult says what each Sync wrote and Totals add it up, for metrics:
// the first Sync builds the table, an unchanged state writes nothing.
func ExampleManager_LastResult() {
	m, _ := nat.New(&nattest.Conn{}, &nat.Config{DisableWorkloadGuard: true})
	d := nat.Desired{
		Pools:      []nat.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true}},
		VXLANPeers: []netip.Addr{netip.MustParseAddr("10.4.7.60")},
	}
	sync := func(what string) {
		_ = m.SetDesired(d)
		if err := m.Sync(context.Background()); err != nil {
			panic(err)
		}
		r := m.LastResult()
		fmt.Printf("%s: writes %d, rebuilt %t (%s), +%d -%d\n", what, r.Writes, r.Rebuilt, r.Reason, r.Added, r.Removed)
	}
	sync("create")
	d.VXLANPeers[0] = netip.MustParseAddr("10.4.7.62")
	sync("replace a peer")
	sync("unchanged")
	fmt.Printf("%+v\n", m.Totals())
	// Output:
	// create: writes 1, rebuilt true (table missing), +3 -0
	// replace a peer: writes 1, rebuilt false (), +1 -1
	// unchanged: writes 0, rebuilt false (), +0 -0
	// {Syncs:3 Errors:0 Writes:2 Rebuilds:1 Added:4 Removed:1}
}
