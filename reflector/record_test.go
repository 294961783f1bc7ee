package reflector

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func dual(i int) Announcement {
	a := ann(i)
	a.NodeIPv6 = netip.MustParseAddr("2001:db8::" + string(rune('a'+i%6)))
	a.TunnelIPv6 = netip.AddrFrom16([16]byte{0xfd, 0, 0x44, byte(i), 15: 1})
	a.TunnelMACv6 = net.HardwareAddr{0x02, 0, 0, 0, 6, byte(i)}
	a.Blocks = append(a.Blocks, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0x44, byte(i)}), 122))
	return a
}

func FuzzDecodeRecord(f *testing.F) {
	lim := Limits{}.withDefaults()
	f.Add("node2", encodeRecord(ann(2), time.Second, 0, 7, time.Unix(0, 0)))
	f.Add("node3", encodeRecord(dual(3), time.Second, 42, 0, time.Unix(0, 0)))
	v6 := dual(4)
	v6.NodeIP, v6.TunnelIP, v6.TunnelMAC = netip.Addr{}, netip.Addr{}, nil
	f.Add("node4", encodeRecord(v6, time.Second, 0, 1, time.Unix(0, 0)))
	f.Add("node2", []byte(`{"version":1,"node":"node2","nodeIP":"10.4.7.62","tunnelIP":"10.244.2.0","tunnelMAC":"02:00:00:00:00:02","blocks":["10.244.2.0/26","10.244.2.0/26"],"holdMillis":-5}`))
	f.Add("node5", []byte(`{"version":1,"node":"node5","nodeIP":"","tunnelIP":"","tunnelMAC":"","nodeIPv6":"2001:db8::5","tunnelIPv6":"10.0.0.1","tunnelMACv6":"02:00:00:00:00:05"}`))
	f.Add("x", []byte(`{"version":2}`))
	f.Add("x", []byte(`null`))
	f.Fuzz(func(t *testing.T, name string, v []byte) {
		a, hold, _, err := decodeRecord(name, v, lim)
		if err != nil {
			return
		}
		if hold < minHold || hold > maxHold {
			t.Fatalf("hold %v", hold)
		}
		if !a.HasIPv4() && !a.HasIPv6() {
			t.Fatalf("decoded announcement without a VTEP: %+v", a)
		}
		if (a.HasIPv4() && !a.TunnelIP.Is4()) || (a.HasIPv6() && !is6(a.TunnelIPv6)) {
			t.Fatalf("family mismatch: %+v", a)
		}
		b, err := a.normalize()
		if err != nil || !b.Equal(a) {
			t.Fatalf("decoded announcement not canonical: %v %+v", err, a)
		}
		if c := a.Clone(); !c.Equal(a) {
			t.Fatalf("clone differs: %+v %+v", c, a)
		}
		a2, _, _, err := decodeRecord(name, encodeRecord(a, hold, 3, 1, time.Now()), lim)
		if err != nil || !a2.Equal(a) {
			t.Fatalf("round trip: %v %+v %+v", err, a, a2)
		}
	})
}

// TestOldRecordDecodes: a record written before dual stack (no IPv6 keys,
// no lease) still decodes, as an IPv4-only heartbeat record.
func TestOldRecordDecodes(t *testing.T) {
	old := []byte(`{"version":1,"node":"worker2","nodeIP":"10.4.7.62","tunnelIP":"10.244.189.64","tunnelMAC":"66:4e:1c:2e:3c:80","blocks":["10.244.189.64/26"],"holdMillis":30000,"heartbeat":12,"time":"2026-01-01T00:00:00Z"}`)
	a, hold, rec, err := decodeRecord("worker2", old, Limits{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if !a.HasIPv4() || a.HasIPv6() || hold != 30*time.Second || rec.Lease != 0 || a.TunnelMAC.String() != "66:4e:1c:2e:3c:80" {
		t.Fatalf("decoded %+v hold %v lease %d", a, hold, rec.Lease)
	}
	// And an IPv4-only record is written without the IPv6 keys.
	if s := string(encodeRecord(a, hold, 0, 1, time.Unix(0, 0))); contains(s, "IPv6") {
		t.Fatalf("IPv4-only record has IPv6 keys: %s", s)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestFamilies: each family complete or absent, of its own family, and at
// least one present.
func TestFamilies(t *testing.T) {
	v6only := dual(1)
	v6only.NodeIP, v6only.TunnelIP, v6only.TunnelMAC = netip.Addr{}, netip.Addr{}, nil
	half := ann(1)
	half.NodeIPv6 = netip.MustParseAddr("2001:db8::1")
	swapped := dual(1)
	swapped.TunnelIPv6 = netip.MustParseAddr("10.244.9.9")
	v4in6 := ann(1)
	v4in6.TunnelIP = netip.MustParseAddr("fd00::1")
	none := Announcement{Node: "n"}
	for name, tc := range map[string]struct {
		a  Announcement
		ok bool
	}{
		"ipv4": {ann(1), true}, "dual": {dual(1), true}, "ipv6": {v6only, true},
		"half v6": {half, false}, "v4 addr in v6": {swapped, false}, "v6 addr in v4": {v4in6, false}, "none": {none, false},
	} {
		_, err := tc.a.normalize()
		if (err == nil) != tc.ok {
			t.Errorf("%s: normalize: %v", name, err)
		}
	}
}
