#!/usr/bin/env bash
# Timing truth benchmark (prints figures, asserts nothing). As root.
#  1. N SYN probes (default 1000, 5 ms apart) to a kernel listener in a namespace
#     lab, by synscope, hping3 -S and nping --tcp, each while tcpdump captures
#     the same packets with kernel timestamps; prints |reported RTT - capture|.
#  2. 10,000 synscope probes at a 1 ms interval: CPU time and peak RSS.
# Needs: scripts/setup.sh --bench (hping3, nmap for nping, tcpdump, time).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
LOAD_N=${LOAD_N:-10000}
T=198.18.0.2
OUT=$(mktemp -d)
OPEN_PORTS=80
. bench/lab.sh
trap 'lab_down; rm -rf "$OUT"' EXIT

cargo build --release -q
BIN=$PWD/target/release/synscope
lab_up

capture() {  # capture NAME COMMAND...: run the command while tcpdump captures
  local name=$1; shift
  ip netns exec "$CLI" tcpdump -i veth0 -j host --time-stamp-precision=nano -U -w "$OUT/$name.pcap" \
    "tcp port 80" 2>"$OUT/$name.tcpdump" &
  local dump=$!
  sleep 1
  ip netns exec "$CLI" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || true
  sleep 1.5   # tcpdump loses the tail of a capture stopped sooner
  kill -INT $dump; wait $dump || true
}

echo "== RTT truth: $N SYN probes each to $T:80, 5 ms apart, truth = tcpdump kernel timestamps"
capture synscope "$BIN" ping $T:80 -c "$N" -i 5ms --ndjson
capture hping3 hping3 -S -p 80 -c "$N" -i u5000 $T
capture nping nping --tcp -p 80 -c "$N" --delay 5ms $T
for tool in synscope hping3 nping; do
  python3 bench/rtt_compare.py "$OUT/$tool.pcap" "$tool" "$OUT/$tool.out"
done

echo "== load: $LOAD_N synscope probes at 1 ms interval"
ip netns exec "$CLI" /usr/bin/time -f "%e s wall, %U s user, %S s system, peak RSS %M KiB" \
  "$BIN" ping $T:80 -c "$LOAD_N" -i 1ms --json >"$OUT/load.json" 2>"$OUT/load.err" || true
tail -1 "$OUT/load.err"
python3 - "$OUT/load.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
r = s["rtt"] or {}
print(f"sent {s['sent']}, answered {s['answered']}, open {s['open']}, elapsed {s['elapsed_us'] / 1000:.0f} ms, "
      f"rtt p50 {r.get('p50_us', 0):.1f} us, p99 {r.get('p99_us', 0):.1f} us, ignored {s['ignored']}")
PY
