// Package reflector is tabby's BGP-less route reflector: every node writes
// one announcement (underlay address, tunnel address, VTEP MAC, pod blocks,
// borrowed addresses) into the datastore and watches everyone else's. The
// datastore is the reflector: each node holds one watch on one prefix, and
// there is no mesh of connections between nodes.
//
// # What the package owns
//
// The keys under Config.Prefix (default "/tabby/v1/reflector/nodes/"), one
// per node, named after the node. The value is versioned JSON (field
// "version"; the prefix carries the schema version too).
//
// # Liveness
//
// An Announcer heartbeats (every HoldTime/3 by default): each heartbeat is
// a write, so every watcher sees a new revision. A watcher withdraws a node
// it has not heard from within the node's hold time (written in its record;
// default 30 s), judged on the watcher's own clock so clock skew between
// nodes does not matter, and deletes the expired record (compare-and-swap
// on its revision, so a racing heartbeat wins): any live watching node
// collects garbage. This works on every datastore.Store; no etcd lease is
// needed. Stop(graceful=false) withdraws at once; Stop(graceful=true)
// leaves the record to expire after the hold time, so a restarting agent
// that announces again in time never disappears. While the store cannot be
// reached nobody is withdrawn.
//
// # Validation
//
// A Validator (wired by the examples to ipam) decides whether a node owns
// the blocks (affine) and addresses (assigned) it announces. What it does
// not own is dropped with a logged reason; a node whose tunnel address is
// not its own is ignored altogether. The package never imports ipam.
//
// Heartbeats cost every watcher one event per node per interval; at
// thousands of nodes raise HoldTime (and with it the interval).
package reflector
