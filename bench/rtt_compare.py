#!/usr/bin/env python3
"""Compares the RTTs a tool reported with the truth of a tcpdump capture of the
same packets (nanosecond pcap, Ethernet): truth = SYN-ACK stamp - SYN stamp,
the SYN-ACK matched to its SYN by ack = seq + 1 on the same ports.

  rtt_compare.py PCAP TOOL OUTPUT     TOOL: synscope (NDJSON) | hping3 | nping
Prints one line: tool, probes compared, |reported - true| median and p99 in us,
and the true RTT median.
"""
import json, re, statistics, struct, sys


def packets(path):
    d = open(path, "rb").read()
    if d[:4] != b"\x4d\x3c\xb2\xa1":
        sys.exit(f"{path}: expected a little-endian nanosecond pcap")
    off = 24
    while off + 16 <= len(d):
        sec, ns, incl, _ = struct.unpack("<IIII", d[off:off + 16])
        yield sec * 10**9 + ns, d[off + 16:off + 16 + incl]
        off += 16 + incl


def syn_and_synack(path):
    """[(syn_time, sport, seq, rtt_ns or None)] in send order."""
    probes, open_syn = [], {}
    for ts, f in packets(path):
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        t = 14 + (f[14] & 0xF) * 4
        sport, dport, seq, ack = struct.unpack("!HHII", f[t:t + 12])
        flags = f[t + 13]
        if flags & 0x12 == 0x02:
            open_syn[(sport, seq)] = len(probes)
            probes.append([ts, sport, seq, None])
        elif flags & 0x12 == 0x12:
            i = open_syn.pop((dport, (ack - 1) & 0xFFFFFFFF), None)
            if i is not None:
                probes[i][3] = ts - probes[i][0]
    return probes


def reported(tool, path, probes):
    """{probe index: reported rtt in ns}"""
    out = {}
    lines = open(path, errors="replace").read().splitlines()
    if tool == "synscope":
        by_seq = {p[2]: i for i, p in enumerate(probes)}
        for l in lines:
            j = json.loads(l)
            if j.get("kind") == "probe" and "rtt_us" in j and j["isn"] in by_seq:
                out[by_seq[j["isn"]]] = round(j["rtt_us"] * 1000)
    elif tool == "hping3":
        # hping3 uses source port base + N for probe N and prints rtt in ms (0.1 ms steps)
        base = probes[0][1]
        by_port = {p[1]: i for i, p in enumerate(probes)}
        for l in lines:
            m = re.search(r"flags=SA\b.*?\bseq=(\d+).*?rtt=([\d.]+) ms", l)
            if m:
                i = by_port.get((base + int(m.group(1))) & 0xFFFF)
                if i is not None:
                    out.setdefault(i, float(m.group(2)) * 1e6)
    elif tool == "nping":
        # the i-th SENT line is the i-th SYN; RTT = RCVD time - SENT time (0.1 ms steps)
        sent = []
        for l in lines:
            m = re.match(r"SENT \(([\d.]+)s\) TCP", l)
            if m:
                sent.append(float(m.group(1)))
                continue
            m = re.match(r"RCVD \(([\d.]+)s\) TCP \S+ > \S+ SA", l)
            if m and sent:
                out.setdefault(len(sent) - 1, (float(m.group(1)) - sent[-1]) * 1e9)
    return out


def main():
    pcap, tool, output = sys.argv[1:4]
    probes = syn_and_synack(pcap)
    rep = reported(tool, output, probes)
    errs = [abs(rep[i] - p[3]) / 1000 for i, p in enumerate(probes) if p[3] is not None and i in rep]
    truth = [p[3] / 1000 for p in probes if p[3] is not None]
    if not errs:
        print(f"{tool:9} no probe could be compared ({len(probes)} SYNs in capture)")
        return
    errs.sort()
    p99 = errs[min(len(errs) - 1, int(0.99 * len(errs) + 0.5) - 1)]
    print(f"{tool:9} compared {len(errs):5}  |reported-true| median {statistics.median(errs):9.3f} us"
          f"  p99 {p99:9.3f} us   true RTT median {statistics.median(truth):7.3f} us")


if __name__ == "__main__":
    main()
