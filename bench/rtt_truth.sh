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
CLI=synscope-bench-$$-cli
SRV=synscope-bench-$$-srv
T=198.18.0.2
OUT=$(mktemp -d)
LISTENER_PID=
down() {
  [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  rm -rf "$OUT"
}
trap down EXIT

cargo build --release -q
BIN=$PWD/target/release/synscope

ip netns add "$CLI"; ip netns add "$SRV"
ip -n "$CLI" link set lo up; ip -n "$SRV" link set lo up
ip link add veth0 netns "$CLI" address 02:53:53:00:00:01 type veth peer name veth0 netns "$SRV" address 02:53:53:00:00:02
ip -n "$CLI" addr add 198.18.0.1/24 dev veth0; ip -n "$SRV" addr add $T/24 dev veth0
ip -n "$CLI" link set veth0 up; ip -n "$SRV" link set veth0 up
ip -n "$CLI" neigh replace $T lladdr 02:53:53:00:00:02 dev veth0 nud permanent
ip -n "$SRV" neigh replace 198.18.0.1 lladdr 02:53:53:00:00:01 dev veth0 nud permanent
ip netns exec "$SRV" python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.2", 80)); s.listen(4096); time.sleep(3600)' &
LISTENER_PID=$!
sleep 0.5

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
print(f"sent {s['sent']}, answered {s['answered']}, open {s['open']}, elapsed {s['elapsed_ms']:.0f} ms, "
      f"rtt p50 {r.get('p50_us', 0):.1f} us, p99 {r.get('p99_us', 0):.1f} us, ignored {s['ignored']}")
PY
