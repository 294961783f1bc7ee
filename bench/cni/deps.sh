#!/usr/bin/env bash
# Installs the system tools the CNI end-to-end tests and benchmarks lean on:
# iproute2 (ip netns exec), and iptables + nftables (the portmap plugin's two
# backends shell out to iptables-restore / nft). Idempotent.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables-save >/dev/null 2>&1 || need+=(iptables)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
