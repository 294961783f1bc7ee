// Command tabby-ipam is a CNI IPAM plugin (spec 0.3.1 to 1.1.0: ADD, DEL,
// CHECK, GC, STATUS) on tabby's block IPAM, so that ptp, bridge or macvlan
// get Calico-style blocks affine to nodes, handles and garbage collection
// from the same datastore as the tabby plugin and tabby-agent.
//
//	{"cniVersion": "1.1.0", "name": "ptp-net", "plugins": [
//	  {"type": "ptp", "ipam": {"type": "tabby-ipam",
//	     "pools": ["10.244.0.0/16"], "blockSize": 26,
//	     "nodeName": "worker1", "datastore": "bolt:///var/lib/tabby/tabby.db",
//	     "gateway": "169.254.1.1", "routes": [], "prefixLength": 26}}]}
//
// nodeName, datastore and stateDir may be given in the ipam section or at
// the top level (the ipam section wins); defaults as for the tabby plugin.
// ADD returns one IPv4 address, as a /32 unless prefixLength says otherwise,
// with the gateway (default 169.254.1.1) and the routes (absent: 0.0.0.0/0),
// and, when the pools include an IPv6 one, one IPv6 /128 without gateway.
// ptp needs "prefixLength" shorter than 32 (it deletes the address's subnet
// route) and "routes": [] (it installs the result's routes before the
// gateway's link route, so a default route via 169.254.1.1 is not reachable
// yet; ptp routes the pod's subnet through the gateway itself); a repeated ADD returns
// the same address. DEL releases the handle "<network>.<containerID>.<ifname>"
// (a single datastore transaction, independent of how many addresses are
// allocated). CHECK verifies the handle holds prevResult's addresses. GC
// releases this network's allocations on this node that are not in
// cni.dev/valid-attachments. STATUS fails with code 50 while the datastore
// does not answer.
package main
