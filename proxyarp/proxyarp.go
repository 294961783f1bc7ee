package proxyarp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults, all Calico-compatible.
const (
	DefaultPrefix = "cali"
	DefaultRescan = 10 * time.Second

	// retryBackoff is how long an interface that failed to open, or
	// whose server failed, waits before it is tried again.
	retryBackoff = time.Second
)

// DefaultGateway is the address every pod's default route points at.
var DefaultGateway = netip.AddrFrom4([4]byte{169, 254, 1, 1})

// Errors.
var (
	// ErrInvalidConfig is returned by New for a configuration it cannot
	// serve (a gateway that is not IPv4, a negative rescan interval).
	ErrInvalidConfig = errors.New("proxyarp: invalid config")
	// ErrRunning is returned by Run when the Responder is already running
	// or has run.
	ErrRunning = errors.New("proxyarp: responder already started")
	// ErrInvalidInterface is returned by the kernel-mode helpers for an
	// interface name that cannot name a /proc/sys directory.
	ErrInvalidInterface = errors.New("proxyarp: invalid interface name")
)

// Link is one network interface as the responder sees it. A plain value;
// do not modify MAC while a Responder may use it.
type Link struct {
	Index int
	Name  string
	MAC   net.HardwareAddr // 6 bytes for an Ethernet interface
}

// LinkSource lists a namespace's interfaces and reports when they change.
// The default reads the kernel over netlink; proxyarptest has an in-memory
// one. Implementations must be safe for concurrent use.
type LinkSource interface {
	// Links returns every interface currently present.
	Links() ([]Link, error)
	// Watch sends on changed (without blocking when changed is full)
	// once it is watching, and then whenever interfaces may have been
	// added, removed or changed, until ctx is done (it then returns nil)
	// or watching fails. The first send covers changes that raced with
	// the start.
	Watch(ctx context.Context, changed chan<- struct{}) error
}

// DropCounter is implemented by a Conn that can tell how many frames the
// kernel dropped for it before they were read (a full receive buffer).
// Drops returns the number since the previous call. The default packet
// connection implements it (PACKET_STATISTICS).
type DropCounter interface {
	Drops() (uint64, error)
}

// Conn is the packet connection one interface is served through. Read
// returns one whole frame per call, blocking until a frame arrives; Write
// sends one whole Ethernet frame out of the interface; Close makes a
// pending and every later Read return an error (net.ErrClosed), and
// releases the connection. Read is called by one goroutine, Write by the
// same one; Close may be called concurrently with both.
type Conn interface {
	Read(frame []byte) (int, error)
	Write(frame []byte) (int, error)
	Close() error
}

// ListenFunc opens the packet connection for one interface. It may be
// called from the responder's goroutine while earlier connections serve.
type ListenFunc func(ctx context.Context, l Link) (Conn, error)

// Selector chooses the interfaces the responder serves. An interface is
// served when its name is in Names or starts with Prefix (when Prefix is
// not empty). The zero Selector means Prefix "cali". Read-only once given
// to New; safe for concurrent Match calls.
type Selector struct {
	Prefix string
	Names  []string
}

// Match reports whether the interface called name is selected.
func (s Selector) Match(name string) bool {
	if s.Prefix == "" && len(s.Names) == 0 {
		s.Prefix = DefaultPrefix
	}
	if s.Prefix != "" && strings.HasPrefix(name, s.Prefix) {
		return true
	}
	return slices.Contains(s.Names, name)
}

// Config configures a Responder. A nil *Config means all defaults. New
// copies what it needs; the Config may be reused afterwards.
type Config struct {
	// Netns is the path of the network namespace served
	// (/var/run/netns/x, /proc/<pid>/ns/net); empty is the caller's own.
	Netns string
	// Selector chooses the interfaces; zero means prefix "cali".
	Selector Selector
	// Gateways are the addresses answered for; nil means 169.254.1.1.
	Gateways []netip.Addr
	// AnswerAll answers a request for any unicast target except the
	// sender's own address, not only the gateways.
	AnswerAll bool
	// Rescan is how often interfaces are listed again as a safety net
	// beside the change notifications; 0 means DefaultRescan.
	Rescan time.Duration
	// Links overrides the interface source (default: netlink in Netns).
	Links LinkSource
	// Listen overrides how an interface's packet connection is opened
	// (default: an AF_PACKET socket in Netns with a kernel filter that
	// passes only incoming ARP requests).
	Listen ListenFunc
	// RateLimit bounds the requests answered per interface; the zero value
	// means 100 per second with bursts of 200 (see RateLimit).
	RateLimit RateLimit
	// RealtimePriority, from 1 to 99, runs each interface's reader thread
	// under SCHED_FIFO at that priority (needs CAP_SYS_NICE), so that a
	// request is answered at once even when the host's CPUs are busy
	// instead of waiting for a time slice (see bench/proxyarp). The
	// threads only ever wake for a request, answer it and sleep again.
	// 0 keeps the default scheduling policy.
	RealtimePriority int
	// Logger receives lifecycle events; nil discards them. Nothing is
	// logged per packet.
	Logger *slog.Logger
}

