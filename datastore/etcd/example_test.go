package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/etcd"
)

// A store on a TLS cluster with auth. Each call is bounded by its context
// and by RequestTimeout.
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := etcd.New(ctx, &etcd.Config{
		Endpoints:      []string{"10.4.7.10:2379", "10.4.7.11:2379", "10.4.7.12:2379"},
		CAFile:         "/etc/tabby/etcd-ca.pem",
		CertFile:       "/etc/tabby/etcd-client.pem",
		KeyFile:        "/etc/tabby/etcd-client-key.pem",
		Username:       "tabby",
		Password:       "secret",
		DialTimeout:    5 * time.Second,
		RequestTimeout: 3 * time.Second,
		Prefix:         "/tabby",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	_, err = s.Create(ctx, "/nodes/a", []byte("10.4.7.1"))
	if errors.Is(err, datastore.ErrUnavailable) {
		fmt.Println("etcd unreachable; nothing written")
	}
}
