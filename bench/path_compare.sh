#!/usr/bin/env bash
# synscope path beside tcpdump's view of the same exchange, nmap --traceroute
# and traceroute -T, on the routed lab (3 routers; router 2 drops 8443, rejects
# 111, clamps the MSS on 8080). Run as root from the repository:
#   bench/path_compare.sh
set -euo pipefail
cargo build --release --quiet --example routed_lab
cargo build --release --quiet
bin=$(pwd)/target/release/synscope
target/release/examples/routed_lab env BIN="$bin" bash -c '
set -u
for port in 80 8443 111 8080; do
  echo "=================== port $port ==================="
  echo "--- synscope path $SERVER4:$port (with tcpdump on veth0)"
  tcpdump -i veth0 -n -v -j host --time-stamp-precision=nano -w /tmp/path-$port.pcap "tcp port $port or icmp" 2>/dev/null &
  td=$!; sleep 1
  /usr/bin/time -f "(took %es)" "$BIN" path "$SERVER4:$port" -c 1 -W 500ms || true
  sleep 1.2; kill -INT $td; wait $td 2>/dev/null || true
  echo "--- tcpdump -v of the same exchange"
  tcpdump -n -v -r /tmp/path-$port.pcap 2>/dev/null | sed -n 1,40p
  rm -f /tmp/path-$port.pcap
  echo "--- nmap -sS -Pn --traceroute -p $port"
  /usr/bin/time -f "(took %es)" nmap -n -sS -Pn --traceroute -p "$port" "$SERVER4" 2>&1 | sed -n "/PORT/,\$p" || true
  echo "--- traceroute -T -p $port -q 1 -w 0.5"
  /usr/bin/time -f "(took %es)" traceroute -n -T -p "$port" -q 1 -w 0.5 -m 8 "$SERVER4" 2>&1 || true
done
'
