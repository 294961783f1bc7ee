package dsn_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/dsn"
)

func ExampleOpen() {
	ctx := context.Background()
	s, err := dsn.Open(ctx, "memory://", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	rev, _ := s.Create(ctx, "/k", []byte("v"))
	fmt.Println(rev)

	_, err = dsn.Open(ctx, "redis://h:6379", nil)
	fmt.Println(errors.Is(err, datastore.ErrInvalid))
	// Output:
	// 1
	// true
}

func ExampleParse() {
	spec, _ := dsn.Parse("etcd://10.4.7.10:2379,10.4.7.11:2379?ca=/etc/tabby/ca.pem&request-timeout=3s")
	fmt.Println(spec.Kind, spec.Etcd.Endpoints, spec.Etcd.CAFile, spec.Etcd.RequestTimeout)
	spec, _ = dsn.Parse(dsn.DefaultBoltURL)
	fmt.Println(spec.Kind, spec.Path)
	_, err := dsn.Parse("bolt://var/lib/tabby.db")
	fmt.Println(err)
	// Output:
	// etcd [10.4.7.10:2379 10.4.7.11:2379] /etc/tabby/ca.pem 3s
	// bolt /var/lib/tabby/tabby.db
	// dsn: "bolt://var/lib/tabby.db": bolt URL has a host; want bolt:///absolute/path: datastore: invalid argument
}
