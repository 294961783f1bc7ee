//go:build linux

package main

import "github.com/tabbynet/tabby/internal/sysctl"

func sysctlAt(path string) sysctl.NS { return sysctl.At(path) }
