//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "tabby-agent: Linux only (network namespaces, netlink, nftables)")
	os.Exit(1)
}
