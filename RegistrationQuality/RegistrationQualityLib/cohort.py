"""Cohort runs: evaluate many registrations listed in a CSV manifest, locally or on a Dask cluster.

Manifest: a CSV with a header. Columns are ``case_id`` plus evaluate's long options with ``_`` for ``-``
(``fixed``, ``moving``, ``transform``, ``elastix_dir``, ``registered``, ``fixed_segmentation``,
``moving_segmentation``, ``labels``, ``threshold``, ``fixed_landmarks``, ``moving_landmarks``, and the numeric options
``percentile`` and one limit per check: ``min_dice``, ``max_hausdorff``, ``max_tre``, ``max_folding``, ...). An empty cell means the option
is absent; relative paths resolve against the manifest's folder; ``threshold`` may hold two specs separated by
``;`` (fixed; moving), ``labels`` one label-name table or two (fixed; moving); the threshold clean-up columns
``fill_holes``, ``largest_component`` (true/false), ``min_island_cc``, ``closing_mm`` and ``same_modality``
(true/false) are evaluate's options of those names. An unknown column, or a missing ``case_id``/``fixed``/``moving``
column, is bad input. An optional ``method`` column names the registration method: several rows may then share a
``case_id`` (one per method; the pair must be unique), and the summary compares the methods.

Output: ``DIR/cases/<case_id>/`` (each case's report, written atomically; ``DIR/cases/<case_id>/<method>/`` with
a method column), ``DIR/summary.csv``, ``DIR/summary.html`` and ``DIR/review.html`` (the reviewer page). A case
that fails (bad input or an error) is reported in the summary and does not stop the others; re-running skips the
cases whose report is complete and retries the others. Human ratings exported from review.html merge back with
``--ratings`` (:func:`merge_ratings`), which also writes ``DIR/agreement.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from . import checks, cohort_stats, measures
from .errors import BadInputError
from .report import review_html, summary_html
from .report.cohort_data import numeric_columns

PATH_COLUMNS = ("fixed", "moving", "transform", "elastix_dir", "registered", "fixed_segmentation",
                "moving_segmentation", "fixed_landmarks", "moving_landmarks")
NUMBER_COLUMNS = ("percentile", *checks.names())  # and one column per check of the check registry
LIST_COLUMNS = ("threshold", "labels")  # one value for both images or two separated by ';' (fixed; moving)
CLEANUP_COLUMNS = ("fill_holes", "largest_component", "min_island_cc", "closing_mm")  # segmentation.Cleanup
BOOL_COLUMNS = ("fill_holes", "largest_component", "same_modality")  # true/false, yes/no, 1/0
COLUMNS = ("case_id", "method", *PATH_COLUMNS, *LIST_COLUMNS, *NUMBER_COLUMNS, *CLEANUP_COLUMNS, "same_modality")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
REQUIRED = ("case_id", "fixed", "moving")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

def summary_columns() -> list:
    """The summary.csv columns: case, method and verdict, then one column per cohort column of the measure registry
    (:func:`.measures.cohort_columns`), then the failed checks, the worst segment, the outliers and the report's
    path."""
    return (["case_id", "method", "status", "verdict", "error", "segments"]
            + [c for c, _m, _s in measures.cohort_columns()]
            + ["failed_checks", "worst_segment", "outlier_columns", "report"])


SUMMARY_COLUMNS = summary_columns()
# Added to summary.csv when the manifest has several methods per case / when human ratings are merged.
RANK_COLUMNS = ["method_rank"]
RATING_COLUMNS = ["human_rating", "human_note", "reviewer", "review_seconds", "rated_at", "rating_agrees"]
RATINGS_HEADER = ("case_id", "method", "rating", "note", "reviewer", "seconds", "rated_at")
# Columns never scored for outliers (counts and ranks, not measures).
NOT_SCORED = ("segments", "method_rank", "review_seconds")
# The figure a case's methods are ranked on: the first of these the cohort has (True: higher is better).
RANK_FIGURES = (("min_dice_after", True), ("mean_tre_after_mm", False), ("ncc_after", True))


def _csv_rows(path, option: str, empty: str) -> tuple:
    """(checked path, the non-blank rows) of a UTF-8 CSV file (a BOM allowed); BadInputError naming the file."""
    from .io import check_file

    p = check_file(path, option)
    name = os.fspath(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(name, "not a text file (cannot decode as UTF-8)") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise BadInputError(name, f"malformed CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise BadInputError(name, f"{empty} (a header row is needed)")
    return p, rows


def read_manifest(path) -> list[dict]:
    """Rows of the manifest as dicts (absent options dropped, paths resolved); BadInputError on bad input."""
    name = os.fspath(path)
    p, rows = _csv_rows(path, "manifest", "empty manifest")
    header = [c.strip() for c in rows[0]]
    for column in header:
        if column not in COLUMNS:
            hint = f" (did you mean '{column.replace('-', '_')}'?)" if column.replace("-", "_") in COLUMNS else ""
            raise BadInputError(name, f"unknown column '{column}'{hint}")
    if len(set(header)) != len(header):
        dup = next(c for c in header if header.count(c) > 1)
        raise BadInputError(name, f"column '{dup}' appears twice")
    for column in REQUIRED:
        if column not in header:
            raise BadInputError(name, f"missing column '{column}'")
    base = p.resolve().parent
    cases, seen = [], set()
    for lineno, row in enumerate(rows[1:], 2):
        if len(row) > len(header):
            raise BadInputError(name, f"line {lineno}: {len(row)} cells, the header has {len(header)}")
        cells = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        case_id = cells["case_id"]
        if not _CASE_ID.match(case_id):
            raise BadInputError(name, f"line {lineno}: case_id '{case_id}' must be letters, digits, '.', '_' or "
                                "'-' (it names a folder)")
        method = cells.get("method", "")
        if "method" in cells and not _CASE_ID.match(method):
            raise BadInputError(name, f"line {lineno} (case {case_id}): method '{method}' must be letters, digits, "
                                "'.', '_' or '-' (it names a folder)")
        if (case_id, method) in seen:
            what = f"case_id '{case_id}' with method '{method}'" if method else f"case_id '{case_id}'"
            raise BadInputError(name, f"line {lineno}: {what} appears twice")
        seen.add((case_id, method))
        for column in ("fixed", "moving"):
            if not cells[column]:
                raise BadInputError(name, f"line {lineno} (case {case_id}): '{column}' is empty")
        case = {"case_id": case_id, "line": lineno}
        for column, value in cells.items():
            if not value or column == "case_id":
                continue
            if column == "method":
                case["method"] = value
                continue
            if column in PATH_COLUMNS:
                v = Path(value).expanduser()
                case[column] = os.fspath(v if v.is_absolute() else base / v)
            elif column == "threshold":
                case[column] = [s.strip() for s in value.split(";") if s.strip()]
            elif column in BOOL_COLUMNS:
                if value.strip().lower() not in _BOOLEANS:
                    raise BadInputError(name, f"line {lineno} (case {case_id}), column {column}: '{value}' is "
                                        "not true/false")
                case[column] = _BOOLEANS[value.strip().lower()]
            elif column == "labels":
                case[column] = [os.fspath(Path(v) if Path(v).is_absolute() else base / v)
                                for v in (s.strip() for s in value.split(";")) if v]
            else:
                try:
                    case[column] = float(value)
                except ValueError:
                    raise BadInputError(name, f"line {lineno} (case {case_id}), column {column}: '{value}' is "
                                        "not a number") from None
        cases.append(case)
    if not cases:
        raise BadInputError(name, "no cases (only a header)")
    return cases


def case_folder(output_dir, case_id: str, method: str | None = None) -> Path:
    folder = Path(output_dir) / "cases" / case_id
    return folder / method if method else folder


def _error_file(output_dir, case_id: str, method: str | None = None) -> Path:
    folder = case_folder(output_dir, case_id, method)
    return folder.parent / f"{folder.name}.error.json"


def _key(row: dict):
    return row["case_id"], row.get("method") or ""


def is_finished(output_dir, case_id: str, method: str | None = None) -> bool:
    """A case is finished when its report folder holds a complete report.json (written atomically)."""
    report = case_folder(output_dir, case_id, method) / "report.json"
    if not report.is_file():
        return False
    try:
        return "verdict" in json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def run_case(case: dict, output_dir, defaults: dict | None = None) -> dict:
    """Evaluate one manifest case in this process; returns its summary row (never raises for bad input)."""
    from .context import Context, silence_native_warnings
    from .evaluate import EvaluationInputs, EvaluationOptions, evaluate

    silence_native_warnings()
    case_id, method = case["case_id"], case.get("method")
    folder = case_folder(output_dir, case_id, method)
    error_file = _error_file(output_dir, case_id, method)
    opts = dict(defaults or {})
    opts.update({k: case[k] for k in NUMBER_COLUMNS if k in case})
    if "same_modality" in case:
        opts["same_modality"] = case["same_modality"]
    inputs = EvaluationInputs(case_id=case_id, **{k: case.get(k) for k in (*PATH_COLUMNS, *LIST_COLUMNS)})
    limits = {k: opts.pop(k) for k in checks.names() if k in opts}
    try:
        if any(k in case for k in CLEANUP_COLUMNS):
            from .segmentation import Cleanup, cleanup_from_dict

            base = cleanup_from_dict(opts.get("threshold_cleanup")).as_dict()
            opts["threshold_cleanup"] = Cleanup(**{**base, **{k: case[k] for k in CLEANUP_COLUMNS if k in case}})
        options = EvaluationOptions(**{k: v for k, v in opts.items() if v is not None},
                                    limits={k: v for k, v in limits.items() if v is not None})
        result = evaluate(Context.headless(), inputs, options, output_dir=folder)
    except BadInputError as exc:
        return _error_row(case_id, f"bad input: {exc}", error_file, method)
    except Exception as exc:  # a broken case must not stop the cohort
        return _error_row(case_id, f"error: {type(exc).__name__}: {exc}", error_file, method)
    if error_file.exists():
        error_file.unlink()
    return dict(summary_row(case_id, result.report, folder / "report.html", output_dir), method=method or "")


def _error_row(case_id: str, message: str, error_file: Path, method: str | None = None) -> dict:
    message = " ".join(message.split())
    error_file.parent.mkdir(parents=True, exist_ok=True)
    error_file.write_text(json.dumps({"case_id": case_id, "method": method or "", "error": message}),
                          encoding="utf-8")
    return {"case_id": case_id, "method": method or "", "status": "failed", "verdict": None, "error": message}


def summary_row(case_id: str, report: dict, report_path, output_dir) -> dict:
    """One summary row of a case's report (key metrics; None where not computed)."""
    segments = report.get("segments") or []
    failed = [f"{c['name']}[{c['subject']}]" for c in report.get("checks", []) if not c["passed"]]
    scored = [((s.get("after") or {}).get("dice"), s.get("name")) for s in segments]
    scored = [(d, str(n)) for d, n in scored if d is not None and n is not None]
    return {
        "case_id": case_id, "status": "ok", "verdict": report.get("verdict"), "error": "",
        "segments": len(segments),
        **{column: measures.cohort_value(m, stage, report) for column, m, stage in measures.cohort_columns()},
        "failed_checks": "; ".join(failed),
        "worst_segment": min(scored)[1] if scored else "",
        "report": os.path.relpath(report_path, output_dir),
    }


