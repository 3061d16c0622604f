"""The cohort review page, ``review.html``: one case at a time, rated with the keyboard (docs/report.md).

The page is a shell around the JSON of :func:`.cohort_data.page_data` and the script of :mod:`.cohort_script`;
the pictures are the case folders' snapshot files, loaded when a case is shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .cohort_data import page_data, script_json, write_text_atomic
from .cohort_script import COMMON_CSS, COMMON_JS, REVIEW_CSS, REVIEW_JS
from .markup import _e
from .style import CSS

KEYS = (("→  or  j", "next registration (the methods of a case come one after the other)"),
        ("←  or  k", "previous registration"), ("1 / 2 / 3", "rate pass / review / fail (0 clears)"),
        ("n", "write a note (Enter saves, Shift+Enter new line, Esc cancels)"),
        ("f", "flicker between the fixed and the registered image (again: stop)"), ("/", "search a case id"),
        ("u", "unrated only on / off"), ("?", "this help"), ("Esc", "close a dialog"))


def review_html(rows: Sequence[Mapping], output_path, title: str = "Registration quality: review") -> Path:
    """Write ``review.html`` (atomically) for the summary ``rows`` and return its path."""
    output_path = Path(os.path.abspath(os.fspath(output_path)))
    data = page_data(rows, output_path.parent)
    keys = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in KEYS)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}{COMMON_CSS}{REVIEW_CSS}</style></head><body><main>"
        f'<header class="bar"><h1>{_e(title)}</h1><span id="progress"></span><span class="grow"></span>'
        '<label><input type="checkbox" id="unrated-only"> unrated only (u)</label>'
        '<label><input type="checkbox" id="advance"> next after rating</label>'
        '<button id="who-btn">reviewer…</button><button id="export">Export ratings.csv</button>'
        '<button id="help-btn">keys (?)</button></header>'
        '<noscript><p class="reason">This page needs JavaScript (it runs locally; nothing is sent anywhere).</p>'
        "</noscript>"
        '<div class="casehead"><h2 id="case-id"></h2><span id="case-meta"></span>'
        '<a href="summary.html">cohort summary</a></div>'
        '<div id="case"></div>'
        '<h3>Where the case lies in the cohort</h3><div id="cohort-plots" class="plots mini"></div>'
        '<div class="tip" id="tip"></div>'
        '<div class="overlay" id="help"><div class="dialog"><h3>Keys</h3><table class="keys"><tbody>'
        f"{keys}</tbody></table><p class=\"hint\">Ratings, notes, the reviewer's name and the seconds spent on each "
        "registration stay in this browser (localStorage, one store per cohort folder) and survive a reload; "
        "Export downloads them as ratings.csv.</p></div></div>"
        '<div class="overlay" id="who"><div class="dialog"><h3>Reviewer</h3><p>Your name or initials (asked once, '
        'kept in this browser, written to ratings.csv):</p><input id="who-input" autocomplete="off"></div></div>'
        '<div class="overlay" id="note-dialog"><div class="dialog"><h3>Note</h3><textarea id="note-input">'
        "</textarea></div></div>"
        '<div class="overlay" id="search-dialog"><div class="dialog"><h3>Go to case</h3>'
        '<input id="search-input" autocomplete="off" placeholder="case id (or part of it), Enter">'
        '<p class="hint" id="search-info"></p></div></div>'
        f'<script type="application/json" id="rq-data">{script_json(data)}</script>'
        f"<script>{COMMON_JS}{REVIEW_JS}</script></main></body></html>\n"
    )
    return write_text_atomic(output_path, page)
