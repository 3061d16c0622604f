"""Cohort runs: evaluate many registrations listed in a CSV manifest, locally or on a Dask cluster.

Manifest: a CSV with a header. Columns are ``case_id`` plus evaluate's long options with ``_`` for ``-``
(``fixed``, ``moving``, ``transform``, ``elastix_dir``, ``registered``, ``fixed_segmentation``,
``moving_segmentation``, ``labels``, ``threshold``, ``fixed_landmarks``, ``moving_landmarks``, and the numeric options
``percentile`` and one limit per check: ``min_dice``, ``max_hausdorff``, ``max_tre``, ``max_folding``, ...). An empty cell means the option
is absent; relative paths resolve against the manifest's folder; ``threshold`` may hold two specs separated by
``;`` (fixed; moving), ``labels`` one label-name table or two (fixed; moving); the threshold clean-up columns
``fill_holes``, ``largest_component`` (true/false), ``min_island_cc``, ``closing_mm`` and ``same_modality``
(true/false) are evaluate's options of those names. An unknown column, or a missing ``case_id``/``fixed``/``moving`` column, is bad input.

Output: ``DIR/cases/<case_id>/`` (each case's report, written atomically), ``DIR/summary.csv`` and
``DIR/summary.html``. A case that fails (bad input or an error) is reported in the summary and does not stop
the others; re-running skips the cases whose report is complete and retries the others.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from . import checks, measures
from .errors import BadInputError

PATH_COLUMNS = ("fixed", "moving", "transform", "elastix_dir", "registered", "fixed_segmentation",
                "moving_segmentation", "fixed_landmarks", "moving_landmarks")
NUMBER_COLUMNS = ("percentile", *checks.names())  # and one column per check of the check registry
LIST_COLUMNS = ("threshold", "labels")  # one value for both images or two separated by ';' (fixed; moving)
CLEANUP_COLUMNS = ("fill_holes", "largest_component", "min_island_cc", "closing_mm")  # segmentation.Cleanup
BOOL_COLUMNS = ("fill_holes", "largest_component", "same_modality")  # true/false, yes/no, 1/0
COLUMNS = ("case_id", *PATH_COLUMNS, *LIST_COLUMNS, *NUMBER_COLUMNS, *CLEANUP_COLUMNS, "same_modality")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
REQUIRED = ("case_id", "fixed", "moving")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

def summary_columns() -> list:
    """The summary.csv columns: case and verdict, then one column per cohort column of the measure registry
    (:func:`.measures.cohort_columns`), then the failed checks and the report's path."""
    return (["case_id", "status", "verdict", "error", "segments"] + [c for c, _m, _s in measures.cohort_columns()]
            + ["failed_checks", "report"])


SUMMARY_COLUMNS = summary_columns()


def read_manifest(path) -> list[dict]:
    """Rows of the manifest as dicts (absent options dropped, paths resolved); BadInputError on bad input."""
    from .io import check_file

    p = check_file(path, "manifest")
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
        raise BadInputError(name, "empty manifest (a header row is needed)")
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
        if case_id in seen:
            raise BadInputError(name, f"line {lineno}: case_id '{case_id}' appears twice")
        seen.add(case_id)
        for column in ("fixed", "moving"):
            if not cells[column]:
                raise BadInputError(name, f"line {lineno} (case {case_id}): '{column}' is empty")
        case = {"case_id": case_id, "line": lineno}
        for column, value in cells.items():
            if not value or column == "case_id":
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


def case_folder(output_dir, case_id: str) -> Path:
    return Path(output_dir) / "cases" / case_id


def is_finished(output_dir, case_id: str) -> bool:
    """A case is finished when its report folder holds a complete report.json (written atomically)."""
    report = case_folder(output_dir, case_id) / "report.json"
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
    case_id = case["case_id"]
    folder = case_folder(output_dir, case_id)
    error_file = Path(output_dir) / "cases" / f"{case_id}.error.json"
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
        return _error_row(case_id, f"bad input: {exc}", error_file)
    except Exception as exc:  # a broken case must not stop the cohort
        return _error_row(case_id, f"error: {type(exc).__name__}: {exc}", error_file)
    if error_file.exists():
        error_file.unlink()
    return summary_row(case_id, result.report, folder / "report.html", output_dir)


