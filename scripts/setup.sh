#!/usr/bin/env bash
# Installs what synscope's demo, tests and benchmarks need on a fresh Debian
# machine (run as root): iproute2 (ip netns, veth), nftables (filtered ports),
# tcpdump (capture truth), procps (ps/sysctl), nsd and unbound (real DNS servers),
# knot-dnsutils (kdig) and ldnsutils (ldns-keygen, ldns-signzone for the signed lab zone),
# time (GNU time: a scan's own peak memory), prometheus (with promtool: the exporter's tests),
# zsh and fish (the completion scripts are parsed by their shells).
# With --bench it also installs the peer tools the benchmarks compare against.
set -euo pipefail
pkgs=(iproute2 nftables tcpdump procps nsd knot-dnsutils unbound ldnsutils time prometheus zsh fish)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(hping3 nmap masscan bc dnsperf traceroute prometheus-blackbox-exporter curl)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
