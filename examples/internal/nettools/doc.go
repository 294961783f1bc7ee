// Package nettools holds the small network tools tabby-demo and the agent
// tests need without executing any binary: named network namespaces
// (create, open, delete), a UDP echo and a TCP sink/source from inside a
// namespace, and thin wrappers over internal/probe for the ICMP ping and
// the AF_PACKET capture that decodes VXLAN (the tcpdump of the demo's Q7).
// internal/kerneltest wraps the same probe for tests.
//
// It owns the namespaces it creates (by name) and the sockets it opens.
// Every function is safe for concurrent use, and so are a Capture's methods.
package nettools
