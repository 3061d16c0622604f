"""The cohort summary page: strip plots of every numeric column and the cases table, worst first."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from .. import measures
from .charts import strip_plot_svg
from .markup import _digits, _e, _fmt, _table
from .rows import _number, _unit
from .style import CSS, GREEN, GREY, VERMILLION

VERDICT_RANK = {"fail": 1, "no checks": 2, "pass": 3}


def summary_metrics() -> dict:
    """The cohort summary's measure columns, from the measure registry (:func:`..measures.cohort_columns`):
    {column: (plot title, unit, True if higher is better (None: neither), the matching "before" column drawn in
    the same plot or None, display digits, short table header)}. Other numeric columns get a plot titled by
    their key."""
    out = {}
    columns = measures.cohort_columns()
    for column, m, stage in columns:
        if m.applies_to == "segment":
            title = f"{'Lowest' if m.better == 'higher' else 'Largest'} {m.short}"
        else:
            title = _capital(m.title)
        before = next((c for c, m2, s2 in columns if m2 is m and s2 == "before"), None) if stage == "after" else None
        short = m.short if stage == "-" else f"{m.short} {stage}"
        out[column] = (title, m.unit, m.higher_is_better, before, m.digits, short)
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

SUMMARY_TEXT_KEYS = ("case_id", "status", "verdict", "report", "error", "failed_checks")
SUMMARY_NOT_PLOTTED = ("segments",)


def _evaluated(row: Mapping) -> bool:
    """True when the case ran to a verdict (status "ok", "ok (earlier run)", "done", ...)."""
    status = str(row.get("status") or "").strip().lower()
    return status.startswith("ok") or status in ("done", "finished", "skipped", "")


def _case_rank(row: Mapping):
    """Sort key, worst first: cases that could not be evaluated, failing verdicts (more failed checks first),
    no checks, passes; within a group the lowest Dice after registration first (ties keep the given order)."""
    rank = VERDICT_RANK.get(row.get("verdict"), 2) if _evaluated(row) else 0
    failed_checks = _number(row.get("n_checks_failed"))
    if failed_checks is None and row.get("failed_checks"):
        failed_checks = float(len(str(row["failed_checks"]).split(";")))
    dice = _number(row.get("min_dice_after"))
    return rank, -(failed_checks or 0.0), math.inf if dice is None else dice


def summary_html(rows, output_path) -> Path:
    """Write the cohort summary page (one self-contained HTML file) and return its path.

    ``rows``: one dict per case (cohort.SUMMARY_COLUMNS): ``case_id``, ``status`` ("ok…" when the case was
    evaluated, else e.g. "failed"), ``error`` (the message of a case that failed), ``verdict`` (pass / fail / no
    checks), ``failed_checks`` (text), ``report`` (path of the case's report.html, absolute or relative to the
    page's folder) and numeric columns (numbers or numeric text; empty = not available). Every numeric column
    gets a strip plot (box = quartiles, line = median, one linked dot per case; ``*_before`` columns join their
    ``*_after`` column's plot); the table lists cases that could not be evaluated first, then failing verdicts,
    no checks, passes, the lowest Dice first within each group.
    """
    output_path = Path(os.path.abspath(os.fspath(output_path)))
    folder = output_path.parent
    rows = [dict(r) for r in rows]

    def href(row):
        target = row.get("report")
        if not target:
            return None
        target = Path(os.fspath(target))
        if target.is_absolute():
            try:
                target = Path(os.path.relpath(target, folder))
            except ValueError:  # another drive on Windows
                return target.as_uri()
        return target.as_posix()

    ordered = sorted(rows, key=_case_rank)
    columns = []
    for row in rows:
        for key, value in row.items():
            if key not in SUMMARY_TEXT_KEYS and key not in columns and _number(value) is not None:
                columns.append(key)
    counts = {"pass": 0, "fail": 0, "no checks": 0, "error": 0}
    for row in rows:
        key = (row.get("verdict") if row.get("verdict") in counts else "no checks") if _evaluated(row) else "error"
        counts[key] += 1
    tiles = "".join(
        f'<div class="tile"><div class="k">{title}</div><div class="v" style="color:{colour}">{counts[key]}</div>'
        f"</div>" for key, title, colour in (("pass", "Passed", "#00684c"), ("fail", "Failed", "#a84a00"),
                                             ("no checks", "No checks", GREY),
                                             ("error", "Could not be evaluated", "#a84a00")))

    def items(key):
        return [(_number(r.get(key)), r.get("case_id"), r.get("verdict"), href(r)) for r in rows]

    plots = []
    specs = summary_metrics()
    paired = {spec[3] for key, spec in specs.items() if spec[3] and key in columns}
    for key in columns:
        if key in SUMMARY_NOT_PLOTTED or key in paired:
            continue
        title, unit, higher, before = specs.get(key, (key.replace("_", " "), _unit(key), None, None))[:4]
        plots.append(strip_plot_svg(title, items(key), unit, higher, items(before) if before in columns else None))
    legend = (f'<p class="legend">Dots: <span class="key" style="background:{GREEN}"></span>pass'
              f'<span class="key" style="background:{VERMILLION}"></span>fail'
              f'<span class="key" style="background:{GREY}"></span>no checks; '
              f'<span class="key" style="background:#fff;border:1.5px solid {GREY}"></span>before registration; '
              f'box = quartiles, line = median; click a dot to open the case report.</p>')
    header = ["Case", "Result"]
    for key in columns:
        title = specs[key][5] if key in specs else "Segments" if key == "segments" else key.replace("_", " ")
        unit = specs[key][1] if key in specs else _unit(key)
        header.append(f'<span title="{_e(key)}">{_e(title)}</span>' + (f"<br><small>{_e(unit)}</small>" if unit
                                                                        else ""))
    table_rows = []
    for row in ordered:
        link = href(row)
        case = _e(row.get("case_id"))
        case = f'<a href="{_e(link)}">{case}</a>' if link else case
        if not _evaluated(row):
            message = row.get("error") or row.get("status") or "not evaluated"
            result = f'<span class="badge fail">error</span> <span class="reason">{_e(message)}</span>'
        else:
            verdict = row.get("verdict") or "no checks"
            cls = {"pass": "pass", "fail": "fail"}.get(verdict, "none")
            mark = {"pass": "✔ ", "fail": "✘ "}.get(verdict, "")
            result = f'<span class="badge {cls}">{mark}{_e(verdict)}</span>'
            if row.get("failed_checks"):
                result += f' <span class="reason">{_e(row["failed_checks"])}</span>'
        cells = [case, result]
        for key in columns:
            value = _number(row.get(key))
            if value is not None and value.is_integer() and (key.startswith("n_") or key == "segments"):
                cells.append(_fmt(int(value)))
            elif key in specs:
                cells.append(_fmt(value, "", specs[key][4]))
            else:
                cells.append(_fmt(value, "", _digits(_unit(key))))
        table_rows.append(cells)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Registration quality: cohort summary</title><style>{CSS}</style></head><body><main>"
        f"<h1>Registration quality: cohort summary</h1><p class='sub'>{len(rows)} cases</p>"
        f'<div class="tiles">{tiles}</div>'
        + ("<h2>Distributions</h2>" + legend + '<div class="plots">' + "".join(plots) + "</div>" if plots else "")
        + "<h2>Cases, worst first</h2>"
        + '<div class="cases">' + _table(header, table_rows, set(range(2, 2 + len(columns)))) + "</div>"
        + "</main></body></html>\n"
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = output_path.with_name(f".{output_path.name}.tmp-{secrets.token_hex(4)}")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, output_path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return output_path
