package main

import (
	"github.com/tabbynet/tabby/examples/internal/cnimain"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
)

func main() {
	// bolt and memory stores only: the etcd client and gRPC stay out of
	// this binary (their package initialisation would cost every call
	// about 2.5 ms); a configuration naming an etcd store is handed to
	// tabby-etcd.
	cnimain.Main("tabby: Calico-style pod networking (block IPAM, veth, no bridge)", &storeurl.Options{})
}
