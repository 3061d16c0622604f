"""The report page's "Surface agreement" section: NSD at each tolerance, signed surface distances (with an
inline SVG histogram per segment) and the Dice of each fixed segment with itself shifted by 1 and 2 mm."""

from __future__ import annotations

from collections.abc import Mapping

from .. import measures
from .charts import _nice_ticks, _tick_text
from .markup import _change, _e, _fmt, _table
from .rows import _is_number
from .style import BLUE, GREY, VERMILLION

MAX_HISTOGRAMS = 8


def signed_distance_histogram_svg(edges, counts, title: str = "", width: int = 360, height: int = 190) -> str:
    """Histogram of signed surface distances: inward (< 0) bins blue, outward (> 0) vermillion, a line at 0."""
    if not edges or not counts or len(edges) != len(counts) + 1:
        return ""
    edges = [float(e) for e in edges]
    counts = [max(0.0, float(c or 0)) for c in counts]
    lo, hi = edges[0], edges[-1]
    if hi <= lo:
        return ""
    left, right, top, bottom = 46, 10, 22, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts + [1.0])

    def x(v):
        return left + plot_w * (v - lo) / (hi - lo)

    y0 = top + plot_h
    out = [f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)} signed distances of the registered boundary '
           f'to the fixed boundary (negative inside)</title>']
    if title:
        out.append(f'<text x="{left}" y="14" font-size="12" font-weight="bold">{_e(title)}</text>')
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        if c <= 0:
            continue
        colour = BLUE if b <= 0 else (VERMILLION if a >= 0 else GREY)
        bar = plot_h * c / peak
        out.append(f'<rect x="{x(a):.2f}" y="{y0 - bar:.2f}" width="{max(x(b) - x(a) - 0.5, 0.8):.2f}" '
                   f'height="{bar:.2f}" fill="{colour}"><title>[{a:.3g}, {b:.3g}) mm: {c:,.0f} boundary voxels'
                   f'</title></rect>')
    for t in _nice_ticks(lo, hi, 6):
        if lo - 1e-12 <= t <= hi + 1e-12:
            out.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + 4}" stroke="#333"/>'
                       f'<text x="{x(t):.1f}" y="{y0 + 16}" font-size="11" text-anchor="middle">'
                       f'{_tick_text(t)}</text>')
    out.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#333"/>'
               f'<text x="{left - 4}" y="{top + 8}" font-size="11" text-anchor="end">{peak:,.0f}</text>'
               f'<text x="{left - 4}" y="{y0}" font-size="11" text-anchor="end">0</text>')
    if lo <= 0 <= hi:
        out.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{y0}" stroke="#333" '
                   f'stroke-dasharray="4 3"/>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">'
               f'signed distance (mm): inside ← 0 → sticks out</text></svg>')
    return "".join(out)


def _tolerances(segments) -> list:
    keys = set()
    for seg in segments:
        for stage in ("before", "after"):
            keys |= {k for k in (seg.get(stage) or {}) if k.startswith("nsd_") and k.endswith("mm")}
    return sorted(keys, key=lambda k: float(k[4:-2].replace("_", ".")))


def surface_section(report: Mapping) -> str:
    segments = [s for s in report.get("segments") or [] if isinstance(s, Mapping)]
    if not segments:
        return ""
    nsd_keys = _tolerances(segments)
    if not nsd_keys:
        return ""
    own = measures.get("nsd_segment")  # NSD at the segment's own tolerance (a tolerance profile's)
    own_tolerance = measures.get("nsd_segment_tolerance_mm")
    with_own = any(own.value_in(s.get(stage) or {}) is not None for s in segments for stage in ("before", "after"))
    # the signed-distance and shifted-self Dice columns: their registry entries, in registry order
    signed = [m for m in measures.of("segment") if m.field.startswith("signed_distance.") and m.unit == "mm"]
    shifted = [m for m in measures.of("segment") if m.field.startswith("shifted_self_dice.")]
    header = (["Segment"] + [f"NSD {k[4:-2].replace('_', '.')} mm" for k in nsd_keys]
              + ([f"{_e(own.short)}<br><small>{_e(own_tolerance.short)}</small>"] if with_own else [])
              + [f"{_e(m.short)}<br><small>{_e(m.unit)}</small>" for m in signed] + [_e(m.short) for m in shifted])
    rows, charts = [], []
    for seg in segments:
        before, after = seg.get("before") or {}, seg.get("after") or {}
        name = seg.get("name") if seg.get("name") is not None else seg.get("label")
        sd = after.get("signed_distance") or {}
        dice = after.get("dice")
        shift_cells = []
        for m in shifted:
            value = m.value_in(after)
            text = _fmt(value, "", m.digits)
            if m.field.endswith(".2mm") and _is_number(value) and _is_number(dice) and dice <= value:
                text = (f'<span class="worse" title="the Dice after registration is no higher than this segment '
                        f'keeps under a 2 mm shift">{text}</span>')
            shift_cells.append(text)
        own_cells = []
        if with_own:
            tau = own_tolerance.value_in(after) if own_tolerance.value_in(after) is not None else \
                own_tolerance.value_in(before)
            own_cells = [_change(own.value_in(before), own.value_in(after), True, "")
                         + f"<br><small>τ {_fmt(tau, 'mm', own_tolerance.digits)}</small>" if tau is not None else "—"]
        rows.append([_e(name)] + [_change(before.get(k), after.get(k), True, "") for k in nsd_keys] + own_cells
                    + [_fmt(m.value_in(after), "mm", m.digits) for m in signed] + shift_cells)
        hist = sd.get("histogram") or {}
        if len(charts) < MAX_HISTOGRAMS and hist:
            charts.append(signed_distance_histogram_svg(hist.get("edges_mm"), hist.get("counts"), str(name)))
    legend = ('<p class="legend">NSD: share of both boundaries within the tolerance of the other (before → after)'
              + ('; "NSD at segment τ": at the tolerance the tolerance profile sets for that segment (the one its '
                 'NSD check compares). ' if with_own else '. ') +
              'Signed distances (after registration): each registered boundary voxel\'s distance to the fixed '
              f'boundary, <span style="color:{BLUE}">negative inside</span> the fixed segment, '
              f'<span style="color:{VERMILLION}">positive where it sticks out</span>. "Dice of itself shifted": the '
              'fixed segment against itself moved 1 or 2 mm (worst axis) — a Dice above it cannot rule out an error '
              'of that size (highlighted when the Dice after registration is no higher than the 2 mm value: that Dice is compatible '
              'with an error of 2 mm or more).</p>')
    numeric = set(range(1, len(header)))
    out = ['<section id="surface"><h2>Surface agreement</h2>', _table(header, rows, numeric), legend]
    if charts:
        out.append('<div style="display:flex;flex-wrap:wrap;gap:8px 18px">' + "".join(charts) + "</div>")
    out.append("</section>")
    return "".join(out)
