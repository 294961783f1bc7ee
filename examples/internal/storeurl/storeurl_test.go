package storeurl_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/examples/internal/storeurl"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"memory://", "bolt:///var/lib/tabby/tabby.db", "etcd://10.4.7.60:2379,10.4.7.61:2379?prefix=/tabby"} {
		if err := storeurl.Validate(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "redis://x", "bolt://relative/x", "bolt:///", "bolt:///dir/", "etcd://", "%%"} {
		if err := storeurl.Validate(bad); !errors.Is(err, datastore.ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tabby.db")
	st, err := storeurl.Open(ctx, "bolt://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Without DSN: no etcd, no bolt parameters.
	for _, u := range []string{"etcd://127.0.0.1:2379", "bolt://" + path + "?lock-timeout=1s"} {
		if _, err := storeurl.Open(ctx, u, nil); !errors.Is(err, datastore.ErrInvalid) {
			t.Errorf("%s: %v", u, err)
		}
	}
	// A file that cannot be made is "unavailable" (try again later).
	if _, err := storeurl.Open(ctx, "bolt://"+path+"/below-a-file.db", nil); !errors.Is(err, datastore.ErrUnavailable) {
		t.Errorf("bolt below a file: %v", err)
	}
	// With DSN every URL goes there.
	var got string
	mem := memory.New(nil)
	st, err = storeurl.Open(ctx, "etcd://127.0.0.1:2379", &storeurl.Options{DSN: func(_ context.Context, raw string, _ *slog.Logger) (datastore.Store, error) {
		got = raw
		return mem, nil
	}})
	if err != nil || st != mem || got != "etcd://127.0.0.1:2379" {
		t.Fatalf("DSN: %v %v %q", st, err, got)
	}
}

func TestNeedsDSN(t *testing.T) {
	for raw, want := range map[string]bool{
		"etcd://10.4.7.60:2379":                          true,
		"etcd://a:2379,b:2379?prefix=/tabby":             true,
		"bolt:///var/lib/tabby/tabby.db?lock-timeout=1s": true,
		"bolt:///var/lib/tabby/tabby.db":                 false,
		"memory://":                                      false,
		"":                                               false,
		"ftp://x":                                        false,
		"bolt://relative":                                false,
	} {
		if got := storeurl.NeedsDSN(raw); got != want {
			t.Errorf("NeedsDSN(%q) = %v, want %v", raw, got, want)
		}
	}
}
