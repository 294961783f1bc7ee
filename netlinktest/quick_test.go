package netlinktest_test

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest"
)

func TestQuick(t *testing.T) {
	host := netlinktest.New()
	pod, err := host.NewNamespace("/var/run/netns/pod")
	if err != nil {
		t.Fatal(err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cali1", MTU: 1450, HardwareAddr: net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Fd())}
	if err := host.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	if err := host.LinkAdd(v); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("dup: %v", err)
	}
	h, _ := host.LinkByName("cali1")
	p, _ := pod.LinkByName("eth0")
	if h.Attrs().ParentIndex != p.Attrs().Index || p.Attrs().ParentIndex != h.Attrs().Index {
		t.Fatalf("peer indexes %+v %+v", h.Attrs(), p.Attrs())
	}
	if h.Attrs().NetNsID != 0 || p.Attrs().NetNsID != 0 {
		t.Fatal("netnsid")
	}
	_, err = host.LinkByName("nope")
	var lnf netlink.LinkNotFoundError
	if !errors.As(err, &lnf) || err.Error() != "Link not found" {
		t.Fatalf("not found: %v", err)
	}
	if err := pod.LinkSetUp(p); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("10.244.1.5/32")
	if err := pod.AddrAdd(p, a); err != nil {
		t.Fatal(err)
	}
	gw := net.ParseIP("169.254.1.1")
	if err := pod.RouteAdd(&netlink.Route{LinkIndex: p.Attrs().Index, Gw: gw}); !errors.Is(err, unix.ENETUNREACH) {
		t.Fatalf("gw unreachable: %v", err)
	}
	if err := pod.RouteAdd(&netlink.Route{LinkIndex: p.Attrs().Index, Dst: &net.IPNet{IP: gw.To4(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	if err := pod.RouteAdd(&netlink.Route{LinkIndex: p.Attrs().Index, Gw: gw}); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + host.Dump())
}
