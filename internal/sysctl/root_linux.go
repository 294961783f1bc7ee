//go:build linux

package sysctl

// defaultRoot is where NS.Root == "" looks.
const defaultRoot = "/proc/sys"
