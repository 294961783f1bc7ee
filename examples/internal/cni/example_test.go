package cni_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/memory"
	"github.com/tabbynet/tabby/examples/internal/cni"
	"github.com/tabbynet/tabby/netlinktest"
	"github.com/tabbynet/tabby/veth"
)

// The tabby plugin on a fake kernel and an in-memory datastore: ADD
// plumbs the pod and prints the CNI result.
func Example() {
	k := netlinktest.New()
	if _, err := k.NewNamespace("/run/netns/pod1"); err != nil {
		panic(err)
	}
	st := memory.New(nil)
	p := cni.New(cni.Env{
		Host:      k,
		OpenNetNS: veth.Opener(k.NamespaceAt),
		OpenStore: func(context.Context, string) (datastore.Store, error) { return nopClose{st}, nil },
		HostLock:  func(context.Context, string) (func(), error) { return func() {}, nil },
	})
	conf := `{"cniVersion":"1.1.0","name":"tabby-net","type":"tabby","nodeName":"worker1","datastore":"memory://",
	  "stateDir":"/nonexistent","ipam":{"type":"tabby-ipam","pools":["10.244.235.128/26"],"blockSize":26}}`
	var out bytes.Buffer
	err := cni.Funcs(p, &out).Add(&skel.CmdArgs{
		ContainerID: "3f1c", Netns: "/run/netns/pod1", IfName: "eth0",
		Args:      "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
		StdinData: []byte(conf),
	})
	fmt.Println(err)
	fmt.Print(out.String())
	// Output:
	// <nil>
	// {
	//     "cniVersion": "1.1.0",
	//     "interfaces": [
	//         {
	//             "mac": "ee:ee:ee:ee:ee:ee",
	//             "name": "cali0d7763386da"
	//         },
	//         {
	//             "mac": "02:7a:00:00:00:01",
	//             "mtu": 1450,
	//             "name": "eth0",
	//             "sandbox": "/run/netns/pod1"
	//         }
	//     ],
	//     "ips": [
	//         {
	//             "address": "10.244.235.129/32",
	//             "gateway": "169.254.1.1",
	//             "interface": 1
	//         }
	//     ],
	//     "routes": [
	//         {
	//             "dst": "0.0.0.0/0",
	//             "gw": "169.254.1.1"
	//         }
	//     ]
	// }
}
