# Shared set-up of the CNI benchmark scripts (sourced). Builds tabby's
# binaries and installs cnitool and the reference plugins into $WORK/bin,
# makes a throwaway host namespace $HOSTNS, and removes everything on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/tabby-cni-bench.XXXXXX)
BIN=$WORK/bin
TAG=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
HOSTNS=tbench-host-$TAG
PODS=()

cleanup() {
	for p in "${PODS[@]}"; do ip netns del "$p" 2>/dev/null || true; done
	ip netns del "$HOSTNS" 2>/dev/null || true
	rm -f /var/lib/cni/results/tbench-*-"$TAG"-* 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
mkdir -p "$BIN" "$WORK/net.d" "$WORK/state" "$WORK/host-local"
(cd "$ROOT" && go build -o "$BIN/" ./examples/tabby ./examples/tabby-etcd ./examples/tabby-ipam ./examples/tabbyctl)
# The full build (etcd client linked, what tabby was before it handed etcd
# stores to tabby-etcd) in its own directory, found first on CNI_PATH by the
# "tabby-etcd" contenders.
mkdir -p "$BIN/etcd"
cp "$BIN/tabby-etcd" "$BIN/etcd/tabby"
# BEFORE=<dir> adds a "tabby-before" contender: that directory's tabby
# (and tabby-ipam), e.g. built from an older commit, first on CNI_PATH.
BEFORE=${BEFORE:-}
GOBIN=$BIN CGO_ENABLED=0 go install github.com/containernetworking/cni/cnitool@v1.3.1
GOBIN=$BIN CGO_ENABLED=0 go install \
	github.com/containernetworking/plugins/plugins/main/ptp@v1.10.0 \
	github.com/containernetworking/plugins/plugins/ipam/host-local@v1.10.0
ip netns add "$HOSTNS"
ip netns exec "$HOSTNS" ip link set lo up

# newpod NAME: a pod namespace removed on exit.
newpod() {
	ip netns add "$1"
	PODS+=("$1")
}

# stats FILE: p50, p99, mean and count of the numbers (microseconds) in FILE,
# printed in milliseconds.
stats() {
	sort -n "$1" | awk '{a[NR]=$1; s+=$1} END {
		if (NR == 0) { print "no samples"; exit }
		p50=a[int((NR+1)*0.50)]; i99=int(NR*0.99+0.999); if (i99<1) i99=1; if (i99>NR) i99=NR
		printf "p50 %6.2f ms  p99 %6.2f ms  mean %6.2f ms  n=%d\n", p50/1000, a[i99]/1000, s/NR/1000, NR }'
}
