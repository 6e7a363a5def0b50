#!/usr/bin/env python3
"""Draws rate and reply ratio over time from the `rate-slice` lines that
`synscope scan -v` prints on stderr (one per judged 20 ms slice), as an SVG
written by hand (no plotting library needed).
    python3 bench/rate_plot.py TRACE.txt docs/rate.svg"""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
pat = re.compile(r"rate-slice t_ms=([\d.]+) sent_pps=(\d+) ratio=(\S+) loss=(\S+) next_pps=(\d+)")
rows = []
for line in open(src, errors="replace"):
    m = pat.search(line)
    if m:
        t, sent, ratio, loss, nxt = m.groups()
        rows.append((float(t) / 1000, float(sent), None if ratio == "-" else float(ratio), float(nxt)))
if not rows:
    sys.exit(f"no rate-slice lines in {src}")

W, H, L, R, T, B = 900, 420, 80, 70, 40, 50
t_max = max(r[0] for r in rows) or 1.0
rate_max = max(max(r[1], r[3]) for r in rows) * 1.1 or 1.0
x = lambda t: L + (W - L - R) * t / t_max
y_rate = lambda v: T + (H - T - B) * (1 - v / rate_max)
y_ratio = lambda v: T + (H - T - B) * (1 - v)

out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">synscope scan -p- --rate auto, path policed to 20,000 SYN/s</text>']
# axes and grid
for i in range(6):
    v = rate_max * i / 5
    yy = y_rate(v)
    out.append(f'<line x1="{L}" y1="{yy:.1f}" x2="{W-R}" y2="{yy:.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L-6}" y="{yy+4:.1f}" text-anchor="end" fill="#1f77b4">{v/1000:.0f}k</text>')
    out.append(f'<text x="{W-R+6}" y="{y_ratio(i/5)+4:.1f}" fill="#d62728">{i/5:.1f}</text>')
steps = 8
for i in range(steps + 1):
    t = t_max * i / steps
    out.append(f'<text x="{x(t):.1f}" y="{H-B+18}" text-anchor="middle">{t:.2f}</text>')
out.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">time (s)</text>')
out.append(f'<text x="18" y="{H/2}" transform="rotate(-90 18 {H/2})" text-anchor="middle" fill="#1f77b4">probes/s sent</text>')
out.append(f'<text x="{W-14}" y="{H/2}" transform="rotate(90 {W-14} {H/2})" text-anchor="middle" fill="#d62728">reply ratio (hosts known to answer)</text>')
out.append(f'<rect x="{L}" y="{T}" width="{W-L-R}" height="{H-T-B}" fill="none" stroke="#444"/>')
# policer line
yy = y_rate(20000)
out.append(f'<line x1="{L}" y1="{yy:.1f}" x2="{W-R}" y2="{yy:.1f}" stroke="#2ca02c" stroke-dasharray="6 4"/>')
out.append(f'<text x="{W-R-4}" y="{yy-4:.1f}" text-anchor="end" fill="#2ca02c">policer 20k/s</text>')
pts = " ".join(f"{x(t):.1f},{y_rate(s):.1f}" for t, s, _, _ in rows)
out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
pts = " ".join(f"{x(t):.1f},{y_ratio(r):.1f}" for t, _, r, _ in rows if r is not None)
out.append(f'<polyline points="{pts}" fill="none" stroke="#d62728" stroke-width="1.2"/>')
out.append("</svg>")
open(dst, "w").write("\n".join(out) + "\n")
print(f"{dst}: {len(rows)} slices over {t_max:.2f} s")
