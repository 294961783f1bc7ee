package proxyarptest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"

	"github.com/tabbynet/tabby/proxyarp"
)

// Errors returned by the in-memory connections.
var (
	// ErrNoLink: Listen on a link that does not exist (the kernel's ENODEV).
	ErrNoLink = errors.New("proxyarptest: no such link")
	// ErrLinkGone: the link was removed while the connection was open (a
	// packet socket's ENETDOWN); returned once by Read.
	ErrLinkGone = errors.New("proxyarptest: link removed")
)

// Network is an in-memory network namespace. Safe for concurrent use.
type Network struct {
	mu       sync.Mutex
	links    map[string]*Wire
	next     int
	watchers map[chan<- struct{}]struct{}
	listens  int
}

// NewNetwork returns an empty Network.
func NewNetwork() *Network {
	return &Network{links: map[string]*Wire{}, next: 2, watchers: map[chan<- struct{}]struct{}{}}
}

// Wire is the far end of one in-memory interface. Safe for concurrent use.
type Wire struct {
	Link proxyarp.Link

	in   chan []byte // to the responder
	out  chan []byte // from the responder
	gone chan struct{}
}

// AddLink adds an interface with the given name and MAC and returns its
// Wire. Watchers are notified.
func (n *Network) AddLink(name string, mac net.HardwareAddr) *Wire {
	n.mu.Lock()
	defer n.mu.Unlock()
	w := &Wire{
		Link: proxyarp.Link{Index: n.next, Name: name, MAC: mac},
		in:   make(chan []byte, 256),
		out:  make(chan []byte, 256),
		gone: make(chan struct{}),
	}
	n.next++
	n.links[name] = w
	n.notifyLocked()
	return w
}

// RemoveLink removes an interface; an open connection's Read fails once
// with ErrLinkGone and then blocks until Close, like a packet socket.
func (n *Network) RemoveLink(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if w, ok := n.links[name]; ok {
		close(w.gone)
		delete(n.links, name)
		n.notifyLocked()
	}
}

func (n *Network) notifyLocked() {
	for c := range n.watchers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Links implements proxyarp.LinkSource.
func (n *Network) Links() ([]proxyarp.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]proxyarp.Link, 0, len(n.links))
	for _, w := range n.links {
		out = append(out, w.Link)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// Watch implements proxyarp.LinkSource.
func (n *Network) Watch(ctx context.Context, changed chan<- struct{}) error {
	n.mu.Lock()
	n.watchers[changed] = struct{}{}
	n.mu.Unlock()
	select {
	case changed <- struct{}{}:
	default:
	}
	<-ctx.Done()
	n.mu.Lock()
	delete(n.watchers, changed)
	n.mu.Unlock()
	return nil
}

// Listen is a proxyarp.ListenFunc over the Network.
func (n *Network) Listen(ctx context.Context, l proxyarp.Link) (proxyarp.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	w, ok := n.links[l.Name]
	if !ok || w.Link.Index != l.Index {
		return nil, fmt.Errorf("%w: %s", ErrNoLink, l.Name)
	}
	n.listens++
	return &conn{w: w, closed: make(chan struct{})}, nil
}

// Listens returns how many connections Listen has opened.
func (n *Network) Listens() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.listens
}

// Send delivers frame to the responder listening on the interface (it is
// queued if nobody listens yet). The frame is copied.
func (w *Wire) Send(frame []byte) {
	w.in <- append([]byte(nil), frame...)
}

// Recv returns the next frame the responder sent, or false after timeout.
func (w *Wire) Recv(timeout time.Duration) ([]byte, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-w.out:
		return b, true
	case <-t.C:
		return nil, false
	}
}

type conn struct {
	w       *Wire
	once    sync.Once
	closed  chan struct{}
	sawGone bool
}

func (c *conn) Read(b []byte) (int, error) {
	gone := c.w.gone
	if c.sawGone {
		gone = nil
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case f := <-c.w.in:
		return copy(b, f), nil
	case <-gone:
		c.sawGone = true
		return 0, ErrLinkGone
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *conn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.w.gone:
		return 0, ErrLinkGone
	default:
	}
	select {
	case c.w.out <- append([]byte(nil), b...):
		return len(b), nil
	default:
		return 0, errors.New("proxyarptest: wire full")
	}
}

func (c *conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Request returns an Ethernet broadcast ARP request "who has target? tell
// sender", built with mdlayher/arp and mdlayher/ethernet.
func Request(senderMAC net.HardwareAddr, sender, target netip.Addr) []byte {
	p, err := arp.NewPacket(arp.OperationRequest, senderMAC, sender, ethernet.Broadcast, target)
	if err != nil {
		panic(err)
	}
	p.TargetHardwareAddr = make(net.HardwareAddr, 6) // requests carry zeros
	pb, err := p.MarshalBinary()
	if err != nil {
		panic(err)
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: senderMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// Parse decodes an Ethernet ARP frame with mdlayher/ethernet and
// mdlayher/arp.
func Parse(frame []byte) (*ethernet.Frame, *arp.Packet, error) {
	f := new(ethernet.Frame)
	if err := f.UnmarshalBinary(frame); err != nil {
		return nil, nil, err
	}
	if f.EtherType != ethernet.EtherTypeARP {
		return nil, nil, fmt.Errorf("proxyarptest: EtherType %v is not ARP", f.EtherType)
	}
	p := new(arp.Packet)
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, nil, err
	}
	return f, p, nil
}