// Stats is a snapshot of a Responder's counters, owned by the caller. Every frame the responder
// read is counted in Requests and in exactly one of Replies, WriteErrors or
// Ignored.
type Stats struct {
	Requests    uint64            // frames read (the kernel filter passes only ARP requests)
	Replies     uint64            // replies sent
	WriteErrors uint64            // replies that could not be sent
	Ignored     map[Reason]uint64 // frames not answered, by reason (only non-zero reasons)
	ReadErrors  uint64            // failed reads (e.g. the interface vanished mid-read)
	// Dropped counts frames the kernel dropped before they were read
	// because the socket's receive buffer was full, typically while a
	// flooding interface was rate-limited (RateLimit). Not in Requests.
	// Counted for connections that implement DropCounter.
	Dropped    uint64
	OpenErrors uint64 // interfaces that could not be opened

	Interfaces        int    // interfaces served now
	InterfacesAdded   uint64 // interfaces that started being served
	InterfacesRemoved uint64 // interfaces that stopped being served
}

// counters are one interface server's; only its goroutine writes them.
type counters struct {
	requests, replies, writeErrors, readErrors, dropped atomic.Uint64
	ignored                                             [numReasons]atomic.Uint64
}

func (c *counters) addTo(s *Stats) {
	s.Requests += c.requests.Load()
	s.Replies += c.replies.Load()
	s.WriteErrors += c.writeErrors.Load()
	s.ReadErrors += c.readErrors.Load()
	s.Dropped += c.dropped.Load()
	for r := Reason(1); r < numReasons; r++ {
		if v := c.ignored[r].Load(); v != 0 {
			s.Ignored[r] += v
		}
	}
}

// Responder answers ARP requests on the selected interfaces of one network
// namespace. Create it with New and start it with Run. Its methods are safe
// for concurrent use.
type Responder struct {
	sel    Selector
	pol    *policy
	rescan time.Duration
	links  LinkSource
	listen ListenFunc
	log    *slog.Logger
	netns  string
	rtprio int
	limit  bucket // the template of every interface's bucket

	started atomic.Bool

	mu       sync.Mutex
	servers  map[int]*server // by ifindex
	retired  counters        // counters of servers that are gone
	added    uint64
	removed  uint64
	openErrs uint64
	retry    map[int]time.Time // ifindex -> not reopened before
}

