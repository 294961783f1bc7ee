package vxlan

// nopNetlink satisfies Netlink for tests that never Sync (any call panics).
type nopNetlink struct{ Netlink }

var _ Netlink = (*nopNetlink)(nil)
