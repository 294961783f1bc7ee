package netlinktest

import (
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
)

// subscription delivers link updates of one namespace to one channel, in
// order, without ever blocking the machine.
type subscription struct {
	ch   chan<- netlink.LinkUpdate
	done <-chan struct{}
	wake chan struct{}

	mu     sync.Mutex
	queue  []netlink.LinkUpdate
	closed bool
}

// LinkSubscribe sends a netlink.LinkUpdate to ch for every link added
// (RTM_NEWLINK), changed (RTM_NEWLINK: up/down, carrier, MTU, MAC, name,
// alias, master, namespace) or deleted (RTM_DELLINK, also when it leaves
// the namespace) in this namespace, like netlink.LinkSubscribeAt. Updates
// are queued, so a slow reader never blocks the fake. Closing done ends
// the subscription; ch is closed afterwards, as netlink does. The kernel
// may send more messages per change than the fake (one per attribute
// change); consumers should treat updates as "look again" hints.
func (k *Kernel) LinkSubscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}) error {
	s := &subscription{ch: ch, done: done, wake: make(chan struct{}, 1)}
	k.m.mu.Lock()
	if k.ns.deleted {
		s.closed = true
	} else {
		k.ns.subs = append(k.ns.subs, s)
	}
	k.m.mu.Unlock()
	go s.run()
	return nil
}

func (s *subscription) run() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 {
			if s.closed {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-s.done:
				return
			}
			s.mu.Lock()
		}
		u := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		select {
		case s.ch <- u:
		case <-s.done:
			return
		}
	}
}

func (s *subscription) push(u netlink.LinkUpdate) {
	s.mu.Lock()
	s.queue = append(s.queue, u)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// notifyLink queues an update about l for the namespace's subscribers.
func (ns *namespace) notifyLink(l *link, typ uint16) {
	if len(ns.subs) == 0 {
		return
	}
	live := ns.subs[:0]
	for _, s := range ns.subs {
		if !s.ended() {
			live = append(live, s)
		}
	}
	ns.subs = live
	ns.m.seq++
	arphrd := uint16(abi.ARPHRD_ETHER)
	if l.kind == kindLoopback {
		arphrd = abi.ARPHRD_LOOPBACK
	}
	for _, s := range ns.subs {
		u := netlink.LinkUpdate{
			IfInfomsg: nl.IfInfomsg{IfInfomsg: unix.IfInfomsg{
				Family: abi.AF_UNSPEC,
				Type:   arphrd,
				Index:  int32(l.index),
				Flags:  l.rawFlags(),
			}},
			Header: unix.NlMsghdr{Type: typ, Seq: ns.m.seq},
			Link:   l.view(),
		}
		s.push(u)
	}
}
