//go:build linux

package proxyarpbench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/kerneltest"
	"github.com/tabbynet/tabby/proxyarp"
)

var (
	hostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	gw      = netip.MustParseAddr("169.254.1.1")
)

// node is a host namespace with n cali veths into one pod namespace (pod
// side p0..p<n-1>, addresses 10.244.<i/250>.<i%250+1>/32, the seed's
// routes on p0), kernel proxy_arp off, and a stand-in uplink with a
// default route so that kernel proxy ARP has a route for 169.254.1.1.
type node struct {
	host, pod *kerneltest.NS
	cali      []string
	podIfs    []netlink.Link
	podIPs    []netip.Addr
}

func newNode(b *testing.B, n int) *node {
	b.Helper()
	nd := &node{host: kerneltest.NewNS(b, "parpb-host"), pod: kerneltest.NewNS(b, "parpb-pod")}
	nd.host.SetSysctl(b, "net/ipv4/conf/all/forwarding", "1") // a routing host; kernel proxy ARP needs it
	kerneltest.Veth(b, nd.host, "uplnk0", nd.host, "uplnk1")
	nd.host.AddRoute(b, &netlink.Route{LinkIndex: nd.host.Link(b, "uplnk0").Attrs().Index,
		Dst: kerneltest.IPNet("0.0.0.0/0"), Scope: netlink.SCOPE_LINK})
	for i := range n {
		cali := fmt.Sprintf("cali%011x", i)
		hl, pl := kerneltest.Veth(b, nd.host, cali, nd.pod, fmt.Sprintf("p%d", i))
		if err := nd.host.Handle.LinkSetHardwareAddr(hl, hostMAC); err != nil {
			b.Fatal(err)
		}
		ip := netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 1)})
		nd.pod.AddAddr(b, pl.Attrs().Name, ip.String()+"/32")
		nd.cali, nd.podIfs, nd.podIPs = append(nd.cali, cali), append(nd.podIfs, pl), append(nd.podIPs, ip)
	}
	nd.pod.AddRoute(b, &netlink.Route{LinkIndex: nd.podIfs[0].Attrs().Index, Dst: kerneltest.IPNet("169.254.1.1/32"), Scope: netlink.SCOPE_LINK})
	nd.pod.AddRoute(b, &netlink.Route{LinkIndex: nd.podIfs[0].Attrs().Index, Gw: kerneltest.IP(gw)})
	return nd
}

// responder runs a Responder in the host namespace until the returned
// stop is called, after every cali interface is served. Its rate limit is
// off: these benchmarks measure the responder's own capacity
// (BenchmarkFlood measures the limit).
func (nd *node) responder(b *testing.B, listen proxyarp.ListenFunc, rtprio ...int) (*proxyarp.Responder, func()) {
	b.Helper()
	cfg := proxyarp.Config{Listen: listen, RateLimit: proxyarp.RateLimit{Disabled: true}}
	if len(rtprio) > 0 {
		cfg.RealtimePriority = rtprio[0]
	}
	return nd.responderWith(b, cfg)
}

// responderWith is responder with a Config of the caller's (Netns is set).
func (nd *node) responderWith(b *testing.B, cfg proxyarp.Config) (*proxyarp.Responder, func()) {
	b.Helper()
	cfg.Netns = nd.host.Path
	r, err := proxyarp.New(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		served := 0
		for _, l := range r.Interfaces() {
			if string(l.MAC) == string(hostMAC) {
				served++
			}
		}
		if served == len(nd.cali) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d interfaces served", served, len(nd.cali))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}
}

// netpollerListen is the naive alternative: the same responder, reading
// through mdlayher/packet's Conn on Go's netpoller.
func netpollerListen(nd *node) proxyarp.ListenFunc {
	return func(ctx context.Context, l proxyarp.Link) (proxyarp.Conn, error) {
		filter, err := proxyarp.RequestFilter()
		if err != nil {
			return nil, err
		}
		var pc *packet.Conn
		err = nd.host.Do(func() error {
			var err error
			pc, err = packet.Listen(&net.Interface{Index: l.Index, Name: l.Name}, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: filter})
			return err
		})
		if err != nil {
			return nil, err
		}
		return &pollerConn{pc: pc}, nil
	}
}

type pollerConn struct {
	pc   *packet.Conn
	addr packet.Addr
}