def _finished_row(case_id: str, output_dir, method: str | None = None) -> dict:
    folder = case_folder(output_dir, case_id, method)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    row = summary_row(case_id, report, folder / "report.html", output_dir)
    row["status"] = "ok (earlier run)"
    row["method"] = method or ""
    return row


def run_cohort(manifest, output_dir, workers: int = 1, scheduler: str | None = None, defaults: dict | None = None,
               progress=None, ratings=None) -> list[dict]:
    """Evaluate every case of the manifest; returns the summary rows (manifest order) and writes the summary
    pages (``ratings``: a ratings.csv exported from review.html, merged with :func:`merge_ratings`)."""
    cases = read_manifest(manifest)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError("--output", f"{os.fspath(out)} is an existing file; a folder is needed")
    if workers < 1:
        raise BadInputError("--workers", f"{workers} must be at least 1")
    (out / "cases").mkdir(parents=True, exist_ok=True)
    rating_rows = read_ratings(ratings) if ratings else _earlier_ratings(out)
    rows: dict = {}
    todo = []
    for case in cases:
        if is_finished(out, case["case_id"], case.get("method")):
            rows[_key(case)] = _finished_row(case["case_id"], out, case.get("method"))
        else:
            todo.append(case)
    if progress is not None:
        progress(f"{len(todo)} case(s) to evaluate, {len(cases) - len(todo)} finished earlier", 0.0)
    for row in _execute(todo, out, defaults, workers, scheduler, progress):
        rows[_key(row)] = row
    ordered = [rows[_key(c)] for c in cases]
    return write_summary(ordered, out, rating_rows, require_match=ratings is not None)


