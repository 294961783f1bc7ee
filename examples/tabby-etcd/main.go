package main

import (
	"github.com/tabbynet/tabby/examples/internal/cnimain"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
	"github.com/tabbynet/tabby/examples/internal/storeurl/etcdurl"
)

func main() {
	cnimain.Main("tabby-etcd: the tabby CNI plugin with every datastore, etcd included", &storeurl.Options{DSN: etcdurl.Open})
}