func (c *pollerConn) Read(b []byte) (int, error) { n, _, err := c.pc.ReadFrom(b); return n, err }
func (c *pollerConn) Write(b []byte) (int, error) {
	c.addr.HardwareAddr = b[:6]
	return c.pc.WriteTo(b, &c.addr)
}
func (c *pollerConn) Close() error { return c.pc.Close() }

// BenchmarkRoundTrip: an ARP request for 169.254.1.1 from the pod and its
// reply, timed by the pod's blocking packet socket, for the userspace
// responder, the same responder on Go's netpoller, and kernel proxy_arp
// (proxy_delay 0), one after the other in the same run.
func BenchmarkRoundTrip(b *testing.B) { roundTrip(b, 0) }

// BenchmarkRoundTripSparse is BenchmarkRoundTrip with 2 ms between
// requests, closer to real ARP traffic: every request finds the responder
// (and the machine) idle.
func BenchmarkRoundTripSparse(b *testing.B) { roundTrip(b, 2*time.Millisecond) }

func roundTrip(b *testing.B, gap time.Duration) {
	nd := newNode(b, 1)
	sys := proxyarp.SysctlAt(nd.host.Path)
	client, err := kerneltest.NewARPClient(nd.pod, "p0", nd.podIPs[0])
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()

	run := func(b *testing.B) {
		for range 200 { // warm up
			if _, _, err := client.Query(gw, time.Second); err != nil {
				b.Fatal(err)
			}
		}
		wire := make([]time.Duration, 0, b.N)
		app := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			if gap > 0 {
				time.Sleep(gap)
			}
			mac, rtt, err := client.Query(gw, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			if string(mac) != string(hostMAC) {
				b.Fatalf("169.254.1.1 is at %v", mac)
			}
			wire, app = append(wire, rtt.Wire), append(app, rtt.App)
		}
		b.StopTimer()
		reportRTT(b, "", wire)
		reportRTT(b, "app-", app)
	}
	b.Run("mode=userspace", func(b *testing.B) {
		_, stop := nd.responder(b, nil)
		defer stop()
		run(b)
	})
	b.Run("mode=userspace-fifo", func(b *testing.B) {
		_, stop := nd.responder(b, nil, 10)
		defer stop()
		run(b)
	})
	b.Run("mode=netpoller", func(b *testing.B) {
		_, stop := nd.responder(b, netpollerListen(nd))
		defer stop()
		run(b)
	})
	b.Run("mode=kernel", func(b *testing.B) {
		if err := proxyarp.EnableKernel(sys, nd.cali[0]); err != nil {
			b.Fatal(err)
		}
		defer proxyarp.DisableKernel(sys, nd.cali[0])
		run(b)
	})
}

func reportRTT(b *testing.B, prefix string, rtts []time.Duration) {
	slices.Sort(rtts)
	var sum time.Duration
	for _, d := range rtts {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(sum/time.Duration(len(rtts))), prefix+"µs-avg")
	b.ReportMetric(us(rtts[len(rtts)/2]), prefix+"µs-p50")
	b.ReportMetric(us(rtts[len(rtts)*99/100]), prefix+"µs-p99")
}

// flood sends n requests for 169.254.1.1 spread round-robin over the pod's
// interfaces in bursts of window, reading the replies of each burst before
// the next, from one locked thread. It returns the replies received and
// the CPU time of its own thread.
func flood(b *testing.B, nd *node, n, window int) (replies int, lost int, genCPU time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var fd int
	if err := nd.pod.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP)})
	}); err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
		b.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	frames := make([][]byte, len(nd.podIfs))
	addrs := make([]*unix.SockaddrLinklayer, len(nd.podIfs))
	for i, l := range nd.podIfs {
		frames[i] = request(l.Attrs().HardwareAddr, nd.podIPs[i], gw)
		addrs[i] = &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.Attrs().Index, Halen: 6,
			Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	}
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
	buf := make([]byte, 256)
	next := 0
	for sent := 0; sent < n; {
		w := min(window, n-sent)
		for range w {
			if err := unix.Sendto(fd, frames[next], 0, addrs[next]); err != nil {
				b.Fatal(err)
			}
			next = (next + 1) % len(frames)
		}
		sent += w
		got := 0
		for got < w {
			m, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN {
				lost += w - got
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if m >= 42 && binary.BigEndian.Uint16(buf[20:]) == 2 && [4]byte(buf[28:32]) == gw.As4() {
				got++
			}
		}
		replies += got
	}
	unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
	return replies, lost, tvDur(ru1.Utime) + tvDur(ru1.Stime) - tvDur(ru0.Utime) - tvDur(ru0.Stime)
}

