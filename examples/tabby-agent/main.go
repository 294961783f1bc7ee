//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/examples/internal/agentflags"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
	"github.com/tabbynet/tabby/examples/internal/storeurl/etcdurl"
	"github.com/tabbynet/tabby/node"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := agentflags.ParseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tabby-agent: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "tabby-agent: --log-level %q: %v\n", f.LogLevel, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, storeURL, err := configure(f)
	if err != nil {
		fmt.Fprintf(stderr, "tabby-agent: %v\n", err)
		return 2
	}
	cfg.Logger = log
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(f.GCPercent)
	}

	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	store, err := storeurl.Open(octx, storeURL, &storeurl.Options{DSN: etcdurl.Open, Logger: log})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "tabby-agent: datastore %s: %v\n", redact(storeURL), err)
		return 1
	}
	defer store.Close()
	cfg.Store = store

	k, err := node.OpenKernel("", f.SysctlRoot)
	if err != nil {
		fmt.Fprintf(stderr, "tabby-agent: %v\n", err)
		return 1
	}
	defer k.Close()
	cfg.Kernel = k

	m := newMetrics()
	cfg.OnSync = m.observeSync
	a, err := node.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "tabby-agent: %v\n", err)
		return 2
	}
	m.agent = a

	if f.CNIBinDir != "" || f.CNIConfDir != "" {
		if err := installCNI(f, cfg, storeURL, log); err != nil {
			fmt.Fprintf(stderr, "tabby-agent: install CNI: %v\n", err)
			return 1
		}
	}

	var srv *http.Server
	if f.Listen != "" {
		ln, err := net.Listen("tcp", f.Listen)
		if err != nil {
			fmt.Fprintf(stderr, "tabby-agent: --listen %s: %v\n", f.Listen, err)
			return 1
		}
		srv = &http.Server{Handler: m.handler(a), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		log.Info("serving /metrics /healthz /readyz", "addr", ln.Addr())
	}
	go func() {
		select {
		case <-a.Started():
			// The start read every peer, every block and the kernel's
			// tables once: that garbage is most of the heap the process
			// grew to. Give it back now rather than over minutes of
			// background scavenging (at 5,000 peers, RSS 57 -> 33 MB).
			debug.FreeOSMemory()
		case <-ctx.Done():
		}
	}()
	err = a.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	if err != nil {
		fmt.Fprintf(stderr, "tabby-agent: %v\n", err)
		return 1
	}
	return 0
}

// configure turns the flags into a node.Config (without its Kernel) and
// the store URL.
func configure(f *agentflags.Flags) (node.Config, string, error) {
	c := node.Config{
		Name: f.Node, Uplink: f.Uplink, Pools: f.Pools, BlockSize: f.BlockSize, BlockSize6: f.BlockSize6,
		NATOutgoing: f.NATOutgoing, HoldTime: f.HoldTime,
		ResyncInterval: f.ResyncInterval, StateDir: f.StateDir,
		WithdrawOnStop: f.WithdrawOnStop || !f.GracefulRestart, StartTimeout: f.StartTimeout,
	}
	var err error
	if c.VXLANMode, err = node.ParseVXLANMode(f.VXLANMode); err != nil {
		return c, "", fmt.Errorf("--vxlan-mode %q: want Always, CrossSubnet or Never", f.VXLANMode)
	}
	if c.ProxyARP, err = node.ParseProxyARPMode(f.ProxyARP); err != nil || c.ProxyARP == node.ProxyARPOff {
		return c, "", fmt.Errorf("--proxy-arp %q: want userspace or kernel", f.ProxyARP)
	}
	if f.GCPercent <= 0 {
		return c, "", fmt.Errorf("--gc-percent %d: must be positive", f.GCPercent)
	}
	if f.HoldTime < 10*time.Millisecond {
		return c, "", fmt.Errorf("--hold-time %v: too short", f.HoldTime)
	}
	if f.ResyncInterval <= 0 {
		return c, "", fmt.Errorf("--resync-interval %v: must be positive", f.ResyncInterval)
	}
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, "", fmt.Errorf("--node not given and no host name: %w", err)
		}
		c.Name = strings.ToLower(h)
	}
	if f.NodeIPv6 != "" {
		if c.NodeIPv6, err = netip.ParsePrefix(f.NodeIPv6); err != nil || !c.NodeIPv6.Addr().Is6() {
			return c, "", fmt.Errorf("--node-ip6 %q: want an IPv6 address with its prefix length", f.NodeIPv6)
		}
	}
	if f.NodeIP == "none" {
		if !c.NodeIPv6.IsValid() || f.Uplink == "" {
			return c, "", errors.New("--node-ip none (IPv6 only) needs --node-ip6 and --uplink")
		}
	} else if c.NodeIP, c.Uplink, err = underlay(f.NodeIP, f.Uplink); err != nil {
		return c, "", err
	}
	u, err := storeURLWithTLS(f)
	if err != nil {
		return c, "", err
	}
	if err := storeurl.Validate(u); err != nil {
		return c, "", fmt.Errorf("--datastore: %w", err)
	}
	return c, u, nil
}

