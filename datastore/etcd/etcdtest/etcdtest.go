package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Start starts a server and returns its client endpoints ("127.0.0.1:port").
func Start(t testing.TB) []string {
	return New(t, nil).Endpoints()
}

// Options selects optional server features. A nil *Options means a plain
// server without TLS.
type Options struct {
	// TLS serves clients over TLS and requires a client certificate signed
	// by the server's CA (see Server.CAFile, CertFile and KeyFile).
	TLS bool
}

// Server is a running (or stopped) embedded etcd. Clients reach it through
// a TCP relay on the published endpoint, so that Stop can cut every client
// connection at once (etcd's own shutdown waits seconds for open watches).
type Server struct {
	t          testing.TB
	dir        string
	publicAddr string  // what Endpoints returns: the relay
	clientURL  url.URL // where etcd listens
	peerURL    url.URL
	tls        bool
	caFile     string
	certFile   string
	keyFile    string
	serverCert string
	serverKey  string

	mu    sync.Mutex
	e     *embed.Etcd
	relay *relay
}

// New starts a server; t.Cleanup stops it.
func New(t testing.TB, opts *Options) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	if opts != nil && opts.TLS {
		s.tls = true
		s.writeCerts()
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.clientURL, s.peerURL = s.freeURL(), s.freeURL()
		if err = s.start(); err == nil {
			var r *relay
			if r, err = newRelay("127.0.0.1:0", s.clientURL.Host); err == nil {
				s.publicAddr = r.addr()
				s.relay = r
				t.Cleanup(s.Stop)
				return s
			}
			s.e.Close()
		}
	}
	t.Fatalf("etcdtest: start: %v", err)
	return nil
}

func (s *Server) freeURL() url.URL {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatalf("etcdtest: %v", err)
	}
	defer l.Close()
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return url.URL{Scheme: scheme, Host: l.Addr().String()}
}

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = filepath.Join(s.dir, "data")
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	peer := s.peerURL
	peer.Scheme = "http"
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = 4 // bcrypt.MinCost: auth tests stay quick
	cfg.TickMs = 20
	cfg.ElectionMs = 200
	cfg.LogLevel = "error"
	lg := zap.New(quiet{zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stderr), zapcore.ErrorLevel)})
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	if s.tls {
		cfg.ClientTLSInfo.CertFile = s.serverCert
		cfg.ClientTLSInfo.KeyFile = s.serverKey
		cfg.ClientTLSInfo.TrustedCAFile = s.caFile
		cfg.ClientTLSInfo.ClientCertAuth = true
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return err
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("server not ready after 60s")
	}
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
	return nil
}

// Endpoints returns the client endpoints ("127.0.0.1:port"); they stay the
// same across Stop and Restart.
func (s *Server) Endpoints() []string { return []string{s.publicAddr} }

// CAFile, CertFile and KeyFile are the PEM files a client needs for a TLS
// server: the CA, and a client certificate and key signed by it. They are
// empty without Options.TLS.
func (s *Server) CAFile() string   { return s.caFile }
func (s *Server) CertFile() string { return s.certFile }
func (s *Server) KeyFile() string  { return s.keyFile }

// Stop stops the server, keeping its data; calling it again does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	e, r := s.e, s.relay
	s.e, s.relay = nil, nil
	s.mu.Unlock()
	if r != nil {
		r.close()
	}
	if e != nil {
		e.Close()
	}
}

// Restart starts a stopped server again on the same ports with the same
// data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil {
			var r *relay
			if r, err = newRelay(s.publicAddr, s.clientURL.Host); err == nil {
				s.mu.Lock()
				s.relay = r
				s.mu.Unlock()
				return
			}
			s.Stop()
		}
		time.Sleep(100 * time.Millisecond) // a port may linger briefly
	}
	s.t.Fatalf("etcdtest: restart: %v", err)
}

func (s *Server) writeCerts() {
	dir := filepath.Join(s.dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	caKey := newKey(s.t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "etcdtest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	s.caFile = writePEM(s.t, dir, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key := newKey(s.t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			s.t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return writePEM(s.t, dir, name+".pem", "CERTIFICATE", der), writePEM(s.t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	s.serverCert, s.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	s.certFile, s.keyFile = leaf("client", 3, x509.ExtKeyUsageClientAuth)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// quiet drops the errors etcd logs every time it shuts down normally.
type quiet struct{ zapcore.Core }

func (q quiet) With(f []zapcore.Field) zapcore.Core { return quiet{q.Core.With(f)} }

func (q quiet) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	switch e.Message {
	case "setting up serving from embedded etcd failed.", "failed to update storage version":
		return ce
	}
	return q.Core.Check(e, ce)
}

// relay forwards TCP connections from a listener to target and can drop
// them all at once.
type relay struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newRelay(listen, target string) (*relay, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &relay{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go r.serve()
	return r, nil
}

func (r *relay) addr() string { return r.l.Addr().String() }

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) serve() {
	for {
		in, err := r.l.Accept()
		if err != nil {
			return
		}
		go func() {
			out, err := net.Dial("tcp", r.target)
			if err != nil {
				in.Close()
				return
			}
			if !r.track(in) || !r.track(out) {
				in.Close()
				out.Close()
				return
			}
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			in.Close()
			out.Close()
			r.mu.Lock()
			delete(r.conns, in)
			delete(r.conns, out)
			r.mu.Unlock()
		}()
	}
}

func (r *relay) close() {
	r.l.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
}
