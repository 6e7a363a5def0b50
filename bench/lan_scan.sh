#!/usr/bin/env bash
# Local-subnet scan benchmark (prints figures). As root, with nmap installed.
# A lab LAN (a bridge in the client namespace, 5 hosts up of 253, no static
# neighbour entries) scanned by `synscope scan 198.18.200.0/24 -p 80` and by
# `nmap -sS -p 80 -n 198.18.200.0/24` (then the same over IPv6 for
# 2001:db8:200::/120), alternating in the same run, REPS
# times each (default 5); the lab is built by the ignored test
# bench_lan_scan_against_nmap in tests/lab_realnet_scan.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nmap >/dev/null || { echo "needs nmap (scripts/setup.sh --bench)" >&2; exit 2; }
REPS=${REPS:-5} cargo test --release -q --test lab_realnet_scan -- \
  --ignored --exact bench_lan_scan_against_nmap --nocapture --test-threads 1
