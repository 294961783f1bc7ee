#!/usr/bin/env bash
# IPAM alone with N addresses allocated (default 5,000): DEL latency of
# tabby-ipam (bolt datastore with fsync, host lock) vs host-local
# (containernetworking/plugins v1.10.0), interleaved in the same run. Each
# timed DEL is followed by an untimed ADD of the same container so that N
# stay allocated. The plugins are run directly with the CNI protocol (no
# cnitool); they touch no network state.
#
#   sudo bench/cni/ipam.sh [N] [SAMPLES]
set -euo pipefail
source "$(dirname "$0")/common.sh"
N=${1:-5000}
SAMPLES=${2:-200}
newpod "tbench-ipam-$TAG"
NS=/var/run/netns/tbench-ipam-$TAG

TABBY_CONF="{\"cniVersion\":\"1.1.0\",\"name\":\"tbench-ipam-$TAG\",\"type\":\"ptp\",\"ipam\":{\"type\":\"tabby-ipam\",\"pools\":[\"10.244.0.0/17\"],\"blockSize\":26,\"nodeName\":\"bench\",\"stateDir\":\"$WORK/state\"}}"
HL_CONF="{\"cniVersion\":\"1.1.0\",\"name\":\"tbench-hl-$TAG\",\"type\":\"ptp\",\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.244.128.0/17\",\"dataDir\":\"$WORK/host-local\"}}"

# call PLUGIN CONF COMMAND ID
call() {
	CNI_COMMAND=$3 CNI_CONTAINERID=$4 CNI_NETNS=$NS CNI_IFNAME=eth0 CNI_PATH=$BIN "$BIN/$1" <<<"$2" >/dev/null
}
export -f call
export BIN NS

echo "== populating $N addresses in each (4 processes at a time)"
seq 1 "$N" | xargs -P4 -I{} bash -c 'call tabby-ipam "$0" ADD c{}' "$TABBY_CONF"
seq 1 "$N" | xargs -P4 -I{} bash -c 'call host-local "$0" ADD c{}' "$HL_CONF"
echo "allocated: tabby $("$BIN/tabbyctl" --datastore "bolt://$WORK/state/tabby.db" ipam show -o json | awk -F: '/"allocated"/ {s+=$2} END {print s+0}'), host-local $(ls "$WORK/host-local/tbench-hl-$TAG" | grep -c '^10\.')"

echo "== $SAMPLES DELs each, interleaved"
for _ in $(seq "$SAMPLES"); do
	id=c$(( (RANDOM * 32768 + RANDOM) % N + 1 ))
	for p in tabby-ipam host-local; do
		if [ $p = tabby-ipam ]; then conf=$TABBY_CONF; else conf=$HL_CONF; fi
		s=$(date +%s%N)
		call $p "$conf" DEL "$id"
		e=$(date +%s%N)
		echo $(( (e - s) / 1000 )) >>"$WORK/del-$p"
		call $p "$conf" ADD "$id"
	done
done
# The process start alone, for reference (VERSION does no IPAM work).
for _ in $(seq 50); do
	for p in tabby-ipam host-local; do
		s=$(date +%s%N)
		CNI_COMMAND=VERSION "$BIN/$p" </dev/null >/dev/null
		e=$(date +%s%N)
		echo $(( (e - s) / 1000 )) >>"$WORK/ver-$p"
	done
done
echo
printf "%-28s %s\n" "tabby-ipam DEL @ $N" "$(stats "$WORK/del-tabby-ipam")"
printf "%-28s %s\n" "host-local DEL @ $N" "$(stats "$WORK/del-host-local")"
printf "%-28s %s\n" "tabby-ipam VERSION" "$(stats "$WORK/ver-tabby-ipam")"
printf "%-28s %s\n" "host-local VERSION" "$(stats "$WORK/ver-host-local")"
