#!/usr/bin/env python3
"""Compares the handshake times two exporters reported through /probe with the
truth of a tcpdump capture of the same packets (nanosecond pcap, Ethernet).

  exporter_compare.py PCAP REPORTED
REPORTED: one line per probe, `synscope SECONDS` or `blackbox SECONDS`, in the
order the probes were made. A flow is synscope's when the client answers the
SYN-ACK with an RST (a raw SYN, no socket), blackbox's when it completes the
handshake with an ACK (a connect()). Flows and reports of each tool are paired
in order. Prints per tool: probes compared, |reported - truth| median and p99
(us), the signed median, and the true RTT median.
"""
import statistics, struct, sys


def packets(path):
    d = open(path, "rb").read()
    if d[:4] != b"\x4d\x3c\xb2\xa1":
        sys.exit(f"{path}: expected a little-endian nanosecond pcap")
    off = 24
    while off + 16 <= len(d):
        sec, ns, incl, _ = struct.unpack("<IIII", d[off:off + 16])
        yield sec * 10**9 + ns, d[off + 16:off + 16 + incl]
        off += 16 + incl


def flows(path):
    """{'synscope': [rtt_ns...], 'blackbox': [...]} in SYN order."""
    by_port, order = {}, []
    for ts, f in packets(path):
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        client = f[26:30] == bytes([198, 18, 0, 1])
        t = 14 + (f[14] & 0xF) * 4
        sport, dport = struct.unpack("!HH", f[t:t + 4])
        flags = f[t + 13]
        port = sport if client else dport
        if client and flags & 0x12 == 0x02:
            by_port[port] = {"syn": ts, "synack": None, "kind": None}
            order.append(by_port[port])
            continue
        fl = by_port.get(port)
        if fl is None:
            continue
        if not client and flags & 0x12 == 0x12 and fl["synack"] is None:
            fl["synack"] = ts
        elif client and fl["synack"] is not None and fl["kind"] is None:
            fl["kind"] = "synscope" if flags & 0x04 else "blackbox"
    out = {"synscope": [], "blackbox": []}
    for fl in order:
        if fl["kind"]:
            out[fl["kind"]].append(fl["synack"] - fl["syn"])
    return out


def main():
    truth = flows(sys.argv[1])
    rep = {"synscope": [], "blackbox": []}
    for line in open(sys.argv[2]):
        tool, v = line.split()
        rep[tool].append(None if v == "none" else float(v) * 1e9)
    for tool in ("synscope", "blackbox"):
        t, r = truth[tool], rep[tool]
        if len(t) != len(r):
            print(f"{tool:9s} {len(r)} reports but {len(t)} flows in the capture: pairing in order anyway")
        pairs = [(a, b) for a, b in zip(r, t) if a is not None]
        if not pairs:
            print(f"{tool:9s} nothing to compare")
            continue
        err = sorted(abs(a - b) / 1e3 for a, b in pairs)
        signed = statistics.median((a - b) / 1e3 for a, b in pairs)
        p99 = err[min(len(err) - 1, int(len(err) * 0.99))]
        print(f"{tool:9s} {len(pairs):5d} probes  |error| median {statistics.median(err):8.2f} us  "
              f"p99 {p99:8.2f} us  signed median {signed:+8.2f} us  "
              f"true RTT median {statistics.median(b for _, b in pairs) / 1e3:7.2f} us")


main()
