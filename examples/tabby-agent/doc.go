// Command tabby-agent is tabby's node daemon (Calico's calico-node,
// flannel's flanneld): a thin main around package node, run in the current
// network namespace on the real kernel (node.OpenKernel).
//
//	tabby-agent [--node worker1] [--node-ip 10.4.7.61/24] [--uplink ens33]
//	            [--datastore bolt:///var/lib/tabby/tabby.db | etcd://h1:2379,h2:2379 --etcd-ca ca.pem --etcd-cert c.pem --etcd-key k.pem]
//	            [--pool 10.244.0.0/16] [--block-size 26] [--vxlan-mode Always|CrossSubnet|Never]
//	            [--nat-outgoing=true] [--proxy-arp userspace|kernel] [--hold-time 30s]
//	            [--resync-interval 90s] [--state-dir /var/lib/tabby] [--sysctl-root /proc/sys]
//	            [--listen 127.0.0.1:9099] [--withdraw-on-stop] [--gc-percent 40]
//	            [--cni-bin-dir /opt/cni/bin --cni-conf-dir /etc/cni/net.d] [--config FILE]
//
// Every flag can also be given in the --config file, one name=value per
// line with '#' comments; the command line wins. The node name defaults to
// the host name, the uplink and node address to the default route's
// interface and its address.
//
// On start it claims a block for the node, assigns the tunnel address,
// programs vxlan.calico, writes nodename and mtu to the state directory,
// enables forwarding, announces the node, follows the peers, runs the
// proxy-ARP responder and keeps the masquerade rules; with --cni-bin-dir
// and --cni-conf-dir it first installs the tabby and tabby-ipam plugins
// (copied from the directory of this executable) and a conflist, as
// calico-node's install-cni does.
//
// Bad flags, or a datastore that does not answer at start, end it with a
// message and exit status 2 or 1. SIGTERM or SIGINT is a graceful restart by
// default: the announcement is left to expire after the hold time, so peers
// keep the node's routes and a new agent that starts in time costs no
// packet; the dataplane stays in place. --withdraw-on-stop (or `tabbyctl
// node withdraw NAME`) withdraws the node for good. Exit status 0.
//
// Memory: the agent holds every peer (about 1.6 KB each across the
// reflector, vxlan and nat) and each resync lists the VXLAN device's
// routes, neighbours and FDB entries, so its heap is mostly that garbage.
// It collects at --gc-percent 40 (GOGC, when set, wins) and returns the
// start's garbage to the OS once ready: 38 MB RSS at 5,000 peers
// (BENCHMARKS.md).
//
// HTTP on --listen: /metrics (Prometheus, on the agent's own registry),
// /healthz (the process serves), /readyz (the datastore answers and the
// first sync is done).
package main
