#!/usr/bin/env bash
# Pod sandbox start through containerd's CRI (`crictl runp`, wall time of the
# whole call: crictl, CRI, runc, the CNI ADD, the pause container), tabby
# (default build, in-process tabby-ipam, bolt with fsync, kernel proxy ARP)
# vs ptp + host-local (containernetworking/plugins v1.10.0, ipMasq off), one
# of each per round (interleaved). Each contender has its own containerd
# (Debian's, runc) with all state in a temporary directory, running in a
# throwaway network namespace, so that no configuration reload sits between
# the rounds. After each runp the sandbox is stopped and removed (not timed).
# The image is the runtime tests' static Go binary (no registry), built here.
#
#   sudo bench/cni/runp.sh [ROUNDS]
#
# Needs containerd, ctr and runc (apt-get install containerd); crictl is
# installed with go install.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ROUNDS=${1:-40}
for b in containerd ctr runc nsenter; do
	command -v "$b" >/dev/null || { echo "needs $b (apt-get install containerd)" >&2; exit 1; }
done
CGPARENT=/tbench-runp-$TAG
IMAGE=localhost/tabby-test-pod:1
GOBIN=$BIN CGO_ENABLED=0 go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0
GOBIN=$BIN CGO_ENABLED=0 go install github.com/containernetworking/plugins/plugins/main/loopback@v1.10.0
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/pod" ./examples/internal/cni/e2e/runtimes/testdata/pod)
"$BIN/pod" image -o "$WORK/pod.tar" "$IMAGE"

CONTENDERS=(tabby ptp)
declare -A PID

teardown() {
	set +e
	for c in "${CONTENDERS[@]}"; do
		local d=$WORK/$c
		[ -f "$d/crictl.yaml" ] || continue
		for id in $("$BIN/crictl" --config "$d/crictl.yaml" pods -q 2>/dev/null); do
			"$BIN/crictl" --config "$d/crictl.yaml" stopp "$id" >/dev/null 2>&1
			"$BIN/crictl" --config "$d/crictl.yaml" rmp -f "$id" >/dev/null 2>&1
		done
		[ -n "${PID[$c]:-}" ] && kill "${PID[$c]}" 2>/dev/null && wait "${PID[$c]}" 2>/dev/null
	done
	# What is left (shims, pause processes), by pid: command lines naming
	# $WORK, processes in our cgroup parent.
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = $$ ] && continue
		if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$WORK" ||
			grep -qF "$CGPARENT/" "$p/cgroup" 2>/dev/null; then
			kill -9 "$pid" 2>/dev/null
		fi
	done
	awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 {print length($5), $5}' /proc/self/mountinfo |
		sort -rn | cut -d' ' -f2- | while read -r m; do umount -l "$m"; done
	sleep 0.5
	for root in /sys/fs/cgroup/*; do
		[ -d "$root$CGPARENT" ] && find "$root$CGPARENT" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	for c in "${CONTENDERS[@]}"; do ip netns del "tbench-runp-$c-$TAG" 2>/dev/null; done
	cleanup
}
trap teardown EXIT

# start CONTENDER CONFLIST: a containerd whose only CNI network is CONFLIST.
start() {
	local c=$1 d=$WORK/$1 ns=tbench-runp-$1-$TAG
	mkdir -p "$d/net.d" "$d/logs"
	printf '%s\n' "$2" >"$d/net.d/10-$c.conflist"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	# Kernel proxy ARP for tabby's 169.254.1.1 needs a default route.
	ip -n "$ns" link add dummy0 type veth peer name dummy1
	ip -n "$ns" link set dummy0 up
	ip -n "$ns" route add default dev dummy0
	cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$d/c.sock"
[ttrpc]
  address = "$d/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$BIN"
    conf_dir = "$d/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "$(command -v runc)"
      Root = "$d/runc"
TOML
	printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$d/c.sock" "$d/c.sock" >"$d/crictl.yaml"
	nsenter --net="/var/run/netns/$ns" -- containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
	PID[$c]=$!
	for _ in $(seq 100); do
		"$BIN/crictl" --config "$d/crictl.yaml" info >/dev/null 2>&1 && break
		sleep 0.2
	done
	ctr --address "$d/c.sock" -n k8s.io images import "$WORK/pod.tar" >/dev/null
}

start tabby '{"cniVersion":"1.0.0","name":"tbench-runp-tabby","plugins":[{"type":"tabby","nodeName":"bench","stateDir":"'"$WORK/state"'","proxyARP":"kernel","ipam":{"type":"tabby-ipam","pools":["10.244.0.0/17"],"blockSize":26}}]}'
start ptp '{"cniVersion":"1.0.0","name":"tbench-runp-ptp","plugins":[{"type":"ptp","mtu":1450,"ipMasq":false,"ipam":{"type":"host-local","subnet":"10.244.128.0/17","dataDir":"'"$WORK/host-local"'"}}]}'

now_us() { echo $(($(date +%s%N) / 1000)); }

# One warm-up sandbox each (first use of the snapshot, the plugin binary in
# the page cache), not counted.
for i in $(seq 0 "$ROUNDS"); do
	for c in "${CONTENDERS[@]}"; do
		d=$WORK/$c
		printf '{"metadata":{"name":"bench-%s","namespace":"default","uid":"uid-%s-%s","attempt":0},"log_directory":"%s","linux":{"cgroup_parent":"%s"}}\n' \
			"$i" "$c" "$i" "$d/logs/$i" "$CGPARENT" >"$d/pod.json"
		t0=$(now_us)
		id=$("$BIN/crictl" --config "$d/crictl.yaml" runp "$d/pod.json" 2>"$d/err") || { cat "$d/err" >&2; exit 1; }
		t1=$(now_us)
		[ "$i" -gt 0 ] && echo $((t1 - t0)) >>"$WORK/$c.us"
		"$BIN/crictl" --config "$d/crictl.yaml" stopp "$id" >/dev/null 2>&1
		"$BIN/crictl" --config "$d/crictl.yaml" rmp "$id" >/dev/null 2>&1
	done
done
echo "crictl runp, $ROUNDS rounds interleaved ($(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'))"
for c in "${CONTENDERS[@]}"; do
	printf '%-6s ' "$c"
	stats "$WORK/$c.us"
done
left=$(ip -n "tbench-runp-tabby-$TAG" -br link | grep -c '^cali' || true)
echo "tabby host veths left: $left"