def _earlier_ratings(output_dir):
    """The human ratings merged into this folder's earlier summary.csv (a re-run keeps them), or None."""
    path = Path(output_dir) / "summary.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        old = [r for r in csv.DictReader(f) if r.get("human_rating") or r.get("human_note")]
    return [{"case_id": r["case_id"], "method": r.get("method") or "", "rating": r.get("human_rating") or "",
             "note": r.get("human_note") or "", "reviewer": r.get("reviewer") or "",
             "seconds": r.get("review_seconds") or "", "rated_at": r.get("rated_at") or ""} for r in old] or None


def _execute(todo, out, defaults, workers, scheduler, progress):
    if not todo:
        return
    done = 0

    def tick(row):
        nonlocal done
        done += 1
        if progress is not None:
            name = row["case_id"] + (f" ({row['method']})" if row.get("method") else "")
            progress(f"case {name}: {row['status']} {row.get('verdict') or ''}".strip(), done / len(todo))

    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise BadInputError("--scheduler", "needs the optional Dask extra (pip install "
                                "'registration-quality[dask]')") from None
        try:
            client = Client(scheduler, timeout=30)
        except Exception as exc:
            raise BadInputError("--scheduler", f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        try:
            futures = [client.submit(run_case, case, os.fspath(out.resolve()), defaults, pure=False) for case in todo]
            from distributed import as_completed

            for future in as_completed(futures):
                row = future.result()
                tick(row)
                yield row
        finally:
            client.close()
        return
    if workers == 1 or len(todo) == 1:
        for case in todo:
            row = run_case(case, out, defaults)
            tick(row)
            yield row
        return
    import concurrent.futures
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")  # VTK and ITK state is not fork-safe
    threads = max(1, (os.cpu_count() or 1) // workers)  # no oversubscription: ITK's threads share the cores
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_init_worker,
                                                initargs=(threads,)) as pool:
        futures = {pool.submit(run_case, case, os.fspath(out), defaults): case for case in todo}
        for future in concurrent.futures.as_completed(futures):
            case = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # a worker died
                row = _error_row(case["case_id"], f"error: worker failed: {type(exc).__name__}: {exc}",
                                 _error_file(out, case["case_id"], case.get("method")), case.get("method"))
            tick(row)
            yield row


def _init_worker(threads: int) -> None:
    """Worker process start: ITK filters use ``threads`` threads; the heavy imports happen once per worker."""
    import SimpleITK as sitk

    from .context import silence_native_warnings

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    silence_native_warnings()
    import slicer  # noqa: F401  (import once per worker, not per case)


def annotate(rows: list[dict]) -> list[dict]:
    """Rows with ``outlier_columns`` (robust z-scores within each method, :mod:`cohort_stats`) and, when some case
    has several methods, ``method_rank`` (rank of the method within its case on the first of
    :data:`RANK_FIGURES` the cohort has; 1 = best). New dicts; the input is not modified."""
    rows = [dict(r) for r in rows]
    columns = [c for c in numeric_columns(rows) if c not in NOT_SCORED]
    for row, flags in zip(rows, cohort_stats.outliers(rows, columns, group_key="method")):
        row["outlier_columns"] = "; ".join(f"{column} (z={z:+.1f})" for column, z in flags)
    per_case: dict = {}
    for row in rows:
        per_case[row["case_id"]] = per_case.get(row["case_id"], 0) + 1
    if any(n > 1 for n in per_case.values()):
        for figure, higher in RANK_FIGURES:
            ranks = cohort_stats.case_ranks(rows, figure, higher)
            if any(r is not None for r in ranks):
                for row, rank in zip(rows, ranks):
                    row["method_rank"] = int(rank) if rank is not None and rank.is_integer() else rank
                break
    return rows


def read_ratings(path) -> list[dict]:
    """Rows of a ratings.csv exported from review.html (``case_id,method,rating,note,reviewer,seconds,rated_at``;
    ``method``, ``note``, ``reviewer``, ``seconds`` and ``rated_at`` may be absent); BadInputError on bad input."""
    name = os.fspath(path)
    _p, table = _csv_rows(path, "--ratings", "empty ratings file")
    header = [c.strip() for c in table[0]]
    for column in ("case_id", "rating"):
        if column not in header:
            raise BadInputError(name, f"missing column '{column}' (expected {','.join(RATINGS_HEADER)})")
    out = []
    for lineno, cells in enumerate(table[1:], 2):
        row = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}
        rating = row["rating"].lower()
        if rating not in ("", *cohort_stats.RATINGS):
            raise BadInputError(name, f"line {lineno}: rating '{row['rating']}' is not pass, review, fail or empty")
        seconds = row.get("seconds", "")
        if seconds and cohort_stats.number(seconds) is None:
            raise BadInputError(name, f"line {lineno}: seconds '{seconds}' is not a number")
        out.append({"case_id": row["case_id"], "method": row.get("method", ""), "rating": rating,
                    "note": row.get("note", ""), "reviewer": row.get("reviewer", ""), "seconds": seconds,
                    "rated_at": row.get("rated_at", ""), "line": lineno})
    return out


