// Package nat programs a node's masquerade and guard rules in nftables,
// over netlink with github.com/google/nftables: no nft or iptables binary.
// It reproduces the seed's Q8 (a pod reaches the internet because the node
// rewrites the pod's source address to its own for traffic from the pod
// pools to destinations outside them) and adds two guards.
//
// # What it owns
//
// Two tables named by Config.Table (default "tabby"): one of family ip for
// IPv4 and one of family ip6 for IPv6, each present when the desired state
// has a pool of its family. The Manager lists tables only to find those
// two, never changes, flushes or deletes any other (kube-proxy's,
// iptables-nft's, another tool's, or an inet table of the same name), and
// Cleanup deletes only its own. Within its tables it owns everything: a
// rule or element someone else adds is removed by the next Sync. It also
// owns one packet-mark bit, Config.PortGuardMark, between two hooks of one
// packet (see below).
//
// # The ruleset
//
// The rule count is constant: pools, peers and pods live in sets, updated
// element by element. The table for the seed's worker1 (see
// testdata/masquerade.golden, which the Example prints):
//
//	set all_pools / nat_pools / nat_exclude   ipv4_addr, flags interval
//	set vxlan_peers                           ipv4_addr
//	set workload_ifaces                       ifname
//	set workload_addrs                        ifname . ipv4_addr
//
//	chain postrouting      nat    postrouting srcnat
//	  ip saddr @nat_pools ip daddr != @all_pools ip daddr != @nat_exclude
//	    meta mark set meta mark | 0x01000000 masquerade fully-random
//	chain nat_port_guard   filter postrouting srcnat + 1
//	  meta mark & 0x01000000 != 0 meta l4proto udp th sport 4789 drop
//	  meta mark & 0x01000000 != 0 meta mark set meta mark & 0xfeffffff
//	chain input            filter input       filter
//	  meta l4proto udp th dport 4789 ip saddr != @vxlan_peers drop
//	chain prerouting       filter prerouting  raw
//	  iifname @workload_ifaces iifname . ip saddr != @workload_addrs drop
//
// With Config.TunnelInterface the postrouting chain also has, first,
//
//	oifname "vxlan.calico" fib saddr . oif type != local fib saddr type local
//	  meta mark set meta mark | 0x01000000 masquerade fully-random
//
// which masquerades host traffic that enters the tunnel with a local source
// other than the tunnel's own address (typically the underlay address) to
// the tunnel address, so that the remote node can route the reply (as
// Calico does); see testdata/tunnel.golden.
//
// Masquerade: traffic from a pool with NATOutgoing to a destination outside
// every pool and outside Desired.ExcludeDestinations is masqueraded with
// fully random source ports (which avoids the SNAT port race of concurrent
// UDP flows). With Desired.SNATTo it is SNAT to that address instead, UDP
// with the port range of SNATPortRange.
//
// VXLAN allow-list: UDP to the VXLAN port of this node (input hook) is
// dropped unless it comes from an address in Desired.VXLANPeers, the
// underlay addresses of the other nodes (fed from the reflector's peers).
// Conntrack is left on for VXLAN, so a reply to a translated flow is
// un-NATed in prerouting and never reaches this rule.
//
// Workload source guard: a packet arriving from a workload interface
// (Desired.Workloads) whose source is not one of that workload's addresses
// is dropped in prerouting at raw priority, before conntrack. It
// complements the veth package's rp_filter option (veth.Config.StrictRPFilter:
// strict reverse-path filtering on the host side of each veth,
// net.ipv4.conf.<veth>.rp_filter=1; the kernel applies max(all, <veth>)):
// rp_filter only checks that a reply to the source would leave through the
// same interface, so it accepts any address routed to that veth; the nft
// guard checks the exact address list and also covers pods whose routes are
// shared or missing.
//
// # The VXLAN port is never a translated source port (Calico #12244)
//
// In Calico a masqueraded flow (host traffic into the tunnel) could be given
// source port 4789; its replies, not tracked because of a NOTRACK rule for
// VXLAN, then hit the VXLAN allow-list and were dropped. The fix there is a port range without 4789.
// tabby cannot write that range for masquerade: github.com/google/nftables
// v0.3.0 encodes a masq expression either with flags or with port
// registers, never both, and without the NF_NAT_RANGE_PROTO_SPECIFIED flag
// the kernel ignores the registers. So:
//   - SNAT to a fixed address (the nat expression carries both) uses the
//     range SNATPortRange(VXLANPort) for UDP, e.g. 4790-65535.
//   - Masquerade stays fully random and tabby's rule sets PortGuardMark on
//     the packet that creates the translation. The chain nat_port_guard,
//     right after source NAT, drops such a packet if it now leaves with UDP
//     source port 4789, and otherwise clears the bit. That packet is the
//     first of its flow: its conntrack entry is not confirmed yet and is
//     destroyed with it, so the flow's next packet is translated afresh to
//     another random port. The price is one datagram in about 64,500 new
//     UDP flows; no datagram ever leaves with the VXLAN port as a
//     translated source. Other tools' translations (no mark) are not
//     touched, even if they keep an original source port 4789.
//
// TestKernelPortGuard forces a translation onto port 4789 (with and without
// the mark) to check both cases; TestKernelMasquerade checks that a pod
// sending from port 4789 leaves from another one.
//
// # Reconciling
//
// SetDesired validates (typed *ValidationError wrapping ErrInvalidPrefix,
// ErrWrongFamily, ErrNoPools, ErrInvalidInterface) and stores the state in
// memory; invalid input changes nothing. Sync reads the table back (sets,
// elements, chains, rules; a rule is recognised by its comment, which
// carries a hash of its text, and by its expressions) and sends one
// transaction:
//   - nothing differs: nothing is sent (no Flush at all);
//   - only set contents differ: just the added and removed elements;
//   - anything else differs (missing table, a changed rule or chain, a
//     foreign rule, a set of the wrong type): delete and recreate the
//     table in the same transaction.
//
// nftables applies a transaction entirely or not at all, so a failed Sync
// leaves the previous ruleset working; the next Sync retries.
//
// LastResult says what the last Sync wrote (Writes: the transaction it
// sent, 0 or 1; Rebuilt and its Reason; elements Added and Removed) and
// Totals adds it up since New, for metrics. A Sync with nothing to change,
// and a failed one, report zero writes.
//
// Each set a rebuild adds carries a transaction ID the Manager assigns
// (1, 2, ... within the transaction). nftables v0.3.0 would otherwise take
// one from an unsynchronised package-level counter, a data race between
// Managers in one process (several agents or namespaces per process);
// TestKernelConcurrentManagers checks this under -race.
//
// # Noticing changes by others (issue #15.8)
//
// A flushed ruleset (`nft flush ruleset`, a tool that rewrites nftables)
// would otherwise stay flushed until the next periodic Sync. Manager.Watch
// signals a channel once it is subscribed and then whenever tabby's ip or
// ip6 table, or a chain, rule, set or element in it, changes; a node loop
// that runs Sync on every signal restores the tables within one Sync
// (BenchmarkWatchRestore: a few milliseconds). The kernel's Watcher
// (NewWatcher, and the one Open sets up) is a netlink socket in the
// Manager's namespace subscribed to NFNLGRP_NFTABLES; it matches each
// notification by family (ip, ip6) and table name, and treats lost
// notifications (ENOBUFS) as a change. It tolerates the Manager's own
// writes rather than filtering them: each writing Sync causes one more
// signal, whose Sync finds nothing to change and writes nothing.
//
// The seam is the Watcher interface: Manager.Watch uses Config.Watcher,
// else the Conn if it implements Watcher (nattest.Conn does: a Flush that
// writes to the table, or its FlushRuleset, signals synchronously), else
// the kernel's from Open. TestWatchFake, TestKernelWatchFlushRuleset
// (the flush done through google/nftables from the test) and
// TestKernelWatchForeignRule check it.
//
// # Namespaces, seam and tests
//
// Open(fd, cfg), or New over Dial(fd), works in the network namespace fd
// refers to (nftables.WithNetNSFd); the caller's threads never change
// namespace. The
// Manager uses the Conn interface, the few *nftables.Conn methods it calls;
// nattest.Conn is an in-memory, transactional implementation for tests that
// run without root. Render prints the intended table and Dump the kernel's
// (decoded from its rule expressions), both in `nft list table` style;
// kernel tests check that they are equal.
//
// Other systems than Linux get stubs returning ErrUnsupported.
//
// # IPv6 and dual stack
//
// Desired takes both families: Pools, ExcludeDestinations, VXLANPeers and
// Workloads addresses may be IPv4 or IPv6 (SNATTo is IPv4, SNATTo6 IPv6;
// Config.TunnelInterface6 is the IPv6 tunnel device). The families among
// Pools decide which tables exist; a prefix or address of a family with no
// pool is rejected with ErrWrongFamily, and so is an IPv4-mapped IPv6
// address. The ip6 table has the same sets (type ipv6_addr, ifname .
// ipv6_addr), chains and rules with ip6 payloads (see
// testdata/dualstack.golden):
//
//	ip6 saddr @nat_pools ip6 daddr != @all_pools ip6 daddr != @nat_exclude ... masquerade fully-random
//	meta l4proto udp th dport 4789 ip6 saddr != @vxlan_peers counter drop
//	iifname @workload_ifaces ip6 saddr != :: ip6 saddr & ffc0:: != fe80::
//	  iifname . ip6 saddr != @workload_addrs counter drop
//
// Every workload interface is in both tables' workload_ifaces, so a pod
// without an address of a family can send nothing of it. The IPv6 source
// guard exempts the unspecified source (duplicate address detection) and
// link-local sources (neighbour discovery, router solicitation, MLD, and
// a pod's traffic to its gateway fe80::ecee:eeff:feee:eeee, see the
// proxyarp package): the kernel never forwards a link-local source off its
// link, so they cannot spoof another pod.
//
// Why two tables and not one inet table: the ip table is exactly what the
// IPv4-only versions before wrote, so an upgrade finds nothing to change
// and writes nothing (TestDualStackTransitions), and each table's rules are
// plain payload matches with no nfproto guard. Atomicity does not need one
// table: Sync queues the changes of both tables (element deltas, a
// rebuild of one, or the deletion of a table whose family lost its pools)
// and sends them in one Flush, one nftables transaction, applied entirely
// or not at all (TestDualStackFailedCommitChangesNeither). A rebuild
// touches only the table whose structure differs
// (TestDualStackRebuildsOnlyTheDamagedTable); Result.Reason prefixes an
// ip6 reason with "ip6: ".
//
// Kernel tests in namespaces (node, two pods, router, internet host on
// 2001:db8::/32 and fd00:10:244::/48): TestKernelMasqueradeIPv6 (ping to
// the internet host only with masquerade, the host sees the node's
// address; SNAT to a fixed IPv6 address), TestKernelVXLANAllowListIPv6,
// TestKernelWorkloadSourceGuardIPv6.
package nat
