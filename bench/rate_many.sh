#!/usr/bin/env bash
# Issue 12's many-hosts figure: SYN/s sustained (prints figures, asserts
# nothing). As root. 65,536 hosts (198.19.0.0/16, answered as a whole by the
# server namespace) x 4 ports (22, 80, 443 open, 81 closed), by synscope with
# default options (--rate auto) and, beside it, with --rate 1000000 (MODES),
# REPS runs each (default 3), alternating: probes / wall (the figure: >= 200k/s
# sustained), SYNs sent (retries included) and their send rate, wrong verdicts
# (every pair answers), capture drops, CPU time, the machine's load.
# BASE=/path/to/synscope adds another build (main's, say) to every run, for a
# same-run comparison.
#   bench/rate_many.sh
#   REPS=3 MODES=auto BASE=/tmp/synscope-main bench/rate_many.sh
# The other figures of issue 12: bench/rate.sh (full scan, clean and policed,
# against nmap -T4), bench/rate_table.sh (accuracy versus rate, every tool).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
export OPEN_PORTS="22 80 443" DROP_PORTS="" REJECT_PORTS=""
MANY_HOSTS=198.19.0.0/16
OUT=$(mktemp -d)
. bench/lab.sh
trap 'lab_down; rm -rf "$OUT"' EXIT
cargo build --release -q
BIN=$PWD/target/release/synscope
MANY_HOSTS=$MANY_HOSTS lab_up
BINS="new=$BIN" SNIB="new=$BIN"
if [ -n "${BASE:-}" ]; then BINS="$BINS base=$BASE" SNIB="base=$BASE $SNIB"; fi
for r in $(seq 1 "$REPS"); do
  for mode in ${MODES:-auto 1000000}; do
    # the builds take turns going first
    order=$BINS; [ $((r % 2)) = 0 ] && order=$SNIB
    for b in $order; do
      name=${b%%=*} bin=${b#*=}
      ip netns exec "$CLI" /usr/bin/time -f "%e %U %S %M" -o "$OUT/time" "$bin" scan $MANY_HOSTS \
        -p 22,80,81,443 --rate "$mode" --ndjson --open >"$OUT/stdout" 2>"$OUT/stderr" || true
      read -r wall user sys _ <"$OUT/time"
      python3 - "$OUT/stdout" "$name" "$mode" "$r" "$wall" "$(echo "$user + $sys" | bc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
path, name, mode, run, wall, cpu, load = sys.argv[1:]
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
c = s["coverage"]
wall = float(wall)
wrong = s["probes"] - min(s["open"], 3 * s["probes"] // 4) - min(s["closed"], s["probes"] // 4)
print(f"{name:4} --rate {mode:8} run {run}: {s['probes'] / wall:,.0f} probes/s sustained "
      f"({s['probes']} in {wall:.2f} s), wrong {wrong}, {s['sent']} SYNs sent at {s['send_rate_pps']:,.0f}/s, "
      f"capture drops {s['capture_drops']}, uncertain {c['uncertain_pairs']:,.0f}, CPU {float(cpu):.2f} s, "
      f"settled {c['settled_pps']:,.0f}/s, peak loss {c['peak_loss']:.3f}, "
      f"canary SYNs {(s.get('verify') or {}).get('canary_probes', 0)}, load {load}")
PY
    done
  done
done
