// Package explain walks through one pod's networking the way the seed's
// questions do, on live kernel state: the pod's veth pair and the peer
// indexes that pair it (Q4), its /32 address and the 169.254.1.1 routes
// (Q5), who answers 169.254.1.1 and with which MAC (Q5), the host's /32
// route to it (Q6) and, for a destination, the path a packet takes: a
// local pod's route (Q6), the block route via the peer's tunnel address
// with its permanent neighbour and FDB entry (Q7), a direct route
// (CrossSubnet), or masquerade when it leaves the pools (Q8).
//
// Each step is a Check that passes or fails and names the kernel object
// behind it, so a Report reads as a diagnosis (text) and parses as data
// (JSON). It only reads: netlink lists through the Netlink seam (a
// *netlink.Handle or a *netlinktest.Kernel), the nat rules as text, and an
// optional ARP probe (ProbeARP sends one ARP request from inside the pod's
// namespace). tabbyctl explain and tabby-demo use it; it owns nothing.
//
// Functions are safe for concurrent use when their Netlink values are.
package explain
