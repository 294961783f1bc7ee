// Package nlbatch sends rtnetlink writes many to a system call.
//
// A Conn puts the requests of a batch into one sendmsg, each with its own
// sequence number and NLM_F_ACK, and reads the acknowledgements back; the
// kernel handles the messages of one send in order, exactly as if they had
// been sent one at a time, and answers each one. What is saved is the two
// system calls and the wake-up per write: at 15,000 writes (5,000 VXLAN
// peers) that is most of the user-space cost of a first sync.
//
// It encodes only the shapes tabby writes (unicast and blackhole routes in
// a table, with a gateway, an output interface, the onlink flag and a
// protocol; neighbour and FDB entries with a state, flags and a link-layer
// address), field for field as github.com/vishvananda/netlink encodes them,
// and refuses anything else with ErrUnsupported rather than dropping a
// field. Sequential does the same writes through any netlink-like value,
// one call each, for fakes.
//
// Owned here: the batching socket and the encoding. Not owned: what to
// write (the vxlan Manager decides).
package nlbatch
