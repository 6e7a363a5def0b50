#!/usr/bin/env bash
# Scan benchmark (prints figures, asserts nothing). As root.
#  1. A full 1-65535 scan of one lab host by synscope, nmap -sS -T4,
#     nmap -sS -T5 --min-rate 50000 and masscan (--rate 100000 and 1000000):
#     wall time, SYN/s, and verdicts checked against the known port map.
#  2. 65,536 hosts x 4 ports by synscope: SYN/s, CPU time per probe, peak RSS.
# Needs: scripts/setup.sh --bench (nmap, masscan, time).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
export OPEN_PORTS="1 7 22 25 53 80 110 443 993 1433 3306 5432 6379 8080 9200 11211 27017 31337 49152 65535"
export DROP_PORTS="21 23 135 139 445 3389 5900 8443 20000 60000"
export REJECT_PORTS="111 2049 4444 9999 40000"
MANY_HOSTS=198.19.0.0/16
OUT=$(mktemp -d)
. bench/lab.sh
TRICKLE=
trap '[ -n "$TRICKLE" ] && kill $TRICKLE 2>/dev/null; lab_down; rm -rf "$OUT"' EXIT
cargo build --release -q
BIN=$PWD/target/release/synscope
lab_up
in_cli() { ip netns exec "$CLI" "$@"; }

run() {  # run NAME CHECK-TOOL OUTPUT-FILE COMMAND...
  local name=$1 tool=$2 file=$3; shift 3
  local t0 t1
  t0=$(date +%s.%N)
  in_cli /usr/bin/time -f "%e %U %S %M" -o "$OUT/time" "$@" >"$OUT/stdout" 2>"$OUT/stderr" || true
  t1=$(date +%s.%N)
  read -r _ user sys rss <"$OUT/time"
  printf "%-34s wall %6.2fs  cpu %5.2fs  rss %6d KiB  " "$name" "$(echo "$t1 - $t0" | bc)" "$(echo "$user + $sys" | bc)" "$rss"
  python3 bench/scan_check.py "$tool" "$file"
}

echo "== full scan of $T4:1-65535 (20 open, 65500 closed, 10 dropped, 5 rejected), $REPS runs each"
for r in $(seq 1 "$REPS"); do
  run "synscope --rate 1000000" synscope "$OUT/stdout" "$BIN" scan $T4 -p- --rate 1000000 --timeout 500ms --ndjson
  python3 bench/scan_check.py summary "$OUT/stdout"
done
for r in $(seq 1 "$REPS"); do
  run "synscope IPv6 --rate 1000000" synscope "$OUT/stdout" "$BIN" scan $T6 -p- --rate 1000000 --timeout 500ms --ndjson
done
if command -v nmap >/dev/null; then
  for r in $(seq 1 "$REPS"); do
    run "nmap -sS -T4" nmap "$OUT/nmap.xml" nmap -sS -p- -n -T4 --max-retries 6 --reason -oX "$OUT/nmap.xml" $T4
    run "nmap -sS -T5 --min-rate 50000" nmap "$OUT/nmap.xml" nmap -sS -p- -n -T5 --min-rate 50000 --max-retries 2 --reason -oX "$OUT/nmap.xml" $T4
  done
fi
if command -v masscan >/dev/null; then
  # masscan's receive thread wakes only on a packet: a trickle of pings from the
  # server (dropped by the client's nftables) lets it notice its --timeout is over
  printf 'table inet trickle {\n chain input {\n type filter hook input priority filter; policy accept;\n ip saddr %s icmp type echo-request drop\n }\n}\n' $T4 | in_cli nft -f -
  ip netns exec "$SRV" ping -q -i 0.1 -w 600 198.18.0.1 >/dev/null 2>&1 &
  TRICKLE=$!
  for rate in 100000 1000000; do
    for r in $(seq 1 "$REPS"); do
      rm -f "$OUT/masscan.lst"
      run "masscan --rate $rate" masscan "$OUT/masscan.lst" masscan $T4 -p1-65535 --rate "$rate" --wait 2 \
        --adapter veth0 --router-mac 02:53:53:00:00:02 -oL "$OUT/masscan.lst"
    done
  done
  kill $TRICKLE 2>/dev/null || true
fi

lab_down
MANY_HOSTS=$MANY_HOSTS lab_up
echo "== $MANY_HOSTS (65,536 hosts) x 4 ports (22,80,81,443) by synscope"
for r in $(seq 1 "$REPS"); do
  in_cli /usr/bin/time -f "%e %U %S %M" -o "$OUT/time" "$BIN" scan $MANY_HOSTS -p 22,80,81,443 --rate 1000000 \
    --timeout 500ms --ndjson --open >"$OUT/stdout" 2>"$OUT/stderr" || true
  read -r wall user sys rss <"$OUT/time"
  python3 bench/scan_check.py many "$OUT/stdout" "$wall" "$(echo "$user + $sys" | bc)" "$rss"
done
