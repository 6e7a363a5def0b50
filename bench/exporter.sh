#!/usr/bin/env bash
# synscope exporter beside prometheus-blackbox-exporter (prints figures, asserts
# nothing). As root. In one namespace lab, both exporters run in the client
# namespace and are asked in turn, N times each (default 500, alternating, 20 ms
# apart), to probe the same open port 198.18.0.2:80 through their /probe
# endpoints, while tcpdump captures the packets on the client's veth with kernel
# timestamps. Prints, per tool, |reported handshake time - capture truth|
# (median and p99, us; truth = SYN-ACK stamp - SYN stamp of that probe's flow)
# and CPU time per probe (the exporter process's user+system time over the run,
# HTTP handling included). synscope reports the kernel-stamped
# synscope_probe_stage_seconds{stage="syn_synack"}; blackbox_exporter's tcp
# prober reports only probe_duration_seconds (its whole probe, timed in user
# space around connect()), the figure its users graph.
# Needs: scripts/setup.sh --bench (prometheus-blackbox-exporter, tcpdump, curl).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-500}
T=198.18.0.2
OUT=$(mktemp -d)
OPEN_PORTS=80
SYN_PID=; BB_PID=
. bench/lab.sh
cleanup() {
  [ -n "$SYN_PID" ] && kill "$SYN_PID" 2>/dev/null || true
  [ -n "$BB_PID" ] && kill "$BB_PID" 2>/dev/null || true
  lab_down; rm -rf "$OUT"
}
trap cleanup EXIT

cargo build --release -q
BIN=$PWD/target/release/synscope
lab_up

# the module's own target is a closed port probed once a day: the periodic
# run (if its random phase falls in this run) is not in the port-80 capture
cat >"$OUT/synscope.toml" <<TOML
[[probe]]
name = "syn"
kind = "syn"
target = "$T:9"
interval = "24h"
timeout = "1s"
TOML
cat >"$OUT/blackbox.yml" <<YAML
modules:
  tcp_connect:
    prober: tcp
    timeout: 1s
    tcp:
      preferred_ip_protocol: ip4
YAML
ip netns exec "$CLI" "$BIN" exporter --config "$OUT/synscope.toml" --listen 127.0.0.1:9799 2>"$OUT/synscope.err" &
SYN_PID=$!
ip netns exec "$CLI" prometheus-blackbox-exporter --config.file="$OUT/blackbox.yml" \
  --web.listen-address=127.0.0.1:9115 2>"$OUT/blackbox.err" &
BB_PID=$!
sleep 1

cpu() {  # user+system clock ticks of a process
  awk '{print $14 + $15}' "/proc/$1/stat"
}

ip netns exec "$CLI" tcpdump -i veth0 -j host --time-stamp-precision=nano -U -w "$OUT/truth.pcap" \
  "tcp port 80" 2>"$OUT/tcpdump.err" &
DUMP=$!
sleep 1
echo "== $N /probe requests each to synscope exporter and blackbox_exporter (tcp prober), $T:80, alternating"
syn0=$(cpu $SYN_PID); bb0=$(cpu $BB_PID)
ip netns exec "$CLI" bash -c '
for i in $(seq '"$N"'); do
  v=$(curl -s "http://127.0.0.1:9799/probe?module=syn&target='"$T"':80" |
      awk -F"} " "/^synscope_probe_stage_seconds\\{stage=\"syn_synack\"/ {print \$2}")
  echo "synscope ${v:-none}"
  sleep 0.01
  v=$(curl -s "http://127.0.0.1:9115/probe?module=tcp_connect&target='"$T"':80" |
      awk "/^probe_duration_seconds / {print \$2}")
  echo "blackbox ${v:-none}"
  sleep 0.01
done' >"$OUT/reported.txt"
syn1=$(cpu $SYN_PID); bb1=$(cpu $BB_PID)
sleep 1.5   # tcpdump loses the tail of a capture stopped sooner
kill -INT $DUMP; wait $DUMP || true
python3 bench/exporter_compare.py "$OUT/truth.pcap" "$OUT/reported.txt"
hz=$(getconf CLK_TCK)
python3 - "$N" "$hz" "$syn0" "$syn1" "$bb0" "$bb1" <<'PY'
import sys
n, hz, s0, s1, b0, b1 = map(float, sys.argv[1:])
for name, a, b in (("synscope", s0, s1), ("blackbox", b0, b1)):
    print(f"{name:9s} CPU {(b - a) / hz / n * 1e6:8.0f} us per probe (user+system, {int(n)} probes, {hz:.0f} Hz ticks)")
PY
echo "(the machine may be shared with other builds: CPU and timing figures are noisy; both tools ran in the same run)"
