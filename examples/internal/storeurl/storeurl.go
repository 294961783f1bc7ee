// Package storeurl opens a datastore.Store from a URL for the CNI plugins,
// without linking etcd unless the program asks for it:
//
//	memory://                         a fresh in-process store (tests only)
//	bolt:///var/lib/tabby/tabby.db    the one-host bbolt file
//	etcd://10.4.7.60:2379,10.4.7.61:2379?ca=/ca.pem&cert=/c.pem&key=/k.pem&prefix=/tabby
//
// With Options.DSN set (package etcdurl: the library's datastore/dsn, so
// every URL form and parameter of dsn works) all URLs go to it; without it
// only memory:// and bolt:/// (no query) are opened, by this package, and
// the binary stays free of etcd and gRPC (about 3 ms less start-up per CNI
// call). It owns nothing.
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
	// DSN, if set, opens every URL (package etcdurl provides
	// datastore/dsn.Open); nil: memory and bolt only, etcd:// is rejected.
	DSN func(ctx context.Context, raw string, log *slog.Logger) (datastore.Store, error)
}

// Validate checks the scheme and, for bolt, the path of raw without opening
// anything. The error wraps datastore.ErrInvalid. The rest (etcd
// parameters, bolt query parameters) is checked by Open.
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

// NeedsDSN reports whether raw names a store that only Options.DSN opens:
// an etcd:// URL, or a bolt URL with parameters. A malformed URL is false
// (Open reports it without DSN as well).
func NeedsDSN(raw string) bool {
	p, err := parse(raw)
	if err != nil {
		return false
	}
	return p.scheme == "etcd" || (p.scheme == "bolt" && len(p.q) > 0)
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
	if opts.DSN != nil {
		st, err := opts.DSN(ctx, raw, opts.Logger)
		if err != nil {
			if errors.Is(err, datastore.ErrInvalid) || errors.Is(err, datastore.ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", datastore.ErrUnavailable, err)
		}
		return st, nil
	}
	switch p.scheme {
	case "memory":
		return memory.New(nil), nil
	case "bolt":
		if len(p.q) > 0 {
			return nil, fmt.Errorf("%w: datastore URL %q: this build takes no bolt parameters", datastore.ErrInvalid, raw)
		}
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
		return nil, fmt.Errorf("%w: datastore URL %q: this program was built without etcd support (-tags tabby_noetcd)", datastore.ErrInvalid, raw)
	}
}
