package cni_test

import (
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/examples/internal/cni"
)

const ipamConf = `{"cniVersion":"1.1.0","name":"ptp-net","type":"ptp",
 "ipam":{"type":"tabby-ipam","pools":["10.244.0.0/16"],"blockSize":26,"nodeName":"worker1","datastore":"memory://","stateDir":"/nonexistent"}}`

func TestIPAMPlugin(t *testing.T) {
	h := newHarness(t)
	p := cni.NewIPAM(h.env)
	a := args(ipamConf, "c1", "/run/netns/pod1", "")
	r, err := p.Add(a)
	if err != nil {
		t.Fatal(err)
	}
	res := result(t, r)
	if len(res.IPs) != 1 || res.IPs[0].Gateway.String() != "169.254.1.1" || len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Fatalf("result %+v", res)
	}
	if ones, _ := res.IPs[0].Address.Mask.Size(); ones != 32 {
		t.Fatalf("address %v", res.IPs[0].Address)
	}
	r2, err := p.Add(a)
	if err != nil || result(t, r2).IPs[0].Address.String() != res.IPs[0].Address.String() {
		t.Fatalf("repeated ADD: %v %v", r2, err)
	}
	if err := p.Check(args(withPrev(t, ipamConf, r), "c1", "/run/netns/pod1", "")); err != nil {
		t.Fatal(err)
	}
	if err := p.Status(args(ipamConf, "", "", "")); err != nil {
		t.Fatal(err)
	}
	// GC keeps the valid one.
	if _, err := p.Add(args(ipamConf, "c2", "/run/netns/pod2", "")); err != nil {
		t.Fatal(err)
	}
	gc := setKey(t, ipamConf, map[string]any{"cni.dev/valid-attachments": []map[string]string{{"containerID": "c1", "ifname": "eth0"}}})
	if err := p.GC(&skel.CmdArgs{StdinData: []byte(gc)}); err != nil {
		t.Fatal(err)
	}
	if al := h.allocations(); len(al) != 1 || al[0].Handle != "ptp-net.c1.eth0" {
		t.Fatalf("after GC %+v", al)
	}
	for i := 0; i < 2; i++ {
		if err := p.Del(a); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.allocations()) != 0 {
		t.Fatal("DEL left an allocation")
	}
	// CHECK after DEL fails.
	if c := code(t, p.Check(args(withPrev(t, ipamConf, r), "c1", "/run/netns/pod1", ""))); c != cni.CodeCheckFailed {
		t.Fatalf("code %d", c)
	}
	// Custom gateway and routes.
	custom := setKey(t, ipamConf, map[string]any{"ipam": map[string]any{"type": "tabby-ipam", "nodeName": "w", "datastore": "memory://",
		"stateDir": "/nonexistent", "gateway": "10.244.0.1", "routes": []string{"10.0.0.0/8"}}})
	r3, err := p.Add(args(custom, "c3", "/run/netns/pod3", ""))
	if err != nil {
		t.Fatal(err)
	}
	if res := result(t, r3); res.IPs[0].Gateway.String() != "10.244.0.1" || res.Routes[0].Dst.String() != "10.0.0.0/8" {
		t.Fatalf("custom %+v", res)
	}
	// Wrong ipam type.
	wrong := setKey(t, ipamConf, map[string]any{"ipam": map[string]any{"type": "host-local"}})
	if _, err := p.Add(args(wrong, "c4", "/run/netns/pod4", "")); code(t, err) != cni.CodeInvalidNetworkConfig {
		t.Fatal(err)
	}
}
