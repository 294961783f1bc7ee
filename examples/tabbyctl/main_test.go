package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/dsn"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/reflector"
)

type nopClose struct{ datastore.Store }

func (nopClose) Close() error { return nil }

func ctl(t *testing.T, st datastore.Store, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(context.Background(), append([]string{"--datastore", "memory://"}, args...), &out, &errb,
		func(context.Context, string) (datastore.Store, error) { return nopClose{st}, nil })
	return out.String(), errb.String(), rc
}

func TestIPAMShowJSON(t *testing.T) {
	ctx := context.Background()
	st := memory.New(nil)
	if _, _, rc := ctl(t, st, "pools", "add", "--cidr", "10.244.0.0/16"); rc != 0 {
		t.Fatal(rc)
	}
	m, _ := ipam.New(st, nil)
	for _, h := range []string{"n.a.eth0", "n.b.eth0"} {
		if _, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: h, Host: "worker1", Num4: 1}); err != nil {
			t.Fatal(err)
		}
	}
	out, _, rc := ctl(t, st, "ipam", "show", "--blocks", "-o", "json")
	if rc != 0 {
		t.Fatal(rc)
	}
	var got struct {
		Pools []struct {
			CIDR      string `json:"cidr"`
			Total     int    `json:"total"`
			Allocated int    `json:"allocated"`
			Free      int    `json:"free"`
			Blocks    []struct {
				CIDR      string `json:"cidr"`
				Affinity  string `json:"affinity"`
				Allocated int    `json:"allocated"`
				Free      int    `json:"free"`
			} `json:"blocks"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err, out)
	}
	p := got.Pools[0]
	if p.CIDR != "10.244.0.0/16" || p.Total != 65536 || p.Allocated != 2 || p.Free != 65534 || len(p.Blocks) != 1 ||
		p.Blocks[0].Affinity != "host:worker1" || p.Blocks[0].Allocated != 2 || p.Blocks[0].Free != 62 {
		t.Fatalf("%s", out)
	}
	// Table.
	out, _, _ = ctl(t, st, "ipam", "show")
	if !strings.Contains(out, "10.244.0.0/16  65536  2") {
		t.Fatalf("table:\n%s", out)
	}
	// Release by handle and by address.
	addrs, _ := m.HandleAddrs(ctx, "n.b.eth0")
	if out, _, rc := ctl(t, st, "ipam", "release", "--handle", "n.a.eth0"); rc != 0 || !strings.Contains(out, "released") {
		t.Fatal(out, rc)
	}
	if out, _, rc := ctl(t, st, "ipam", "release", "--ip", addrs[0].String()); rc != 0 || !strings.Contains(out, addrs[0].String()) {
		t.Fatal(out, rc)
	}
	if _, errs, rc := ctl(t, st, "ipam", "release", "--ip", addrs[0].String()); rc != 1 || !strings.Contains(errs, "not allocated") {
		t.Fatal(errs, rc)
	}
	if _, _, rc := ctl(t, st, "ipam", "release"); rc != 2 {
		t.Fatal(rc)
	}
	out, _, _ = ctl(t, st, "ipam", "show", "-o", "json")
	if !strings.Contains(out, `"allocated": 0`) {
		t.Fatal(out)
	}
	if out, _, rc := ctl(t, st, "ipam", "check"); rc != 0 || !strings.Contains(out, "ok") {
		t.Fatal(out, rc)
	}
}

func TestIPAMCheckFindsProblems(t *testing.T) {
	st := memory.New(nil)
	if _, err := st.Create(context.Background(), "tabby/ipam/blocks/default/10.244.0.0-26", []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	out, errs, rc := ctl(t, st, "ipam", "check")
	if rc != 1 || !strings.Contains(errs, "problem") {
		t.Fatalf("rc %d out %q err %q", rc, out, errs)
	}
}

func TestPools(t *testing.T) {
	st := memory.New(nil)
	if _, _, rc := ctl(t, st, "pools", "add", "--name", "blue", "--cidr", "10.244.0.0/16", "--block-size", "28", "--vxlan-mode", "CrossSubnet"); rc != 0 {
		t.Fatal(rc)
	}
	if _, errs, rc := ctl(t, st, "pools", "add", "--cidr", "10.244.1.0/24"); rc != 1 || !strings.Contains(errs, "overlap") {
		t.Fatal(errs, rc)
	}
	out, _, _ := ctl(t, st, "pools", "list", "-o", "json")
	if !strings.Contains(out, `"name": "blue"`) || !strings.Contains(out, `"blockSize": 28`) || !strings.Contains(out, "CrossSubnet") {
		t.Fatal(out)
	}
	if _, _, rc := ctl(t, st, "pools", "delete", "blue"); rc != 0 {
		t.Fatal(rc)
	}
	if _, errs, rc := ctl(t, st, "pools", "delete", "blue"); rc != 1 || errs == "" {
		t.Fatal(rc)
	}
	// Every command that prints rejects an unknown format as a usage error.
	for _, cmd := range [][]string{{"pools", "list"}, {"ipam", "show"}, {"peers"}} {
		if _, errs, rc := ctl(t, st, append(cmd, "-o", "yaml")...); rc != 2 || !strings.Contains(errs, "want table or json") {
			t.Fatalf("%v -o yaml: exit %d, stderr %q", cmd, rc, errs)
		}
	}
	if _, _, rc := ctl(t, st, "frobnicate"); rc != 2 {
		t.Fatal(rc)
	}
}

func TestPeers(t *testing.T) {
	ctx := context.Background()
	st := memory.New(nil)
	r, err := reflector.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("66:b4:1f:8e:0a:01")
	an, err := r.Announce(ctx, reflector.Announcement{Node: "worker1", NodeIP: netip.MustParseAddr("10.4.7.61"),
		TunnelIP: netip.MustParseAddr("10.244.235.128"), TunnelMAC: mac, Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.235.128/26")}})
	if err != nil {
		t.Fatal(err)
	}
	defer an.Stop(ctx, false)
	out, _, rc := ctl(t, st, "peers", "-o", "json")
	if rc != 0 {
		t.Fatal(rc)
	}
	var got struct {
		Peers []peerOut `json:"peers"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	p := got.Peers[0]
	if len(got.Peers) != 1 || p.Node != "worker1" || p.NodeIP != "10.4.7.61" || p.TunnelIP != "10.244.235.128" ||
		p.TunnelMAC != "66:b4:1f:8e:0a:01" || p.Blocks[0] != "10.244.235.128/26" || p.LastHeartbeat == "" {
		t.Fatalf("%+v", got)
	}
	out, _, _ = ctl(t, st, "peers")
	if !strings.Contains(out, "worker1") || !strings.Contains(out, "10.244.235.128/26") {
		t.Fatal(out)
	}
}

func TestIPAMReleaseHost(t *testing.T) {
	ctx := context.Background()
	st := memory.New(nil)
	if _, _, rc := ctl(t, st, "pools", "add", "--cidr", "10.244.235.128/25"); rc != 0 {
		t.Fatal(rc)
	}
	m, _ := ipam.New(st, nil)
	tunnel, err := m.AssignTunnelAddress(ctx, "worker1", ipam.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "n.a.eth0", Host: "worker1", Num4: 64})
	if err != nil {
		t.Fatal(err)
	}
	// The tunnel's block is full (63 of the pod's addresses); the other
	// holds one of them.
	out, errs, rc := ctl(t, st, "ipam", "release-host", "--host", "worker1")
	if rc != 0 {
		t.Fatal(rc, errs)
	}
	for _, want := range []string{"released tunnel address " + tunnel.String(), "block 10.244.235.128/26 no longer affine",
		"block 10.244.235.192/26 no longer affine", "host worker1 removed", "64 address(es) still allocated"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if bs, _ := m.HostBlocks(ctx, "worker1"); len(bs) != 0 {
		t.Fatalf("worker1 holds %v", bs)
	}
	if as, _ := m.HandleAddrs(ctx, "n.a.eth0"); len(as) != len(pod) {
		t.Fatalf("the pod's addresses must stay: %v", as)
	}
	if out, _, rc := ctl(t, st, "ipam", "check"); rc != 0 {
		t.Fatal(out)
	}
	if out, _, rc := ctl(t, st, "ipam", "release-host", "--host", "worker1"); rc != 0 || !strings.Contains(out, "nothing to release") {
		t.Fatal(out, rc)
	}
	// Once the pod is gone GC frees the blocks; an empty affine block is
	// deleted by release-host.
	if _, err := m.ReleaseByHandle(ctx, "n.a.eth0"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := m.GC(ctx, ipam.GCOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.ClaimBlock(ctx, "worker2", "10.244.235.128-25"); err != nil {
		t.Fatal(err)
	}
	if out, _, rc := ctl(t, st, "ipam", "release-host", "--host", "worker2"); rc != 0 || !strings.Contains(out, "deleted empty block") {
		t.Fatal(out, rc)
	}
	// Usage and bad input.
	if _, _, rc := ctl(t, st, "ipam", "release-host"); rc != 2 {
		t.Fatal(rc)
	}
	if _, errs, rc := ctl(t, st, "ipam", "release-host", "--host", "a/b"); rc != 1 || !strings.Contains(errs, "invalid") {
		t.Fatal(errs, rc)
	}
}

func boltCtl(t *testing.T, path string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(context.Background(), append([]string{"--datastore", "bolt://" + path}, args...), &out, &errb,
		func(ctx context.Context, url string) (datastore.Store, error) { return dsn.Open(ctx, url, nil) })
	return out.String(), errb.String(), rc
}

// A corrupt bolt store makes ipam check fail (issue 15.2: it printed ok),
// restore brings the backup back, and check --fix repairs what IPAM finds.
func TestIPAMCheckCorruptStoreRestoreAndFix(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tabby.db")
	if _, _, rc := boltCtl(t, path, "pools", "add", "--cidr", "10.244.0.0/16"); rc != 0 {
		t.Fatal(rc)
	}
	st, err := bolt.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ipam.New(st, nil)
	if _, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Handle: "n.a.eth0", Host: "worker1", Num4: 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.Backup(ctx, path+bolt.BackupSuffix); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if out, _, rc := boltCtl(t, path, "ipam", "check"); rc != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("healthy: %d %s", rc, out)
	}
	os.Truncate(path, 5000)
	if _, errs, rc := boltCtl(t, path, "ipam", "check"); rc != 1 || !strings.Contains(errs, "corrupt") {
		t.Fatalf("corrupt store: rc %d, %s", rc, errs)
	}
	if out, errs, rc := boltCtl(t, path, "ipam", "restore"); rc != 0 || !strings.Contains(out, "restored") {
		t.Fatalf("restore: %d %s %s", rc, out, errs)
	}
	// Damage a handle record: check reports it, --fix repairs it.
	st, _ = bolt.Open(ctx, path, nil)
	kv, _ := st.Get(ctx, "tabby/ipam/handles/n.a.eth0")
	st.Update(ctx, kv.Key, []byte("{"), kv.Revision)
	st.Close()
	if _, _, rc := boltCtl(t, path, "ipam", "check"); rc != 1 {
		t.Fatalf("corrupt handle: rc %d", rc)
	}
	if out, errs, rc := boltCtl(t, path, "ipam", "check", "--fix"); rc != 0 || !strings.Contains(out, "fixed: corrupt") {
		t.Fatalf("fix: %d %s %s", rc, out, errs)
	}
	if out, _, rc := boltCtl(t, path, "ipam", "release", "--handle", "n.a.eth0"); rc != 0 {
		t.Fatalf("release after fix: %d %s", rc, out)
	}
}
