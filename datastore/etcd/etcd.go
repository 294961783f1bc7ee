package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tabbynet/tabby/datastore"
)

// Defaults used when a Config field is zero.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultWatchBuffer    = 64
)

// Config says how to reach etcd. Only Endpoints is required. It is a plain
// value, read only by New.
type Config struct {
	// Endpoints are "host:port" (or URLs) of the cluster members.
	Endpoints []string
	// CAFile verifies the servers' certificates; CertFile and KeyFile are
	// the client certificate. Setting any of them enables TLS. TLS, if set,
	// is used as is instead.
	CAFile, CertFile, KeyFile string
	TLS                       *tls.Config
	// Username and Password authenticate with etcd's auth.
	Username, Password string
	// DialTimeout bounds connection set-up (default 5s).
	DialTimeout time.Duration
	// RequestTimeout bounds every request on top of the caller's context
	// (default 10s), so a call without a deadline cannot hang.
	RequestTimeout time.Duration
	// Prefix is prepended to every key (e.g. "/tabby"), so that several
	// users can share a cluster. Revisions stay cluster-wide.
	Prefix string
	// WatchBuffer is the capacity of each watch channel (default 64).
	WatchBuffer int
	// Logger receives watch reconnections. Nil discards.
	Logger *slog.Logger
}