func storeURLWithTLS(f *agentflags.Flags) (string, error) {
	if f.EtcdCA == "" && f.EtcdCert == "" && f.EtcdKey == "" {
		return f.Datastore, nil
	}
	if !strings.HasPrefix(f.Datastore, "etcd://") {
		return "", fmt.Errorf("--etcd-ca/--etcd-cert/--etcd-key need an etcd:// --datastore, not %s", redact(f.Datastore))
	}
	u, err := url.Parse(f.Datastore)
	if err != nil {
		return "", fmt.Errorf("--datastore: %w", err)
	}
	q := u.Query()
	for k, v := range map[string]string{"ca": f.EtcdCA, "cert": f.EtcdCert, "key": f.EtcdKey} {
		if v != "" {
			if _, err := os.Stat(v); err != nil {
				return "", fmt.Errorf("--etcd-%s: %w", k, err)
			}
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// underlay resolves --node-ip and --uplink, defaulting to the default
// route's interface and its first IPv4 address.
func underlay(ipFlag, uplink string) (netip.Prefix, string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	var link netlink.Link
	if uplink == "" {
		routes, err := h.RouteList(nil, unix.AF_INET)
		if err != nil {
			return netip.Prefix{}, "", fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.LinkIndex > 0 {
				link, err = h.LinkByIndex(r.LinkIndex)
				if err != nil {
					return netip.Prefix{}, "", fmt.Errorf("default route's interface: %w", err)
				}
				break
			}
		}
		if link == nil {
			return netip.Prefix{}, "", errors.New("no --uplink given and no IPv4 default route to find it")
		}
		uplink = link.Attrs().Name
	} else if link, err = h.LinkByName(uplink); err != nil {
		return netip.Prefix{}, "", fmt.Errorf("--uplink %s: %w", uplink, err)
	}
	addrs, err := h.AddrList(link, unix.AF_INET)
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("addresses of %s: %w", uplink, err)
	}
	var want netip.Addr
	if ipFlag != "" {
		if p, err := netip.ParsePrefix(ipFlag); err == nil && p.Addr().Is4() {
			return p, uplink, nil
		}
		if want, err = netip.ParseAddr(ipFlag); err != nil || !want.Is4() {
			return netip.Prefix{}, "", fmt.Errorf("--node-ip %q: want an IPv4 address, optionally with /len", ipFlag)
		}
	}
	for _, a := range addrs {
		ad, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if !want.IsValid() || ad == want {
			return netip.PrefixFrom(ad, ones), uplink, nil
		}
	}
	if want.IsValid() {
		return netip.Prefix{}, "", fmt.Errorf("--node-ip %v is not an address of %s", want, uplink)
	}
	return netip.Prefix{}, "", fmt.Errorf("%s has no IPv4 address: give --node-ip", uplink)
}
