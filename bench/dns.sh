#!/usr/bin/env bash
# Benchmark of `synscope dns` in a throwaway namespace lab with NSD (RRL off):
#  1. bulk queries/s beside dnsperf's (as it comes, and with -e: EDNS like ours),
#     both tools in the same run, on a mixed
#     query set (A, AAAA, CNAME chain, MX, TXT, NXDOMAIN) and on one repeated
#     name, BENCH_ROUNDS times (default 3), with each tool's CPU time per query;
#     synscope's every answer is checked against the zone;
#  2. single-query latency beside kdig, peak RSS of a bulk run of BENCH_NAMES_RSS
#     names (default 1,000,000).
# Prints figures, asserts nothing. Needs root.
#   bench/dns.sh    # BENCH_SECS=5 (dnsperf's run) BENCH_NAMES=500000 (synscope's) BENCH_ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
BENCH_SECS="${BENCH_SECS:-5}" BENCH_NAMES="${BENCH_NAMES:-500000}" BENCH_ROUNDS="${BENCH_ROUNDS:-3}" \
  cargo test --release --test lab_dns_bulk bench_bulk_vs_dnsperf -- --ignored --nocapture 2>&1 \
  | grep -E '^(round|synscope stderr|not as|[0-9]+ result lines)'
BENCH_SECS="${BENCH_SECS:-5}" BENCH_NAMES="${BENCH_NAMES_RSS:-1000000}" \
  cargo test --release --test lab_dns bench_vs_dnsperf_and_kdig -- --ignored --nocapture 2>&1 \
  | grep -E '^(synscope bulk|single)'