// Store is a datastore.Store on an etcd v3 cluster. It is safe for
// concurrent use.
type Store struct {
	client  *clientv3.Client
	kv      clientv3.KV
	watcher clientv3.Watcher
	cfg     Config
	log     *slog.Logger

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

var (
	_ datastore.Store  = (*Store)(nil)
	_ datastore.Leaser = (*Store)(nil)
)

// New checks cfg and builds the client. Without a username it does not wait
// for a server, so an unreachable cluster shows up as ErrUnavailable on the
// first operation, within that operation's deadline. With a username it
// authenticates first, waiting at most until ctx ends or DialTimeout passes
// (ErrUnavailable); wrong credentials are an error that is not
// ErrUnavailable.
func New(ctx context.Context, cfg *Config) (*Store, error) {
	if cfg == nil || len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("etcd: no endpoints: %w", datastore.ErrInvalid)
	}
	c := *cfg
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.WatchBuffer <= 0 {
		c.WatchBuffer = DefaultWatchBuffer
	}
	if c.Prefix != "" {
		if err := datastore.ValidatePrefix(c.Prefix); err != nil {
			return nil, fmt.Errorf("etcd: key prefix: %w", err)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("etcd: client certificate and key go together: %w", datastore.ErrInvalid)
	}
	tlsCfg := c.TLS
	if tlsCfg == nil && (c.CAFile != "" || c.CertFile != "") {
		var err error
		if tlsCfg, err = loadTLS(c.CAFile, c.CertFile, c.KeyFile); err != nil {
			return nil, err
		}
	}
	if (c.Username == "") != (c.Password == "") {
		return nil, fmt.Errorf("etcd: username and password go together: %w", datastore.ErrInvalid)
	}
	ccfg := clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          c.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		PermitWithoutStream:  true,
		TLS:                  tlsCfg,
		Username:             c.Username,
		Password:             c.Password,
		Logger:               zap.NewNop(),
		// Reconnect within a few seconds of a member coming back (gRPC's
		// default backoff grows to two minutes).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: c.DialTimeout,
		})},
	}
	type result struct {
		c   *clientv3.Client
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := clientv3.New(ccfg)
		res <- result{c, err}
	}()
	var client *clientv3.Client
	select {
	case r := <-res:
		if r.err != nil {
			if errors.Is(r.err, context.DeadlineExceeded) || status.Code(r.err) == codes.Unavailable || status.Code(r.err) == codes.DeadlineExceeded {
				return nil, fmt.Errorf("etcd: connect %v: %w: %w", c.Endpoints, datastore.ErrUnavailable, r.err)
			}
			return nil, fmt.Errorf("etcd: connect %v: %w", c.Endpoints, r.err)
		}
		client = r.c
	case <-ctx.Done():
		go func() {
			if r := <-res; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("etcd: connect %v: %w: %w", c.Endpoints, datastore.ErrUnavailable, ctx.Err())
	}
	s := &Store{client: client, kv: client.KV, watcher: client.Watcher, cfg: c, log: c.Logger, done: make(chan struct{})}
	if c.Prefix != "" {
		s.kv = namespace.NewKV(client.KV, c.Prefix)
		s.watcher = namespace.NewWatcher(client.Watcher, c.Prefix)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func loadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd: CA %s: no PEM certificate: %w", caFile, datastore.ErrInvalid)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Client returns the underlying etcd client (for example to manage auth).
func (s *Store) Client() *clientv3.Client { return s.client }

// reqCtx bounds one request by RequestTimeout and by Close.
func (s *Store) reqCtx(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, fmt.Errorf("etcd: %s: %w", op, datastore.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("etcd: %s: %w: %w", op, datastore.ErrUnavailable, err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	return rctx, cancel, nil
}

// mapErr turns client errors into datastore errors.
func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("etcd: %s: %w", op, datastore.ErrClosed)
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("etcd: %s: %w", op, datastore.ErrCompacted)
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge),
		errors.Is(err, rpctypes.ErrFutureRev):
		return fmt.Errorf("etcd: %s: %w: %w", op, datastore.ErrInvalid, err)
	case ctx.Err() != nil:
		return fmt.Errorf("etcd: %s: %w: %w", op, datastore.ErrUnavailable, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrStopped), errors.Is(err, rpctypes.ErrNotCapable):
		return fmt.Errorf("etcd: %s: %w: %w", op, datastore.ErrUnavailable, err)
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.ResourceExhausted:
			return fmt.Errorf("etcd: %s: %w: %w", op, datastore.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("etcd: %s: %w", op, err)
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key string) (datastore.KV, error) {
	if !datastore.ValidKey(key) {
		return datastore.KV{}, fmt.Errorf("etcd: get %q: %w", key, datastore.ErrInvalid)
	}
	rctx, cancel, err := s.reqCtx(ctx, "get")
	if err != nil {
		return datastore.KV{}, err
	}
	defer cancel()
	resp, err := s.kv.Get(rctx, key)
	if err != nil {
		return datastore.KV{}, s.mapErr(rctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return datastore.KV{}, fmt.Errorf("etcd: get %q: %w", key, datastore.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return datastore.KV{Key: key, Value: value(kv.Value), Revision: kv.ModRevision}, nil
}

func value(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// List implements datastore.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]datastore.KV, int64, error) {
	if err := datastore.ValidatePrefix(prefix); err != nil {
		return nil, 0, fmt.Errorf("etcd: list: %w", err)
	}
	rctx, cancel, err := s.reqCtx(ctx, "list")
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	key, opts := prefixRange(prefix)
	resp, err := s.kv.Get(rctx, key, append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))...)
	if err != nil {
		return nil, 0, s.mapErr(rctx, "list "+prefix, err)
	}
	out := make([]datastore.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, datastore.KV{Key: string(kv.Key), Value: value(kv.Value), Revision: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return s.txn(ctx, false, []datastore.Op{datastore.Create(key, value)})
}

// Update implements datastore.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	return s.txn(ctx, true, []datastore.Op{datastore.Update(key, value, rev)})
}

// Delete implements datastore.Store.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	_, err := s.txn(ctx, true, []datastore.Op{datastore.Delete(key, rev)})
	return err
}

// Txn implements datastore.Store with one etcd transaction: a compare per
// op (create revision 0 for OpCreate, mod revision for the others), the
// writes if all hold, and otherwise a read of every key to say which op
// failed.
func (s *Store) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	return s.txn(ctx, false, ops)
}

func (s *Store) txn(ctx context.Context, single bool, ops []datastore.Op) (int64, error) {
	if err := datastore.ValidateOps(ops); err != nil {
		return 0, fmt.Errorf("etcd: txn: %w", err)
	}
	op := "txn"
	if len(ops) == 1 {
		op = ops[0].Type.String() + " " + ops[0].Key
	}
	rctx, cancel, err := s.reqCtx(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var cmps []clientv3.Cmp
	var then, els []clientv3.Op
	for _, o := range ops {
		switch o.Type {
		case datastore.OpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(o.Key), "=", 0))
			then = append(then, clientv3.OpPut(o.Key, string(o.Value), clientv3.WithLease(clientv3.LeaseID(o.Lease))))
		case datastore.OpUpdate:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(o.Key), "=", o.Revision))
			then = append(then, clientv3.OpPut(o.Key, string(o.Value), clientv3.WithLease(clientv3.LeaseID(o.Lease))))
		case datastore.OpDelete:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(o.Key), "=", o.Revision))
			then = append(then, clientv3.OpDelete(o.Key))
		case datastore.OpCheck:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(o.Key), "=", o.Revision))
		}
		els = append(els, clientv3.OpGet(o.Key, clientv3.WithKeysOnly()))
	}
	resp, err := s.kv.Txn(rctx).If(cmps...).Then(then...).Else(els...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("etcd: %s: %w", op, datastore.ErrLeaseNotFound)
	}
	if err != nil {
		return 0, s.mapErr(rctx, op, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	// Report the first op whose condition failed, as the other stores do.
	for i, o := range ops {
		var cur int64
		exists := false
		if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			cur, exists = rr.Kvs[0].ModRevision, true
		}
		switch {
		case o.Type == datastore.OpCreate:
			if exists {
				return 0, fmt.Errorf("etcd: create %q: %w", o.Key, datastore.ErrExists)
			}
		case single && !exists:
			return 0, fmt.Errorf("etcd: %s %q: %w", o.Type, o.Key, datastore.ErrNotFound)
		case cur != o.Revision:
			return 0, fmt.Errorf("etcd: %s %q at revision %d (is %d): %w", o.Type, o.Key, o.Revision, cur, datastore.ErrConflict)
		}
	}
	return 0, fmt.Errorf("etcd: %s: %w", op, datastore.ErrConflict)
}

// Compact discards etcd's history before rev (etcd's own compaction, for
// the whole cluster): a Watch from a revision below rev then fails with
// ErrCompacted. A rev beyond the current revision is ErrInvalid.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	rctx, cancel, err := s.reqCtx(ctx, "compact")
	if err != nil {
		return err
	}
	defer cancel()
	if rev <= 0 {
		return nil
	}
	_, err = s.client.Compact(rctx, rev, clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil // already compacted at or past rev
	}
	return s.mapErr(rctx, "compact", err)
}

// Close implements datastore.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("etcd: close: %w", datastore.ErrClosed)
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}
