package reflector

import (
	"testing"
	"time"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add("node2", encodeRecord(ann(2), time.Second, 7, time.Unix(0, 0)))
	f.Add("node2", []byte(`{"version":1,"node":"node2","nodeIP":"10.4.7.62","tunnelIP":"10.244.2.0","tunnelMAC":"02:00:00:00:00:02","blocks":["10.244.2.0/26","10.244.2.0/26"],"holdMillis":-5}`))
	f.Add("x", []byte(`{"version":2}`))
	f.Add("x", []byte(`null`))
	f.Fuzz(func(t *testing.T, name string, v []byte) {
		a, hold, _, err := decodeRecord(name, v)
		if err != nil {
			return
		}
		if hold < minHold || hold > maxHold {
			t.Fatalf("hold %v", hold)
		}
		b, err := a.normalize()
		if err != nil || !b.Equal(a) {
			t.Fatalf("decoded announcement not canonical: %v %+v", err, a)
		}
		a2, _, _, err := decodeRecord(name, encodeRecord(a, hold, 1, time.Now()))
		if err != nil || !a2.Equal(a) {
			t.Fatalf("round trip: %v %+v %+v", err, a, a2)
		}
	})
}
