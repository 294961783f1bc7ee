// Command tabby is a CNI plugin (spec 0.3.1, 0.4.0, 1.0.0 and 1.1.0: VERSION,
// ADD, DEL, CHECK, GC, STATUS) that networks pods the way Calico does in
// VXLAN mode, without BGP: a /32 from block IPAM, one veth pair per pod with
// the host end named cali<11 hex>, a /32 route to the pod on the host and
// "default via 169.254.1.1" in the pod.
//
// This binary opens plain bolt:/// (and memory://) stores only: the etcd
// client and gRPC are not linked, which keeps it at 9 MB instead of 24 MB and
// saves every call their package initialisation (about 2.5 ms of a pod's
// start). A configuration naming any other store (etcd://..., or a bolt URL
// with parameters) is handed unchanged (exec: same environment, same
// stdin) to the tabby-etcd plugin, found next to this executable or on
// CNI_PATH; install both (tabby-agent --cni-bin-dir does). Without
// tabby-etcd such a call fails with code 7 before anything is done.
//
// Install the binary (with tabby-ipam, if other plugins should use the same
// IPAM) in the runtime's CNI bin directory and a network configuration such
// as /etc/cni/net.d/10-tabby.conflist:
//
//	{"cniVersion": "1.1.0", "name": "tabby-net", "plugins": [
//	  {"type": "tabby", "nodeName": "worker1",
//	   "datastore": "bolt:///var/lib/tabby/tabby.db", "mtu": 1450,
//	   "proxyARP": "userspace",
//	   "ipam": {"type": "tabby-ipam", "pools": ["10.244.0.0/16"], "blockSize": 26}},
//	  {"type": "portmap", "capabilities": {"portMappings": true}}]}
//
// Keys (all optional but name and type):
//
//	nodeName   the IPAM host; default <stateDir>/nodename, else the hostname
//	datastore  a datastore/dsn URL: bolt:///path[?lock-timeout=10s],
//	           etcd://h1:2379,h2:2379[?ca=&cert=&key=&username=&
//	           password-file=&prefix=] or memory:// (tests);
//	           default bolt://<stateDir>/tabby.db
//	mtu        both veth ends; default <stateDir>/mtu, else 1450
//	proxyARP   "userspace" (default: tabby-agent's responder answers ARP for
//	           169.254.1.1) or "kernel" (the plugin sets proxy_arp=1)
//	stateDir   the agent's state directory; default /var/lib/tabby. The
//	           plugins of a host take turns on IPAM with a flock on
//	           <stateDir>/ipam.lock (like Calico's IPAM lock)
//	logFile    absolute path to append logs to; default stderr (never stdout)
//	logLevel   debug, info, warn (default) or error
//	ipam       {"type": "tabby-ipam", "pools": [CIDR...], "blockSize": 26,
//	           "blockSize6": 122}
//	           runs in-process; pools missing from the datastore are created
//	           with blockSize (IPv4) or blockSize6 (IPv6); no pools means
//	           every enabled pool (and 10.244.0.0/16 "default" if there is
//	           none). Pools of both families make a dual-stack pod: one
//	           IPv4 /32 and one IPv6 /128, "default via 169.254.1.1" and
//	           "default via fe80::ecee:eeff:feee:eeee" (the host end's
//	           link-local address; the host must have
//	           net.ipv6.conf.all.forwarding=1). Any other type is run as
//	           a delegated IPAM plugin; its addresses are used as /32s and
//	           /128s.
//
// A fresh ADD plumbs the pod while IPAM's transaction is being committed
// (with bolt, mostly fsync), with the addresses it is committing; if the
// commit fails the pod is unplumbed again before the error is returned, and
// if IPAM had to pick other addresses the interface is made again.
//
// The IPAM handle is "<network>.<containerID>.<ifname>"; the host interface
// is named from K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS (else from the
// container ID) and carries the alias "tabby:<network>:<key>". DEL and
// CHECK find the attachment without CNI_ARGS (as cnitool sends them) from
// IPAM's record of the ADD, prevResult or the pod interface's peer. A
// failed ADD leaves nothing; DEL is idempotent and releases the address
// even when the namespace is gone; GC releases what
// cni.dev/valid-attachments does not list and removes cali veths that no
// allocation accounts for; STATUS fails with code 50 while the datastore
// does not answer (106 when it is corrupt). CNI_NETNS naming the plugin's
// own network namespace is refused with code 107 before anything is
// allocated or written. Error codes are listed in
// examples/internal/cni (spec codes 1, 4, 7, 11, 50; tabby's own from 100:
// 100 means the pools are exhausted).
//
// Try it by hand in throwaway namespaces with cnitool:
//
//	ip netns add host1; ip netns add pod1
//	NETCONFPATH=/etc/cni/net.d CNI_PATH=/opt/cni/bin \
//	  ip netns exec host1 cnitool add tabby-net /var/run/netns/pod1
package main
