//go:build linux

package agentbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/vxlan"
	"golang.org/x/sys/unix"
)

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tabby-agent-bench-")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/tabbynet/tabby/examples/tabby-agent").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return filepath.Join(dir, "tabby-agent"), nil
})

// underlays are the allowed test ranges the peers' addresses cycle through.
var underlays = []netip.Prefix{
	netip.MustParsePrefix("10.4.7.0/24"), netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
}

func peerIP(i int) netip.Addr {
	p := underlays[i%len(underlays)]
	b := p.Addr().As4()
	b[3] = byte(2 + (i/len(underlays))%250) // .2-.251; .61 is the local node in 10.4.7.0/24
	if p == underlays[0] && b[3] == 61 {
		b[3] = 252
	}
	return netip.AddrFrom4(b)
}

// populate writes a bolt datastore with one /29 pool and n peers, each with
// a claimed block, its tunnel address and a lasting announcement.
func populate(b *testing.B, path string, n int) {
	ctx := context.Background()
	st, err := bolt.Open(ctx, path, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	m, err := ipam.New(st, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.CreatePool(ctx, ipam.Pool{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 29, VXLANMode: ipam.VXLANAlways, NATOutgoing: true}); err != nil {
		b.Fatal(err)
	}
	r, err := reflector.New(st, &reflector.Config{HoldTime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		node := fmt.Sprintf("peer-%05d", i)
		tun, err := m.AssignTunnelAddress(ctx, node, ipam.IPv4)
		if err != nil {
			b.Fatal(err)
		}
		blocks, err := m.HostBlocks(ctx, node)
		if err != nil {
			b.Fatal(err)
		}
		an, err := r.Announce(ctx, reflector.Announcement{Node: node, NodeIP: peerIP(i), TunnelIP: tun, TunnelMAC: vxlan.MACFromName(node), Blocks: blocks})
		if err != nil {
			b.Fatal(err)
		}
		if err := an.Stop(ctx, true); err != nil { // keep the record (hold time 1h)
			b.Fatal(err)
		}
	}
}

// rss reads the process's resident set (and its anonymous and file-backed
// parts: the bolt file is mapped, and the pages read count as file RSS)
// and its peak.
func rss(pid int) (rssKB, hwmKB, anonKB, fileKB int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "VmRSS":
			rssKB = n
		case "VmHWM":
			hwmKB = n
		case "RssAnon":
			anonKB = n
		case "RssFile":
			fileKB = n
		}
	}
	return rssKB, hwmKB, anonKB, fileKB
}

func ready(ns *kerneltest.NS) bool {
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9099", 200*time.Millisecond)
		return err
	}); err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	conn.Write([]byte("GET /readyz HTTP/1.0\r\n\r\n"))
	var buf bytes.Buffer
	buf.ReadFrom(conn)
	return strings.HasPrefix(buf.String(), "HTTP/1.0 200")
}

// nodeNS is a fresh node namespace whose eth0 (10.4.7.61/24, the local
// node) leads to a namespace of its own, where nothing answers.
func nodeNS(b *testing.B) *kerneltest.NS {
	ns := kerneltest.NewNS(b, "abn")
	kerneltest.Veth(b, ns, "eth0", kerneltest.NewNS(b, "abs"), "eth0")
	ns.AddAddr(b, "eth0", "10.4.7.61/24")
	return ns
}

func vxRoutes(ns *kerneltest.NS) int {
	l, err := ns.Handle.LinkByName("vxlan.calico")
	if err != nil {
		return 0
	}
	rs, _ := ns.Handle.RouteList(l, unix.AF_INET)
	return len(rs)
}

// BenchmarkAgentPeers starts tabby-agent (a separate process, in a fresh
// node namespace) on a datastore holding n peers, and reports the time from
// exec to /readyz answering 200 (first sync done: 3n kernel entries), the
// same for a restart with nothing changed, and the agent's RSS 1 s and 10 s
// after it was ready, and its peak.
func BenchmarkAgentPeers(b *testing.B) {
	kerneltest.Require(b)
	bin, err := buildOnce()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			db := filepath.Join(dir, "tabby.db")
			populate(b, db, n)
			b.ResetTimer()
			var cold, warm time.Duration
			var rssMax, hwmMax, anonMax, fileMax, steadyMax int
			for range b.N {
				b.StopTimer()
				node := nodeNS(b)
				b.StartTimer()
				for round := range 2 {
					start := time.Now()
					cmd := exec.Command("ip", "netns", "exec", node.Name, bin, "--node=bench-node", "--uplink=eth0",
						"--node-ip=10.4.7.61/24", "--datastore=bolt://"+db, "--state-dir="+filepath.Join(dir, "state"),
						"--listen=127.0.0.1:9099", "--graceful-restart", "--hold-time=1h", "--log-level=error")
					var out bytes.Buffer
					cmd.Stdout, cmd.Stderr = &out, &out
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					for !ready(node) {
						if time.Since(start) > 5*time.Minute {
							cmd.Process.Kill()
							b.Fatalf("not ready after 5 minutes:\n%s", out.String())
						}
						time.Sleep(5 * time.Millisecond)
					}
					took := time.Since(start)
					if got := vxRoutes(node); got < n {
						b.Errorf("ready with %d routes on vxlan.calico, want %d", got, n)
					}
					if round == 0 {
						cold += took
						time.Sleep(time.Second) // settle, then measure memory
						r, h, a, f := rss(cmd.Process.Pid)
						rssMax, hwmMax = max(rssMax, r), max(hwmMax, h)
						anonMax, fileMax = max(anonMax, a), max(fileMax, f)
						// The syncs that follow the start (the kernel's and
						// nftables' notifications of its own writes) are done
						// well within this: what an operator sees from then on.
						time.Sleep(9 * time.Second)
						r, _, _, _ = rss(cmd.Process.Pid)
						steadyMax = max(steadyMax, r)
					} else {
						warm += took
					}
					cmd.Process.Signal(unix.SIGTERM)
					if err := cmd.Wait(); err != nil {
						b.Fatalf("agent exit: %v\n%s", err, out.String())
					}
				}
			}
			b.ReportMetric(float64(cold.Milliseconds())/float64(b.N), "ms-to-ready")
			b.ReportMetric(float64(warm.Milliseconds())/float64(b.N), "ms-to-ready-restart")
			b.ReportMetric(float64(rssMax)/1024, "MB-RSS")
			b.ReportMetric(float64(steadyMax)/1024, "MB-RSS-10s")
			b.ReportMetric(float64(hwmMax)/1024, "MB-RSS-peak")
			b.ReportMetric(float64(anonMax)/1024, "MB-RSS-anon")
			b.ReportMetric(float64(fileMax)/1024, "MB-RSS-file")
		})
	}
}
