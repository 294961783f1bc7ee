#!/usr/bin/env bash
# CPU time (perf stat task-clock, every process of the cycle: cnitool and the
# plugins) of CYCLES ADD+DEL cycles through cnitool: tabby (default build),
# tabby-etcd (the full build), with BEFORE=<dir> an older tabby, and ptp + host-local. Wall time on a shared
# machine is dominated by waiting (the kernel's veth unregistration, fsync);
# CPU time is what the plugins themselves cost.
#
#   sudo [BEFORE=/dir/with/old/tabby] bench/cni/cpu.sh [CYCLES]
set -euo pipefail
source "$(dirname "$0")/common.sh"
CYCLES=${1:-50}
command -v perf >/dev/null || { echo "needs perf (linux-perf)" >&2; exit 1; }
newpod "tbench-cpu-$TAG"
cat > "$WORK/net.d/10-tabby.conflist" <<JSON
{"cniVersion":"1.1.0","name":"tbench-tabby-$TAG","plugins":[{"type":"tabby","nodeName":"bench",
 "stateDir":"$WORK/state","ipam":{"type":"tabby-ipam","pools":["10.244.0.0/17"],"blockSize":26}}]}
JSON
sed "s/tbench-tabby-/tbench-tabby-etcd-/" "$WORK/net.d/10-tabby.conflist" >"$WORK/net.d/11-tabby-etcd.conflist"
sed "s/tbench-tabby-/tbench-tabby-before-/" "$WORK/net.d/10-tabby.conflist" >"$WORK/net.d/12-tabby-before.conflist"
cat > "$WORK/net.d/20-ptp.conflist" <<JSON
{"cniVersion":"1.1.0","name":"tbench-ptp-$TAG","plugins":[{"type":"ptp","mtu":1450,"ipMasq":false,
 "ipam":{"type":"host-local","subnet":"10.244.128.0/17","dataDir":"$WORK/host-local"}}]}
JSON
cat > "$WORK/cycles.sh" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
for _ in $(seq "$3"); do
	cnitool add "$1" "$2" >/dev/null
	cnitool del "$1" "$2" >/dev/null
done
SH
chmod +x "$WORK/cycles.sh"
export NETCONFPATH=$WORK/net.d PATH=$BIN:$PATH
for round in 1 2; do
	for net in tabby tabby-etcd ${BEFORE:+tabby-before} ptp; do
		cp=$BIN; [ $net = tabby-etcd ] && cp=$BIN/etcd:$BIN; [ $net = tabby-before ] && cp=$BEFORE:$BIN
		ms=$(CNI_PATH=$cp ip netns exec "$HOSTNS" perf stat -x, -e task-clock "$WORK/cycles.sh" "tbench-$net-$TAG" \
			"/var/run/netns/tbench-cpu-$TAG" "$CYCLES" 2>&1 >/dev/null | awk -F, '/task-clock/ {print $1}')
		printf "round %d %-14s CPU per ADD+DEL cycle: %6.2f ms\n" "$round" "$net" "$(awk -v m="$ms" -v n="$CYCLES" 'BEGIN {print m/n}')"
	done
done
