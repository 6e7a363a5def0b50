#!/usr/bin/env python3
"""Checks a full 1-65535 scan of the bench lab host against its known port map.

  scan_check.py TOOL OUTPUT      TOOL: synscope (NDJSON) | nmap (-oX) | masscan (-oL)
  scan_check.py summary NDJSON    one line from a synscope summary
  scan_check.py many NDJSON WALL CPU RSS_KIB
Env OPEN_PORTS, DROP_PORTS, REJECT_PORTS: the map (every other port is closed).
Prints: open found/expected, false positives, and how many closed / filtered
(dropped) / filtered (rejected, with reason) ports were classified right.
"""
import json, os, sys
import xml.etree.ElementTree as ET

OPEN = set(map(int, os.environ["OPEN_PORTS"].split()))
DROP = set(map(int, os.environ["DROP_PORTS"].split()))
REJECT = set(map(int, os.environ["REJECT_PORTS"].split()))
CLOSED = set(range(1, 65536)) - OPEN - DROP - REJECT


def synscope(path):
    got = {}
    for line in open(path):
        v = json.loads(line)
        if v.get("kind") == "result":
            got[v["port"]] = (v["verdict"], v.get("reason"))
    return got


def nmap(path):
    got = {}
    root = ET.parse(path).getroot()
    for port in root.iter("port"):
        st = port.find("state")
        got[int(port.get("portid"))] = (st.get("state"), st.get("reason"))
    for extra in root.iter("extraports"):
        # ports not listed one by one: nmap gives only their state and a count
        state = extra.get("state")
        for p in range(1, 65536):
            got.setdefault(p, (state, "extraports"))
    return got


def masscan(path):
    got = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 3 and f[0] in ("open", "closed"):
            got[int(f[2])] = (f[0], None)
    return got


def summary(path):
    for line in open(path):
        v = json.loads(line)
        if v.get("kind") == "summary":
            return v
    sys.exit(f"{path}: no summary line")


tool, path = sys.argv[1], sys.argv[2]
if tool == "summary":
    s = summary(path)
    print(f"{'':34} sent {s['sent']} SYNs at {s['send_rate_pps']:.0f}/s, capture drops {s['capture_drops']}")
    sys.exit(0)
if tool == "many":
    s = summary(path)
    wall, cpu, rss = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    print(f"probes {s['probes']}, sent {s['sent']}, {s['send_rate_pps']:.0f} SYN/s, open {s['open']}, "
          f"closed {s['closed']}, no-response {s['no_response']}, wall {wall:.2f}s, CPU {cpu:.2f}s = "
          f"{cpu / s['sent'] * 1e6:.2f} us/probe, peak RSS {rss / 1024:.1f} MiB, capture drops {s['capture_drops']}")
    sys.exit(0)
got = {"synscope": synscope, "nmap": nmap, "masscan": masscan}[tool](path)
opens = {p for p, (v, _) in got.items() if v == "open"}
closed_ok = sum(1 for p in CLOSED if got.get(p, ("?",))[0] == "closed")
drop_ok = sum(1 for p in DROP if got.get(p, ("?",))[0] in ("no_response", "no-response", "filtered"))
reject_ok = sum(1 for p in REJECT if got.get(p, ("?", None))[0] == "filtered"
                and got[p][1] in ("admin_prohibited", "admin-prohibited", "admin-prohib"))
line = (f"open {len(opens & OPEN)}/{len(OPEN)} (false {len(opens - OPEN)})  closed {closed_ok}/{len(CLOSED)}  "
        f"dropped {drop_ok}/{len(DROP)}  rejected {reject_ok}/{len(REJECT)}")
if tool == "masscan":
    line = f"open {len(opens & OPEN)}/{len(OPEN)} (false {len(opens - OPEN)})  (masscan reports open ports only)"
print(line)
