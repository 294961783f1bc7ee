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
// Hold lets a process that makes a few operations in a row (the CNI
// plugin's assignment: handle lookup, pools, block reads, commit) take the
// exclusive lock and open, validate and map the file once for all of them.
// Each operation is still its own transaction and each write is committed
// and synced before it returns; other processes wait for the whole Hold.
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
//
// # Failure model: a corrupt store
//
// Every operation validates the file before bbolt maps it: it must exist,
// be non-empty, have a valid meta page (magic, version, checksum, page ids
// below the high water mark), reach the size that meta page implies, and
// have sane root and freelist page headers. A store is created only where
// no file (and no backup) exists, built under a temporary name and renamed
// into place; an existing empty, truncated or damaged file, a file removed
// while open, a record shorter than its 8-byte header, and a file that
// cannot be written (read-only, immutable) are datastore.ErrCorrupt:
// nothing is written, retrying does not help, and the store is never
// silently re-initialised. A panic or memory fault inside bbolt (a damaged
// page the cheap checks cannot see, or a file truncated by another program
// while an operation has it mapped) is recovered on the operation's
// goroutine and reported as ErrCorrupt instead of killing the process.
// Check (run by `tabbyctl ipam check`) walks every page of a copy of the
// file before bbolt's own consistency check and this package's invariants,
// and also fails on one damaged meta page (which normal operations tolerate,
// as bbolt does after a torn meta write).
//
// When the last backup is older than Options.BackupInterval (default 1h),
// Open runs Check and, if the file is healthy, snapshots it to path+".bak";
// a file that fails Check fails Open. To recover, stop the agent, run
// `tabbyctl ipam restore` (Restore: it verifies the backup, moves the damaged
// file aside as path+".corrupt-<time>", installs the snapshot with a revision
// past every revision already handed out, and empties the change log so
// watchers list again), then `tabbyctl ipam check --fix` and a GC pass:
// allocations made after the snapshot are missing from it until the pods'
// next CNI ADD or CHECK. What is not handled: damage inside a data page that
// still decodes (a flipped bit in a value) is only as detectable as the
// record format makes it, and a file truncated while bbolt's own Check
// goroutine is reading it can still crash the process.
package bolt
