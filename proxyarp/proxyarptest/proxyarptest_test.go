package proxyarptest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/proxyarp"
	"github.com/tabbynet/tabby/proxyarp/proxyarptest"
)

var _ proxyarp.LinkSource = (*proxyarptest.Network)(nil)
var _ proxyarp.ListenFunc = (*proxyarptest.Network)(nil).Listen

func TestConn(t *testing.T) {
	n := proxyarptest.NewNetwork()
	w := n.AddLink("cali1", net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee})
	if _, err := n.Listen(context.Background(), proxyarp.Link{Index: 99, Name: "cali9"}); !errors.Is(err, proxyarptest.ErrNoLink) {
		t.Fatalf("listen on a missing link: %v", err)
	}
	c, err := n.Listen(context.Background(), w.Link)
	if err != nil {
		t.Fatal(err)
	}
	w.Send([]byte{1, 2, 3})
	buf := make([]byte, 10)
	if k, err := c.Read(buf); err != nil || k != 3 {
		t.Fatalf("read %d, %v", k, err)
	}
	if _, err := c.Write([]byte{4}); err != nil {
		t.Fatal(err)
	}
	if b, ok := w.Recv(time.Second); !ok || b[0] != 4 {
		t.Fatalf("recv %v %v", b, ok)
	}
	n.RemoveLink("cali1")
	if _, err := c.Read(buf); !errors.Is(err, proxyarptest.ErrLinkGone) {
		t.Fatalf("read after removal: %v", err)
	}
	done := make(chan error)
	go func() { _, err := c.Read(buf); done <- err }()
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func ExampleRequest() {
	frame := proxyarptest.Request(net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0xeb, 0x87},
		netip.MustParseAddr("10.244.235.135"), netip.MustParseAddr("169.254.1.1"))
	eth, p, _ := proxyarptest.Parse(frame)
	fmt.Println(len(frame), eth.Destination, p.Operation, "who has", p.TargetIP, "tell", p.SenderIP)
	// Output: 60 ff:ff:ff:ff:ff:ff OperationRequest who has 169.254.1.1 tell 10.244.235.135
}
