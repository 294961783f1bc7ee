//go:build linux

package nattest_test

import (
	"errors"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/nat/nattest"
)

func TestTransactionIsAllOrNothing(t *testing.T) {
	c := &nattest.Conn{}
	tb := c.AddTable(&nftables.Table{Name: "t", Family: nftables.TableFamilyIPv4})
	s := &nftables.Set{Table: tb, Name: "s", KeyType: nftables.TypeIPAddr, ID: 1}
	if err := c.AddSet(s, []nftables.SetElement{{Key: []byte{192, 0, 2, 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// Add one element, then delete one that does not exist: ENOENT, and
	// the add is not applied either.
	_ = c.SetAddElements(s, []nftables.SetElement{{Key: []byte{192, 0, 2, 2}}})
	_ = c.SetDeleteElements(s, []nftables.SetElement{{Key: []byte{192, 0, 2, 9}}})
	if err := c.Flush(); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("err = %v, want ENOENT", err)
	}
	es, err := c.GetSetElements(s)
	if err != nil || len(es) != 1 {
		t.Fatalf("elements %v, %v; want only the first", es, err)
	}
	// A key of the wrong length is EINVAL.
	_ = c.SetAddElements(s, []nftables.SetElement{{Key: []byte{1, 2}}})
	if err := c.Flush(); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("err = %v, want EINVAL", err)
	}
	// Injected failure; an empty Flush is not a transaction.
	c.DelTable(tb)
	c.FailNextFlush(unix.EPERM)
	if err := c.Flush(); !errors.Is(err, unix.EPERM) {
		t.Fatalf("err = %v", err)
	}
	if ts, _ := c.ListTablesOfFamily(nftables.TableFamilyIPv4); len(ts) != 1 {
		t.Fatal("failed DelTable applied")
	}
	before := c.Stats()
	if err := c.Flush(); err != nil || c.Stats().Flushes != before.Flushes {
		t.Fatalf("empty Flush: %v, %+v", err, c.Stats())
	}
	if st := c.Stats(); st.Flushes != 4 || st.Messages != 7 {
		t.Fatalf("stats %+v", st)
	}
}

// A set needs its own ID, unique within the transaction; the next
// transaction may use the same IDs again.
func TestAddSetRequiresID(t *testing.T) {
	c := &nattest.Conn{}
	tb := c.AddTable(&nftables.Table{Name: "t", Family: nftables.TableFamilyIPv4})
	if err := c.AddSet(&nftables.Set{Table: tb, Name: "a", KeyType: nftables.TypeIPAddr}, nil); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("ID 0: err = %v, want EINVAL", err)
	}
	if err := c.AddSet(&nftables.Set{Table: tb, Name: "a", KeyType: nftables.TypeIPAddr, ID: 7}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AddSet(&nftables.Set{Table: tb, Name: "b", KeyType: nftables.TypeIPAddr, ID: 7}, nil); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("duplicate ID: err = %v, want EEXIST", err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.AddSet(&nftables.Set{Table: tb, Name: "b", KeyType: nftables.TypeIPAddr, ID: 7}, nil); err != nil {
		t.Fatalf("ID of an earlier transaction: %v", err)
	}
}