def merge_ratings(rows: list[dict], ratings: list[dict]) -> tuple[list[dict], list[dict]]:
    """(rows with the :data:`RATING_COLUMNS`, ratings that match no registration of the cohort).

    A registration rated twice keeps its latest rating (``rated_at``, ISO 8601 text; later lines win ties).
    ``rating_agrees`` is "yes"/"no" where both an automated pass/review/fail and a human rating exist.
    """
    latest: dict = {}
    for r in ratings:
        key = (r["case_id"], r["method"])
        if key not in latest or r["rated_at"] >= latest[key]["rated_at"]:
            latest[key] = r
    known = {_key(row) for row in rows}
    unmatched = [r for key, r in latest.items() if key not in known]
    merged = []
    for row in rows:
        row = dict(row)
        r = latest.get(_key(row))
        row.update({"human_rating": r["rating"] if r else "", "human_note": r["note"] if r else "",
                    "reviewer": r["reviewer"] if r else "", "review_seconds": r["seconds"] if r else "",
                    "rated_at": r["rated_at"] if r else ""})
        row["rating_agrees"] = ""
        if row["human_rating"] and cohort_stats.automated_label(row) in cohort_stats.RATINGS:
            row["rating_agrees"] = "no" if cohort_stats.disagreement(row) else "yes"
        merged.append(row)
    return merged, unmatched


