// Package datastore defines the key-value interface with revisions that
// tabby's ipam and reflector packages are written against, and the errors
// every implementation returns.
//
// It owns no data. Implementations live in their own packages so that a user
// pays only for the one it imports:
//
//   - datastore/memory: in-process, for tests and single-process embedders.
//   - datastore/bolt: the embedded one-host default (a bbolt file shared by
//     the CNI plugin processes and the agent).
//   - datastore/etcd: many hosts.
//
// Every write is conditional: Create fails if the key exists, Update and
// Delete name the revision they expect, and Txn applies several such
// operations atomically. Watch follows a prefix from a revision returned by
// List, so list-then-watch neither misses nor repeats a change.
//
// Conventions every implementation follows (the storetest package checks
// them):
//
//   - Revisions are store-wide. One transaction (or one Create, Update or
//     Delete) takes exactly one new revision, shared by all its changes; a
//     transaction that only checks takes none. A new store may start at 0.
//   - Watch(ctx, prefix, after) reports ErrCompacted either as its own error
//     (the history is already gone when it is called) or later as the Err of
//     the last Event (the watcher fell behind or the store compacted): in both
//     cases the caller lists again and watches from the list's revision.
//     after = 0 means "from the first revision".
//   - Update and Delete need a revision >= 1, Check >= 0; a malformed key,
//     prefix, op, a duplicate key in one Txn, more than MaxTxnOps ops or a
//     value larger than MaxValueSize is ErrInvalid (see ValidateOps), and
//     nothing is written.
//   - A Txn reports a missing key for OpUpdate or OpDelete as ErrConflict;
//     Update and Delete on their own report it as ErrNotFound.
//   - Values are copied: callers may reuse the slices they pass and modify
//     the ones they receive.
//   - A call whose context has ended fails with an error wrapping ctx.Err()
//     and writes nothing. When a store gave up waiting for a server or a
//     lock (etcd, bolt) the error also wraps ErrUnavailable.
//
// # Leases
//
// Leaser is an optional capability (detect it with a type assertion):
// Grant a lease with a TTL, attach keys to it with Op.Lease
// (CreateWithLease, UpdateWithLease), KeepAlive it, Revoke it. When it
// expires the store itself deletes its keys, with a delete event to every
// watcher; granting and keeping alive write nothing that watchers see.
// etcd implements it natively (v3 leases), memory with timers, bolt in the
// file, so that every process sharing the file shares the leases.
package datastore
