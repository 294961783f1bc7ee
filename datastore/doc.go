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
package datastore
