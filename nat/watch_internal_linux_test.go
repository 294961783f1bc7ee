//go:build linux

package nat

import (
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func nftMsg(t *testing.T, typ uint16, family uint8, table string) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(1, table)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
		Data:   append([]byte{family, 0, 0, 0}, b...),
	}
}

func TestTouches(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    netlink.Message
		want bool
	}{
		{"del table ip tabby", nftMsg(t, unix.NFT_MSG_DELTABLE, unix.NFPROTO_IPV4, "tabby"), true},
		{"new rule ip6 tabby", nftMsg(t, unix.NFT_MSG_NEWRULE, unix.NFPROTO_IPV6, "tabby"), true},
		{"del element ip6 tabby", nftMsg(t, unix.NFT_MSG_DELSETELEM, unix.NFPROTO_IPV6, "tabby"), true},
		{"del chain ip tabby", nftMsg(t, unix.NFT_MSG_DELCHAIN, unix.NFPROTO_IPV4, "tabby"), true},
		{"new set ip tabby", nftMsg(t, unix.NFT_MSG_NEWSET, unix.NFPROTO_IPV4, "tabby"), true},
		{"inet table of the same name", nftMsg(t, unix.NFT_MSG_DELTABLE, unix.NFPROTO_INET, "tabby"), false},
		{"another table", nftMsg(t, unix.NFT_MSG_NEWRULE, unix.NFPROTO_IPV4, "kube-proxy"), false},
		{"prefix of the name", nftMsg(t, unix.NFT_MSG_NEWRULE, unix.NFPROTO_IPV4, "tabb"), false},
		{"generation message", nftMsg(t, unix.NFT_MSG_NEWGEN, unix.NFPROTO_UNSPEC, "tabby"), false},
		{"short", netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)}, Data: []byte{2}}, false},
		{"other subsystem", netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | unix.NFT_MSG_NEWRULE)}, Data: nftMsg(t, 0, 2, "tabby").Data}, false},
	} {
		if got := touches(tc.m, "tabby"); got != tc.want {
			t.Errorf("%s: touches = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// Arbitrary notification payloads never panic the decoder.
func FuzzTouches(f *testing.F) {
	f.Add(uint16(unix.NFT_MSG_NEWRULE), []byte{2, 0, 0, 0, 10, 0, 1, 0, 't', 'a', 'b', 'b', 'y', 0, 0, 0})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		touches(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ&0xff)}, Data: data}, "tabby")
	})
}
