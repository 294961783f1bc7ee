//go:build !linux

package kerneltest

// Dump returns "": there is no kernel state to show off Linux (and no NS,
// since NewNS skips).
func (n *NS) Dump() string { return "" }
