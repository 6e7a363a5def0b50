# Sourced by the benchmark scripts: a client and a server namespace joined by a
# veth pair (198.18.0.1 / 198.18.0.2, 2001:db8::1 / ::2), kernel listeners on
# $OPEN_PORTS, nftables drop for $DROP_PORTS and reject (admin-prohibited) for
# $REJECT_PORTS, optionally a whole prefix answered by the server ($MANY_HOSTS);
# `policer on|off` polices SYNs to the server to 20,000/s (nftables on the server).
# lab_down removes everything; the scripts call it from an EXIT trap.
CLI=synscope-bench-$$-cli
SRV=synscope-bench-$$-srv
T4=198.18.0.2
T6=2001:db8::2
LISTENER_PID=

lab_up() {
  ip netns add "$CLI"; ip netns add "$SRV"
  ip -n "$CLI" link set lo up; ip -n "$SRV" link set lo up
  ip link add veth0 netns "$CLI" address 02:53:53:00:00:01 type veth peer name veth0 netns "$SRV" address 02:53:53:00:00:02
  ip -n "$CLI" addr add 198.18.0.1/24 dev veth0; ip -n "$SRV" addr add $T4/24 dev veth0
  ip -n "$CLI" -6 addr add 2001:db8::1/64 dev veth0 nodad; ip -n "$SRV" -6 addr add $T6/64 dev veth0 nodad
  ip -n "$CLI" link set veth0 up; ip -n "$SRV" link set veth0 up
  ip -n "$CLI" neigh replace $T4 lladdr 02:53:53:00:00:02 dev veth0 nud permanent
  ip -n "$CLI" -6 neigh replace $T6 lladdr 02:53:53:00:00:02 dev veth0 nud permanent
  ip -n "$SRV" neigh replace 198.18.0.1 lladdr 02:53:53:00:00:01 dev veth0 nud permanent
  ip -n "$SRV" -6 neigh replace 2001:db8::1 lladdr 02:53:53:00:00:01 dev veth0 nud permanent
  ip netns exec "$SRV" sh -c 'echo 0 > /proc/sys/net/ipv4/icmp_ratelimit; echo 0 > /proc/sys/net/ipv6/icmp/ratelimit'
  if [ -n "${MANY_HOSTS:-}" ]; then
    ip -n "$SRV" route add local "$MANY_HOSTS" dev lo
    ip -n "$CLI" route add "$MANY_HOSTS" via $T4
  fi
  local drop reject
  drop=$(echo "${DROP_PORTS:-}" | tr ' ' ','); reject=$(echo "${REJECT_PORTS:-}" | tr ' ' ',')
  {
    echo "table inet bench { chain input { type filter hook input priority filter; policy accept;"
    [ -n "$drop" ] && echo "meta l4proto tcp th dport { $drop } drop"
    [ -n "$reject" ] && echo "meta l4proto tcp th dport { $reject } reject with icmpx type admin-prohibited"
    echo "}"; echo "}"
  } | ip netns exec "$SRV" nft -f -
  ip netns exec "$SRV" python3 -c '
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
for p in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", p)); s.listen(4096); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
end = time.time() + 3600
while time.time() < end:
    for key, _ in sel.select(1):
        try: key.fileobj.accept()[0].close()
        except OSError: pass' $OPEN_PORTS &
  LISTENER_PID=$!
  sleep 0.5
}

policer() {  # policer on|off
  if [ "$1" = on ]; then
    printf 'table inet policer {\n chain input {\n type filter hook input priority -10; policy accept;\n tcp flags & (syn | ack) == syn limit rate over 20000/second counter drop\n }\n}\n' \
      | ip netns exec "$SRV" nft -f -
  else
    ip netns exec "$SRV" nft delete table inet policer 2>/dev/null || true
  fi
}

lab_down() {
  [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
}