def _error_row(case_id: str, message: str, error_file: Path) -> dict:
    message = " ".join(message.split())
    error_file.parent.mkdir(parents=True, exist_ok=True)
    error_file.write_text(json.dumps({"case_id": case_id, "error": message}), encoding="utf-8")
    return {"case_id": case_id, "status": "failed", "verdict": None, "error": message}


def summary_row(case_id: str, report: dict, report_path, output_dir) -> dict:
    """One summary row of a case's report (key metrics; None where not computed)."""
    segments = report.get("segments") or []
    failed = [f"{c['name']}[{c['subject']}]" for c in report.get("checks", []) if not c["passed"]]
    return {
        "case_id": case_id, "status": "ok", "verdict": report.get("verdict"), "error": "",
        "segments": len(segments),
        **{column: measures.cohort_value(m, stage, report) for column, m, stage in measures.cohort_columns()},
        "failed_checks": "; ".join(failed),
        "report": os.path.relpath(report_path, output_dir),
    }


def _finished_row(case_id: str, output_dir) -> dict:
    folder = case_folder(output_dir, case_id)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    row = summary_row(case_id, report, folder / "report.html", output_dir)
    row["status"] = "ok (earlier run)"
    return row


def run_cohort(manifest, output_dir, workers: int = 1, scheduler: str | None = None, defaults: dict | None = None,
               progress=None) -> list[dict]:
    """Evaluate every case of the manifest; returns the summary rows (manifest order) and writes the summary."""
    cases = read_manifest(manifest)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError("--output", f"{os.fspath(out)} is an existing file; a folder is needed")
    if workers < 1:
        raise BadInputError("--workers", f"{workers} must be at least 1")
    (out / "cases").mkdir(parents=True, exist_ok=True)
    rows: dict = {}
    todo = []
    for case in cases:
        if is_finished(out, case["case_id"]):
            rows[case["case_id"]] = _finished_row(case["case_id"], out)
        else:
            todo.append(case)
    if progress is not None:
        progress(f"{len(todo)} case(s) to evaluate, {len(cases) - len(todo)} finished earlier", 0.0)
    for row in _execute(todo, out, defaults, workers, scheduler, progress):
        rows[row["case_id"]] = row
    ordered = [rows[c["case_id"]] for c in cases]
    write_summary(ordered, out)
    return ordered


def _execute(todo, out, defaults, workers, scheduler, progress):
    if not todo:
        return
    done = 0

    def tick(row):
        nonlocal done
        done += 1
        if progress is not None:
            progress(f"case {row['case_id']}: {row['status']} {row.get('verdict') or ''}".strip(), done / len(todo))

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
                                 out / "cases" / f"{case['case_id']}.error.json")
            tick(row)
            yield row


def _init_worker(threads: int) -> None:
    """Worker process start: ITK filters use ``threads`` threads; the heavy imports happen once per worker."""
    import SimpleITK as sitk

    from .context import silence_native_warnings

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    silence_native_warnings()
    import slicer  # noqa: F401  (import once per worker, not per case)


def _sort_key(row: dict):
    """Worst first: failed cases, then failing verdicts, then by lowest Dice after / highest TRE after."""
    status_rank = 0 if row["status"] == "failed" else 1
    verdict_rank = {"fail": 0, "no checks": 1, "pass": 2}.get(row.get("verdict") or "", 0)
    dice = row.get("min_dice_after")
    tre = row.get("mean_tre_after_mm")
    return (status_rank, verdict_rank, dice if dice is not None else 2.0, -(tre or 0.0))


def write_summary(rows: list[dict], output_dir) -> None:
    """``summary.csv`` (manifest order) and ``summary.html`` (worst cases first), each written atomically."""
    from .io import write_csv

    out = Path(output_dir)
    full = [{c: r.get(c) for c in summary_columns()} for r in rows]
    tmp = out / ".summary.csv.tmp"
    write_csv(full, tmp)
    os.replace(tmp, out / "summary.csv")
    from .report import summary_html

    html_tmp = out / ".summary.html.tmp"
    summary_html(sorted(full, key=_sort_key), html_tmp)
    os.replace(html_tmp, out / "summary.html")
