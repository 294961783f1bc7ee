//go:build linux

package nettools_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/examples/internal/nettools"
)

// Capture the VXLAN packet of a ping between two pods, as tabby-demo's Q7
// does (needs root and the demo's namespaces, so it is not run).
func ExampleStartCapture() {
	node, err := nettools.NewNS("tabby-demo-example")
	if err != nil {
		return
	}
	defer nettools.DeleteNS(node.Name)
	defer node.Close()
	eth0, err := node.NL.LinkByName("eth0")
	if err != nil {
		return
	}
	c, err := nettools.StartCapture(node.Path, eth0.Attrs().Index)
	if err != nil {
		return
	}
	nettools.Ping("/var/run/netns/tabby-demo-pod-a", netip.MustParseAddr("10.244.88.1"), 2*time.Second)
	frames, _ := c.Stop()
	for _, f := range frames {
		if f.VXLAN {
			fmt.Println(f)
		}
	}
}
