//go:build linux

package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tabbynet/tabby/node"
	"github.com/tabbynet/tabby/proxyarp"
)

// metrics is the agent's own Prometheus registry (never the global one).
type metrics struct {
	reg      *prometheus.Registry
	syncDur  prometheus.Histogram
	syncErrs prometheus.Counter
	agent    *node.Node
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.syncDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tabby_agent_sync_duration_seconds", Help: "Duration of dataplane syncs.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	m.syncErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "tabby_agent_sync_errors_total", Help: "Syncs that ended with an error."})
	m.reg.MustRegister(m.syncDur, m.syncErrs, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), (*statsCollector)(m))
	return m
}

func (m *metrics) observeSync(s node.SyncInfo) {
	m.syncDur.Observe(s.Took.Seconds())
	if s.Err != nil {
		m.syncErrs.Inc()
	}
}

func (m *metrics) handler(a *node.Node) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

var (
	descPeers       = prometheus.NewDesc("tabby_agent_peers", "Live, validated peers followed.", nil, nil)
	descSyncs       = prometheus.NewDesc("tabby_agent_syncs_total", "Dataplane syncs.", nil, nil)
	descWrites      = prometheus.NewDesc("tabby_agent_kernel_writes_total", "Kernel writes made by syncs (netlink, nftables transactions, sysctls).", nil, nil)
	descLastW       = prometheus.NewDesc("tabby_agent_last_sync_kernel_writes", "Kernel writes of the last sync.", nil, nil)
	descReady       = prometheus.NewDesc("tabby_agent_ready", "1 when the datastore answers and the first sync is done.", nil, nil)
	descDS          = prometheus.NewDesc("tabby_agent_datastore_up", "1 when the datastore answered the last probe.", nil, nil)
	descIPAM        = prometheus.NewDesc("tabby_agent_ipam_addresses", "Addresses of the node's blocks, by state.", []string{"state"}, nil)
	descBlocks      = prometheus.NewDesc("tabby_agent_ipam_blocks", "Blocks affine to the node.", nil, nil)
	descARPReq      = prometheus.NewDesc("tabby_agent_arp_requests_total", "ARP requests read by the proxy-ARP responder.", nil, nil)
	descARPRep      = prometheus.NewDesc("tabby_agent_arp_replies_total", "ARP replies sent.", nil, nil)
	descARPIgn      = prometheus.NewDesc("tabby_agent_arp_ignored_total", "ARP frames not answered, by reason.", []string{"reason"}, nil)
	descARPErr      = prometheus.NewDesc("tabby_agent_arp_errors_total", "Responder errors, by kind (dropped: requests the kernel dropped while an interface was rate-limited).", []string{"kind"}, nil)
	descNATRestores = prometheus.NewDesc("tabby_agent_nat_restores_total", "Syncs that restored nftables state changed by someone else.", nil, nil)
	descARPIfaces   = prometheus.NewDesc("tabby_agent_arp_interfaces", "Interfaces the responder serves.", nil, nil)
)

// statsCollector reads node.Stats at scrape time.
type statsCollector metrics

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descSyncs, descWrites, descLastW, descReady, descDS, descIPAM, descBlocks, descARPReq, descARPRep, descARPIgn, descARPErr, descARPIfaces, descNATRestores} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.agent == nil {
		return
	}
	s := c.agent.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	ctr := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	g(descPeers, float64(len(s.Peers)))
	ctr(descNATRestores, float64(s.NATRestores))
	ctr(descSyncs, float64(s.Syncs))
	ctr(descWrites, float64(s.KernelWrites))
	g(descLastW, float64(s.LastSyncWrites))
	g(descReady, b2f(c.agent.Ready() == nil))
	g(descDS, b2f(s.DatastoreOK))
	g(descIPAM, float64(s.IPAMCapacity), "capacity")
	g(descIPAM, float64(s.IPAMInUse), "in_use")
	g(descBlocks, float64(len(s.Blocks)))
	ctr(descARPReq, float64(s.ARP.Requests))
	ctr(descARPRep, float64(s.ARP.Replies))
	for _, r := range proxyarp.Reasons() {
		ctr(descARPIgn, float64(s.ARP.Ignored[r]), r.String())
	}
	ctr(descARPErr, float64(s.ARP.WriteErrors), "write")
	ctr(descARPErr, float64(s.ARP.ReadErrors), "read")
	ctr(descARPErr, float64(s.ARP.OpenErrors), "open")
	ctr(descARPErr, float64(s.ARP.Dropped), "dropped")
	g(descARPIfaces, float64(s.ARP.Interfaces))
}
