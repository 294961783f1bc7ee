// Package e2e holds the end-to-end tests of the tabby and tabby-ipam CNI
// plugins and tabbyctl: the binaries are built into a temporary directory,
// cnitool and the reference plugins (portmap, ptp, host-local) are installed
// there with `go install`, and everything runs as root in network
// namespaces the tests create: the plugins run inside a throwaway "host"
// namespace (ip netns exec), never in the machine's own. The package has no
// code of its own; its tests are Linux-only (kernel tests), so that the
// package still vets on other systems.
package e2e
