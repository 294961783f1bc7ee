// Command tabby-embed is what an embedder writes to run a tabby node on
// this host: about twenty lines on package node. It imports only tabby's
// public packages, so an outside module can write the same (main_test.go
// unit-tests a three-node cluster of it on the fake kernel, without root).
//
//	sudo tabby-embed -name worker1 -ip 10.4.7.61/24 -uplink ens33 -db /var/lib/tabby/tabby.db
package main

import (
	"context"
	"flag"
	"log"
	"net/netip"
	"os"
	"os/signal"

	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/node"
)

func main() {
	name, ip := flag.String("name", "worker1", "node name"), flag.String("ip", "10.4.7.61/24", "underlay address/len")
	uplink, db := flag.String("uplink", "eth0", "underlay interface"), flag.String("db", "tabby.db", "bolt file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	store, err := bolt.Open(ctx, *db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	k, err := node.OpenKernel("", "") // this namespace's kernel
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	n, err := node.New(node.Config{Name: *name, NodeIP: netip.MustParsePrefix(*ip), Uplink: *uplink, Store: store, Kernel: k, NATOutgoing: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := n.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
