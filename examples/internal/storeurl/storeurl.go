// Package storeurl opens a datastore.Store from a URL, for the examples'
// command lines and CNI configurations:
//
//	memory://                         a fresh in-process store (tests only)
//	bolt:///var/lib/tabby/tabby.db    the one-host bbolt file
//	etcd://10.4.7.60:2379,10.4.7.61:2379/tabby?ca=/ca.pem&cert=/c.pem&key=/k.pem
//
// It is a stand-in for the library's datastore/dsn package, which was not
// committed when the CNI plugins were written; it owns nothing.
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/memory"
)

// DefaultURL is the store of a single host.
const DefaultURL = "bolt:///var/lib/tabby/tabby.db"

// Options tune the stores Open makes. A nil *Options means defaults.
type Options struct {
	// LockTimeout bounds a bolt operation's wait for the file lock
	// (0: the bolt default).
	LockTimeout time.Duration
	// NoSync skips fsync in bolt (benchmarks and tests only).
	NoSync bool
	// Logger for the store; nil discards.
	Logger *slog.Logger
	// Etcd opens etcd:// URLs; nil rejects them. Package etcdurl
	// provides it, so that programs that do not need etcd do not link
	// its client (and pay its start-up time, about 4 ms per process).
	Etcd func(ctx context.Context, p EtcdParams, log *slog.Logger) (datastore.Store, error)
}

// EtcdParams is what an etcd:// URL says: the endpoints, the key prefix
// (the URL path) and the query (ca, cert, key, user, password).
type EtcdParams struct {
	Endpoints []string
	Prefix    string
	Query     url.Values
}

// Validate reports whether raw is a URL Open understands, without opening
// anything. The error wraps datastore.ErrInvalid.
func Validate(raw string) error {
	_, err := parse(raw)
	return err
}

type parsed struct {
	scheme string
	path   string
	hosts  []string
	prefix string
	q      url.Values
}

func parse(raw string) (parsed, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: datastore URL %q: %v", datastore.ErrInvalid, raw, err)
	}
	p := parsed{scheme: u.Scheme, q: u.Query()}
	switch u.Scheme {
	case "memory":
	case "bolt":
		if u.Host != "" {
			return p, fmt.Errorf("%w: datastore URL %q: bolt takes an absolute path (bolt:///path)", datastore.ErrInvalid, raw)
		}
		if !strings.HasPrefix(u.Path, "/") || len(u.Path) < 2 || strings.HasSuffix(u.Path, "/") {
			return p, fmt.Errorf("%w: datastore URL %q: bolt needs an absolute file path", datastore.ErrInvalid, raw)
		}
		p.path = u.Path
	case "etcd":
		if u.Host == "" {
			return p, fmt.Errorf("%w: datastore URL %q: no etcd endpoint", datastore.ErrInvalid, raw)
		}
		p.hosts = strings.Split(u.Host, ",")
		if u.Path != "" && u.Path != "/" {
			p.prefix = u.Path
		}
	default:
		return p, fmt.Errorf("%w: datastore URL %q: scheme must be memory, bolt or etcd", datastore.ErrInvalid, raw)
	}
	return p, nil
}

// Open opens the store named by raw. Malformed URLs wrap
// datastore.ErrInvalid; a store that cannot be reached wraps
// datastore.ErrUnavailable (as the stores report it).
func Open(ctx context.Context, raw string, opts *Options) (datastore.Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	p, err := parse(raw)
	if err != nil {
		return nil, err
	}
	switch p.scheme {
	case "memory":
		return memory.New(nil), nil
	case "bolt":
		st, err := bolt.Open(ctx, p.path, &bolt.Options{LockTimeout: opts.LockTimeout, NoSync: opts.NoSync, Logger: opts.Logger})
		if err != nil {
			if errors.Is(err, datastore.ErrUnavailable) || errors.Is(err, datastore.ErrInvalid) {
				return nil, err
			}
			// A file that cannot be created or opened: the store is not
			// there for us.
			return nil, fmt.Errorf("%w: %w", datastore.ErrUnavailable, err)
		}
		return st, nil
	default:
		if opts.Etcd == nil {
			return nil, fmt.Errorf("%w: datastore URL %q: this program was built without etcd support", datastore.ErrInvalid, raw)
		}
		st, err := opts.Etcd(ctx, EtcdParams{Endpoints: p.hosts, Prefix: p.prefix, Query: p.q}, opts.Logger)
		if err != nil {
			if errors.Is(err, datastore.ErrInvalid) || errors.Is(err, datastore.ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", datastore.ErrUnavailable, err)
		}
		return st, nil
	}
}