func request(mac net.HardwareAddr, src, dst netip.Addr) []byte {
	r := make([]byte, 42)
	copy(r[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(r[6:12], mac)
	binary.BigEndian.PutUint16(r[12:], 0x0806)
	binary.BigEndian.PutUint16(r[14:], 1)
	binary.BigEndian.PutUint16(r[16:], 0x0800)
	r[18], r[19] = 6, 4
	binary.BigEndian.PutUint16(r[20:], 1)
	copy(r[22:28], mac)
	s, d := src.As4(), dst.As4()
	copy(r[28:32], s[:])
	copy(r[38:42], d[:])
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func tvDur(tv unix.Timeval) time.Duration {
	return time.Duration(tv.Sec)*time.Second + time.Duration(tv.Usec)*time.Microsecond
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return tvDur(ru.Utime) + tvDur(ru.Stime)
}

// BenchmarkThroughput: sustained replies per second on one interface and
// spread over 100, with the CPU the responder used per 10,000 replies
// (process CPU minus the generator thread's own, so it includes the
// kernel work of delivering each reply into the pod), the same for kernel
// proxy_arp, where all the work happens inside the generator's system
// calls (its "responder" CPU is the rest of the process: noise).
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("ifaces=%d", n), func(b *testing.B) {
			nd := newNode(b, n)
			b.Run("mode=userspace", func(b *testing.B) {
				r, stop := nd.responder(b, nil)
				defer stop()
				flood(b, nd, 2000, 32) // warm up
				cpu0 := processCPU()
				b.ResetTimer()
				start := time.Now()
				replies, lost, gen := flood(b, nd, b.N, 32)
				el := time.Since(start)
				b.StopTimer()
				resp := processCPU() - cpu0 - gen
				b.ReportMetric(float64(replies)/el.Seconds(), "replies/s")
				b.ReportMetric(float64(lost), "lost")
				b.ReportMetric(float64(resp.Microseconds())/float64(max(replies, 1))*10, "responder-cpu-ms/10k")
				b.ReportMetric(float64(gen.Microseconds())/float64(max(replies, 1))*10, "generator-cpu-ms/10k")
				if s := r.Stats(); s.WriteErrors != 0 {
					b.Errorf("stats %+v", s)
				}
			})
			b.Run("mode=kernel", func(b *testing.B) {
				sys := proxyarp.SysctlAt(nd.host.Path)
				for _, c := range nd.cali {
					if err := proxyarp.EnableKernel(sys, c); err != nil {
						b.Fatal(err)
					}
				}
				defer func() {
					for _, c := range nd.cali {
						proxyarp.DisableKernel(sys, c)
					}
				}()
				flood(b, nd, 2000, 32)
				cpu0 := processCPU()
				b.ResetTimer()
				start := time.Now()
				replies, lost, gen := flood(b, nd, b.N, 32)
				el := time.Since(start)
				b.StopTimer()
				other := processCPU() - cpu0 - gen
				b.ReportMetric(float64(replies)/el.Seconds(), "replies/s")
				b.ReportMetric(float64(lost), "lost")
				b.ReportMetric(float64(other.Microseconds())/float64(max(replies, 1))*10, "responder-cpu-ms/10k")
				b.ReportMetric(float64(gen.Microseconds())/float64(max(replies, 1))*10, "generator-cpu-ms/10k")
			})
		})
	}
}

