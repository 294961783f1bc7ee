package vxlan_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/vxlan"
)

// A Manager handed the fake kernel and no Offloader must run the
// checksum-offload step on the fake, never as an ioctl on the host: the
// fake is both the Offloader and the source of the kernel release.
func TestFakeIsTheOffloader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    vxlan.ChecksumOffload
		release string
		want    bool // offload on afterwards
	}{
		{"off", vxlan.ChecksumOff, "", false},
		{"on", vxlan.ChecksumOn, "", true},
		{"auto on the fake's release", vxlan.ChecksumAuto, "", true},
		{"auto on an old kernel", vxlan.ChecksumAuto, "5.4.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := fakeNode(t, "10.4.7.61/24")
			if tc.mode == vxlan.ChecksumOn {
				// Start from off, so that "on" is a real change.
				m := fakeManagerWith(t, k, vxlan.ChecksumOff, "")
				if err := m.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
				if on, _ := k.TxChecksum(vxlan.DefaultDevice); on {
					t.Fatal("offload still on after ChecksumOff")
				}
			}
			m := fakeManagerWith(t, k, tc.mode, tc.release)
			if err := m.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			on, err := k.TxChecksum(vxlan.DefaultDevice)
			if err != nil {
				t.Fatal(err)
			}
			if on != tc.want {
				t.Fatalf("tx checksum offload on %s = %v, want %v", vxlan.DefaultDevice, on, tc.want)
			}
		})
	}
}

func fakeManagerWith(t *testing.T, k *netlinktest.Kernel, mode vxlan.ChecksumOffload, release string) *vxlan.Manager {
	t.Helper()
	m, err := vxlan.New(k, &vxlan.Config{
		Parent: "eth0", LocalAddr: netip.MustParsePrefix("10.4.7.61/24"),
		TunnelAddr: netip.MustParseAddr("10.244.235.128"), NodeName: "worker1",
		ChecksumOffload: mode, KernelRelease: release,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
