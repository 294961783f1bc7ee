//go:build tabby_noetcd

package main

import "github.com/tabbynet/tabby/examples/internal/storeurl"

// storeOptions of a bolt-only build: etcd:// URLs are rejected (code 7).
func storeOptions() *storeurl.Options { return &storeurl.Options{} }
