//go:build linux

package netlinktest_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest"
)

// FuzzOperations runs random sequences of netlink calls on a two-namespace
// machine and checks that the fake never panics and keeps its invariants:
// unique link names and indexes, veth peers that point at each other, no
// route or neighbour on a missing link, and a deterministic Dump.
func FuzzOperations(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0, 0, 3, 3, 6, 6, 9, 9, 12, 12, 15, 15, 1, 1, 2, 2})
	f.Add([]byte{16, 0, 17, 1, 4, 4, 5, 5, 7, 7, 13, 13, 11, 11, 14, 0})
	f.Add([]byte{1, 4, 20, 2, 21, 0, 3, 0, 3, 1, 3, 2, 18, 0, 19, 0, 22, 0, 4, 1, 2, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		host := netlinktest.New()
		pod, err := host.NewNamespace("/p")
		if err != nil {
			t.Fatal(err)
		}
		nss := []*netlinktest.Kernel{host, pod}
		names := []string{"a", "b", "c", "lo"}
		linkOf := func(k *netlinktest.Kernel, b byte) netlink.Link {
			if l, err := k.LinkByName(names[int(b)%len(names)]); err == nil {
				return l
			}
			return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names[int(b)%len(names)]}}
		}
		ip := func(b byte) net.IP { return net.IPv4(10, 0, b%4, b%8+1) }
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], ops[i+1]
			k := nss[int(arg>>7)]
			other := nss[1-int(arg>>7)]
			l := linkOf(k, arg)
			idx := l.Attrs().Index
			switch op % 23 {
			case 0:
				_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names[int(arg)%3]}, PeerName: names[int(arg>>2)%3], PeerNamespace: netlink.NsFd(other.Fd())})
			case 1:
				_ = k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names[int(arg)%3]}, PeerName: names[int(arg>>2)%3]})
			case 2:
				_ = k.LinkDel(l)
			case 3:
				_ = k.LinkSetUp(l)
			case 4:
				_ = k.LinkSetDown(l)
			case 5:
				_ = k.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip(arg), Mask: net.CIDRMask(24+int(arg%9), 32)}})
			case 6:
				_ = k.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip(arg), Mask: net.CIDRMask(24+int(arg%9), 32)}})
			case 7:
				_ = k.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4(10, 9, arg%4, 0).To4(), Mask: net.CIDRMask(24, 32)}, Gw: ip(arg >> 1), Flags: int(arg&1) * int(netlink.FLAG_ONLINK)})
			case 8:
				_ = k.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: ip(arg).To4(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK})
			case 9:
				_ = k.RouteDel(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: ip(arg).To4(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK})
			case 10:
				_ = k.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 8, arg%4, 0).To4(), Mask: net.CIDRMask(24, 32)}, Type: unix.RTN_BLACKHOLE})
			case 11:
				_ = k.NeighSet(&netlink.Neigh{LinkIndex: idx, IP: ip(arg), State: netlink.NUD_PERMANENT, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, arg}})
			case 12:
				_ = k.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: names[int(arg)%3]}, VxlanId: int(arg % 3), VtepDevIndex: linkOf(k, arg>>2).Attrs().Index})
			case 13:
				_ = k.NeighAppend(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: ip(arg), State: netlink.NUD_PERMANENT, HardwareAddr: net.HardwareAddr{0, 0, 0, 0, 0, arg % 2}})
			case 14:
				_ = k.LinkSetNsFd(l, other.Fd())
			case 15:
				_ = k.LinkSetName(l, names[int(arg>>3)%3])
			case 16:
				_ = k.LinkSetMTU(l, 60+int(arg)*20)
			case 17:
				_ = k.SetSysctl(fmt.Sprintf("net/ipv4/conf/%s/forwarding", l.Attrs().Name), fmt.Sprint(arg%2))
			case 18:
				_ = k.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(fmt.Sprintf("fd00::%x", arg%8)), Mask: net.CIDRMask(64+int(arg%65), 128)}})
			case 19:
				_ = k.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.ParseIP(fmt.Sprintf("fd0%x::", arg%4)), Mask: net.CIDRMask(16+int(arg%49), 128)}, Gw: net.ParseIP(fmt.Sprintf("fd00::%x", arg>>4))})
			case 20:
				_ = k.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: names[int(arg)%3]}})
			case 21:
				_ = k.LinkSetMaster(l, linkOf(k, arg>>2))
			case 22:
				_ = k.SetSysctl(fmt.Sprintf("net/ipv6/conf/%s/disable_ipv6", l.Attrs().Name), fmt.Sprint(arg%2))
			}
		}
		for _, k := range nss {
			checkInvariants(t, k)
		}
		if host.Dump() != host.Dump() {
			t.Fatal("Dump is not deterministic")
		}
	})
}

func checkInvariants(t *testing.T, k *netlinktest.Kernel) {
	ls, err := k.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	byIdx := map[int]netlink.Link{}
	byName := map[string]bool{}
	for _, l := range ls {
		a := l.Attrs()
		if byIdx[a.Index] != nil || byName[a.Name] {
			t.Fatalf("duplicate link %d %s\n%s", a.Index, a.Name, k.Dump())
		}
		byIdx[a.Index], byName[a.Name] = l, true
	}
	for _, l := range ls {
		a := l.Attrs()
		if _, isVeth := l.(*netlink.Veth); isVeth && a.NetNsID == -1 {
			p := byIdx[a.ParentIndex]
			if p == nil || p.Attrs().ParentIndex != a.Index {
				t.Fatalf("veth %s: peer %d does not point back\n%s", a.Name, a.ParentIndex, k.Dump())
			}
		}
	}
	rs, err := k.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.LinkIndex != 0 && byIdx[r.LinkIndex] == nil {
			t.Fatalf("route %v on a missing link\n%s", r, k.Dump())
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
		ns, err := k.NeighList(0, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if byIdx[n.LinkIndex] == nil {
				t.Fatalf("neighbour %v on a missing link\n%s", n, k.Dump())
			}
		}
	}
}
