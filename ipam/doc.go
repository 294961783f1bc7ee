// Package ipam is tabby's block IP address management: pools carved into
// blocks, blocks affine to hosts (so that one route per block reaches a
// node), addresses allocated to handles, and garbage collection. It is a
// library over a datastore.Store; it runs unchanged on the memory store (one
// process), the bolt store (one host, several processes) and etcd (a
// cluster), and imports nothing but package datastore.
//
// # What it owns
//
// Every key under its prefix (Config.Prefix, default "tabby/ipam/") in the
// store. Values are JSON, except blocks, which are read and written on every
// assignment and use a compact versioned binary form (first byte 0xB1; see
// blockcodec.go):
//
//	tabby/ipam/pools                        all pools, in one record
//	tabby/ipam/blocks/<pool>/<addr>-<bits>  one block: affinity, free list,
//	                                        allocations (handle, host,
//	                                        attributes, time, sequence)
//	tabby/ipam/hosts/<host>                 the host's block affinities
//	                                        (pending or confirmed)
//	tabby/ipam/handles/<handle>             the addresses a handle holds
//	                                        (pool, block, address, sequence)
//
// For example worker1's block in the seed is
// "tabby/ipam/blocks/default/10.244.235.128-26".
//
// # How it stays correct
//
// Every change is one datastore transaction conditioned on the revisions it
// read: an assignment updates its blocks and its handle together and checks
// that the pools record did not change; a release updates the blocks and
// the handle together. A lost race is retried after a random, growing delay,
// at most Config.MaxRetries times (then ErrContention). A process killed at
// any point therefore leaves either the whole change or none of it.
//
// Claiming a block is two steps (pending, then confirmed; see
// IPAM.ClaimBlock). The block record is created conditionally, so two hosts
// never hold the same block, on any store. A claim probes a bounded number
// of random candidate blocks with single reads before it lists the pool, so
// its cost stays flat as the cluster grows; the host record means a host's
// blocks, and a handle record means a handle's addresses, are one read
// away. No assignment or release lists blocks, except borrowing when a host
// cannot get a block of its own.
//
// Within a block the address that has been free the longest is handed out
// first, and each allocation carries a sequence number so that a stale
// release (Release.Seq) cannot free an address that was reused. Every
// address of a block is usable. The first address of a host's first block
// of each family is its VXLAN tunnel address (as in the seed: 10.244.235.128
// on worker1) whatever the order of calls: until AssignTunnelAddress has
// run for that family, AutoAssign hands that address out only when nothing
// else is left. Assigned.NewBlock says when an assignment claimed a block.
//
// An IPAM keeps one thing in memory: the pools record its last assignment
// read. Assignments check its revision in their transaction, so a stale copy
// only costs a retry. A host's record also marks blocks seen full, so that
// an assignment reads a block with room first instead of every block the
// host holds.
//
// # Nodes that leave
//
// IPAM.ReleaseHost cleans up after a node removed from the cluster for
// good: its tunnel address is freed, its empty blocks are deleted, the
// blocks that still hold addresses lose their affinity (the addresses stay
// valid until their handles are released; GC then frees the emptied
// blocks), and its host record goes. GC does the same for every host not
// in GCOptions.LiveHosts, so that Check with the same list reports no
// unknown host. It is conditional like everything else: an assignment for
// the node racing the release never leaves a block affine to the node that
// the node's record does not list.
//
// # Damage and repair
//
// Check reports every inconsistency; Repair fixes each one, treating the
// blocks as the source of truth (handle and host records are rebuilt from
// them, a corrupt block from the handles that name it), so that no live pod
// loses its address. Releases never get stuck on a damaged record: ReleaseIPs
// frees an address whose handle record is corrupt, and ReleaseByHandle of a
// corrupt handle finds its addresses in the blocks. Pools that cannot carry
// pod traffic (loopback, multicast, link-local, unspecified, reserved) are
// refused before anything is written.
//
// # The reflector's validator
//
// Owns has the signature of reflector.Validator.Owns (ipam does not import
// reflector): it checks an announcement's blocks and addresses against IPAM
// with a bounded number of reads whatever its size, and refuses with
// ErrNotOwned. BorrowedAddrs lists what a node must announce besides its
// blocks. Trust model: anyone who may write the datastore can write IPAM
// records too, so Owns protects against mistakes and against a node that may
// only announce, not against a datastore writer.
//
// Pools, blocks and assignment work for IPv4 and IPv6 alike
// (AutoAssignArgs.Num4 and Num6); IPv4 is what the rest of tabby uses end to
// end today.
package ipam
