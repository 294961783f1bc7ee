// Package veth plumbs pods the way Calico does: one veth pair per pod, no
// bridge, the host routing each pod's /32 (or /128) to the pod's host
// interface.
//
// For a pod with key "default.web-0" and address 10.244.235.135, Setup
// leaves (seed Q3–Q6):
//
//	host namespace
//	  cali0d7763386da  veth, ee:ee:ee:ee:ee:ee, mtu 1450, up, peer = pod eth0
//	    sysctls: forwarding=1, accept_ra=0 (IPv6), proxy_arp=1 and
//	             neigh proxy_delay=0 (ARPKernel), rp_filter=1 (StrictRPFilter)
//	  10.244.235.135 dev cali0d7763386da scope link proto 80
//	  (IPv6: fe80::ecee:eeff:feee:eeee/64, 2001:db8::5 dev cali... proto 80)
//	pod namespace
//	  eth0             veth, mtu 1450, up, 10.244.235.135/32, peer = host cali
//	  169.254.1.1 dev eth0 scope link
//	  default via 169.254.1.1 dev eth0
//	  (IPv6: 2001:db8::5/128, default via fe80::ecee:eeff:feee:eeee dev eth0)
//
// Nothing owns 169.254.1.1: the host interface answers the pod's ARP
// request for it with its own MAC, either through the kernel's proxy_arp
// (ARPKernel, the default; the kernel only proxies for destinations it
// routes through another interface, so the host needs a default route) or
// through a userspace responder (ARPUserspace, tabby's proxyarp package).
//
// # Ownership
//
// veth owns the host interfaces whose names start with its prefix
// (default "cali") followed by 11 hex characters of sha1(workload key)
// (HostIfName), and the routes through them, which carry tabby's route
// protocol (RouteProtocol, 80, shared with the vxlan package). Teardown and
// stale-interface replacement delete only interfaces of that name. The
// workload key is "<namespace>.<pod>" for Kubernetes pods (WorkloadKey),
// else the container ID.
//
// # Behaviour
//
//   - Setup is idempotent; a stale host interface of that name is
//     replaced; any failure deletes what Setup created, so nothing is left.
//   - Teardown needs only the key and succeeds when there is nothing left
//     to remove (missing namespace, missing interface, unknown key).
//   - Check reports the first difference from what Setup would make as an
//     error matching ErrMismatch.
//   - Bad input (empty key, invalid interface name, missing or non-network
//     namespace, an address that is not a single host address, MTU outside
//     68..65535) gives an *InputError matching ErrInvalid and one of the
//     ErrInvalid* sentinels, and changes nothing.
//   - IPv4 and IPv6, per address family. An IPv6 pod gets <ip>/128 (no
//     DAD) and "default via fe80::ecee:eeff:feee:eeee dev eth0": the
//     gateway is the host interface's own EUI-64 link-local address
//     (LinkLocal(HostMAC)), added without DAD before the link goes up, so
//     no proxy is needed; the host gets "<ip>/128 dev caliX proto 80" and
//     the interface's forwarding=1. IPv6 forwarding also needs the
//     host-wide net/ipv6/conf/all/forwarding=1, which is the host's to set.
//
// # Kernel seam
//
// A Plumber talks to the host namespace through Netlink (the
// *netlink.Handle methods it uses), to host sysctls through Sysctl, and
// opens pod namespaces with an OpenFunc (default OpenNetNS: the path is
// opened and checked to be a network namespace, and a netlink handle is
// made inside it; the veth peer is created directly in it with
// netlink.NsFd). veth never moves a thread into another namespace itself:
// netlink.NewHandleAt does so briefly, on a locked thread, to open its
// socket, and sysctls of another namespace go through internal/nsenter. No
// binary is executed. netlinktest.Kernel implements all three seams, so a whole
// plumbing can be tested unprivileged:
//
//	k := netlinktest.New()
//	p, _ := veth.New(k, &veth.Config{Open: veth.Opener(k.NamespaceAt)})
//
// On other systems than Linux the package builds, and Setup, Check and
// Teardown return errors.ErrUnsupported.
package veth
