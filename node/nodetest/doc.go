// Package nodetest runs a node.Node on the in-memory fakes: netlinktest for
// links, routes, neighbours, FDB and sysctls, nattest for nftables,
// proxyarptest for proxy ARP's packet sockets. Nothing it hands out
// touches the host, so tests of code that embeds a Node (a three-node
// cluster on one memory datastore, say) run without any privilege.
//
// It owns nothing in the kernel. Linux only, like nattest.
package nodetest
