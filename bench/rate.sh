#!/usr/bin/env bash
# Issue 12's full-scan figures (prints figures, asserts nothing). As root, with
# nmap. A full 65,535-port scan of the bench lab host (3 open, 2 dropped, 2
# rejected with ICMP, the rest closed) on a clean path and on a path policed to
# 20,000 SYN/s (nftables on the server): synscope with default options
# (--rate auto) and nmap -sS -T4 beside it, alternating, REPS runs (default 3):
# wall time, wrong verdicts, the machine's load. BASE=/path/to/synscope adds
# another build (main's, say) to every run, for a same-run comparison. Then
# draws docs/rate.svg from the -v rate trace of the last policed run (PLOT=0:
# not). nmap -T4 on the policed path takes minutes a run: NMAP_POLICED=1 adds it.
#   bench/rate.sh
#   REPS=4 BASE=/tmp/synscope-main PLOT=0 bench/rate.sh
# The other figures of issue 12: bench/rate_many.sh (65,536 hosts x 4 ports,
# SYN/s sustained), bench/rate_table.sh (accuracy versus rate, every tool).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
PLOT=${PLOT:-1}
NMAP_POLICED=${NMAP_POLICED:-0}
export OPEN_PORTS="22 80 443" DROP_PORTS="21 8443" REJECT_PORTS="111 113"
OUT=$(mktemp -d)
. bench/lab.sh
trap 'lab_down; rm -rf "$OUT"' EXIT
cargo build --release -q
BIN=$PWD/target/release/synscope
lab_up
one() {  # one PATH NAME RUN FILE TOOL COMMAND...
  local path=$1 name=$2 run=$3 file=$4 tool=$5; shift 5
  local t0 t1 wall w wo wc wf
  rm -f "$file"
  t0=$(date +%s.%N)
  ip netns exec "$CLI" "$@" >"$OUT/stdout" 2>"$OUT/stderr" || true
  t1=$(date +%s.%N)
  wall=$(echo "$t1 - $t0" | bc)
  read -r w wo wc wf < <(python3 bench/rate_table.py check "$tool" "$file")
  printf "%-8s %-24s run %s  %7.2f s  wrong %5s (open %s, closed %s, filtered %s)  load %s\n" \
    "$path" "$name" "$run" "$wall" "$w" "$wo" "$wc" "$wf" "$(cut -d' ' -f1 /proc/loadavg)"
}
synscope() {  # synscope PATH NAME RUN BINARY ARGS...
  one "$1" "$2" "$3" "$OUT/stdout" synscope "$4" scan $T4 -p- --ndjson "${@:5}"
}
nmap_t4() { one "$1" "nmap -sS -T4" "$2" "$OUT/n.xml" nmap nmap -sS -T4 -p- -n -oX "$OUT/n.xml" $T4; }
for run in $(seq 1 "$REPS"); do
  policer off
  synscope clean "synscope (default)" "$run" "$BIN"
  if [ -n "${BASE:-}" ]; then synscope clean "BASE (default)" "$run" "$BASE"; fi
  nmap_t4 clean "$run"
  policer on
  if [ -n "${BASE:-}" ]; then synscope policed "BASE (default)" "$run" "$BASE"; fi
  synscope policed "synscope (default)" "$run" "$BIN" -v
  cp "$OUT/stderr" "$OUT/trace"
  if [ "$NMAP_POLICED" = 1 ]; then nmap_t4 policed "$run"; fi
done
if [ "$PLOT" = 1 ]; then
  python3 bench/rate_plot.py "$OUT/trace" docs/rate.svg
fi
