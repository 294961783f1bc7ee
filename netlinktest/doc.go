// Package netlinktest is an in-memory Linux kernel for tests: a fake
// machine made of network namespaces whose handles (*Kernel) implement the
// *netlink.Handle methods tabby's packages use, with the same signatures and
// the same answers as the real kernel (errno values, kernel-installed
// routes, veth peer indexes and link-netnsids, vxlan attributes, FDB
// semantics). A contract suite runs the same checks against the fake and,
// as root, against the real kernel, so the fake is only trusted where the
// kernel agrees.
//
// It owns nothing on the host: it never touches the real kernel.
package netlinktest
