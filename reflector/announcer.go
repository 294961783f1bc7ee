package reflector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/datastore"
)

// Announcer keeps one node's announcement alive: with a datastore lease
// when the store has them (Reflector.Leases), with heartbeat writes
// otherwise. It is safe for concurrent use.
type Announcer struct {
	r      *Reflector
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	a        Announcement
	rev      int64 // revision of our record (0: not written)
	lease    datastore.LeaseID
	beat     uint64
	lastErr  error
	refusal  Refusal
	checked  time.Time // last own validation
	stopped  bool
	changed  chan struct{} // capacity 1: Update asks for a write now
	writes   int           // writes made (for tests and stats)
	keepAlvs int
}

// Announce writes a and keeps it alive until Stop. The first write happens
// before Announce returns (its error is returned and nothing keeps
// running); ctx bounds that write only, Stop ends the keep-alives.
//
// A record left by an earlier run of the same node is taken over: in lease
// mode, if its lease is still alive Announce keeps that lease alive and
// writes nothing at all when the content is unchanged (a graceful restart
// is invisible to watchers); if it has expired, a new lease is granted and
// the record rewritten.
//
// With a Validator, Announce then checks its own announcement the way
// watchers will: what is refused is reported by Refusal and Err (wrapping
// ErrRefused), not as Announce's error.
func (r *Reflector) Announce(ctx context.Context, a Announcement) (*Announcer, error) {
	na, err := r.prepare(a)
	if err != nil {
		return nil, err
	}
	an := &Announcer{r: r, a: na, done: make(chan struct{}), changed: make(chan struct{}, 1)}
	if r.leaser != nil {
		err = an.takeOver(ctx)
	} else {
		err = an.write(ctx)
	}
	if err != nil {
		return nil, err
	}
	an.check(ctx)
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	an.cancel = cancel
	go an.loop(lctx)
	r.log.Info("reflector: announced", "node", na.Node, "blocks", len(na.Blocks), "hold", r.cfg.HoldTime, "leased", r.leaser != nil)
	return an, nil
}

// prepare normalizes a and checks it against this Reflector's limits.
func (r *Reflector) prepare(a Announcement) (Announcement, error) {
	na, err := a.normalize()
	if err != nil {
		return na, err
	}
	if err := r.lim.check(na.Node, len(na.Blocks), len(na.Addrs)); err != nil {
		return na, err
	}
	if n := len(encodeRecord(na, r.cfg.HoldTime, 1<<62, 1<<62, time.Now())); n > r.lim.MaxRecordBytes {
		return na, fmt.Errorf("%w: %s: record of %d bytes (limit %d)", ErrTooLarge, na.Node, n, r.lim.MaxRecordBytes)
	}
	return na, nil
}

// takeOver adopts the record and lease of an earlier run, if the lease is
// still alive; otherwise it writes with a new lease.
func (an *Announcer) takeOver(ctx context.Context) error {
	key := an.r.key(an.a.Node)
	kv, err := an.r.store.Get(ctx, key)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return an.write(ctx)
	case err != nil:
		return fmt.Errorf("reflector: announce %s: %w", an.a.Node, err)
	}
	old, hold, rec, derr := decodeRecord(an.a.Node, kv.Value, an.r.lim)
	an.mu.Lock()
	an.rev = kv.Revision
	an.mu.Unlock()
	if rec.Lease == 0 {
		return an.write(ctx) // a heartbeat record: attach it to a lease
	}
	if err := an.r.leaser.KeepAlive(ctx, datastore.LeaseID(rec.Lease)); err != nil {
		if !errors.Is(err, datastore.ErrLeaseNotFound) {
			return fmt.Errorf("reflector: announce %s: %w", an.a.Node, err)
		}
		return an.write(ctx) // expired: the record is gone or going
	}
	an.mu.Lock()
	an.lease = datastore.LeaseID(rec.Lease)
	same := derr == nil && old.Equal(an.a) && hold == an.r.cfg.HoldTime
	an.mu.Unlock()
	if same {
		an.r.log.Info("reflector: took over the record of an earlier run", "node", an.a.Node, "revision", kv.Revision)
		return nil
	}
	return an.write(ctx)
}

