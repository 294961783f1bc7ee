//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/examples/internal/nettools"
	"github.com/tabbynet/tabby/node"
)

type options struct {
	keep      bool
	mode      node.VXLANMode
	datastore string // "" = embedded memory store
	prefix    string // namespace name prefix
	holdTime  time.Duration
	verbose   bool
	proxyARP  string // userspace (default) or kernel
}

func (o options) datastoreURL() string {
	if o.datastore == "" {
		return "memory://"
	}
	return o.datastore
}

func main() {
	var opt options
	fs := flag.NewFlagSet("tabby-demo", flag.ContinueOnError)
	fs.BoolVar(&opt.keep, "keep", false, "leave the cluster up after the questions (until Ctrl-C) and print how to explore it")
	mode := fs.String("vxlan-mode", "Always", "Always or CrossSubnet (worker2 then sits on 192.0.2.0/24 behind the router)")
	fs.StringVar(&opt.datastore, "datastore", "", "shared datastore URL (etcd://host:2379,...); default: an embedded in-process store")
	fs.StringVar(&opt.prefix, "prefix", "tabby-demo-", "prefix of the demo's namespace names")
	fs.DurationVar(&opt.holdTime, "hold-time", 30*time.Second, "the agents' reflector hold time")
	fs.StringVar(&opt.proxyARP, "proxy-arp", "userspace", "who answers the pods' ARP for 169.254.1.1: userspace (tabby's responder) or kernel (proxy_arp sysctl, Calico's way)")
	fs.BoolVar(&opt.verbose, "v", false, "log the agents' debug output to stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sudo tabby-demo [flags]\n\nRebuilds the seed's three-node Calico VXLAN cluster in network namespaces and checks it question by question.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	m, err := node.ParseVXLANMode(*mode)
	if err != nil || m == node.VXLANNever {
		fmt.Fprintf(os.Stderr, "tabby-demo: --vxlan-mode %q: want Always or CrossSubnet\n", *mode)
		os.Exit(2)
	}
	opt.mode = m
	if opt.proxyARP != "userspace" && opt.proxyARP != "kernel" {
		fmt.Fprintf(os.Stderr, "tabby-demo: --proxy-arp %q: want userspace or kernel\n", opt.proxyARP)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tabby-demo: needs root (network namespaces): sudo go run ./examples/tabby-demo")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, opt, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tabby-demo: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// run builds the cluster, walks the questions and removes everything
// (after Ctrl-C with keep). It reports whether every question passed.
func run(ctx context.Context, opt options, out io.Writer) (bool, error) {
	start := time.Now()
	c, err := setup(ctx, opt, out)
	defer c.teardown()
	if err != nil {
		return false, err
	}
	ok := c.questions(ctx)
	fmt.Fprintf(out, "\n%s in %v\n", verdict(ok), time.Since(start).Round(time.Millisecond))
	if opt.keep && ctx.Err() == nil {
		c.explain()
		<-ctx.Done()
		fmt.Fprintln(out, "removing the cluster")
	}
	return ok, nil
}

// setup builds the underlay, starts the agents, adds the pods and the
// internet host's echo server. The caller tears the cluster down, also
// when setup fails.
func setup(ctx context.Context, opt options, out io.Writer) (*cluster, error) {
	start := time.Now()
	var log *slog.Logger
	if opt.verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	if opt.proxyARP == "" {
		opt.proxyARP = "userspace"
	}
	c := &cluster{opt: opt, out: out, log: log}
	if err := c.removeLeftovers(); err != nil {
		return c, err
	}
	var err error
	if c.tmp, err = os.MkdirTemp("", "tabby-demo-"); err != nil {
		return c, err
	}
	if opt.datastore == "" {
		c.store = memory.New(nil)
	} else {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c.store, err = openStore(octx, opt.datastore)
		cancel()
		if err != nil {
			return c, fmt.Errorf("datastore: %w", err)
		}
	}
	fmt.Fprintf(out, "tabby-demo: the seed's cluster (VXLAN mode %s) in network namespaces %s*\n", opt.mode, opt.prefix)
	if err := c.build(); err != nil {
		return c, fmt.Errorf("build the underlay: %w", err)
	}
	for _, n := range c.nodes {
		fmt.Fprintf(out, "  node %-8s %-15v namespace %s\n", n.spec.name, n.spec.ip, n.ns.Name)
	}
	fmt.Fprintf(out, "  router %v (gateway), internet host %v behind it (no route to the pod pool)\n", routerIP, internetIP)
	if err := c.startAgents(ctx); err != nil {
		return c, fmt.Errorf("start the agents: %w", err)
	}
	fmt.Fprintf(out, "  3 agents ready on a shared datastore (%s) after %v\n", storeName(opt), time.Since(start).Round(time.Millisecond))
	if err := c.addPods(); err != nil {
		return c, err
	}
	if opt.proxyARP == "userspace" {
		if err := c.waitFor(ctx, 10*time.Second, "the proxy-ARP responders serve every pod", func() bool {
			for _, n := range c.nodes {
				want := 0
				for _, p := range c.pods {
					if p.spec.node == n.spec.name {
						want++
					}
				}
				if n.agent.Stats().ARP.Interfaces != want {
					return false
				}
			}
			return true
		}); err != nil {
			return c, err
		}
	}
	if c.echo, err = nettools.EchoServer(c.inet.Path, netipAddrPort(internetIP, echoPort)); err != nil {
		return c, err
	}
	return c, nil
}

func storeName(o options) string {
	if o.datastore == "" {
		return "embedded in-process store"
	}
	return o.datastore
}

func verdict(ok bool) string {
	if ok {
		return "ALL PASS"
	}
	return "SOME FAILED"
}

func (c *cluster) explain() {
	w := func(f string, a ...any) { fmt.Fprintf(c.out, f+"\n", a...) }
	w("\nThe cluster stays up until Ctrl-C. Explore it:")
	w("  ip netns list | grep %s", c.opt.prefix)
	w("  ip netns exec %sworker1 ip -d link show vxlan.calico", c.opt.prefix)
	w("  ip netns exec %sworker1 ip route", c.opt.prefix)
	w("  ip netns exec %sworker1 ip neigh show dev vxlan.calico", c.opt.prefix)
	w("  ip netns exec %sworker1 bridge fdb show dev vxlan.calico", c.opt.prefix)
	w("  ip netns exec %sworker1 nft list table ip tabby", c.opt.prefix)
	for _, p := range c.pods {
		other := c.pods[len(c.pods)-1]
		if p == other {
			other = c.pods[0]
		}
		w("  ip netns exec %s ping %v   # %s on %s -> %s on %s", p.ns.Name, other.ip, p.spec.name, p.spec.node, other.spec.name, other.spec.node)
	}
	w("  ip netns exec %sworker1 tcpdump -ni eth0 udp port 4789", c.opt.prefix)
}
