#!/usr/bin/env bash
# Sustained rate of --rate auto over many hosts (issue 12; prints figures,
# asserts nothing). As root. 65,536 hosts (198.19.0.0/16, answered as a whole
# by the server namespace) x 4 ports (22, 80, 81, 443), by synscope with default
# options (--rate auto) and, beside it, with --rate 1000000, REPS runs each
# (default 3), alternating: SYN/s sent, wall and CPU time, and the machine's load.
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
for r in $(seq 1 "$REPS"); do
  for mode in auto 1000000; do
    ip netns exec "$CLI" /usr/bin/time -f "%e %U %S %M" -o "$OUT/time" "$BIN" scan $MANY_HOSTS \
      -p 22,80,81,443 --rate "$mode" --ndjson --open >"$OUT/stdout" 2>"$OUT/stderr" || true
    read -r wall user sys _ <"$OUT/time"
    python3 - "$OUT/stdout" "$mode" "$r" "$wall" "$(echo "$user + $sys" | bc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
path, mode, run, wall, cpu, load = sys.argv[1:]
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
c = s["coverage"]
print(f"--rate {mode:8} run {run}: {s['probes']} probes, {s['sent']} SYNs, send rate {s['send_rate_pps']:,.0f} SYN/s "
      f"(wall {float(wall):.2f} s: {s['sent'] / float(wall):,.0f} SYN/s overall), CPU {float(cpu):.2f} s, "
      f"open {s['open']}, closed {s['closed']}, no-response {s['no_response']}, settled {c['settled_pps']:,.0f}/s, "
      f"peak loss {c['peak_loss']:.3f}, load {load}")
PY
  done
done
