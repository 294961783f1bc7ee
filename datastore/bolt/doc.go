// Package bolt is the embedded, one-host datastore.Store: one bbolt file
// (default /var/lib/tabby/tabby.db, mode 0600, parent directory created with
// mode 0700) shared by the agent and every CNI plugin invocation on the
// host. No server runs.
//
// It owns the database file and its lock file (path + ".lock").
//
// # Sharing one file between processes
//
// bbolt allows one writer per file and locks it with flock for as long as
// it is open, so a long-lived agent that kept it open would block every CNI
// plugin. Instead each operation (Get, List, Txn, a watch's read of the
// change log) opens the file, runs one bbolt transaction and closes it:
//
//  1. Within a process, a first-come-first-served semaphore admits one
//     writer or several readers (Get, List, watch reads) at a time.
//  2. Across processes, writers take an exclusive and readers a shared
//     flock on path+".lock". The wait blocks in the kernel, so the next
//     process runs as soon as the holder unlocks (bbolt's own lock polls
//     every 50ms), and it is bounded by the caller's context deadline and
//     Options.LockTimeout (default 10s). Running out is ErrUnavailable and
//     nothing is written. On Windows the lock is a LockFileEx byte-range
//     lock (one byte at offset 1<<32 of the lock file, so that the
//     published revision stays readable) with the same semantics. Other
//     systems without flock report errors.ErrUnsupported.
//  3. The file is opened (read-only for readers), the transaction runs and
//     commits (fsync), the file is closed, and the lock released.
//
// An operation holds the lock for the time of one small transaction (well
// under a millisecond plus the fsync), so processes wait on each other only
// briefly. A process killed at any point leaves a consistent file: bbolt
// commits copy-on-write and the kernel drops a dead process's flock.
// Check verifies a file (bbolt's page check plus this package's invariants).
//
// # Revisions and watch
//
// The store revision is kept in a "meta" bucket; each key's value is stored
// with the revision of its last change. Every write also appends its events
// to a change log bucket keyed by revision, trimmed to about
// Options.LogSize events (whole revisions at a time). A Watch reads that
// log: immediately after a write through the same Store, and otherwise when
// the revision that every writer publishes in the first 8 bytes of the lock
// file moves, which it polls every Options.PollInterval without taking the
// lock. A watch whose position was trimmed from the log gets ErrCompacted.
package bolt
