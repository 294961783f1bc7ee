// Package etcdtest starts a real, single-member etcd server in the test
// process (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1 with free ports and
// a temporary data directory, for the tests of datastore/etcd, ipam,
// reflector and the examples. It logs only errors and skips fsync.
//
// Usage:
//
//	endpoints := etcdtest.Start(t) // []string{"127.0.0.1:port"}
//	s, err := etcd.New(ctx, &etcd.Config{Endpoints: endpoints})
//
// New(t, &Options{TLS: true}) serves TLS with client-certificate auth
// (CAFile, CertFile, KeyFile give a client what it needs). Stop cuts every
// client connection at once (clients reach etcd through a small TCP relay)
// and Restart brings the same member back on the same endpoint, for tests
// of unavailability and reconnection.
//
// It owns the server it starts; t.Cleanup stops it. A Server is safe for
// concurrent use.
package etcdtest
