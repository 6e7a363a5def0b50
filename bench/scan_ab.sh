#!/usr/bin/env bash
# Two synscope binaries side by side, alternating, in one lab (prints figures,
# asserts nothing). As root. Usage: bench/scan_ab.sh OLD_BINARY NEW_BINARY
#  1. a full 1-65535 scan of one lab host with default options (--rate auto);
#  2. 65,536 hosts (198.19.0.0/16) x 4 ports with default options.
# Each line: wall time, SYNs and SYN/s sent, user+sys CPU, verdicts, load.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
OLD=$1 NEW=$2
export OPEN_PORTS="22 80 443" DROP_PORTS="21 8443" REJECT_PORTS="111"
MANY_HOSTS=198.19.0.0/16
OUT=$(mktemp -d)
. bench/lab.sh
trap 'lab_down; rm -rf "$OUT"' EXIT
MANY_HOSTS=$MANY_HOSTS lab_up
one() {  # one LABEL BINARY ARGS...
  local label=$1 bin=$2; shift 2
  ip netns exec "$CLI" /usr/bin/time -f "%e %U %S" -o "$OUT/time" "$bin" scan "$@" --ndjson \
    >"$OUT/stdout" 2>"$OUT/stderr" || true
  read -r wall user sys <"$OUT/time"
  python3 - "$OUT/stdout" "$label" "$wall" "$(echo "$user + $sys" | bc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
path, label, wall, cpu, load = sys.argv[1:]
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
print(f"{label:28} wall {float(wall):6.2f} s  {s['sent']:7} SYNs  {s['send_rate_pps']:9,.0f} SYN/s sending  "
      f"cpu {float(cpu):5.2f} s  open {s['open']} closed {s['closed']} filtered {s['filtered']} "
      f"no-response {s['no_response']}  load {load}")
PY
}
for r in $(seq 1 "$REPS"); do
  one "old full-port run $r" "$OLD" $T4 -p-
  one "new full-port run $r" "$NEW" $T4 -p-
done
for r in $(seq 1 "$REPS"); do
  one "old 65536x4 run $r" "$OLD" $MANY_HOSTS -p 22,80,81,443 --open
  one "new 65536x4 run $r" "$NEW" $MANY_HOSTS -p 22,80,81,443 --open
done
