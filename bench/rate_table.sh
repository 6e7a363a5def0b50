#!/usr/bin/env bash
# Accuracy versus rate (issue 12; prints figures, asserts nothing). As root, with
# nmap and masscan (scripts/setup.sh --bench). A full 65,535-port scan of the bench
# lab host (3 open, 2 dropped, 2 rejected with ICMP, the rest closed) on a path
# policed to 20,000 SYN/s (nftables on the server) and on a clean path, by
# synscope (default --rate auto, and fixed rates), masscan and nmap -sS (-T4,
# and --min-rate = --max-rate = each rate), alternating tools within each run,
# REPS runs (default 2). Prints every run ("path tool rate run wall wrong" and
# the wrong verdicts by kind), then the Markdown table; DOC=1 writes the table
# into docs/rate.md between its markers.
#   bench/rate_table.sh                 # REPS=2 RATES="10000 20000 50000 100000 200000"
#   REPS=3 NMAP_T4=0 DOC=1 bench/rate_table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-2}
RATES=${RATES:-10000 20000 50000 100000 200000}
NMAP_T4=${NMAP_T4:-1}   # nmap -T4 on the policed path takes ~3 min a run
export OPEN_PORTS="22 80 443" DROP_PORTS="21 8443" REJECT_PORTS="111 113"
OUT=$(mktemp -d)
. bench/lab.sh
TRICKLE=
trap '[ -n "$TRICKLE" ] && kill $TRICKLE 2>/dev/null; lab_down; rm -rf "$OUT"' EXIT
cargo build --release -q
BIN=$PWD/target/release/synscope
lab_up
in_cli() { ip netns exec "$CLI" "$@"; }
# masscan's receive thread wakes only on a packet: a trickle of UDP datagrams
# from the server (dropped by the client's nftables) lets it see --wait is over
printf 'table inet trickle {\n chain input {\n type filter hook input priority filter; policy accept;\n udp dport 9 drop\n }\n}\n' | in_cli nft -f -
ip netns exec "$SRV" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(36000):
    s.sendto(b"x", ("198.18.0.1", 9)); time.sleep(0.1)' &
TRICKLE=$!
RESULTS=$OUT/results
one() {  # one PATH TOOL RATE RUN FILE COMMAND...
  local path=$1 tool=$2 rate=$3 run=$4 file=$5; shift 5
  local t0 t1 wall w
  rm -f "$file"
  t0=$(date +%s.%N)
  in_cli "$@" >"$OUT/stdout" 2>"$OUT/stderr" || true
  t1=$(date +%s.%N)
  wall=$(echo "$t1 - $t0" | bc)
  read -r w wo wc wf < <(python3 bench/rate_table.py check "$tool" "$file")
  echo "$path $tool $rate $run $wall $w" >>"$RESULTS"
  printf "%-8s %-9s %-7s run %s  %6.2f s  wrong %6s (open %s, closed %s, filtered %s)  load %s\n" \
    "$path" "$tool" "$rate" "$run" "$wall" "$w" "$wo" "$wc" "$wf" "$(cut -d' ' -f1 /proc/loadavg)"
}
synscope() { one "$1" synscope "$2" "$3" "$OUT/stdout" "$BIN" scan $T4 -p- --ndjson "${@:4}"; }
masscan_() {
  one "$1" masscan "$2" "$3" "$OUT/m.lst" masscan $T4 -p1-65535 --rate "$2" --wait 2 --show closed \
    --adapter veth0 --router-mac 02:53:53:00:00:02 -oL "$OUT/m.lst"
}
nmap_() {
  if [ "$2" = auto ]; then
    one "$1" nmap auto "$3" "$OUT/n.xml" nmap -sS -T4 -p- -n -oX "$OUT/n.xml" $T4
  else
    one "$1" nmap "$2" "$3" "$OUT/n.xml" nmap -sS -T4 -p- -n --min-rate "$2" --max-rate "$2" -oX "$OUT/n.xml" $T4
  fi
}
for run in $(seq 1 "$REPS"); do
  policer off
  synscope clean auto "$run"
  nmap_ clean auto "$run"
  masscan_ clean 100000 "$run"
  policer on
  synscope policed auto "$run"
  [ "$NMAP_T4" = 1 ] && nmap_ policed auto "$run"
  for rate in $RATES; do
    synscope policed "$rate" "$run" --rate "$rate"
    masscan_ policed "$rate" "$run"
    nmap_ policed "$rate" "$run"
  done
done
python3 bench/rate_table.py table "$RESULTS" | tee "$OUT/table.md"
if [ "${DOC:-0}" = 1 ]; then
  python3 - "$OUT/table.md" <<'PY'
import sys, re
table = open(sys.argv[1]).read().strip()
doc = open("docs/rate.md").read()
new = re.sub(r"(<!-- rate-table:begin -->\n).*?(\n<!-- rate-table:end -->)", lambda m: m.group(1) + table + m.group(2), doc, flags=re.S)
open("docs/rate.md", "w").write(new)
print("docs/rate.md: table written")
PY
fi
