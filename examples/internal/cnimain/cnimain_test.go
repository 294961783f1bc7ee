package cnimain

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/datastore"
)

// stdin makes os.Stdin read s for the test.
func stdin(t *testing.T, s string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Seek(0, 0)
	old := os.Stdin
	os.Stdin = f
	t.Cleanup(func() { os.Stdin = old; f.Close() })
}

func readStdin(t *testing.T) string {
	t.Helper()
	b, err := io.ReadAll(os.Stdin)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// handOff leaves the configuration readable on stdin whatever it decides,
// hands off only stores that need the full plugin, and says why it cannot.
func TestHandOffDecisions(t *testing.T) {
	t.Setenv("CNI_PATH", t.TempDir()) // no tabby-etcd anywhere
	t.Setenv(HandoffEnv, "")
	os.Unsetenv(HandoffEnv)

	bolt := `{"cniVersion":"1.1.0","name":"n","type":"tabby","datastore":"bolt:///var/lib/tabby/tabby.db"}`
	etcd := `{"cniVersion":"1.1.0","name":"n","type":"tabby","datastore":"etcd://10.4.7.60:2379"}`

	t.Setenv("CNI_COMMAND", "ADD")
	stdin(t, bolt)
	if err := handOff(FullPlugin); err != nil {
		t.Fatalf("bolt: %v", err)
	}
	if got := readStdin(t); got != bolt {
		t.Fatalf("stdin after handOff: %q", got)
	}

	stdin(t, etcd)
	err := handOff(FullPlugin)
	if !errors.Is(err, datastore.ErrInvalid) || !strings.Contains(err.Error(), FullPlugin) {
		t.Fatalf("etcd without %s: %v, want ErrInvalid naming it", FullPlugin, err)
	}
	if got := readStdin(t); got != etcd {
		t.Fatalf("stdin after a refused hand-off: %q", got)
	}

	// A hand-off never hands off again.
	t.Setenv(HandoffEnv, "/opt/cni/bin/tabby")
	stdin(t, etcd)
	if err := handOff(FullPlugin); !errors.Is(err, datastore.ErrInvalid) || !strings.Contains(err.Error(), "handed the call") {
		t.Fatalf("loop: %v", err)
	}
	os.Unsetenv(HandoffEnv)

	// VERSION: stdin is left alone.
	t.Setenv("CNI_COMMAND", "VERSION")
	stdin(t, etcd)
	if err := handOff(FullPlugin); err != nil {
		t.Fatal(err)
	}
	if got := readStdin(t); got != etcd {
		t.Fatalf("VERSION: stdin %q", got)
	}
}

func TestFindPlugin(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, FullPlugin), []byte("x"), 0o644) // not executable
	os.WriteFile(filepath.Join(b, FullPlugin), []byte("x"), 0o755)
	t.Setenv("CNI_PATH", a+string(filepath.ListSeparator)+b)
	p, err := findPlugin(FullPlugin)
	if err != nil || p != filepath.Join(b, FullPlugin) {
		t.Fatalf("findPlugin: %q %v, want the executable in %s", p, err, b)
	}
	t.Setenv("CNI_PATH", a)
	if _, err := findPlugin(FullPlugin); err == nil {
		t.Fatal("found a file that is not executable")
	}
}
