//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/veth"
	"github.com/vishvananda/netlink"
)

// tabbyctl explain on a real node: one node namespace running package
// node, two pods on it; the walk-through passes for pod to pod and for pod
// to the outside, and fails, naming the step, when the pod's gateway route
// is gone.
func TestExplainKernel(t *testing.T) {
	kerneltest.Require(t)
	nodeNS := kerneltest.NewNS(t, "cxn")
	peer := kerneltest.NewNS(t, "cxr")
	kerneltest.Veth(t, nodeNS, "eth0", peer, "eth0")
	nodeNS.AddAddr(t, "eth0", "10.4.7.61/24")
	peer.AddAddr(t, "eth0", "10.4.7.1/24")
	if err := nodeNS.Handle.RouteAdd(&netlink.Route{Gw: net.IPv4(10, 4, 7, 1), LinkIndex: nodeNS.Link(t, "eth0").Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	st := memory.New(nil)
	defer st.Close()
	k, err := node.OpenKernel(nodeNS.Path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	n, err := node.New(node.Config{Name: "worker1", NodeIP: kerneltest.MustPrefix("10.4.7.61/24"), Uplink: "eth0",
		Store: st, Kernel: k, NATOutgoing: true, HoldTime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-n.Started()
	var pods []*kerneltest.NS
	var addrs []string
	for _, name := range []string{"pod-a", "pod-b"} {
		p := kerneltest.NewNS(t, "cxp")
		res, err := n.AddPod(ctx, node.Pod{Key: veth.WorkloadKey("default", name), NetNS: p.Path})
		if err != nil {
			t.Fatal(err)
		}
		pods, addrs = append(pods, p), append(addrs, res.Addrs[0].String())
	}
	var rules string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.Contains(rules, addrs[1]); time.Sleep(20 * time.Millisecond) {
		rules, _ = n.NATRules(ctx)
	}
	base := []string{"--netns", nodeNS.Path, "--pod-netns", pods[0].Path, "--ip", addrs[0]}
	for _, to := range []string{addrs[1], "198.51.100.2"} {
		out, errs, rc := ctl(t, st, append([]string{"explain"}, append(base, "--to", to)...)...)
		if rc != 0 || strings.Contains(out, "FAIL") {
			t.Errorf("explain %s -> %s: rc %d\n%s%s", addrs[0], to, rc, out, errs)
		}
		for _, want := range []string{"veth peer index", "169.254.1.1 answer", "ee:ee:ee:ee:ee:ee (ARP probe)"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain -> %s: no %q in\n%s", to, want, out)
			}
		}
	}
	out, _, _ := ctl(t, st, append([]string{"explain"}, append(base, "--to", "198.51.100.2", "-o", "json")...)...)
	var rep struct {
		Checks []struct {
			Step string `json:"step"`
			Pass bool   `json:"pass"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Checks) == 0 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if last := rep.Checks[len(rep.Checks)-1]; last.Step != "masquerade" || !last.Pass {
		t.Errorf("last check %+v, want a passing masquerade", last)
	}
	// Break the pod: its 169.254.1.1 route gone (and with it the default).
	pl := pods[0].Link(t, "eth0")
	rs, _ := pods[0].Handle.RouteList(pl, 2)
	for _, r := range rs {
		pods[0].Handle.RouteDel(&r)
	}
	out, _, rc := ctl(t, st, append([]string{"explain"}, base...)...)
	if rc != 1 || !strings.Contains(out, "FAIL pod default route") || !strings.Contains(out, "FAIL pod gateway route") {
		t.Errorf("broken pod: rc %d\n%s", rc, out)
	}
}
