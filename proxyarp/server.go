package proxyarp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"time"
)

// readBufLen is larger than any ARP frame so that padded or tagged frames
// are read whole; longer frames are truncated by the kernel and still
// parsed by their first 42 bytes.
const readBufLen = 256

// maxReadFailures consecutive read errors end an interface server.
const maxReadFailures = 16

// server answers on one interface from one goroutine.
type server struct {
	link  Link
	conn  Conn
	pol   *policy
	reply atomic.Pointer[[]byte] // the template: swapped whole when the MAC changes
	c     counters
	limit bucket // only the serving goroutine uses it

	done   chan struct{}
	stopc  chan struct{} // closed by stop: ends a rate-limit pause
	closed atomic.Bool   // stop was requested
	dead   atomic.Bool   // loop ended on its own
}

func (r *Responder) start(ctx context.Context, l Link, changed chan<- struct{}) (*server, error) {
	tmpl, err := replyTemplate(l.MAC)
	if err != nil {
		return nil, fmt.Errorf("proxyarp: %s: reply template: %w", l.Name, err)
	}
	conn, err := r.listen(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("proxyarp: listen on %s: %w", l.Name, err)
	}
	s := &server{link: l, conn: conn, pol: r.pol, done: make(chan struct{}), stopc: make(chan struct{}), limit: r.limit}
	s.limit.base = time.Now()
	s.reply.Store(&tmpl)
	go func() {
		defer close(s.done)
		if r.rtprio > 0 {
			// Never unlocked: the thread ends with this goroutine and
			// its policy never leaks into Go's thread pool.
			runtime.LockOSThread()
			if err := setRealtime(r.rtprio); err != nil {
				r.log.Warn("proxyarp: realtime priority not applied", "iface", l.Name, "err", err)
			}
		}
		if err := s.serve(); err != nil && !s.closed.Load() {
			s.dead.Store(true)
			r.log.Info("proxyarp: interface read failed; will re-check it", "iface", l.Name, "err", err)
			notify(changed)
		}
	}()
	return s, nil
}

// serve is the hot loop: read, decide, patch the preallocated reply, write.
// It allocates nothing per frame.
func (s *server) serve() error {
	buf := make([]byte, readBufLen)
	failures := 0
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			s.c.readErrors.Add(1)
			// A packet socket reports ENETDOWN once when its interface
			// goes down and keeps working when it comes back; a closed
			// or persistently failing connection ends this server and
			// the interface is re-checked.
			if failures++; failures >= maxReadFailures || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
				return err
			}
			continue
		}
		failures = 0
		s.c.requests.Add(1)
		reply := *s.reply.Load()
		if why := s.pol.handle(buf[:n], reply); why != 0 {
			s.c.ignored[why].Add(1)
			continue
		}
		if ok, wait := s.limit.take(); !ok {
			s.c.ignored[ReasonRateLimited].Add(1)
			s.pause(wait)
			continue
		}
		if _, err := s.conn.Write(reply); err != nil {
			s.c.writeErrors.Add(1)
			continue
		}
		s.c.replies.Add(1)
	}
}

// pause sleeps for wait (at most maxPause) or until stop, so that a
// flooding interface costs one wake-up per token rather than one per frame,
// and then collects the kernel's count of the frames it dropped meanwhile.
func (s *server) pause(wait time.Duration) {
	t := time.NewTimer(min(wait, maxPause))
	select {
	case <-t.C:
	case <-s.stopc:
		t.Stop()
	}
	if dc, ok := s.conn.(DropCounter); ok {
		if n, err := dc.Drops(); err == nil {
			s.c.dropped.Add(n)
		}
	}
}

func (s *server) exited() bool { return s.dead.Load() }

// update follows a rename or a MAC change of the served link without
// reopening its socket (a request arriving meanwhile is not lost). The
// caller holds the Responder's lock.
func (s *server) update(l Link) error {
	if string(l.MAC) != string(s.link.MAC) {
		tmpl, err := replyTemplate(l.MAC)
		if err != nil {
			return err
		}
		s.reply.Store(&tmpl)
	}
	s.link = l
	return nil
}

// stop closes the connection, which ends a pending Read, and waits for the
// goroutine to exit.
func (s *server) stop() {
	if !s.closed.Swap(true) {
		close(s.stopc)
	}
	s.conn.Close()
	<-s.done
}
