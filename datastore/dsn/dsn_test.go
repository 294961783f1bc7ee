package dsn_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/dsn"
	"github.com/tabbynet/tabby/datastore/etcd"
	"github.com/tabbynet/tabby/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/datastore/memory"
)

func TestParse(t *testing.T) {
	good := []struct {
		url  string
		want dsn.Spec
	}{
		{"memory://", dsn.Spec{Kind: dsn.Memory}},
		{"MEMORY://", dsn.Spec{Kind: dsn.Memory}},
		{dsn.DefaultBoltURL, dsn.Spec{Kind: dsn.Bolt, Path: "/var/lib/tabby/tabby.db"}},
		{"bolt:///tmp/x/../t.db?lock-timeout=2s&poll-interval=50ms&log-size=500", dsn.Spec{Kind: dsn.Bolt, Path: "/tmp/t.db",
			Bolt: bolt.Options{LockTimeout: 2 * time.Second, PollInterval: 50 * time.Millisecond, LogSize: 500}}},
		{"etcd://h1:2379,h2:2379", dsn.Spec{Kind: dsn.Etcd, Etcd: etcd.Config{Endpoints: []string{"h1:2379", "h2:2379"}}}},
		{"etcd://[::1]:2379/", dsn.Spec{Kind: dsn.Etcd, Etcd: etcd.Config{Endpoints: []string{"[::1]:2379"}}}},
		{"etcd://10.4.7.10:2379?ca=/ca.pem&cert=/c.pem&key=/k.pem&username=u&password=p&dial-timeout=3s&request-timeout=7s&prefix=/tabby",
			dsn.Spec{Kind: dsn.Etcd, Etcd: etcd.Config{Endpoints: []string{"10.4.7.10:2379"}, CAFile: "/ca.pem", CertFile: "/c.pem",
				KeyFile: "/k.pem", Username: "u", Password: "p", DialTimeout: 3 * time.Second, RequestTimeout: 7 * time.Second, Prefix: "/tabby"}}},
		{"etcd://u%40x:p%3Aw@h:1", dsn.Spec{Kind: dsn.Etcd, Etcd: etcd.Config{Endpoints: []string{"h:1"}, Username: "u@x", Password: "p:w"}}},
		{"etcd://h:1?username=u&password-file=/etc/pw", dsn.Spec{Kind: dsn.Etcd, Etcd: etcd.Config{Endpoints: []string{"h:1"}, Username: "u"}, PasswordFile: "/etc/pw"}},
	}
	for _, g := range good {
		got, err := dsn.Parse(g.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", g.url, err)
			continue
		}
		if !reflect.DeepEqual(got, g.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", g.url, got, g.want)
		}
	}
	bad := []string{
		"", "memory", "memory://x", "redis://h:1", "/var/lib/tabby.db", "bolt://", "bolt://relative/path",
		"bolt:///dir/", "bolt:///x.db?lock-timeout=soon", "bolt:///x.db?lock-timeout=-1s", "bolt:///x.db?color=red",
		"bolt:///x.db?log-size=0", "bolt:///x.db?log-size=1&log-size=2", "bolt:///x.db#frag",
		"etcd://", "etcd://h1", "etcd://h1:2379,", "etcd://h1:99999", "etcd://:2379", "etcd://h1:2379/path",
		"etcd://h1:2379?ca=", "etcd://h1:2379?cert=/c.pem", "etcd://h1:2379?username=u",
		"etcd://h1:2379?password=p", "etcd://h1:2379?dial-timeout=x", "etcd://h1:2379?tls=1",
		"etcd://h1:2379?prefix=a%20b", "etcd://u:p@h1:2379?password-file=/pw", "etcd://h1:2379#x",
	}
	for _, b := range bad {
		if _, err := dsn.Parse(b); !errors.Is(err, datastore.ErrInvalid) {
			t.Errorf("Parse(%q): %v, want ErrInvalid", b, err)
		}
	}
	_, err := dsn.Parse("etcd://h1?password=hunter2&username=u")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password in error: %v", err)
	}
}

func TestOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := dsn.Open(ctx, "memory://", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*memory.Store); !ok {
		t.Fatalf("memory:// opened %T", s)
	}
	s.Close()

	path := filepath.Join(t.TempDir(), "lib", "tabby.db")
	s, err = dsn.Open(ctx, "bolt://"+path+"?lock-timeout=1s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bolt file: %v %v", fi, err)
	}

	srv := etcdtest.Start(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	s, err = dsn.Open(ctx, "etcd://"+strings.Join(srv, ",")+"?prefix=/dsn&request-timeout=5s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if kv, err := s.Get(ctx, "/k"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("etcd get: %+v %v", kv, err)
	}

	if _, err := dsn.Open(ctx, "nope://", nil); !errors.Is(err, datastore.ErrInvalid) {
		t.Fatalf("unknown scheme: %v", err)
	}
	if _, err := dsn.Open(ctx, "etcd://h:1?username=u&password-file=/nonexistent/pw", nil); err == nil {
		t.Fatal("missing password file accepted")
	}
}

// FuzzParse: Parse never panics, fails only with ErrInvalid, and what it
// accepts is usable.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"memory://", dsn.DefaultBoltURL, "bolt:///x.db?lock-timeout=1s&log-size=9",
		"etcd://h1:2379,h2:2379?ca=/a&cert=/b&key=/c&username=u&password=p&dial-timeout=1s&prefix=/t",
		"etcd://u:p@[::1]:1/", "etcd://h:1?password-file=/p&username=u", "bolt://x/y", "etcd://h", "x://",
		"etcd://%zz:1", "bolt:///%00", "etcd://h:1?a=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		spec, err := dsn.Parse(raw)
		if err != nil {
			if !errors.Is(err, datastore.ErrInvalid) {
				t.Fatalf("Parse(%q): %v is not ErrInvalid", raw, err)
			}
			return
		}
		switch spec.Kind {
		case dsn.Memory:
		case dsn.Bolt:
			if !filepath.IsAbs(spec.Path) {
				t.Fatalf("Parse(%q): relative bolt path %q", raw, spec.Path)
			}
		case dsn.Etcd:
			if len(spec.Etcd.Endpoints) == 0 {
				t.Fatalf("Parse(%q): no endpoints", raw)
			}
			for _, ep := range spec.Etcd.Endpoints {
				if ep == "" || strings.ContainsAny(ep, ",/?#@ ") {
					t.Fatalf("Parse(%q): endpoint %q", raw, ep)
				}
			}
		default:
			t.Fatalf("Parse(%q): kind %v", raw, spec.Kind)
		}
	})
}
