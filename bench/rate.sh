#!/usr/bin/env bash
# Rate control benchmark (issue 12; prints figures, asserts nothing). As root,
# with nmap. A full 65,535-port scan of the lab server on a clean path and on a
# path policed to 20,000 SYN/s (nftables on the server): synscope with default
# options (--rate auto), synscope at the old default --rate 10000, and
# nmap -sS -T4, in the same run, BENCH_REPS times each (default 3): wall time
# and wrong verdicts. Then draws docs/rate.svg from the -v rate trace of the
# last policed run.
#   bench/rate.sh        # BENCH_REPS=3
set -euo pipefail
cd "$(dirname "$0")/.."
TRACE=$(mktemp)
trap 'rm -f "$TRACE"' EXIT
BENCH_TRACE="$TRACE" cargo test --release --test lab_scan_rate bench_full_scan_clean_and_policed_against_nmap \
  -- --ignored --nocapture 2>&1 | grep -E '^(clean|policed)'
python3 bench/rate_plot.py "$TRACE" docs/rate.svg
