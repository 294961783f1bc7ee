// Command tabby-arpd is a standalone userspace proxy-ARP responder: it
// answers pods' ARP requests for their gateway (169.254.1.1) on the host
// side of their veths, as Calico does with the proxy_arp sysctl, but from
// user space and with counters.
//
//	tabby-arpd [--netns PATH] [--iface-prefix cali] [--iface NAME ...]
//	           [--gateway 169.254.1.1 ...] [--all] [--rt-priority N]
//	           [--stats 1m] [--debug]
//
// It runs until SIGINT or SIGTERM and logs to stderr. It needs
// CAP_NET_RAW (packet sockets) and, with --netns, CAP_SYS_ADMIN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/proxyarp"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tabby-arpd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("tabby-arpd", flag.ContinueOnError)
	netnsPath := fs.String("netns", "", "network namespace `path` to serve (default: this process's)")
	prefix := fs.String("iface-prefix", proxyarp.DefaultPrefix, "serve interfaces whose name starts with `prefix` (empty: only --iface)")
	var ifaces, gateways listFlag
	fs.Var(&ifaces, "iface", "also serve the interface called `name` (repeatable)")
	fs.Var(&gateways, "gateway", "answer for `address` (repeatable; default 169.254.1.1)")
	all := fs.Bool("all", false, "answer for any unicast target except the sender's own address")
	rescan := fs.Duration("rescan", proxyarp.DefaultRescan, "re-list interfaces this often besides netlink notifications")
	rtprio := fs.Int("rt-priority", 0, "run reader threads SCHED_FIFO at this `priority` (1-99; needs CAP_SYS_NICE)")
	statsEvery := fs.Duration("stats", time.Minute, "log counters this often (0: never)")
	debug := fs.Bool("debug", false, "log debug events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := &proxyarp.Config{
		Netns:     *netnsPath,
		Selector:  proxyarp.Selector{Prefix: *prefix, Names: ifaces},
		AnswerAll: *all,
		Rescan:    *rescan,
		Logger:    log,

		RealtimePriority: *rtprio,
	}
	if *prefix == "" && len(ifaces) == 0 {
		return errors.New("nothing selected: give --iface-prefix or --iface")
	}
	for _, g := range gateways {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return fmt.Errorf("--gateway %q: %w", g, err)
		}
		cfg.Gateways = append(cfg.Gateways, a)
	}
	r, err := proxyarp.New(cfg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *statsEvery > 0 {
		go func() {
			t := time.NewTicker(*statsEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					logStats(log, r.Stats())
				}
			}
		}()
	}
	log.Info("tabby-arpd: starting", "netns", *netnsPath, "prefix", *prefix, "ifaces", ifaces.String(),
		"gateways", gatewaysString(cfg.Gateways), "all", *all)
	if err := r.Run(ctx); err != nil {
		return err
	}
	logStats(log, r.Stats())
	log.Info("tabby-arpd: stopped")
	return nil
}

func gatewaysString(gs []netip.Addr) string {
	if gs == nil {
		return proxyarp.DefaultGateway.String()
	}
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.String()
	}
	return strings.Join(s, ",")
}

func logStats(log *slog.Logger, s proxyarp.Stats) {
	attrs := []any{"interfaces", s.Interfaces, "requests", s.Requests, "replies", s.Replies,
		"write_errors", s.WriteErrors, "read_errors", s.ReadErrors, "open_errors", s.OpenErrors}
	for _, why := range proxyarp.Reasons() {
		if n := s.Ignored[why]; n > 0 {
			attrs = append(attrs, "ignored_"+why.String(), n)
		}
	}
	log.Info("tabby-arpd: stats", attrs...)
}
