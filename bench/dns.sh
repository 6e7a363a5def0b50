#!/usr/bin/env bash
# Benchmark of `synscope dns` in a throwaway namespace lab with NSD: bulk
# queries/s vs dnsperf, single-query latency vs kdig, peak RSS of a bulk run
# of 1,000,000 names. Prints figures, asserts nothing. Needs root.
#   bench/dns.sh            # BENCH_SECS=5 BENCH_NAMES=1000000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
BENCH_SECS="${BENCH_SECS:-5}" BENCH_NAMES="${BENCH_NAMES:-1000000}" \
  cargo test --release --test lab_dns bench_vs_dnsperf_and_kdig -- --ignored --nocapture 2>&1 \
  | grep -E '^(dnsperf|synscope|single)'
