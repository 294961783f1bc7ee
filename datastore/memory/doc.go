// Package memory is an in-process datastore.Store: a sorted tree of keys
// with store-wide revisions, atomic transactions and watches, for tests and
// for programs that keep their state in one process.
//
// It owns the keys and a bounded history of changes (Options.HistorySize
// events). Watch can start from any revision still in the history; an older
// one fails with datastore.ErrCompacted. Every watcher reads the shared
// history at its own pace: writers never wait for watchers, and a watcher
// that falls behind the history receives an Event with ErrCompacted, after
// which it lists again and watches from the list's revision.
//
// Each transaction (and each Create, Update or Delete) takes one new
// revision; a transaction's changes are delivered to watchers with that same
// revision, in the order of its ops. Values are copied in and out: callers
// may modify the slices they pass or receive.
//
// The package imports nothing but the standard library and datastore.
package memory
