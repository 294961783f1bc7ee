// Package proxyarptest is an in-memory stand-in for the kernel side of
// proxyarp: a Network of links whose packet connections are channels, so
// that a Responder can be tested and demonstrated without root.
//
// A Network is a proxyarp.LinkSource and its Listen method is a
// proxyarp.ListenFunc. Each link has a Wire, the far end of the interface
// (what a pod sees): frames sent on the Wire are read by the responder and
// its replies come back on the Wire.
//
// It owns nothing in the kernel. Network, Wire and their connections are
// safe for concurrent use.
package proxyarptest
