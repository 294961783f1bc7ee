package dsn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/memory"
)

// Kind is the type of store a URL names. The zero value is invalid.
type Kind int

const (
	Memory Kind = iota + 1
	Bolt
	Etcd
)

func (k Kind) String() string {
	switch k {
	case Memory:
		return "memory"
	case Bolt:
		return "bolt"
	case Etcd:
		return "etcd"
	}
	return "invalid"
}

// DefaultBoltURL is the embedded default store.
const DefaultBoltURL = "bolt:///var/lib/tabby/tabby.db"

// Spec is a parsed store URL. Only the fields of its Kind are set. It is a
// plain value.
type Spec struct {
	Kind Kind
	// Bolt: the absolute file path and options from the query
	// (lock-timeout, poll-interval, log-size).
	Path string
	Bolt bolt.Options
	// Etcd: endpoints, TLS files, credentials, timeouts and key prefix
	// (ca, cert, key, username, password or password-file, dial-timeout,
	// request-timeout, prefix). PasswordFile is read by Open.
	Etcd         etcd.Config
	PasswordFile string
}

// Options for Open. A nil *Options means defaults. It is a plain value.
type Options struct {
	// Logger is passed to the store. Nil discards.
	Logger *slog.Logger
}

// Open parses rawURL (see Parse) and opens the store it names. A bolt
// store's file is created if needed; an etcd store connects lazily unless
// credentials are given (see etcd.New).
func Open(ctx context.Context, rawURL string, opts *Options) (datastore.Store, error) {
	spec, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	var lg *slog.Logger
	if opts != nil {
		lg = opts.Logger
	}
	switch spec.Kind {
	case Memory:
		return memory.New(nil), nil
	case Bolt:
		o := spec.Bolt
		o.Logger = lg
		return bolt.Open(ctx, spec.Path, &o)
	default:
		c := spec.Etcd
		c.Logger = lg
		if spec.PasswordFile != "" {
			b, err := os.ReadFile(spec.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("dsn: etcd password file: %w", err)
			}
			c.Password = strings.TrimRight(string(b), "\r\n")
		}
		return etcd.New(ctx, &c)
	}
}

func invalid(rawURL, format string, args ...any) error {
	return fmt.Errorf("dsn: %q: %s: %w", redact(rawURL), fmt.Sprintf(format, args...), datastore.ErrInvalid)
}

// redact hides a password in a URL for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if i := strings.Index(rawURL, "password="); i >= 0 {
			return rawURL[:i] + "password=xxxxx"
		}
		return rawURL
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Parse checks a store URL without opening anything:
//
//	memory://
//	bolt:///var/lib/tabby/tabby.db?lock-timeout=10s&poll-interval=100ms&log-size=10000
//	etcd://h1:2379,h2:2379?ca=/ca.pem&cert=/c.pem&key=/k.pem&username=u&password-file=/pw&dial-timeout=5s&request-timeout=10s&prefix=/tabby
//
// Credentials may also be given as etcd://user:password@h1:2379. Unknown
// schemes and parameters, bad durations and numbers, relative bolt paths
// and endpoints without a port are ErrInvalid.
func Parse(rawURL string) (Spec, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return Spec{}, invalid(rawURL, "not a URL (want memory://, bolt:///path or etcd://host:port,...)")
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest != "" {
			return Spec{}, invalid(rawURL, "memory:// takes nothing after the scheme")
		}
		return Spec{Kind: Memory}, nil
	case "bolt":
		return parseBolt(rawURL)
	case "etcd":
		return parseEtcd(rawURL, rest)
	}
	return Spec{}, invalid(rawURL, "unknown scheme %q (want memory, bolt or etcd)", scheme)
}

func parseBolt(rawURL string) (Spec, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Spec{}, invalid(rawURL, "%v", unwrapURL(err))
	}
	if u.Host != "" || u.User != nil {
		return Spec{}, invalid(rawURL, "bolt URL has a host; want bolt:///absolute/path")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return Spec{}, invalid(rawURL, "unexpected fragment or opaque part")
	}
	if !strings.HasPrefix(u.Path, "/") || strings.HasSuffix(u.Path, "/") || strings.ContainsRune(u.Path, 0) {
		return Spec{}, invalid(rawURL, "want bolt:///absolute/path/to/file")
	}
	s := Spec{Kind: Bolt, Path: path.Clean(u.Path)}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Spec{}, invalid(rawURL, "query: %v", err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return Spec{}, invalid(rawURL, "parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "lock-timeout":
			s.Bolt.LockTimeout, err = duration(v)
		case "poll-interval":
			s.Bolt.PollInterval, err = duration(v)
		case "log-size":
			s.Bolt.LogSize, err = count(v)
		default:
			return Spec{}, invalid(rawURL, "unknown parameter %q for bolt", k)
		}
		if err != nil {
			return Spec{}, invalid(rawURL, "%s: %v", k, err)
		}
	}
	return s, nil
}

