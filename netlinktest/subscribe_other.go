//go:build !linux

package netlinktest

// Link subscriptions need netlink.LinkUpdate, which netlink defines on
// Linux only: elsewhere there are none, and LinkSubscribe does not exist.

type subscription struct{}

func (s *subscription) close() {}

func (ns *namespace) notifyLink(*link, uint16) {}
