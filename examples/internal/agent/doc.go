// Package agent is tabby's node daemon as a library: the part of
// tabby-agent (Calico's calico-node, flannel's flanneld) that turns the
// library packages into a working node. tabby-agent runs one Agent in its
// own network namespace; tabby-demo runs three in one process, one per node
// namespace, on a shared datastore.
//
// On Run an Agent
//
//   - creates the bootstrap pools if missing, claims a block affinity for
//     the node and assigns the node's VXLAN tunnel address (ipam);
//   - writes "nodename" and "mtu" to the state directory, which the CNI
//     plugins read;
//   - enables IPv4 forwarding (through Config.SysctlRoot, /proc/sys by
//     default, inside the node's namespace);
//   - announces the node through the reflector, with ipam as the validator of
//     what the peers announce, and follows the peers into the vxlan manager
//     (routes, neighbours, FDB; modes Always and CrossSubnet) and the nat
//     manager's VXLAN allow-list; in mode Never there is no VXLAN device:
//     peers on the local subnet get direct routes (direct.go), others none;
//   - keeps the masquerade rules for the natOutgoing pools and the workload
//     source guard (local pods are read back from the /32 routes on the
//     cali* interfaces);
//   - runs the userspace proxy-ARP responder on cali* interfaces, or in
//     kernel mode switches proxy_arp on for each of them;
//   - resyncs on link events, on peer changes and every ResyncInterval.
//
// When its context ends it stops the announcement: withdrawn at once, or
// left to expire after the hold time (GracefulRestart) so that peers keep
// their routes while a new agent starts. The dataplane is left as it is in
// both cases.
//
// Ready reports whether the datastore answered and the first sync is done.
// When the datastore goes away after the start, the Agent turns not ready,
// keeps retrying, and leaves the kernel as it was (the reflector withdraws
// nobody while the store is silent).
//
// It announces the addresses the node borrowed from other nodes' blocks
// too. Config.Now is the clock of IPAM records and sync timings.
//
// What it owns: nothing of its own (except, in mode Never, the same routes
// package vxlan would own); the packages it drives own their kernel
// and datastore state (vxlan: the device, routes with protocol 80, permanent
// neighbours and FDB; nat: the table "tabby"; ipam and reflector: their key
// prefixes). It writes the files nodename and mtu in the state directory
// and the sysctl net/ipv4/ip_forward.
//
// An Agent is safe for concurrent use: Stats and Ready may be called while
// Run runs.
package agent