def write_agreement(rows: list[dict], path) -> dict:
    """``agreement.csv``: the confusion table (automated_verdict, human_rating, count) of the merged rows."""
    from .io import write_csv

    result = cohort_stats.confusion(rows)
    table = [{"automated_verdict": a, "human_rating": h, "count": n}
             for a, by in result["table"].items() for h, n in by.items()]
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    write_csv(table, tmp)
    os.replace(tmp, path)
    return result


def write_summary(rows: list[dict], output_dir, ratings: list[dict] | None = None,
                  require_match: bool = True) -> list[dict]:
    """``summary.csv`` (manifest order), ``summary.html`` and ``review.html``, each written atomically; with
    ``ratings`` (rows of :func:`read_ratings`) also the human ratings and ``agreement.csv`` (``require_match``: none
    of them matching a registration is bad input). Returns the rows as written (with ``outlier_columns``,
    ``method_rank`` and the rating columns)."""
    from .io import write_csv

    out = Path(output_dir)
    rows = annotate(rows)
    columns = summary_columns()
    if any("method_rank" in r for r in rows):
        columns += RANK_COLUMNS
    if ratings is not None:
        rows, _unmatched = merge_ratings(rows, ratings)  # ratings of other registrations are ignored
        if require_match and ratings and not any(r["human_rating"] or r["human_note"] for r in rows):
            raise BadInputError("--ratings", f"none of its {len(ratings)} rating(s) matches a registration of this "
                                "cohort (case_id and method)")
        columns += RATING_COLUMNS
    elif any(r.get("human_rating") or r.get("human_note") for r in rows):  # merged earlier (review DIR)
        columns += RATING_COLUMNS
    full = [{c: r.get(c) for c in columns} for r in rows]
    tmp = out / ".summary.csv.tmp"
    write_csv(full, tmp)
    os.replace(tmp, out / "summary.csv")
    html_tmp = out / ".summary.html.tmp"
    summary_html(full, html_tmp)
    os.replace(html_tmp, out / "summary.html")
    review_html(full, out / "review.html")
    if "human_rating" in columns:
        write_agreement(full, out / "agreement.csv")
    return full


