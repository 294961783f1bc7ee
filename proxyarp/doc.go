// Package proxyarp answers pods' ARP requests for their gateway from user
// space: Calico's 169.254.1.1 trick without the proxy_arp sysctl.
//
// Every pod's default route points at 169.254.1.1, an address nobody owns
// (`default via 169.254.1.1 dev eth0`, `169.254.1.1 dev eth0 scope link`).
// When a pod asks "who has 169.254.1.1?", a Responder answers on the host
// side of the pod's veth with that veth's own MAC (ee:ee:ee:ee:ee:ee), so
// the pod sends everything to the host, which routes it.
//
// # What it owns
//
// A Responder owns one AF_PACKET socket (github.com/mdlayher/packet, bound
// to ETH_P_ARP, with a classic BPF filter that passes only incoming ARP
// requests) per selected interface of one network namespace, and nothing
// else: it writes no sysctls, addresses, routes or neighbours. Interfaces
// are chosen by a Selector (name prefix "cali" by default, or a list of
// names); all others, the uplink included, are never opened. They are
// followed as they come and go through netlink link notifications plus a
// periodic rescan.
//
// # Policy
//
// It answers Ethernet/IPv4 ARP requests whose target is a configured
// gateway (default 169.254.1.1), or with AnswerAll any unicast target. It
// never answers a request whose sender is 0.0.0.0 (a duplicate-address
// probe) or whose target is the sender's own address (gratuitous ARP),
// and ignores replies, other hardware and protocol types and malformed
// frames. Every frame read is counted: answered, failed to send, or ignored
// for one Reason (Stats). The package registers no metrics of its own.
//
// # Rate limit
//
// Each interface has its own token bucket (Config.RateLimit; default 100
// replies per second, bursts of 200; RateLimit.Disabled turns it off). A
// request that finds it empty is not answered and is counted as
// ReasonRateLimited in Stats().Ignored, which the agent exports as a
// metric. The interface's reader then sleeps until the next token is due
// (at most 10 ms), so a flood costs about one wake-up per token instead of
// one per frame; what piles up meanwhile beyond the socket's receive buffer
// is dropped by the kernel and counted in Stats().Dropped
// (PACKET_STATISTICS). Other interfaces keep their own bucket and reader
// and are served as before (TestRateLimitFloodingInterface;
// bench/proxyarp BenchmarkFlood for the CPU a flood costs).
//
// # IPv6: no responder needed
//
// A pod's IPv6 default route points at the link-local address of the host
// end of its veth, fe80::ecee:eeff:feee:eeee for ee:ee:ee:ee:ee:ee
// (veth.LinkLocal), which the veth package puts on that interface
// (without duplicate address detection, before the link goes up). The host
// kernel therefore owns the gateway address and answers the pod's
// neighbour solicitations for it itself, as for any of its addresses, with
// the interface's MAC; no proxy_ndp and no userspace NDP responder are
// involved. Calico relies on the same. IPv4 needs the responder only
// because 169.254.1.1 is owned by nobody. TestKernelIPv6GatewayNeedsNoResponder
// shows it with nothing but veth's setup: the pod learns ee:ee:ee:ee:ee:ee
// for fe80::ecee:eeff:feee:eeee, pings it and another pod through it, and
// fails to once the address is removed from the host end. (nat's IPv6
// source guard lets link-local sources through for the same reason.)
//
// # Latency
//
// Each interface is served by one goroutine whose OS thread blocks in
// poll(2) on the socket, outside Go's netpoller; a request wakes that
// thread, which parses the frame in place and writes a preallocated reply
// without allocating. Idle interfaces use no CPU and cost one parked OS
// thread each. Config.RealtimePriority optionally runs those threads
// SCHED_FIFO so a request does not wait for a time slice on a busy host.
// bench/proxyarp compares the round trip with the kernel's own proxy ARP.
//
// # Kernel mode
//
// EnableKernel, DisableKernel and KernelEnabled switch an interface to the
// kernel's proxy ARP instead (proxy_arp=1, neigh proxy_delay=0), Calico's
// way, through /proc/sys of a namespace.
//
// # Testing
//
// The link source and the packet connection are interfaces (LinkSource,
// Conn via ListenFunc); package proxyarptest provides in-memory ones so a
// Responder can be tested without root.
package proxyarp
