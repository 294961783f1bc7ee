package cni_test

import (
	"testing"

	"github.com/tabbynet/tabby/examples/internal/cni"
)

func FuzzLoadConf(f *testing.F) {
	f.Add([]byte(baseConf), false)
	f.Add([]byte(ipamConf), true)
	f.Add([]byte(`{"name":"x","type":"tabby","mtu":-1}`), false)
	f.Add([]byte(`{"name":"x","type":"tabby","ipam":{"type":"tabby-ipam","pools":["10.0.0.0/8","::/0"],"routes":["x"]}}`), false)
	f.Add([]byte(`null`), true)
	f.Fuzz(func(t *testing.T, data []byte, standalone bool) {
		c, err := cni.LoadConf(data, standalone, func() (string, error) { return "node", nil })
		if err != nil {
			if cni.ToError(err).Code != cni.CodeInvalidNetworkConfig {
				t.Fatalf("LoadConf error %v has code %d", err, cni.ToError(err).Code)
			}
			return
		}
		if c.Name == "" || c.NodeName == "" || c.Datastore == "" || c.MTU < 68 || c.MTU > 65535 {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func FuzzParseArgs(f *testing.F) {
	f.Add(k8sArgs)
	f.Add("")
	f.Add("a=b;;c")
	f.Add("K8S_POD_NAMESPACE=;K8S_POD_NAME=x")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := cni.ParseArgs(s)
		if err != nil {
			if cni.ToError(err).Code != cni.CodeInvalidEnvironment {
				t.Fatalf("code %d", cni.ToError(err).Code)
			}
			return
		}
		if k := a.WorkloadKey("cid"); k == "" {
			t.Fatal("empty workload key")
		}
	})
}
