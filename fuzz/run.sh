#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions each (default 10,000,000), seeded
# with the real captures in crates/synscope-wire/src/fixtures, and reports crashes.
#   fuzz/run.sh                 # the full run
#   RUNS=20000 fuzz/run.sh      # a smoke run (CI)
# Needs cargo-fuzz (cargo install cargo-fuzz). Uses the stable toolchain with
# no sanitizer (RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10000000}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
status=0
for t in ip tcp udp icmp datagram correlate dns dns_answers reassembly neighbour path verify; do
  corpus=$(mktemp -d)
  cp crates/synscope-wire/src/fixtures/*.bin crates/synscope-probe/src/probe/fixtures/*.bin "$corpus/"
  # the DNS target starts from the DNS message inside the captured NSD answer
  case $t in dns | dns_answers) tail -c +29 crates/synscope-wire/src/fixtures/nsd_a_v4.bin > "$corpus/nsd_answer" ;; esac
  start=$(date +%s.%N)
  if cargo fuzz run --sanitizer none "$t" "$corpus" -- -runs="$RUNS" -max_len=2048 >"$corpus/log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$t)"; status=1
    tail -20 "$corpus/log"
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  execs=$(grep -o 'Done [0-9]* runs' "$corpus/log" | grep -o '[0-9]*' || echo "?")
  printf "%-10s %12s executions in %7.1fs  %s\n" "$t" "$execs" "$secs" "$result"
  rm -rf "$corpus"
done
exit $status
