// Package dsn opens any of tabby's stores from a URL:
//
//	memory://
//	bolt:///var/lib/tabby/tabby.db
//	etcd://h1:2379,h2:2379?ca=/etc/tabby/ca.pem&cert=/etc/tabby/c.pem&key=/etc/tabby/k.pem&username=tabby&password-file=/etc/tabby/pw&dial-timeout=5s&request-timeout=10s&prefix=/tabby
//
// Parse only checks a URL (unknown scheme or parameter, bad duration,
// relative bolt path, endpoint without a port: ErrInvalid, with any password
// hidden from the message); Open also opens the store. It owns no state.
//
// Importing dsn links all three stores, etcd's client and gRPC included.
// A program that only ever uses one host's bolt file imports datastore/bolt
// directly and stays free of them.
package dsn
