#!/usr/bin/env bash
# What canaries and `scan --verify` cost (prints figures, asserts nothing). As
# root. The bench lab (bench/lab.sh): a server namespace answering a whole
# prefix (198.19.0.0/16, a kernel listener on port 80 for every address).
#  1. 4,096 hosts x 3 ports (80 open on every host: the worst case for
#     canaries, every host gets them) with --no-canaries, the default
#     (canaries) and --verify: SYNs, canary SYNs, handshakes, time.
#  2. 65,536 hosts x 1 closed port: canaries cost nothing without a SYN-ACK.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
RATE=${RATE:-100000}
export OPEN_PORTS="80"
MANY_HOSTS=198.19.0.0/16
. bench/lab.sh
trap 'lab_down' EXIT
cargo build --release -q
BIN=$PWD/target/release/synscope
MANY_HOSTS=$MANY_HOSTS lab_up
in_cli() { ip netns exec "$CLI" "$@"; }

figures() {  # figures LABEL SCAN-ARGS... : one run
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  in_cli "$BIN" scan "$@" --rate "$RATE" --wait 500ms --ndjson --no-progress 2>/dev/null | tail -1 >/tmp/scan_checks.$$
  t1=$(date +%s.%N)
  python3 - "$label" "$t0" "$t1" /tmp/scan_checks.$$ <<'PY'
import json, sys
label, t0, t1, f = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = json.load(open(f))
v = s["verify"]
print(f"{label:<14} wall {t1 - t0:6.2f}s  scan {s['elapsed_us'] / 1e6:6.2f}s  SYNs {s['sent']:>7}  "
      f"canary SYNs {v['canary_probes']:>6} to {v['canary_hosts']:>5} hosts  handshakes {v['handshakes']:>5} "
      f"(verified {v['verified']}, syn-proxy {v['syn_proxy']}, unverified {v['unverified']})  "
      f"open {s['open']} closed {s['closed']} no-response {s['no_response']}  capture drops {s['capture_drops']}")
PY
  rm -f /tmp/scan_checks.$$
}

# warm-up: the listener is up and the neighbour entries are in place
in_cli "$BIN" scan 198.19.0.0/24 -p 80 --rate "$RATE" --wait 200ms --no-progress >/dev/null 2>&1 || true
# the modes alternate, so a load spike of the shared machine hits them alike
echo "== 198.19.0.0/20 (4,096 hosts) x 22,80,443 (80 open everywhere), --rate $RATE"
for _ in $(seq "$REPS"); do
  figures "--no-canaries" 198.19.0.0/20 -p 22,80,443 --no-canaries
  figures "canaries" 198.19.0.0/20 -p 22,80,443
  figures "--verify" 198.19.0.0/20 -p 22,80,443 --verify
done
echo "== $MANY_HOSTS (65,536 hosts) x port 22 (closed everywhere), --rate $RATE"
for _ in $(seq "$REPS"); do
  figures "--no-canaries" $MANY_HOSTS -p 22 --no-canaries
  figures "canaries" $MANY_HOSTS -p 22
done
