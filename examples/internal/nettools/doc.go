// Package nettools holds the small network tools tabby-demo and the agent
// tests need without executing any binary: named network namespaces
// (create, open, delete), an ICMP ping and a UDP echo from inside a
// namespace, and an AF_PACKET capture that decodes VXLAN (the tcpdump of
// the demo's Q7). Ideas are taken from internal/kerneltest, which is for
// tests only.
//
// It owns the namespaces it creates (by name) and the sockets it opens.
// Every function is safe for concurrent use; a Capture is used by one
// goroutine.
package nettools
