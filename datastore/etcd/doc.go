// Package etcd is the many-host datastore.Store on an etcd v3 cluster
// (go.etcd.io/etcd/client/v3). It owns its client connection; the data
// lives in etcd, optionally under Config.Prefix.
//
// Revisions are etcd's: KV.Revision is a key's mod revision and every
// Create, Update, Delete and Txn is one etcd transaction comparing create
// revision 0 (OpCreate) or the mod revision (the others), so a write is
// applied entirely or not at all.
//
// Every request is bounded by the caller's context and Config.RequestTimeout
// (default 10s); a cluster that cannot be reached in time gives
// ErrUnavailable, never a hang. A request that never reached etcd wrote
// nothing. One that timed out after etcd received it may have been applied,
// but only entirely: retrying the same conditional write then fails with
// ErrConflict or ErrExists, so callers re-read and decide, as after any
// conflict.
//
// Watch rides on an etcd watch, which the client re-establishes after a
// disconnection and resumes from the last delivered revision. When etcd
// compacted the revisions the watch still needs, the watch reports
// ErrCompacted (from Watch itself, or as the last Event) and the caller lists
// again. Compact runs etcd's compaction.
//
// The package etcdtest starts a real embedded etcd for tests.
package etcd
