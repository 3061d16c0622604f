"""The QA report folder: ``report.json``, ``metrics.csv``, ``report.html`` and ``snapshots/``.

One concern per module:

- :mod:`.folder` — :func:`write_report` takes the report dict built by ``evaluate`` (schema: docs/report.md) and
  writes the folder atomically: everything goes into a hidden sibling ``.<name>.tmp-XXXXXXXX`` that replaces the
  target by a rename, so a killed run never leaves a folder that looks complete, and a previous report stays
  intact until the new one is whole.
- :mod:`.rows` — :func:`metrics_rows` flattens the numbers into long-format rows (one per metric and stage) for
  ``metrics.csv`` and cohort summaries; :func:`read_metrics_csv` reads them back.
- :mod:`.style` — the colour-blind-safe palette and the stylesheet; :mod:`.markup` — escaping, number formatting,
  tables; :mod:`.charts` — inline SVG charts.
- :mod:`.case_page` — :func:`render_html`, one self-contained page (plain HTML + CSS + inline SVG, images as data
  URIs, no scripts, no external resources) that a clinician can read at a glance.
- :mod:`.cohort_page` — :func:`summary_html`, the cohort summary page; :mod:`.review_page` —
  :func:`review_html`, the one-case-at-a-time reviewer page; both embed the JSON of :mod:`.cohort_data` and the
  script of :mod:`.cohort_script` (plain JavaScript, no external resources).

The names below are the package's public interface (``from RegistrationQualityLib.report import write_report``).
"""

from __future__ import annotations

from .case_page import render_html
from .charts import MAX_CHART_LANDMARKS, jacobian_histogram_svg, tre_chart_svg
from .cohort_data import page_data, review_order, summary_metrics
from .cohort_page import summary_html
from .folder import METRICS_CSV, REPORT_HTML, REPORT_JSON, SNAPSHOT_DIR, _check_output_target, _jsonable, write_report
from .markup import TOOL_NAME
from .review_page import review_html
from .rows import METRICS_COLUMNS, _flatten, metrics_rows, read_metrics_csv
from .style import CSS, VERDICT_COLOURS

__all__ = [
    "CSS", "MAX_CHART_LANDMARKS", "METRICS_COLUMNS", "METRICS_CSV", "REPORT_HTML", "REPORT_JSON", "SNAPSHOT_DIR",
    "TOOL_NAME", "summary_metrics",
    "VERDICT_COLOURS", "_check_output_target", "_flatten", "_jsonable", "jacobian_histogram_svg",
    "metrics_rows", "page_data", "read_metrics_csv", "render_html", "review_html", "review_order", "summary_html",
    "tre_chart_svg",
    "write_report",
]
