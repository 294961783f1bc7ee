//go:build linux

package netlinktest_test

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest"
)

// Plumbing a pod the Calico way on the fake: a veth pair with its peer
// created directly in the pod's namespace, the pod's /32 and its default
// route via 169.254.1.1, and the host's /32 route to the pod.
func Example() {
	host := netlinktest.New()
	pod, _ := host.NewNamespace("/var/run/netns/pod1")

	_ = host.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "cali1234567890a", MTU: 1450, HardwareAddr: net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(pod.Fd()),
	})
	cali, _ := host.LinkByName("cali1234567890a")
	eth0, _ := pod.LinkByName("eth0")
	fmt.Printf("eth0@if%d, %s@if%d\n", eth0.Attrs().ParentIndex, cali.Attrs().Name, cali.Attrs().ParentIndex)

	_ = pod.LinkSetUp(eth0)
	_ = pod.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 244, 235, 135), Mask: net.CIDRMask(32, 32)}})
	gw := net.IPv4(169, 254, 1, 1)
	_ = pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK})
	_ = pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw})

	_ = host.LinkSetUp(cali)
	_ = host.RouteAdd(&netlink.Route{LinkIndex: cali.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 244, 235, 135), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK, Protocol: 80})
	_ = host.SetSysctl("net/ipv4/conf/cali1234567890a/forwarding", "1")

	fmt.Print(host.Dump())
	// Output:
	// eth0@if2, cali1234567890a@if2
	// netns ""
	//   link 1 lo loopback down mtu 65536
	//   link 2 cali1234567890a veth up,lower_up mtu 1450 mac ee:ee:ee:ee:ee:ee txqlen 0 peer 2:eth0@/var/run/netns/pod1
	//   route 10.244.235.135 dev cali1234567890a table main proto 80 scope link
	//   sysctl net/ipv4/conf/cali1234567890a/forwarding=1
	// netns /var/run/netns/pod1
	//   link 1 lo loopback down mtu 65536
	//   link 2 eth0 veth up,lower_up mtu 1450 mac 02:7a:00:00:00:01 txqlen 0 peer 2:cali1234567890a@""
	//     addr 10.244.235.135/32 scope global
	//   route default via 169.254.1.1 dev eth0 table main proto boot scope global
	//   route 169.254.1.1 dev eth0 table main proto boot scope link
	//   route local 10.244.235.135 dev eth0 table local proto kernel scope host src 10.244.235.135
}

// The fake answers with the kernel's errno values, as netlink returns
// them: compare with errors.Is.
func Example_errors() {
	k := netlinktest.New()
	_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "b"})
	err := k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "c"})
	fmt.Println(errors.Is(err, unix.EEXIST))

	a, _ := k.LinkByName("a")
	_ = k.LinkSetUp(a)
	dst := &net.IPNet{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(8, 32)}
	err = k.RouteAdd(&netlink.Route{LinkIndex: a.Attrs().Index, Dst: dst, Gw: net.IPv4(192, 0, 2, 1)})
	fmt.Println(errors.Is(err, unix.ENETUNREACH)) // no route covers the gateway
	err = k.RouteDel(&netlink.Route{LinkIndex: a.Attrs().Index, Dst: dst})
	fmt.Println(errors.Is(err, unix.ESRCH))

	_, err = k.LinkByName("nope")
	var nf netlink.LinkNotFoundError
	fmt.Println(errors.As(err, &nf))
	// Output:
	// true
	// true
	// true
	// true
}

// FailNth makes the n-th next call of a method fail, to prove that code
// cleans up after itself; Writes proves that a no-op reconcile writes
// nothing.
func ExampleKernel_FailNth() {
	k := netlinktest.New()
	setup := func() error {
		if err := k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "b"}); err != nil {
			return err
		}
		a, _ := k.LinkByName("a")
		if err := k.LinkSetUp(a); err != nil {
			_ = k.LinkDel(a) // undo
			return err
		}
		return nil
	}
	k.FailNth("LinkSetUp", 1, unix.EIO)
	fmt.Println(setup())
	links, _ := k.LinkList()
	fmt.Println(len(links), "link(s) left,", k.Writes(), "write(s)")
	// Output:
	// input/output error
	// 1 link(s) left, 2 write(s)
}

// LinkSubscribe reports link changes like netlink.LinkSubscribeAt.
func ExampleKernel_LinkSubscribe() {
	k := netlinktest.New()
	ch := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	_ = k.LinkSubscribe(ch, done)

	_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "b"})
	_ = k.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}})
	_ = k.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "b"}})
	for range 6 {
		u := <-ch
		kind := "new"
		if u.Header.Type == unix.RTM_DELLINK {
			kind = "del"
		}
		fmt.Println(kind, u.Link.Attrs().Name, u.Link.Attrs().Flags&net.FlagUp != 0)
	}
	// Output:
	// new b false
	// new a false
	// new a true
	// new b false
	// del b false
	// del a true
}

// Sysctls have the same method names as internal/sysctl; a link's keys
// exist while the link does and start from conf/default.
func ExampleKernel_Sysctl() {
	k := netlinktest.New()
	_ = k.SetSysctl("net/ipv4/conf/default/rp_filter", "2")
	_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "b"})
	v, _ := k.Sysctl("net/ipv4/conf/a/rp_filter")
	fmt.Println(v)
	_ = k.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}})
	_, err := k.Sysctl("net/ipv4/conf/a/rp_filter")
	fmt.Println(errors.Is(err, unix.ENOENT))
	// Output:
	// 2
	// true
}
