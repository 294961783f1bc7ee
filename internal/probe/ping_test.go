package probe

import (
	"bytes"
	"testing"
)

func TestEcho(t *testing.T) {
	b := Echo(0x1234, 7, []byte("abc"))
	if b[0] != 8 || checksum(b) != 0 {
		t.Fatalf("echo %x: type %d, checksum over message %#x (want 0)", b, b[0], checksum(b))
	}
	if _, _, ok := EchoReply(b); ok {
		t.Error("an echo request decoded as a reply")
	}
	r := bytes.Clone(b)
	r[0] = 0
	if id, seq, ok := EchoReply(r); !ok || id != 0x1234 || seq != 7 {
		t.Errorf("EchoReply = %#x %d %v", id, seq, ok)
	}
	if _, _, ok := EchoReply(r[:7]); ok {
		t.Error("short reply decoded")
	}
}

func FuzzEchoReply(f *testing.F) {
	f.Add(Echo(1, 1, nil))
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, seq, ok := EchoReply(b)
		if !ok && (id != 0 || seq != 0) {
			t.Fatal("values without ok")
		}
	})
}
