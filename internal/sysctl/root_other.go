//go:build !linux

package sysctl

// defaultRoot is empty: there is no /proc/sys, so NS.Root must be set.
const defaultRoot = ""
