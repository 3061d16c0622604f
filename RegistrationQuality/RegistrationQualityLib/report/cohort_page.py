"""The cohort summary page, ``summary.html``: counts, agreement with human ratings, the methods compared, strip
plots of every numeric column and the cases table.

The small parts (counts, the confusion table, the method tables) are HTML; the per-case parts come from the JSON of
:func:`.cohort_data.page_data` drawn by :mod:`.cohort_script` (strip plots on canvas, the table paged 50 rows at a
time, thumbnails as lazily loaded files), so the page stays a few MB and opens at once at 5,000 cases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import cohort_stats
from .cohort_data import page_data, review_order, script_json, summary_metrics, write_text_atomic
from .cohort_script import COMMON_CSS, COMMON_JS, SUMMARY_JS
from .markup import _digits, _e, _fmt, _table
from .style import CSS, GREEN, GREY, ORANGE, VERMILLION

# The figures compared between methods (median and quartiles, paired differences).
METHOD_FIGURES = ("min_dice_after", "max_hausdorff_percentile_after_mm", "mean_tre_after_mm", "folding_percent",
                  "ncc_after")
MAX_DISAGREEMENTS = 100


def summary_order(rows: Sequence[Mapping]) -> list:
    """Row indices: with human ratings, the registrations where rating and verdict disagree first (pass vs fail
    before one-step disagreements), then the review order (:func:`.cohort_data.review_order`)."""
    order = review_order(rows)
    if not any(r.get("human_rating") for r in rows):
        return order
    rank = {i: k for k, i in enumerate(order)}
    return sorted(order, key=lambda i: (-(cohort_stats.disagreement(rows[i]) or 0), rank[i]))


def _title(key: str) -> str:
    return summary_metrics().get(key, (key.replace("_", " "),))[0]


def _unit(key: str) -> str:
    return summary_metrics().get(key, ("", ""))[1]


def _tiles(rows) -> str:
    counts = {"pass": 0, "review": 0, "fail": 0, "no checks": 0, "not evaluated": 0}
    for row in rows:
        counts[cohort_stats.automated_label(row)] += 1
    outliers = sum(1 for r in rows if r.get("outlier_columns"))
    items = [("pass", "Passed", "#00684c"), ("review", "Review", "#7a5200"), ("fail", "Failed", "#a84a00"),
             ("no checks", "No checks", GREY), ("not evaluated", "Could not be evaluated", "#a84a00")]
    out = "".join(f'<div class="tile"><div class="k">{title}</div><div class="v" style="color:{colour}">'
                  f"{counts[key]}</div></div>" for key, title, colour in items)
    out += (f'<div class="tile"><div class="k">Outliers (robust |z| &gt; {cohort_stats.OUTLIER_Z:g})</div>'
            f'<div class="v" style="color:#6b3fa0">{outliers}</div></div>')
    rated = sum(1 for r in rows if r.get("human_rating"))
    if rated:
        out += f'<div class="tile"><div class="k">Rated by a person</div><div class="v">{rated}</div></div>'
    return f'<div class="tiles">{out}</div>'


def _agreement_section(rows) -> str:
    if not any(r.get("human_rating") for r in rows):
        return ""
    result = cohort_stats.confusion(rows)
    header = ["Automated verdict ↓ / human rating →", *cohort_stats.HUMAN, "total"]
    body = []
    for auto in cohort_stats.AUTOMATED:
        counts = result["table"][auto]
        cells = []
        for human in cohort_stats.HUMAN:
            n = counts[human]
            text = str(n)
            if n and auto in cohort_stats.RATINGS and human in cohort_stats.RATINGS:
                text = f"<b>{n}</b>" if auto == human else f'<b class="worse">{n}</b>'
            cells.append(text)
        body.append([_e(auto), *cells, str(sum(counts.values()))])
    kappa = "not defined" if result["kappa"] is None else f"{result['kappa']:.3f}"
    share = f"{100.0 * result['agreeing'] / result['compared']:.1f} %" if result["compared"] else "—"
    out = ['<section id="agreement"><h2>Automated verdicts and human ratings</h2>',
           f"<p>{result['rated']} registration(s) rated by a person; on the {result['compared']} with both an "
           f"automated pass / review / fail and a rating they agree on {result['agreeing']} ({share}); Cohen's "
           f"kappa {kappa}. Counts where they differ are in orange-red. The same table is in agreement.csv.</p>",
           _table([_e(h) if i else h for i, h in enumerate(header)], body, set(range(1, len(header))))]
    disagreeing = [r for r in rows if cohort_stats.disagreement(r)]
    disagreeing.sort(key=lambda r: -cohort_stats.disagreement(r))
    if disagreeing:
        out.append(f"<h3>Where they disagree ({len(disagreeing)})</h3>")
        table = []
        for r in disagreeing[:MAX_DISAGREEMENTS]:
            link = r.get("report")
            case = _e(r.get("case_id"))
            table.append([f'<a href="{_e(Path(os.fspath(link)).as_posix())}">{case}</a>' if link else case,
                          _e(r.get("method") or ""), _e(r.get("verdict")), _e(r.get("human_rating")),
                          _e(r.get("human_note") or ""), _e(r.get("failed_checks") or "")])
        out.append(_table(["Case", "Method", "Automated", "Human", "Note", "Failed checks"], table))
        if len(disagreeing) > MAX_DISAGREEMENTS:
            out.append(f'<p class="legend">The first {MAX_DISAGREEMENTS} of {len(disagreeing)}; all are in '
                       "summary.csv (rating_agrees = no) and first in the table below.</p>")
    out.append("</section>")
    return "".join(out)


def _methods_section(rows) -> str:
    methods = []
    for r in rows:
        if (r.get("method") or "") not in methods:
            methods.append(r.get("method") or "")
    if len(methods) < 2:
        return ""
    figures = [f for f in METHOD_FIGURES if any(cohort_stats.number(r.get(f)) is not None for r in rows)]
    table = cohort_stats.method_table(rows, figures)
    header = ["Method", "Registrations", "pass", "review", "fail", "no checks", "not evaluated"]
    header += [f"{_e(_title(f))}<br><small>median [quartiles]{' ' + _e(_unit(f)) if _unit(f) else ''}</small>"
               for f in figures]
    ranks = {}
    for r in rows:
        rank = cohort_stats.number(r.get("method_rank"))
        if rank is not None:
            ranks.setdefault(r.get("method") or "", []).append(rank)
    header += ["Mean rank in case", "Best in case"]
    body = []
    for entry in table:
        cells = [_e(entry["method"]), str(entry["cases"])]
        cells += [str(entry["counts"][k]) for k in ("pass", "review", "fail", "no checks", "not evaluated")]
        for f in figures:
            q = entry["figures"][f]
            digits = _digits(_unit(f))
            cells.append("—" if q is None else f"{_fmt(q[1], '', digits)} [{_fmt(q[0], '', digits)}–"
                                               f"{_fmt(q[2], '', digits)}]")
        mine = ranks.get(entry["method"], [])
        cells.append(f"{sum(mine) / len(mine):.2f}" if mine else "—")
        cells.append(str(sum(1 for v in mine if v == 1.0)))
        body.append(cells)
    out = ['<section id="methods"><h2>Methods compared</h2>',
           "<p>Several registrations per case (the manifest's <code>method</code> column). Rank in case: 1 = the "
           "best method of that case on the lowest Dice after registration (else mean TRE, else NCC); ties share "
           "the mean rank.</p>", _table(header, body, set(range(1, len(header))))]
    pairs = []
    for f in figures:
        for p in cohort_stats.paired_differences(rows, f, methods):
            if p["n_pairs"]:
                pairs.append((f, p))
    if pairs:
        body = []
        for f, p in pairs:
            digits = _digits(_unit(f))
            higher = summary_metrics().get(f, (None, None, None))[2]
            better = ""
            if p["median_difference"] and higher is not None:
                better = p["a"] if (p["median_difference"] > 0) == higher else p["b"]
            body.append([_e(_title(f)) + (f" ({_e(_unit(f))})" if _unit(f) else ""), _e(f"{p['a']} − {p['b']}"),
                         str(p["n_pairs"]), _fmt(p["median_difference"], "", digits), _e(better),
                         "—" if p["p"] is None else f"{p['p']:.3g}", _e(p["test"] or "")])
        out.append("<h3>Paired differences</h3><p>Over the cases where both methods have a value; two-sided "
                   "Wilcoxon signed-rank test (zero differences dropped; exact up to "
                   f"{cohort_stats.EXACT_MAX_N} non-zero differences, else the normal approximation with tie and "
                   "continuity correction).</p>")
        out.append(_table(["Figure", "Difference", "Cases", "Median difference", "Better (median)", "p", "Test"],
                          body, {2, 3, 5}))
    out.append("</section>")
    return "".join(out)


def summary_html(rows, output_path) -> Path:
    """Write the cohort summary page (one HTML file; pictures stay files) and return its path.

    ``rows``: one dict per registration (cohort.SUMMARY_COLUMNS): ``case_id``, ``method`` (optional), ``status``
    ("ok…" when evaluated, else e.g. "failed"), ``error``, ``verdict`` (pass / review / fail / no checks),
    ``failed_checks``, ``outlier_columns``, ``report`` (path of the case's report.html, absolute or relative to the
    page's folder), optional ``human_rating``/``human_note``/``rating_agrees`` and numeric columns (numbers or
    numeric text; empty = not available). Every numeric column gets a strip plot (box = quartiles, line = median,
    one dot per registration, click opens its report; ``*_before`` columns join their ``*_after`` plot); the
    table lists disagreements with a human rating first, then cases that could not be evaluated, failing, review,
    outlier cases and the rest (the lowest Dice after registration first within each group).
    """
    output_path = Path(os.path.abspath(os.fspath(output_path)))
    rows = [dict(r) for r in rows]
    data = page_data(rows, output_path.parent, summary_order(rows))
    legend = (f'<p class="legend">Dots: <span class="key" style="background:{GREEN}"></span>pass'
              f'<span class="key" style="background:{ORANGE}"></span>review'
              f'<span class="key" style="background:{VERMILLION}"></span>fail'
              f'<span class="key" style="background:{GREY}"></span>no checks; '
              f'<span class="key" style="background:#fff;border:1.5px solid {GREY}"></span>before registration; '
              "box = quartiles, line = median; hover a dot for its case, click it to open the case report; a "
              "searched case is ringed in every plot.</p>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Registration quality: cohort summary</title><style>{CSS}{COMMON_CSS}</style></head><body><main>"
        f"<h1>Registration quality: cohort summary</h1><p class='sub'>{len(rows)} registrations · "
        '<a href="review.html">review them one by one</a> · numbers in summary.csv</p>'
        + _tiles(rows) + _agreement_section(rows) + _methods_section(rows)
        + '<noscript><p class="reason">The plots and the cases table need JavaScript (it runs locally; nothing is '
        "sent anywhere); summary.csv holds every number.</p></noscript>"
        + "<h2>Distributions</h2>" + legend + '<div class="plots" id="plots"></div>'
        + "<h2>Cases, worst first</h2>"
        + '<div class="toolbar"><input type="search" id="search" placeholder="search a case id (/)" '
        'aria-label="search a case id"><span id="search-info"></span><span class="grow"></span>'
        '<button id="prev-page">← previous</button><span id="page-info"></span><button id="next-page">next →'
        "</button></div>"
        '<div class="cases"><div class="scroll"><table><thead id="case-head"></thead><tbody id="case-rows">'
        "</tbody></table></div></div>"
        '<div class="tip" id="tip"></div>'
        f'<script type="application/json" id="rq-data">{script_json(data)}</script>'
        f"<script>{COMMON_JS}{SUMMARY_JS}</script></main></body></html>\n"
    )
    return write_text_atomic(output_path, page)


__all__ = ["METHOD_FIGURES", "summary_html", "summary_order"]