// write puts the current announcement (with the next heartbeat number in
// heartbeat mode, attached to the lease in lease mode), creating or taking
// over the key as needed.
func (an *Announcer) write(ctx context.Context) error {
	err := an.writeOnce(ctx)
	an.mu.Lock()
	an.lastErr = err
	an.mu.Unlock()
	if err != nil {
		return fmt.Errorf("reflector: announce %s: %w", an.a.Node, err)
	}
	return nil
}

func (an *Announcer) writeOnce(ctx context.Context) error {
	an.mu.Lock()
	a, rev, lease := an.a, an.rev, an.lease
	an.mu.Unlock()
	leased := an.r.leaser != nil
	if leased && lease == 0 {
		var err error
		if lease, err = an.r.leaser.Grant(ctx, an.r.cfg.HoldTime); err != nil {
			return err
		}
	}
	key := an.r.key(a.Node)
	st := an.r.store
	var err error
	for range 4 {
		var val []byte
		an.mu.Lock()
		if !leased {
			an.beat++
		}
		val = encodeRecord(a, an.r.cfg.HoldTime, lease, an.beat, time.Now())
		an.mu.Unlock()
		var nrev int64
		if rev == 0 {
			nrev, err = st.Txn(ctx, datastore.CreateWithLease(key, val, lease))
		} else {
			nrev, err = st.Txn(ctx, datastore.UpdateWithLease(key, val, rev, lease))
		}
		switch {
		case err == nil:
			an.mu.Lock()
			an.rev, an.lease = nrev, lease
			an.writes++
			an.mu.Unlock()
			return nil
		case errors.Is(err, datastore.ErrLeaseNotFound) && leased:
			if lease, err = an.r.leaser.Grant(ctx, an.r.cfg.HoldTime); err != nil {
				return err
			}
			continue
		case errors.Is(err, datastore.ErrExists), errors.Is(err, datastore.ErrConflict):
			// An earlier run of ours wrote it, a peer collected it, or our
			// lease expired: read what is there and retry.
			kv, gerr := st.Get(ctx, key)
			switch {
			case gerr == nil:
				rev = kv.Revision
			case errors.Is(gerr, datastore.ErrNotFound):
				rev = 0
			default:
				err = gerr
				an.mu.Lock()
				an.rev, an.lease = rev, lease
				an.mu.Unlock()
				return err
			}
			continue
		}
		break
	}
	an.mu.Lock()
	an.rev, an.lease = rev, lease
	an.mu.Unlock()
	return err
}

// keepAlive renews the lease; if it has expired, the record is written
// again with a new lease.
func (an *Announcer) keepAlive(ctx context.Context) error {
	an.mu.Lock()
	lease := an.lease
	an.mu.Unlock()
	if lease != 0 {
		err := an.r.leaser.KeepAlive(ctx, lease)
		if err == nil {
			an.mu.Lock()
			an.keepAlvs++
			an.lastErr = nil
			an.mu.Unlock()
			return nil
		}
		if !errors.Is(err, datastore.ErrLeaseNotFound) {
			an.mu.Lock()
			an.lastErr = err
			an.mu.Unlock()
			return fmt.Errorf("reflector: keep %s alive: %w", an.a.Node, err)
		}
		an.r.log.Warn("reflector: lease expired; announcing again", "node", an.a.Node)
		an.mu.Lock()
		an.lease = 0
		an.mu.Unlock()
	}
	return an.write(ctx)
}

func (an *Announcer) loop(ctx context.Context) {
	defer close(an.done)
	every := an.r.cfg.HeartbeatInterval
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		write := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-an.changed:
			write = true
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		wctx, cancel := context.WithTimeout(ctx, every)
		var err error
		switch {
		case an.r.leaser == nil || write:
			err = an.write(wctx)
		default:
			err = an.keepAlive(wctx)
		}
		if err == nil {
			an.mu.Lock()
			recheck := write || (!an.refusal.Empty() && time.Since(an.checked) >= every)
			an.mu.Unlock()
			if recheck {
				an.check(wctx)
			}
		}
		cancel()
		next := every
		if err != nil && ctx.Err() == nil {
			an.r.log.Warn("reflector: keep-alive failed", "node", an.a.Node, "err", err)
			next = max(every/4, time.Millisecond)
		}
		t.Reset(next)
	}
}

