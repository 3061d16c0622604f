"""Inline SVG charts: TRE bars, the Jacobian histogram and the cohort strip plots."""

from __future__ import annotations

import math

from .markup import _e
from .rows import _is_number
from .style import BLUE, SKY_BLUE, VERMILLION

# How many landmarks the TRE bar chart shows (worst first); the table in report.json has all of them.
MAX_CHART_LANDMARKS = 60


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 × 10^k steps, about ``count`` intervals, least
    overshoot)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    candidates = [m * power for m in (0.5, 1, 2, 2.5, 5, 10, 20)]

    def cost(step):
        first = math.floor(lo / step + 1e-9) * step
        last = math.ceil(hi / step - 1e-9) * step
        intervals = round((last - first) / step)
        return (not count // 2 <= intervals <= 2 * count, (last - first) / (hi - lo) + 0.05 * abs(intervals - count))

    step = min(candidates, key=cost)
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-6 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi - 1e-9:
        ticks.append(round(value, 12))
    return ticks


def _tick_text(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


def tre_chart_svg(points, limit=None, width: int = 760) -> str:
    """Horizontal grouped bars, before (grey) and after (blue) TRE per landmark, worst after first."""
    points = [p for p in points if _is_number(p.get("before_mm")) or _is_number(p.get("after_mm"))]
    if not points:
        return ""

    def badness(p):
        a, b = p.get("after_mm"), p.get("before_mm")
        return (-(a if _is_number(a) else -1.0), -(b if _is_number(b) else -1.0), str(p.get("label")))

    points = sorted(points, key=badness)
    shown = points[:MAX_CHART_LANDMARKS]
    values = [v for p in shown for v in (p.get("before_mm"), p.get("after_mm")) if _is_number(v)]
    top = max(values + ([limit] if _is_number(limit) else []) + [1e-9])
    ticks = _nice_ticks(0.0, top)
    x_max = ticks[-1]
    longest = max(min(len(str(p.get("label"))), 28) for p in shown)
    label_w, left_pad, right_pad, top_pad = int(min(220, max(60, 7.6 * longest + 14))), 8, 44, 30
    row_h, bar_h = (30, 11) if len(shown) <= 20 else (22, 8)
    plot_w = width - label_w - left_pad - right_pad
    height = top_pad + row_h * len(shown) + 34

    def x(v):
        return label_w + left_pad + plot_w * (v / x_max)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Target registration error per landmark, before and after '
           f'registration, worst first</title>']
    bottom = top_pad + row_h * len(shown)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top_pad - 6}" x2="{x(t):.1f}" y2="{bottom}" stroke="#e3e3e3"/>'
                   f'<text x="{x(t):.1f}" y="{bottom + 16}" font-size="12" text-anchor="middle">{_tick_text(t)}'
                   f'</text>')
    out.append(f'<text x="{label_w + left_pad + plot_w / 2:.1f}" y="{bottom + 31}" font-size="12" '
               f'text-anchor="middle">TRE (mm)</text>')
    for i, p in enumerate(shown):
        y0 = top_pad + i * row_h
        label = _e(p.get("label"))
        text = str(p.get("label"))
        short = _e(text if len(text) <= 28 else text[:27] + "…")
        star = " *" if p.get("outside_domain") else ""
        out.append(f'<text x="{label_w}" y="{y0 + row_h / 2 + 4:.1f}" font-size="13" text-anchor="end">'
                   f'<title>{label}</title>{short}{star}</text>')
        for j, stage in enumerate(("before", "after")):
            v = p.get(f"{stage}_mm")
            yb = y0 + 3 + j * (bar_h + 2)
            if not _is_number(v):
                out.append(f'<text x="{x(0) + 4:.1f}" y="{yb + bar_h - 2}" font-size="11">n/a</text>')
                continue
            w = max(x(v) - x(0), 0.8)
            colour = "#8C8C8C" if stage == "before" else (VERMILLION if _is_number(limit) and v > limit else BLUE)
            out.append(f'<rect x="{x(0):.1f}" y="{yb}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                       f'<title>{label} {stage}: {v:.2f} mm</title></rect>')
            weight = ' font-weight="700"' if stage == "after" else ' fill="#555"'
            out.append(f'<text x="{x(v) + 4:.1f}" y="{yb + bar_h - 1}" font-size="11"{weight}>{v:.2f}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top_pad - 6}" x2="{x(0):.1f}" y2="{bottom}" stroke="#333"/>')
    if _is_number(limit):
        out.append(f'<line x1="{x(limit):.1f}" y1="{top_pad - 8}" x2="{x(limit):.1f}" y2="{bottom}" '
                   f'stroke="{VERMILLION}" stroke-width="2" stroke-dasharray="6 4"/>'
                   f'<text x="{x(limit):.1f}" y="{top_pad - 12}" font-size="12" text-anchor="middle" '
                   f'fill="{VERMILLION}">limit {limit:g} mm</text>')
    out.append("</svg>")
    note = ""
    if len(points) > len(shown):
        note = f'<p class="legend">Showing the {len(shown)} worst of {len(points)} landmarks.</p>'
    return "".join(out) + note


def jacobian_histogram_svg(edges, counts, width: int = 760, height: int = 280) -> str:
    """Histogram of the Jacobian determinant; bins reaching J ≤ 0 (folding) in vermillion; log count axis."""
    if not edges or not counts or len(edges) != len(counts) + 1:
        return ""
    edges = [float(e) for e in edges]
    counts = [max(0.0, float(c or 0)) for c in counts]
    lo, hi = edges[0], edges[-1]
    if hi <= lo:
        return ""
    left, right, top, bottom = 70, 16, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts + [1.0])
    log_peak = math.log10(1.0 + peak)

    def x(v):
        return left + plot_w * (v - lo) / (hi - lo)

    def h(c):
        return plot_h * math.log10(1.0 + c) / log_peak

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Histogram of the Jacobian determinant; bins with J ≤ 0 '
           f'(folding) in red</title>']
    y0 = top + plot_h
    power = 0
    while 10**power <= peak:
        yy = y0 - h(10**power)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#e3e3e3"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="12" text-anchor="end">'
                   f'{10**power:,}</text>')
        power += 1
    out.append(f'<text x="16" y="{top + plot_h / 2:.1f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + plot_h / 2:.1f})">voxels (log scale)</text>')
    folding_voxels = 0.0
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        folding = a < 0.0 or b <= 0.0
        if folding:
            folding_voxels += c
        if c <= 0:
            continue
        colour = VERMILLION if folding else SKY_BLUE
        bar = h(c)
        out.append(f'<rect x="{x(a):.2f}" y="{y0 - bar:.2f}" width="{max(x(b) - x(a) - 0.5, 0.8):.2f}" '
                   f'height="{bar:.2f}" fill="{colour}"><title>J in [{a:.3g}, {b:.3g}): {c:,.0f} voxels'
                   f'</title></rect>')
    for t in _nice_ticks(lo, hi, 8):
        if lo - 1e-12 <= t <= hi + 1e-12:
            out.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + 5}" stroke="#333"/>'
                       f'<text x="{x(t):.1f}" y="{y0 + 19}" font-size="12" text-anchor="middle">'
                       f'{_tick_text(t)}</text>')
    out.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#333"/>')
    for ref, text in ((0.0, "J = 0"), (1.0, "J = 1")):
        if lo <= ref <= hi:
            colour = VERMILLION if ref == 0.0 else "#333"
            out.append(f'<line x1="{x(ref):.1f}" y1="{top - 6}" x2="{x(ref):.1f}" y2="{y0}" stroke="{colour}" '
                       f'stroke-dasharray="5 4" stroke-width="1.5"/>'
                       f'<text x="{x(ref):.1f}" y="{top - 10}" font-size="12" text-anchor="middle" '
                       f'fill="{colour}">{text}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="12" text-anchor="middle">'
               f'Jacobian determinant J (local volume ratio)</text></svg>')
    legend = (f'<p class="legend"><span class="key" style="background:{SKY_BLUE}"></span>J &gt; 0'
              f'<span class="key" style="background:{VERMILLION}"></span>bins reaching J ≤ 0 (folding): '
              f'{folding_voxels:,.0f} voxels</p>')
    return "".join(out) + legend
