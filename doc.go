// Package tabby is a library for embedding Calico-style pod networking in
// VXLAN mode, without BGP, in other programs.
//
// The root package holds no code; it is the map of the module:
//
//	datastore/          KV with revisions: get, list, create, compare-and-swap,
//	                    delete, transactions and watch.
//	  memory/           in-process store (tests, single process)
//	  bolt/             embedded one-host default, shared safely by processes
//	  etcd/             many hosts
//	ipam/               pools cut into blocks with per-node affinity, handles,
//	                    borrowing and garbage collection          -> datastore
//	reflector/          BGP-less route reflection: every node announces its VTEP
//	                    and blocks and watches the others, with liveness -> datastore
//	veth/               pod plumbing: veth pair, /32 address, the 169.254.1.1
//	                    gateway, host routes
//	proxyarp/           userspace proxy-ARP responder (and the kernel sysctl mode)
//	vxlan/              the VTEP device and per-peer routes, neighbours and FDB
//	                    entries, reconciled
//	nat/                masquerade and the VXLAN ingress allow-list in nftables
//	netlinktest/        an in-memory kernel (fake netlink) for tests without root
//	examples/           a complete CNI assembled from the packages above
//
// Library packages never import each other, except ipam and reflector which
// import datastore. Code that talks to the kernel does so through a small
// interface per package listing the *netlink.Handle methods it calls, which
// both *netlink.Handle and *netlinktest.Kernel satisfy.
//
// Linux is the only dataplane target. See DESIGN notes in the README.
package tabby