// check validates the node's own announcement the way watchers do.
func (an *Announcer) check(ctx context.Context) {
	v := an.r.cfg.Validator
	if v == nil {
		return
	}
	an.mu.Lock()
	a := an.a
	an.mu.Unlock()
	_, ref := an.r.validate(ctx, a)
	an.mu.Lock()
	an.refusal, an.checked = ref, time.Now()
	an.mu.Unlock()
	if !ref.Empty() {
		an.r.warn.warn(a.Node, "own announcement refused", "reflector: the Validator refuses part of this node's announcement",
			"refused", strings.Join(ref.Reasons, "; "))
	}
}

// Update changes what is announced; it is written at once (the write
// happens in the background; Err reports its failure, Refusal what the
// Validator refuses of it).
func (an *Announcer) Update(a Announcement) error {
	na, err := an.r.prepare(a)
	if err != nil {
		return err
	}
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.stopped {
		return ErrStopped
	}
	if na.Node != an.a.Node {
		return fmt.Errorf("%w: announcer for %s cannot announce %s", ErrInvalidAnnouncement, an.a.Node, na.Node)
	}
	an.a = na
	select {
	case an.changed <- struct{}{}:
	default:
	}
	return nil
}

// Err returns the error of the last write or keep-alive if it failed;
// otherwise, if the Validator refuses part of the announcement, an error
// wrapping ErrRefused that says what (see Refusal); otherwise nil.
func (an *Announcer) Err() error {
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.lastErr != nil {
		return an.lastErr
	}
	if !an.refusal.Empty() {
		return fmt.Errorf("reflector: %s: %w: %s", an.a.Node, ErrRefused, strings.Join(an.refusal.Reasons, "; "))
	}
	return nil
}

// Refusal returns what the Validator refused of this node's announcement
// at its last check (the zero Refusal if nothing, or without a Validator).
// Watchers with the same Validator refuse the same. Conflicts with other
// nodes (see Snapshot.Refused) are seen by watchers, not here.
func (an *Announcer) Refusal() Refusal {
	an.mu.Lock()
	defer an.mu.Unlock()
	return an.refusal.clone()
}

// Stop ends the keep-alives. Without graceful the announcement is deleted
// at once (and its lease revoked) and peers withdraw the node's routes now;
// with graceful it is left in place and expires after the hold time, unless
// the node's next run announces again first (a restart that does not
// black-hole traffic: in lease mode the next run adopts the lease and
// writes nothing).
func (an *Announcer) Stop(ctx context.Context, graceful bool) error {
	an.mu.Lock()
	if an.stopped {
		an.mu.Unlock()
		return nil
	}
	an.stopped = true
	an.mu.Unlock()
	an.cancel()
	<-an.done
	if graceful {
		an.r.log.Info("reflector: stopped gracefully; announcement expires after hold time", "node", an.a.Node)
		return nil
	}
	an.mu.Lock()
	rev, node, lease := an.rev, an.a.Node, an.lease
	an.mu.Unlock()
	if rev == 0 {
		return nil
	}
	err := an.r.store.Delete(ctx, an.r.key(node), rev)
	switch {
	case err == nil, errors.Is(err, datastore.ErrNotFound):
		an.r.log.Info("reflector: withdrawn", "node", node)
	case errors.Is(err, datastore.ErrConflict):
		// A newer run of this node owns the key (and maybe our lease) now.
		return nil
	default:
		return fmt.Errorf("reflector: withdraw %s: %w", node, err)
	}
	if lease != 0 {
		if err := an.r.leaser.Revoke(ctx, lease); err != nil && !errors.Is(err, datastore.ErrLeaseNotFound) {
			return fmt.Errorf("reflector: withdraw %s: revoke lease: %w", node, err)
		}
	}
	return nil
}
