// Package probe holds tabby's Go replacements for ping and tcpdump, shared
// by the kernel tests (through internal/kerneltest), the benchmarks and the
// demo (through examples/internal/nettools): ICMP echo from inside a
// network namespace (Ping, PingStream) and an AF_PACKET capture that
// decodes IPv4, UDP/TCP ports and VXLAN frames (StartCapture, Decode).
//
// Namespaces are values: a path such as /var/run/netns/x or
// /proc/<pid>/ns/net ("" is the caller's own namespace). Sockets are opened
// there through internal/nsenter; the calling thread never moves. Nothing
// takes a testing.TB: every failure is a returned error.
//
// It owns only the sockets it opens. Functions are safe for concurrent
// use; a Capture's methods may be called from any goroutine. Decoding is
// portable; capturing exists only on Linux (elsewhere StartCapture returns
// an error wrapping errors.ErrUnsupported).
package probe
