// Package runtimes holds the end-to-end tests of the tabby CNI plugin under
// real container runtimes: containerd's CRI driven by crictl, and podman
// with its CNI network backend. Each test starts the runtime on state it
// creates in a temporary directory (root, state, sockets, CNI configuration
// and binaries, runc root), with the runtime's network namespace a
// throwaway one the test creates, so the pods' host-side veths and routes
// never appear in the machine's namespace. There is no registry: the sandbox
// (pause) image and the test container image are one static Go binary
// (testdata/pod) packed into a docker-archive tarball by the test itself and
// imported with `ctr images import` or `podman load`.
//
// The package has no code of its own; its tests are Linux-only kernel
// tests (root; skipped otherwise unless TABBY_KERNEL_TESTS=1, then they
// fail, also when a runtime's binaries are missing).
//
// # Why the runtimes are configured as they are
//
// Some hosts (the Firecracker VMs of tabby's CI among them) run root without
// CAP_SYS_RESOURCE in the bounding set. Two runtime defaults need it:
//
//   - containerd's CRI gives every sandbox oom_score_adj -998. runc's
//     nsexec writes it to /proc/self/oom_score_adj before the container
//     starts, gets EACCES (lowering oom_score_adj needs CAP_SYS_RESOURCE),
//     and runc reports only "can't get final child's PID from pipe: EOF"
//     (crun reports "write to /proc/self/oom_score_adj: Permission
//     denied"). restrict_oom_score_adj = true clamps the value to
//     containerd's own, which is allowed.
//   - podman (rootful) gives containers RLIMIT_NOFILE and RLIMIT_NPROC of
//     1048576; raising a hard limit needs CAP_SYS_RESOURCE, and runc fails
//     with "error setting rlimit type 7: operation not permitted". The
//     tests set low limits in containers.conf (default_ulimits), which is
//     always allowed.
//
// crun 1.8 (bookworm) refuses cgroup v1 hybrid hosts whose cgroup2
// hierarchy has any controller enabled ("cgroups in hybrid mode not
// supported, drop all controllers from cgroupv2"), so both runtimes use
// runc.
package runtimes
