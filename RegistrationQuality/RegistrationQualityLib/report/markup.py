"""HTML building blocks shared by the case and cohort pages: escaping, number formatting, tables, images."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .rows import _is_number

TOOL_NAME = "RegistrationQuality"  # shown on the pages; stamped in report.json (marks a report folder)
IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".svg": "image/svg+xml", ".webp": "image/webp"}


def _e(value) -> str:
    """Escaped text of any value (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _fmt(value, unit: str = "", digits: int | None = None) -> str:
    """Escaped display text of a number (None -> an em dash)."""
    if value is None:
        return '<span class="null">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _is_number(value):
        return _e(value)
    if isinstance(value, int):
        text = f"{value:d}"
    elif digits is not None and 0 < abs(value) < 0.5 * 10.0**-digits:
        text = f"{'-' if value < 0 else ''}<{10.0**-digits:.{digits}f}"  # never a non-zero shown as 0
    elif digits is not None:
        text = f"{value:.{digits}f}"
    elif value != 0 and (abs(value) >= 1e7 or abs(value) < 1e-3):
        text = f"{value:.3g}"
    elif abs(value) >= 1000:
        text = f"{value:.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        text = "0" if text in ("", "-0") else text
    return _e(text) + (f" {_e(unit)}" if unit else "")


def _digits(unit: str | None) -> int | None:
    """Decimals shown for a unit: mm 2, cc / % / ratios 3; None = free format."""
    return {"mm": 2, "cc": 3, "%": 3, "": 3}.get(unit) if unit is not None else None


def _change(before, after, higher_is_better: bool | None, unit: str | None = "", digits: int | None = None,
            judged: bool = True) -> str:
    """``before → after`` with an arrow and colour saying whether it improved (``unit`` None: free format, the
    same decimals on both sides; ``digits`` given: that many decimals; ``higher_is_better`` None or ``judged``
    False: the plain numbers, neither colour nor arrow)."""
    if digits is None:
        digits = _digits(unit)
    if unit is None and digits is None:
        size = max([abs(v) for v in (before, after) if _is_number(v)] + [0.0])
        digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 10 else 3
    b, a = _fmt(before, "", digits), _fmt(after, "", digits)
    if not (_is_number(before) and _is_number(after)) or not judged:
        return f"{b} → {a}"
    tolerance = 1e-9 * max(1.0, abs(before), abs(after))
    if abs(after - before) <= tolerance:
        return f'{b} → {a} <span class="same" title="unchanged">=</span>'
    if higher_is_better is None:
        return f"{b} → {a}"
    improved = (after > before) == higher_is_better
    arrow = "▲" if after > before else "▼"
    cls, word = ("better", "improved") if improved else ("worse", "worse")
    return f'{b} → <span class="{cls}" title="{word}">{a} {arrow}</span>'


def _measure_value(measure, value) -> str:
    """A value shown with its measure's unit and digits (:mod:`..measures`)."""
    return _fmt(value, measure.unit if measure.unit not in ("voxels",) else "", measure.digits)


def _measure_change(measure, before, after, judged: bool = True) -> str:
    """``before → after`` of a measure, with its digits and better direction (``judged`` False: plain numbers)."""
    unit = None if measure.digits is None else measure.unit
    return _change(before, after, measure.higher_is_better, unit, measure.digits, judged)


def _table(header, rows, numeric=()) -> str:
    """A table from pre-escaped cell HTML (``header`` None: no header row). ``numeric``: right-aligned columns."""
    out = ['<div class="scroll"><table>']
    if header:
        out.append("<thead><tr>")
        for i, title in enumerate(header):
            out.append(f'<th class="num">{title}</th>' if i in numeric else f"<th>{title}</th>")
        out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            out.append(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _data_uri(source) -> str | None:
    if isinstance(source, (bytes, bytearray)):
        data, mime = bytes(source), "image/png"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        suffix = path.suffix.lower()
        mime = IMAGE_MIME.get(suffix, "image/png")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
