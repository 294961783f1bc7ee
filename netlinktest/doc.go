// Package netlinktest is an in-memory Linux kernel for tests: a fake machine
// made of network namespaces, whose handles answer the *netlink.Handle
// methods tabby's packages use with the same signatures and the same
// answers as the real kernel. It never touches the host.
//
// # Using it in your tests
//
// Code that programs the kernel should declare a small interface listing
// the *netlink.Handle methods it calls, with identical signatures, and take
// a value of it; production passes a *netlink.Handle (from
// netlink.NewHandleAt), tests pass a *Kernel:
//
//	type Netlink interface {
//		LinkByName(string) (netlink.Link, error)
//		RouteReplace(*netlink.Route) error
//	}
//	var _ Netlink = (*netlink.Handle)(nil)          // in package code
//	var _ Netlink = (*netlinktest.Kernel)(nil)      // in a _test.go file
//
// New returns a machine and a handle on its initial namespace.
// NewNamespace adds a namespace bound at a path (like `ip netns add`) and
// NamespaceAt opens one by path, so code that opens pod namespaces by path
// can take an opener function and be given k.NamespaceAt in tests. Fd
// names a namespace for netlink.NsFd in Veth.PeerNamespace,
// LinkAttrs.Namespace and LinkSetNsFd; fake descriptors only mean something
// to handles of the same machine.
//
// Sysctl and SetSysctl have the method names of internal/sysctl, so code
// can take either through a two-method interface. LinkSubscribe works like
// netlink.LinkSubscribeAt.
//
// Test by state, not by call sequences: Dump renders the whole machine as
// sorted text for golden files; Writes counts successful mutating calls (a
// reconcile that has nothing to do must make zero); FailNth makes the n-th
// next call of a method (or of any mutating method, op "") fail with an
// errno and change nothing, so a loop over n proves that a multi-step
// operation cleans up after a failure at every step.
//
// # Fidelity
//
// Every behaviour below is checked against the real kernel by the contract
// suite in this package (contract_test.go, contract6_test.go,
// differential_test.go): one set of checks runs on the fake always and, as
// root, on Linux in throwaway namespaces (`sudo go test ./netlinktest -run
// 'TestContract|TestDifferential'`; TABBY_KERNEL_TESTS=1 turns a missing
// root into a failure). Where they differ the fake is wrong. In particular:
//
//   - Errors are the bare errno values netlink returns (EEXIST, ENODEV,
//     ESRCH, ENETUNREACH, ENETDOWN, EADDRNOTAVAIL, ERANGE, ...), typed
//     syscall.Errno (which unix.Errno aliases on Linux) and with their Linux
//     numbers on every system, or the
//     errors netlink itself makes (netlink.LinkNotFoundError from
//     LinkByName and LinkByIndex, "LinkAttrs.Name cannot be empty").
//
//   - Links come back as *netlink.Veth, *netlink.Vxlan, *netlink.Bridge,
//     *netlink.Dummy or *netlink.Device (lo) with the attributes the kernel
//     fills: index, name, MTU, TxQLen (netlink sends 0 for a LinkAttrs{}
//     literal), MAC, flags (up, running when there is carrier), OperState
//     (up, down, lower-layer-down, unknown), ParentIndex (the veth peer's
//     index), NetNsID (the id the link's namespace gives the peer's
//     namespace; -1 in the same one), MasterIndex, Alias. A link argument is
//     resolved like netlink does: by Index, or by Name when Index is 0 (and
//     the found index is stored in the argument).
//
//   - Addresses install the kernel's routes: the local route (table local)
//     always, the prefix and broadcast routes while the link is up;
//     secondaries, deleting a primary with its secondaries. IPv6: the scope
//     comes from the address, every address gets its prefix route (also
//     /128), addresses are flushed on link down, and a link with carrier
//     gets its EUI-64 link-local address, fe80::/64 and ff00::/8 (without
//     duplicate address detection: never tentative).
//
//   - Routes: EEXIST when (table, destination, TOS, metric) is taken, for
//     any protocol; replace overwrites that slot; delete matches every field
//     the request carries, the scope always (netlink sends 0 = universe), and
//     gives ESRCH; gateways must be covered by a link-scope route on the
//     device unless onlink (ENETUNREACH); down devices refuse routes
//     (ENETDOWN); link down removes every route through the link but the
//     local ones, link delete removes all; RTNH_F_LINKDOWN is reported while
//     the device is up without carrier.
//
//   - Neighbours: add/set/append semantics (append does not override a
//     valid entry); carrier loss keeps only permanent ones, link down and a
//     MAC change flush them all; FDB entries on vxlan
//     devices (Family AF_BRIDGE, NTF_SELF): one remote per unicast MAC, more
//     with NeighAppend on the all-zeros MAC, permanent ones survive link
//     down, EOPNOTSUPP for NeighSet on the all-zeros entry.
//
//   - Vxlan: attributes kept as given, kernel defaults (port 8472, ageing
//     300, UDP checksums on), MTU taken from the lower device minus 50 and
//     clamped to it, EEXIST for a second device with the same VNI and port,
//     deleted with its lower device.
//
//   - Sysctls: the keys and defaults of a fresh namespace on Linux 6.18; a
//     link's keys exist while it does, start from conf/default, follow
//     renames; all/forwarding propagates.
//
//   - Bridges: carrier from their ports (and on before the first port),
//     operstate, MTU following the smallest port unless set by hand.
//
//   - Listing order: links by index, IPv4 addresses primaries first, IPv6
//     addresses global before link-local and newest first, routes in fib
//     trie / fib6 tree order (neighbours are sorted; the kernel's order is
//     its hash order).
//
//   - Namespaces: deleting one deletes its links, and with them their veth
//     peers elsewhere and every route through those.
//
// Not modelled: duplicate address detection and neighbour timers and
// resolution (the fake shows settled state at once, where the kernel gets
// there asynchronously: carrier, operstate, RTNH_F_LINKDOWN, IPv6 local
// routes), per-device multicast FDB entries of non-vxlan devices, the
// default FDB entry of a vxlan device made with a remote or group, multipath
// routes, policy rules, traffic. The kernel may send several link updates
// for one change where the fake sends one. Dummy devices follow the
// kernel's driver but cannot be checked on kernels without the dummy
// module. Off Linux the package builds (Linux semantics) but has no
// LinkSubscribe.
//
// A Kernel is safe for concurrent use: all handles of a machine share one
// lock. The fake is deterministic: the same calls give the same state,
// indexes and generated MAC addresses.
package netlinktest
