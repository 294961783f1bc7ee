// Package node runs one node of a tabby cluster: the loop that ties the
// library's packages into working pod networking, as calico-node or
// flanneld do. It is the one package that imports the others; tabby-agent
// and tabby-demo are thin mains on it, and an embedder runs a node in about
// twenty lines:
//
//	k, _ := node.OpenKernel("", "")          // this namespace's real kernel
//	defer k.Close()
//	n, _ := node.New(node.Config{
//		Name: "worker1", NodeIP: netip.MustParsePrefix("10.4.7.61/24"), Uplink: "ens33",
//		Store: store, Kernel: k, NATOutgoing: true,
//	})
//	go n.Run(ctx)
//	<-n.Started()
//	res, _ := n.AddPod(ctx, node.Pod{Key: veth.WorkloadKey("default", "pod-a"), NetNS: "/var/run/netns/pod-a"})
//
// # What Run does
//
//   - creates the bootstrap pools if missing, claims a block for the node
//     and assigns the node's VXLAN tunnel address (ipam);
//   - enables IPv4 forwarding (through Kernel.Sysctl) and, with
//     Config.StateDir, writes the files nodename and mtu that tabby's CNI
//     plugin reads;
//   - makes vxlan.calico (VXLANAlways, VXLANCrossSubnet) or, in VXLANNever,
//     direct routes to peers on the local subnet;
//   - announces the node through the reflector, with IPAM as the Validator
//     of what peers announce, and follows the peers into the vxlan manager
//     (routes, permanent neighbours and FDB entries; VXLANPeers converts)
//     and nat's VXLAN allow-list;
//   - keeps nat's masquerade of the pools marked NATOutgoing and the
//     workload source guard (local pods are read back from the kernel:
//     Workloads);
//   - answers the pods' ARP for 169.254.1.1 (the userspace responder, or
//     the kernel's proxy_arp);
//   - resyncs on peer changes, on kernel events (Kernel.Events,
//     nat.Manager.Watch on Kernel.NATWatcher), after AddPod and DeletePod, when its blocks change
//     and every ResyncInterval. A sync with nothing to do writes nothing.
//
// When its context ends Run stops the announcement and returns; the
// dataplane stays as it is. By default the announcement is kept for the
// hold time (graceful restart): peers keep the routes, and a node that
// runs again within it writes nothing and loses no packet. WithdrawOnStop
// (tabby-agent --withdraw-on-stop, tabbyctl node withdraw) withdraws the
// node for good.
//
// # The kernel seam
//
// Everything kernel-facing goes through a Kernel: netlink, sysctls,
// nftables, proxy ARP's packet sockets, checksum offload and change
// notifications. OpenKernel fills it for a real namespace. nodetest.NewKernel
// fills it with the in-memory fakes (netlinktest, nattest, proxyarptest), so
// a whole cluster runs in a unit test without any privilege — nothing a
// fake Kernel is given reaches the host.
//
// # Health
//
// Ready is nil once the datastore answered and the first sync is done.
// When the datastore goes away after the start the Node turns not ready,
// keeps retrying and leaves the kernel as it was (the reflector withdraws
// nobody while the store is silent). Stats is a snapshot of state and
// counters for metrics.
//
// # What it owns
//
// Nothing of its own beyond what the packages it drives own (vxlan: the
// device, routes with protocol 80, permanent neighbours and FDB; veth: the
// pods' cali* interfaces and /32 routes; nat: the table "tabby"; ipam and
// reflector: their key prefixes), plus, in VXLANNever, the same routes
// package vxlan would own, the sysctl net/ipv4/ip_forward and the files in
// Config.StateDir.
//
// A Node is safe for concurrent use: Stats, Ready, AddPod and DeletePod may
// be called while Run runs.
package node
