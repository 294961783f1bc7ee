// Package proxyarpbench measures the proxyarp responder against the
// kernel's own proxy ARP in throwaway namespaces (root only): ARP round
// trip from a pod, sustained replies per second on one and on 100
// interfaces with the CPU they cost, memory per served interface and idle
// CPU. See RESULTS.md for numbers and the commands that produced them.
package proxyarpbench
