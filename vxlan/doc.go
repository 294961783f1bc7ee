// Package vxlan programs a node's VXLAN tunnel endpoint and the per-peer
// state that lets pods on different nodes reach each other (the seed's Q7):
// for every other node, a route for each of its blocks via its tunnel
// address on the VXLAN device, a permanent neighbour entry (tunnel address
// -> VTEP MAC) and a permanent FDB entry (VTEP MAC -> underlay address).
//
// A Manager handles one address family. SetPeers and SetLocalBlocks only
// record the desired state; Sync lists what the kernel holds, diffs it
// against that state and writes only the difference: a Sync with nothing to
// change makes zero kernel writes, one new peer with one block makes three
// (FDB entry, neighbour, then the route, so the kernel never ARPs for the
// gateway; FDB first so that a peer's new MAC is reachable before the
// neighbour points at it). Stale entries are removed even when an earlier run left them.
//
// # What the package owns
//
//   - The device Config.Device (default "vxlan.calico"; "vxlan-v6.calico"
//     for IPv6): VNI 4096, UDP port 4789, the parent device and local
//     underlay address, learning off, MTU parent-50 (IPv6 underlay: -70),
//     the tunnel address as /32 (/128), up, and a VTEP MAC that is given or
//     derived from the node name (MACFromName), so it is stable across
//     restarts. An incompatible device is replaced; MTU, MAC, address and
//     down state are repaired in place. Every address on it is its own.
//   - Every permanent neighbour entry and every permanent FDB entry (AF_BRIDGE,
//     NTF_SELF, with a destination) on that device.
//   - Routes in the main table with protocol Config.RouteProtocol (default
//     80, as Calico's felix) that are blackhole routes, go through the
//     device, or have a gateway. Routes with that protocol, no gateway and
//     another device (veth's per-pod /32 routes) are not the package's.
//
// Modes: Always encapsulates to every peer (`<block> via <tunnel ip> dev
// vxlan.calico onlink`); CrossSubnet routes peers inside the local underlay
// subnet directly (`<block> via <node ip> dev <parent>`, no neighbour, no
// FDB). The node's own blocks get blackhole routes so unassigned addresses
// of a local block never leak to the default route; local pods' /32 routes
// win by longest prefix.
//
// The checksum-offload workaround (Config.ChecksumOffload) turns TX checksum
// offload off on kernels up to 5.7 with the SIOCETHTOOL ioctl, run inside
// the device's namespace; no binary is executed.
package vxlan