func duration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("%s out of range (0, 24h]", v)
	}
	return d, nil
}

func count(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > 100_000_000 {
		return 0, fmt.Errorf("%d out of range", n)
	}
	return n, nil
}

func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func parseEtcd(rawURL, rest string) (Spec, error) {
	// net/url does not take several hosts, so split the authority by hand.
	authority, query, _ := strings.Cut(rest, "?")
	if strings.ContainsAny(authority, "#") || strings.ContainsAny(query, "#") {
		return Spec{}, invalid(rawURL, "unexpected fragment")
	}
	if p, _, hasPath := strings.Cut(authority, "/"); hasPath {
		// A trailing slash is fine; a path is not.
		if strings.TrimPrefix(authority, p) != "/" {
			return Spec{}, invalid(rawURL, "etcd URL takes no path (use prefix=)")
		}
		authority = p
	}
	s := Spec{Kind: Etcd}
	if user, hosts, ok := strings.Cut(authority, "@"); ok {
		name, pw, hasPw := strings.Cut(user, ":")
		var err error
		if s.Etcd.Username, err = url.PathUnescape(name); err != nil {
			return Spec{}, invalid(rawURL, "username: %v", err)
		}
		if hasPw {
			if s.Etcd.Password, err = url.PathUnescape(pw); err != nil {
				return Spec{}, invalid(rawURL, "password: %v", err)
			}
		}
		authority = hosts
	}
	if authority == "" {
		return Spec{}, invalid(rawURL, "no endpoints")
	}
	for _, ep := range strings.Split(authority, ",") {
		host, port, err := net.SplitHostPort(ep)
		if err != nil {
			return Spec{}, invalid(rawURL, "endpoint %q: want host:port", ep)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || host == "" || strings.ContainsAny(host, "/@?#% ") {
			return Spec{}, invalid(rawURL, "endpoint %q: want host:port", ep)
		}
		for _, r := range host {
			if r < '!' || r > '~' {
				return Spec{}, invalid(rawURL, "endpoint %q: want host:port", ep)
			}
		}
		s.Etcd.Endpoints = append(s.Etcd.Endpoints, net.JoinHostPort(host, port))
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return Spec{}, invalid(rawURL, "query: %v", err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return Spec{}, invalid(rawURL, "parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "ca":
			s.Etcd.CAFile = v
		case "cert":
			s.Etcd.CertFile = v
		case "key":
			s.Etcd.KeyFile = v
		case "username":
			s.Etcd.Username = v
		case "password":
			s.Etcd.Password = v
		case "password-file":
			s.PasswordFile = v
		case "dial-timeout":
			s.Etcd.DialTimeout, err = duration(v)
		case "request-timeout":
			s.Etcd.RequestTimeout, err = duration(v)
		case "prefix":
			err = datastore.ValidatePrefix(v)
			if err == nil && v == "" {
				err = fmt.Errorf("empty")
			}
			s.Etcd.Prefix = v
		default:
			return Spec{}, invalid(rawURL, "unknown parameter %q for etcd", k)
		}
		if err != nil {
			return Spec{}, invalid(rawURL, "%s: %v", k, err)
		}
		if v == "" {
			return Spec{}, invalid(rawURL, "%s is empty", k)
		}
	}
	if (s.Etcd.CertFile == "") != (s.Etcd.KeyFile == "") {
		return Spec{}, invalid(rawURL, "cert and key go together")
	}
	if s.Etcd.Password != "" && s.PasswordFile != "" {
		return Spec{}, invalid(rawURL, "password and password-file both given")
	}
	hasPw := s.Etcd.Password != "" || s.PasswordFile != ""
	if (s.Etcd.Username == "") == hasPw {
		return Spec{}, invalid(rawURL, "username and password go together")
	}
	return s, nil
}