def read_summary(output_dir) -> list[dict]:
    """The rows of an existing cohort folder's summary.csv (text values); BadInputError when there is none."""
    folder = Path(output_dir)
    if not folder.is_dir():
        raise BadInputError(os.fspath(folder), "not a folder (give a cohort output folder)")
    path = folder / "summary.csv"
    if not path.is_file():
        raise BadInputError(os.fspath(folder), "holds no summary.csv (not a cohort output folder)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "case_id" not in rows[0]:
        raise BadInputError(os.fspath(path), "no cases (or no case_id column)")
    for row in rows:
        row.setdefault("method", "")
    return rows


def run_review(output_dir, ratings=None) -> list[dict]:
    """Rewrite the pages of an existing cohort folder (outliers recomputed; ``ratings`` merged when given)."""
    rows = read_summary(output_dir)
    if ratings is not None:
        for row in rows:
            for column in RATING_COLUMNS:
                row.pop(column, None)
    return write_summary(rows, output_dir, read_ratings(ratings) if ratings else None)


def demo_cohort(output_dir, results: list) -> Path:
    """The demo's cohort: the sample case's registrations as methods of one case, from evaluations already done.

    ``results``: (method, EvaluationInputs, EvaluationOptions, report folder) per registration. Each report folder is copied to ``DIR/cases/sample/<method>/``
    (no second evaluation); ``DIR/manifest.csv`` records the inputs (so ``registration-quality cohort`` can redo
    it) and the summary pages are written as a cohort run writes them. Returns ``DIR``.
    """
    import shutil

    out = Path(output_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    rows, manifest = [], []
    for method, inputs, options, folder in results:
        target = case_folder(out, "sample", method)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
        report = json.loads((target / "report.json").read_text(encoding="utf-8"))
        rows.append(dict(summary_row("sample", report, target / "report.html", out), method=method))
        entry = {"case_id": "sample", "method": method}
        entry.update({c: getattr(inputs, c, None) for c in PATH_COLUMNS})
        entry.update({c: getattr(options, c, None) for c in NUMBER_COLUMNS})
        manifest.append(entry)
    from .io import write_csv

    columns = ["case_id", "method"] + [c for c in (*PATH_COLUMNS, *NUMBER_COLUMNS)
                                        if any(m.get(c) is not None for m in manifest)]
    write_csv([{c: m.get(c) for c in columns} for m in manifest], out / "manifest.csv")
    write_summary(rows, out)
    return out