// BenchmarkIdleAndMemory: what serving 100 idle interfaces costs: memory
// and OS threads per interface, and CPU per second of idleness (against
// the same process without a responder). Run it with -benchtime 1x in a
// process of its own: Go keeps idle threads, so a second run would reuse
// the first one's.
func BenchmarkIdleAndMemory(b *testing.B) {
	const n = 100
	nd := newNode(b, n)
	idle := func() float64 {
		cpu0 := processCPU()
		const d = 3 * time.Second
		time.Sleep(d)
		return float64((processCPU() - cpu0).Microseconds()) / d.Seconds()
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	rss0, thr0 := procStatus()
	base := idle()
	_, stop := nd.responder(b, nil)
	defer stop()
	time.Sleep(300 * time.Millisecond) // every server blocked in poll
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	rss1, thr1 := procStatus()
	used := idle()
	b.ReportMetric(float64(rss1-rss0)/n, "rss-KiB/iface")
	b.ReportMetric(float64(thr1-thr0)/n, "threads/iface")
	b.ReportMetric(float64((ms1.HeapInuse+ms1.StackInuse)-(ms0.HeapInuse+ms0.StackInuse))/n, "go-heap+stack-B/iface")
	b.ReportMetric(used, "idle-cpu-µs/s")
	b.ReportMetric(base, "baseline-cpu-µs/s")
}

// procStatus returns VmRSS (KiB) and Threads from /proc/self/status.
func procStatus() (rssKiB, threads int) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKiB, _ = strconv.Atoi(f[1])
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rssKiB, threads
}

// BenchmarkFlood: one pod floods its interface with ARP requests for
// 169.254.1.1 as fast as one thread can send them (never reading replies)
// for 2 seconds, while a second pod interface asks for its gateway every
// 10 ms. Per mode: the flood rate, the responder's CPU (process CPU minus
// the generator thread's, as a fraction of one core), what the responder
// did with the flood (replies, rate-limited, dropped by the kernel) and
// whether the quiet interface kept being answered, with its round trip.
// mode=unlimited is the responder before the rate limit (RateLimit
// disabled), mode=limited the default (100/s, burst 200). Run with
// -benchtime 1x.
func BenchmarkFlood(b *testing.B) {
	nd := newNode(b, 2)
	for _, mode := range []string{"unlimited", "limited"} {
		b.Run("mode="+mode, func(b *testing.B) {
			cfg := proxyarp.Config{}
			if mode == "unlimited" {
				cfg.RateLimit.Disabled = true
			}
			r, stop := nd.responderWith(b, cfg)
			defer stop()
			quiet, err := kerneltest.NewARPClient(nd.pod, "p1", nd.podIPs[1])
			if err != nil {
				b.Fatal(err)
			}
			defer quiet.Close()
			const d = 2 * time.Second
			for b.Loop() {
				before := r.Stats()
				qdone := make(chan struct{})
				var rtts []time.Duration
				var qfail int
				go func() {
					defer close(qdone)
					end := time.Now().Add(d)
					for time.Now().Before(end) {
						if _, rtt, err := quiet.Query(gw, 500*time.Millisecond); err != nil {
							qfail++
						} else {
							rtts = append(rtts, rtt.Wire)
						}
						time.Sleep(10 * time.Millisecond)
					}
				}()
				cpu0 := processCPU()
				sent, gen := floodFor(b, nd, d)
				resp := processCPU() - cpu0 - gen
				<-qdone
				after := r.Stats()
				b.ReportMetric(float64(sent)/d.Seconds(), "sent/s")
				b.ReportMetric(float64(resp)/float64(d)*100, "responder-cpu-%")
				b.ReportMetric(float64(after.Requests-before.Requests), "read")
				b.ReportMetric(float64(after.Replies-before.Replies), "replies")
				b.ReportMetric(float64(after.Ignored[proxyarp.ReasonRateLimited]-before.Ignored[proxyarp.ReasonRateLimited]), "rate-limited")
				b.ReportMetric(float64(after.Dropped-before.Dropped), "kernel-dropped")
				b.ReportMetric(float64(qfail), "quiet-unanswered")
				if len(rtts) > 0 {
					reportRTT(b, "quiet-", rtts)
				}
			}
		})
	}
}

// floodFor sends requests out of the pod's first interface from one locked
// thread for d, on a socket that receives nothing, and returns how many it
// sent and its thread's CPU time.
func floodFor(b *testing.B, nd *node, d time.Duration) (sent int, cpu time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var fd int
	if err := nd.pod.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: sends only
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	l := nd.podIfs[0]
	frame := request(l.Attrs().HardwareAddr, nd.podIPs[0], gw)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.Attrs().Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for range 64 {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				b.Fatal(err)
			}
		}
		sent += 64
	}
	unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
	return sent, tvDur(ru1.Utime) + tvDur(ru1.Stime) - tvDur(ru0.Utime) - tvDur(ru0.Stime)
}
