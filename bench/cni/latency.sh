#!/usr/bin/env bash
# CNI ADD+DEL latency through cnitool: tabby (in-process tabby-ipam, bolt
# datastore with fsync; the default bolt-only binary, the full tabby-etcd
# binary and, with BEFORE=<dir>, an older build) vs ptp + host-local (containernetworking/plugins
# v1.10.0, ipMasq off like tabby), in the same run, sequential (interleaved, one of each per round)
# and with 16 workers in parallel. Everything runs in namespaces this script
# creates and deletes.
#
#   sudo [BEFORE=/dir/with/old/tabby] bench/cni/latency.sh [ROUNDS] [PARALLEL_ROUNDS_PER_WORKER]
set -euo pipefail
source "$(dirname "$0")/common.sh"
ROUNDS=${1:-200}
PROUNDS=${2:-20}
WORKERS=16

cat > "$WORK/net.d/10-tabby.conflist" <<JSON
{"cniVersion":"1.1.0","name":"tbench-tabby-$TAG","plugins":[{"type":"tabby","nodeName":"bench",
 "stateDir":"$WORK/state","ipam":{"type":"tabby-ipam","pools":["10.244.0.0/17"],"blockSize":26}}]}
JSON
cat > "$WORK/net.d/11-tabby-etcd.conflist" <<JSON
{"cniVersion":"1.1.0","name":"tbench-tabby-etcd-$TAG","plugins":[{"type":"tabby","nodeName":"bench",
 "stateDir":"$WORK/state","ipam":{"type":"tabby-ipam","pools":["10.244.0.0/17"],"blockSize":26}}]}
JSON
sed "s/tbench-tabby-/tbench-tabby-before-/" "$WORK/net.d/10-tabby.conflist" >"$WORK/net.d/12-tabby-before.conflist"
cat > "$WORK/net.d/20-ptp.conflist" <<JSON
{"cniVersion":"1.1.0","name":"tbench-ptp-$TAG","plugins":[{"type":"ptp","mtu":1450,"ipMasq":false,
 "ipam":{"type":"host-local","subnet":"10.244.128.0/17","dataDir":"$WORK/host-local"}}]}
JSON

# The floor: a plugin that does nothing (prints a fixed result), so that
# cnitool's and process start-up's share of every cycle is visible.
mkdir -p "$WORK/noop"
cat > "$WORK/noop/main.go" <<'GO'
package main

import (
	"fmt"
	"os"
)

func main() {
	if os.Getenv("CNI_COMMAND") == "ADD" {
		fmt.Print(`{"cniVersion":"1.1.0","ips":[{"address":"10.244.255.1/32"}]}`)
	}
}
GO
printf 'module noop\ngo 1.21\n' >"$WORK/noop/go.mod"
(cd "$WORK/noop" && go build -o "$BIN/tbench-noop" .)
cat > "$WORK/net.d/30-noop.conflist" <<JSON
{"cniVersion":"1.1.0","name":"tbench-noop-$TAG","plugins":[{"type":"tbench-noop"}]}
JSON

for i in $(seq 0 $((WORKERS - 1))); do newpod "tbench-pod$i-$TAG"; done

# cycle NET POD OUT N: N times ADD then DEL of POD on NET in the host
# namespace; appends "add_us del_us" per cycle to OUT.
cat > "$WORK/cycle.sh" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
net=$1 pod=$2 out=$3 n=$4
# The full build (or the older one) comes first on CNI_PATH for its network.
case $net in *-etcd-*) export CNI_PATH=$CNI_PATH_ETCD ;; *-before-*) export CNI_PATH=$CNI_PATH_BEFORE ;; esac
for _ in $(seq "$n"); do
	s=$(date +%s%N)
	cnitool add "$net" "/var/run/netns/$pod" >/dev/null
	m=$(date +%s%N)
	cnitool del "$net" "/var/run/netns/$pod" >/dev/null
	e=$(date +%s%N)
	echo "$(( (m - s) / 1000 )) $(( (e - m) / 1000 ))" >>"$out"
done
SH
chmod +x "$WORK/cycle.sh"
export NETCONFPATH=$WORK/net.d CNI_PATH=$BIN CNI_PATH_ETCD=$BIN/etcd:$BIN CNI_PATH_BEFORE=${BEFORE:-/nonexistent}:$BIN PATH=$BIN:$PATH
TABBYS="tabby tabby-etcd"
[ -n "$BEFORE" ] && TABBYS="$TABBYS tabby-before"
NETS="$TABBYS ptp noop"
inhost() { ip netns exec "$HOSTNS" "$@"; }

# Warm-up (page cache, block claim, first bolt file creation).
for net in $NETS; do inhost "$WORK/cycle.sh" "tbench-$net-$TAG" "tbench-pod0-$TAG" /dev/null 5; done

echo "== sequential: $ROUNDS rounds, $NETS interleaved"
for _ in $(seq "$ROUNDS"); do
	for net in $NETS; do inhost "$WORK/cycle.sh" "tbench-$net-$TAG" "tbench-pod0-$TAG" "$WORK/seq-$net" 1; done
done

echo "== parallel: $WORKERS workers x $PROUNDS cycles per plugin, in 4 alternating batches"
for batch in 1 2 3 4; do
	for net in $NETS; do
		pids=()
		for i in $(seq 0 $((WORKERS - 1))); do
			inhost "$WORK/cycle.sh" "tbench-$net-$TAG" "tbench-pod$i-$TAG" "$WORK/par-$net.$i" $((PROUNDS / 4)) &
			pids+=($!)
		done
		wait "${pids[@]}"
	done
done
for net in $NETS; do cat "$WORK"/par-$net.* >"$WORK/par-$net"; done

report() {
	local f=$1 label=$2
	awk '{print $1+$2}' "$f" >"$f.sum"; awk '{print $1}' "$f" >"$f.add"; awk '{print $2}' "$f" >"$f.del"
	printf "%-34s ADD+DEL %s\n" "$label" "$(stats "$f.sum")"
	printf "%-34s ADD     %s\n" "" "$(stats "$f.add")"
	printf "%-34s DEL     %s\n" "" "$(stats "$f.del")"
}
echo
for m in seq par; do
	report "$WORK/$m-tabby" "tabby, $m"
	report "$WORK/$m-tabby-etcd" "tabby-etcd (full build), $m"
	[ -n "$BEFORE" ] && report "$WORK/$m-tabby-before" "tabby from $BEFORE, $m"
	report "$WORK/$m-ptp" "ptp+host-local, $m"
	report "$WORK/$m-noop" "no-op plugin (floor), $m"
done
p50() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for m in seq par; do
	for what in add sum; do
		p=$(p50 "$WORK/$m-ptp.$what")
		for net in $TABBYS noop; do
			t=$(p50 "$WORK/$m-$net.$what")
			echo "$m: $net $what p50 / ptp+host-local $what p50 = $(awk -v t="$t" -v p="$p" 'BEGIN {printf "%.2f", t/p}')"
		done
	done
done
left=$(ip netns exec "$HOSTNS" ip -o link | grep -vc ' lo:' || true)
echo "host namespace links left: $left; tabby allocations left: $("$BIN/tabbyctl" --datastore "bolt://$WORK/state/tabby.db" ipam show -o json | awk -F: '/"allocated"/ {s+=$2} END {print s+0}')"
