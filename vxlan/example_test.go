package vxlan_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/vxlan"
)

// printOwned prints the lines of a fake kernel dump that mention the VXLAN
// device or tabby's route protocol.
func printOwned(k *netlinktest.Kernel) {
	for _, l := range strings.Split(k.Dump(), "\n") {
		l = strings.TrimSpace(l)
		if strings.Contains(l, "proto 80") || strings.HasPrefix(l, "neigh") || strings.HasPrefix(l, "fdb") || strings.HasPrefix(l, "vxlan id") {
			fmt.Println(l)
		}
	}
}

// worker1 of the seed learns about worker2 and programs what Q7 shows: a
// route for worker2's block via its tunnel address, a permanent neighbour
// and a permanent FDB entry. Runs on the fake kernel.
func Example() {
	k, _ := netlinktest.New().NewNamespace("/worker1")
	_ = k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "ens33", MTU: 1500}})
	ens33, _ := k.LinkByName("ens33")
	_ = k.LinkSetUp(ens33)

	m, err := vxlan.New(k, &vxlan.Config{
		Parent:     "ens33",
		LocalAddr:  netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"),
		NodeName:   "worker1",
		// The fake has no ethtool; on a real node leave these unset.
		ChecksumOffload: vxlan.ChecksumOn, Offloader: noOffload{},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = m.SetLocalBlocks([]netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")})
	_ = m.SetPeers([]vxlan.Peer{{
		Name:      "worker2",
		NodeIP:    netip.MustParseAddr("10.4.7.62"),
		TunnelIP:  netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x80},
		Blocks:    []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26")},
	}})
	if err := m.Sync(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	printOwned(k)
	_ = m.Sync(context.Background())
	fmt.Println("writes on a second Sync:", m.LastResult().Writes)
	// Output:
	// vxlan id 4096 port 4789 dev ens33 local 10.4.7.61 nolearning
	// route 10.244.189.64/26 via 10.244.189.64 dev vxlan.calico table main proto 80 scope global onlink
	// route blackhole 10.244.235.128/26 table main proto 80 scope global
	// neigh 10.244.189.64 dev vxlan.calico lladdr 66:4e:1c:2e:3c:80 PERMANENT
	// fdb 66:4e:1c:2e:3c:80 dev vxlan.calico dst 10.4.7.62 PERMANENT
	// writes on a second Sync: 0
}

// In CrossSubnet mode a peer on the local underlay subnet is routed
// directly, without encapsulation (the seed's "via 10.4.7.62" table).
func Example_crossSubnet() {
	k, _ := netlinktest.New().NewNamespace("/worker1")
	_ = k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "ens33", MTU: 1500}})
	ens33, _ := k.LinkByName("ens33")
	_ = k.LinkSetUp(ens33)
	addr, _ := netlink.ParseAddr("10.4.7.61/24")
	_ = k.AddrAdd(ens33, addr) // the gateway 10.4.7.62 must be on a connected subnet
	m, _ := vxlan.New(k, &vxlan.Config{
		Parent: "ens33", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1",
		Mode: vxlan.ModeCrossSubnet, ChecksumOffload: vxlan.ChecksumOn, Offloader: noOffload{},
	})
	_ = m.SetPeers([]vxlan.Peer{{
		Name: "worker2", NodeIP: netip.MustParseAddr("10.4.7.62"), TunnelIP: netip.MustParseAddr("10.244.189.64"),
		TunnelMAC: net.HardwareAddr{0x66, 0x4e, 0x1c, 0x2e, 0x3c, 0x80},
		Blocks:    []netip.Prefix{netip.MustParsePrefix("10.244.189.64/26")},
	}})
	if err := m.Sync(context.Background()); err != nil {
		fmt.Println(err)
	}
	printOwned(k)
	// Output:
	// vxlan id 4096 port 4789 dev ens33 local 10.4.7.61 nolearning
	// route 10.244.189.64/26 via 10.4.7.62 dev ens33 table main proto 80 scope global
}

// The VTEP MAC is derived from the node name: the same after every restart.
func ExampleMACFromName() {
	fmt.Println(vxlan.MACFromName("worker1"))
	fmt.Println(vxlan.MACFromName("worker1").String() == vxlan.MACFromName("worker1").String())
	// Output:
	// aa:0a:1c:47:95:60
	// true
}