// New validates cfg and returns a Responder that is not running yet.
func New(cfg *Config) (*Responder, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	gws := cfg.Gateways
	if gws == nil {
		gws = []netip.Addr{DefaultGateway}
	}
	pol := &policy{all: cfg.AnswerAll}
	for _, g := range gws {
		g = g.Unmap()
		if !g.Is4() {
			return nil, fmt.Errorf("%w: gateway %v is not an IPv4 address", ErrInvalidConfig, g)
		}
		b := g.As4()
		pol.gateways = append(pol.gateways, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
	}
	if cfg.RealtimePriority < 0 || cfg.RealtimePriority > 99 {
		return nil, fmt.Errorf("%w: realtime priority %d not in 0..99", ErrInvalidConfig, cfg.RealtimePriority)
	}
	limit, err := newBucket(cfg.RateLimit)
	if err != nil {
		return nil, err
	}
	if cfg.Rescan < 0 {
		return nil, fmt.Errorf("%w: negative rescan interval %v", ErrInvalidConfig, cfg.Rescan)
	}
	r := &Responder{
		sel:     Selector{Prefix: cfg.Selector.Prefix, Names: slices.Clone(cfg.Selector.Names)},
		pol:     pol,
		rescan:  cfg.Rescan,
		links:   cfg.Links,
		listen:  cfg.Listen,
		log:     cfg.Logger,
		netns:   cfg.Netns,
		rtprio:  cfg.RealtimePriority,
		limit:   limit,
		servers: map[int]*server{},
		retry:   map[int]time.Time{},
	}
	if r.rescan == 0 {
		r.rescan = DefaultRescan
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.links == nil {
		r.links = kernelLinks(cfg.Netns)
	}
	if r.listen == nil {
		r.listen = ListenPacket(cfg.Netns)
	}
	return r, nil
}

// Run serves interfaces until ctx is done, then stops every interface
// server and returns nil once all of its goroutines have exited. It
// returns an error without serving if the interfaces cannot be listed at
// start. Run may be called once.
func (r *Responder) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	if _, err := r.links.Links(); err != nil {
		return fmt.Errorf("proxyarp: list interfaces: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // follow link updates; resubscribe after a failure
		defer wg.Done()
		for {
			err := r.links.Watch(ctx, changed)
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("proxyarp: watching interfaces failed; relying on rescans until it is back", "err", err)
			notify(changed) // we may have missed updates
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()

	tick := time.NewTicker(r.rescan)
	defer tick.Stop()
	r.reconcile(ctx, changed)
	for {
		select {
		case <-ctx.Done():
			r.stopAll()
			wg.Wait()
			return nil
		case <-changed:
		case <-tick.C:
		}
		r.reconcile(ctx, changed)
	}
}

func notify(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Interfaces returns the interfaces served now, sorted by name, with the
// MAC their replies carry.
func (r *Responder) Interfaces() []Link {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ls []Link
	for _, s := range r.servers {
		if !s.exited() {
			l := s.link
			l.MAC = slices.Clone(l.MAC)
			ls = append(ls, l)
		}
	}
	slices.SortFunc(ls, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// Stats returns a snapshot of the counters.
func (r *Responder) Stats() Stats {
	s := Stats{Ignored: map[Reason]uint64{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retired.addTo(&s)
	for _, sv := range r.servers {
		sv.c.addTo(&s)
		if !sv.exited() {
			s.Interfaces++
		}
	}
	s.InterfacesAdded, s.InterfacesRemoved, s.OpenErrors = r.added, r.removed, r.openErrs
	return s
}

// reconcile makes the set of servers match the selected interfaces.
func (r *Responder) reconcile(ctx context.Context, changed chan<- struct{}) {
	links, err := r.links.Links()
	if err != nil {
		r.log.Warn("proxyarp: list interfaces", "err", err)
		return
	}
	want := map[int]Link{}
	for _, l := range links {
		if len(l.MAC) == 6 && r.sel.Match(l.Name) {
			want[l.Index] = l
		}
	}
	r.mu.Lock()
	var stop []*server
	for idx, s := range r.servers {
		l, ok := want[idx]
		if ok && !s.exited() {
			if l.Name != s.link.Name || string(l.MAC) != string(s.link.MAC) {
				r.log.Info("proxyarp: interface changed", "iface", l.Name, "index", idx, "mac", l.MAC.String())
			}
			if err := s.update(l); err == nil {
				continue
			}
		}
		if s.exited() {
			// Failed by itself: do not reopen in a tight loop.
			r.retry[idx] = time.Now().Add(retryBackoff)
		}
		stop = append(stop, s)
		delete(r.servers, idx)
	}
	r.mu.Unlock()
	for _, s := range stop {
		s.stop()
		r.mu.Lock()
		r.retire(s)
		r.mu.Unlock()
		r.log.Info("proxyarp: stopped serving", "iface", s.link.Name, "index", s.link.Index)
	}

	now := time.Now()
	for idx, l := range want {
		r.mu.Lock()
		_, running := r.servers[idx]
		next, backoff := r.retry[idx]
		r.mu.Unlock()
		if running || (backoff && now.Before(next)) {
			continue
		}
		s, err := r.start(ctx, l, changed)
		r.mu.Lock()
		if err != nil {
			r.openErrs++
			r.retry[idx] = now.Add(retryBackoff)
			r.mu.Unlock()
			// Typically the interface vanished between list and open.
			r.log.Debug("proxyarp: open interface", "iface", l.Name, "err", err)
			continue
		}
		delete(r.retry, idx)
		r.servers[idx] = s
		r.added++
		r.mu.Unlock()
		r.log.Info("proxyarp: serving", "iface", l.Name, "index", l.Index, "mac", l.MAC.String())
	}
	r.mu.Lock()
	for idx := range r.retry {
		if _, ok := want[idx]; !ok {
			delete(r.retry, idx)
		}
	}
	pending := len(r.retry) > 0
	r.mu.Unlock()
	if pending {
		// Come back when the back-off is over rather than at the next
		// rescan.
		time.AfterFunc(retryBackoff, func() { notify(changed) })
	}
}

// retire folds s's counters into the totals; r.mu must be held.
func (r *Responder) retire(s *server) {
	var t Stats
	t.Ignored = map[Reason]uint64{}
	s.c.addTo(&t)
	r.retired.requests.Add(t.Requests)
	r.retired.replies.Add(t.Replies)
	r.retired.writeErrors.Add(t.WriteErrors)
	r.retired.readErrors.Add(t.ReadErrors)
	r.retired.dropped.Add(t.Dropped)
	for k, v := range t.Ignored {
		r.retired.ignored[k].Add(v)
	}
	r.removed++
}

func (r *Responder) stopAll() {
	r.mu.Lock()
	all := make([]*server, 0, len(r.servers))
	for idx, s := range r.servers {
		all = append(all, s)
		delete(r.servers, idx)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.stop()
	}
	r.mu.Lock()
	for _, s := range all {
		r.retire(s)
	}
	r.mu.Unlock()
}
