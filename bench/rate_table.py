#!/usr/bin/env python3
"""Wrong verdicts of a full 1-65535 scan of the bench lab host, for the
accuracy-versus-rate table of bench/rate_table.sh (issue 12).

  rate_table.py check TOOL FILE    TOOL: synscope (NDJSON) | nmap (-oX) | masscan (-oL,
                                   --show closed); prints "WRONG OPEN CLOSED FILTERED"
  rate_table.py table RESULTS      RESULTS: lines "path tool rate run wall wrong";
                                   prints the Markdown table (each cell: wrong verdicts
                                   of every run, and the wall times)
Env OPEN_PORTS, DROP_PORTS, REJECT_PORTS: the lab's map (every other port is closed).
Right: open ports open; closed ports closed; dropped ports no-response / filtered
(nmap: filtered; masscan: not listed); rejected ports filtered (synscope: by the
ICMP error; nmap: filtered; masscan, which has no such verdict: not listed).
"""
import collections, json, os, sys
import xml.etree.ElementTree as ET


def ports(name):
    return set(map(int, os.environ.get(name, "").split()))


def verdicts(tool, path):
    got = {}
    if tool == "synscope":
        for line in open(path):
            v = json.loads(line)
            if v.get("kind") == "result":
                got[v["port"]] = v["verdict"]
    elif tool == "nmap":
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, FileNotFoundError):
            return got
        for port in root.iter("port"):
            got[int(port.get("portid"))] = port.find("state").get("state")
        for extra in root.iter("extraports"):
            for p in range(1, 65536):
                got.setdefault(p, extra.get("state"))
    else:
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[0] in ("open", "closed"):
                got[int(f[2])] = f[0]
    return got


def check(tool, path):
    opn, drop, rej = ports("OPEN_PORTS"), ports("DROP_PORTS"), ports("REJECT_PORTS")
    got = verdicts(tool, path)
    wrong = collections.Counter()
    for p in range(1, 65536):
        v = got.get(p)
        if p in opn:
            ok, kind = v == "open", "open"
        elif p in drop or p in rej:
            if tool == "masscan":
                ok = v is None
            elif tool == "nmap":
                ok = v == "filtered"
            else:
                ok = v == "filtered" if p in rej else v in ("no_response", "no-response", "filtered")
            kind = "filtered"
        else:
            ok, kind = v == "closed", "closed"
        if not ok:
            wrong[kind] += 1
    print(sum(wrong.values()), wrong["open"], wrong["closed"], wrong["filtered"])


def table(path):
    cells = collections.defaultdict(list)
    for line in open(path):
        f = line.split()
        if len(f) == 6:
            route, tool, rate, _, wall, wrong = f
            cells[(route, tool, rate)].append((int(wrong), float(wall)))
    tools = ["synscope", "masscan", "nmap"]
    for route in sorted({k[0] for k in cells}, reverse=True):
        print(f"\n{route} path: wrong verdicts of 65,535 (every run), and wall time\n")
        print("| rate (SYN/s) | " + " | ".join(tools) + " |")
        print("|---|" + "---|" * len(tools))
        rates = sorted({k[2] for k in cells if k[0] == route}, key=lambda r: (not r.isdigit(), int(r) if r.isdigit() else 0))
        for rate in rates:
            row = []
            for t in tools:
                runs = cells.get((route, t, rate))
                if not runs:
                    row.append("—")
                    continue
                w = ", ".join(f"{x:,}" for x, _ in runs)
                ws = sorted(y for _, y in runs)
                s = f"{ws[0]:.1f}" if len(ws) == 1 else f"{ws[0]:.1f}–{ws[-1]:.1f}"
                row.append(f"{w} ({s} s)")
            label = {"auto": "auto / adaptive (synscope default, nmap -T4)"}.get(rate, f"{int(rate):,}" if rate.isdigit() else rate)
            print(f"| {label} | " + " | ".join(row) + " |")


if sys.argv[1] == "check":
    check(sys.argv[2], sys.argv[3])
else:
    table(sys.argv[2])
