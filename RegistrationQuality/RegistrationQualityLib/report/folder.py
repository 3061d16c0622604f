"""Writing the report folder atomically: ``report.json``, ``metrics.csv``, ``report.html``, ``snapshots/``."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..errors import BadInputError
from .case_page import render_html
from .markup import TOOL_NAME
from .rows import _write_metrics_csv, metrics_rows

REPORT_JSON = "report.json"
METRICS_CSV = "metrics.csv"
REPORT_HTML = "report.html"
SNAPSHOT_DIR = "snapshots"


def write_report(report: Mapping, output_dir, snapshot_files: Mapping | None = None) -> Path:
    """Write the report folder ``output_dir`` atomically and return its path.

    ``snapshot_files`` maps a snapshot's relative path as listed in ``report["snapshots"][i]["file"]``
    (``"snapshots/axial.png"``; a bare ``"axial.png"`` means the same) to the image file to copy there.
    Snapshots listed in the report but not given are dropped from the written report with a warning; files given
    but not listed are added with their file name as title; keys starting with "_" are ignored. The input dict is
    not modified.

    The folder is first written completely into a hidden sibling ``.<name>.tmp-XXXXXXXX``; then a previous report
    folder at ``output_dir`` is renamed aside, the new one renamed into place and the old one deleted. A
    temporary is removed in ``finally`` whatever happens. ``output_dir`` may be absent, an empty folder or a
    previous report folder (it has a RegistrationQuality ``report.json``; the whole folder is replaced);
    anything else raises :class:`BadInputError` naming ``--output``.
    """
    target = Path(os.path.abspath(os.fspath(output_dir)))
    _check_output_target(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError("--output", f"cannot create folder {parent}: {err.strerror or err}") from None
    sources = _snapshot_sources(snapshot_files)
    report = _jsonable(report)
    if not isinstance(report.get("tool"), dict):
        report["tool"] = {}
    report["tool"].setdefault("name", TOOL_NAME)  # marks the folder as a report that a re-run may replace
    warnings = list(report.get("warnings") or [])
    snapshots = []
    for entry in report.get("snapshots") or []:
        rel = _snapshot_relpath(entry.get("file", ""))
        if rel in sources:
            snapshots.append(dict(entry, file=rel))
        else:
            warnings.append(f"snapshot {entry.get('file')!r} was not produced; it is left out of the report")
    listed = {s["file"] for s in snapshots}
    for rel in sources:
        if rel not in listed:
            snapshots.append({"file": rel, "title": Path(rel).stem.replace("_", " "), "caption": ""})
    report["snapshots"] = snapshots
    report["warnings"] = warnings

    temporary = _new_sibling(target, "tmp", create=True)
    aside = None
    try:
        if sources:
            (temporary / SNAPSHOT_DIR).mkdir()
        for rel, source in sources.items():
            shutil.copyfile(source, temporary / rel)
        embedded = {rel: temporary / rel for rel in sources}
        _write_metrics_csv(metrics_rows(report), temporary / METRICS_CSV)
        (temporary / REPORT_HTML).write_text(render_html(report, embedded), encoding="utf-8")
        # report.json last: a folder holding it is complete
        text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
        (temporary / REPORT_JSON).write_text(text + "\n", encoding="utf-8")
        if target.exists():
            aside = _new_sibling(target, "old", create=False)
            os.rename(target, aside)
        try:
            os.rename(temporary, target)
        except BaseException:
            if aside is not None:
                os.rename(aside, target)
                aside = None
            raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
        if aside is not None and os.path.lexists(aside):
            if aside.is_symlink():  # output_dir was a link to a report folder: drop the link only
                aside.unlink()
            else:
                shutil.rmtree(aside, ignore_errors=True)
    return target


def _check_output_target(target: Path) -> None:
    if not target.name or target.parent == target:
        raise BadInputError("--output", f"'{target}' cannot be a report folder; give a folder name")
    if not os.path.lexists(target):
        ancestor = target.parent
        while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise BadInputError("--output", f"{ancestor} is a file; the report folder {target} cannot be created "
                                "under it")
        return
    if not target.is_dir():
        raise BadInputError("--output", f"{target} is an existing file, not a folder")
    try:
        entries = list(target.iterdir())
    except OSError as err:
        raise BadInputError("--output", f"cannot read folder {target}: {err.strerror or err}") from None
    if entries and not _is_report_folder(target):
        raise BadInputError("--output", f"{target} exists and is not a report folder (no {TOOL_NAME} "
                            f"{REPORT_JSON}); give a new or empty folder")


def _is_report_folder(folder: Path) -> bool:
    try:
        with open(folder / REPORT_JSON, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("tool"), dict) and data["tool"].get("name") == TOOL_NAME


def _new_sibling(target: Path, kind: str, create: bool) -> Path:
    """A hidden sibling ``.<name>.<kind>-XXXXXXXX`` (created with the process umask when ``create``)."""
    for _ in range(100):
        candidate = target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"
        if os.path.lexists(candidate):
            continue
        if create:
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise BadInputError("--output", f"cannot write in {target.parent}: {err.strerror or err}") from None
        return candidate
    raise BadInputError("--output", f"cannot create a temporary folder next to {target}")


def _snapshot_relpath(name) -> str:
    text = os.fspath(name).replace("\\", "/")
    if text.startswith(SNAPSHOT_DIR + "/"):
        text = text[len(SNAPSHOT_DIR) + 1:]
    if not text or "/" in text or text in (".", ".."):
        raise BadInputError("snapshot", f"'{name}' is not a plain file name inside {SNAPSHOT_DIR}/")
    return f"{SNAPSHOT_DIR}/{text}"


def _snapshot_sources(snapshot_files) -> dict:
    sources = {}
    for name, path in (snapshot_files or {}).items():
        if str(name).startswith("_"):  # the caller's bookkeeping (e.g. "_tempdir"), not a snapshot
            continue
        rel = _snapshot_relpath(name)
        source = Path(path)
        if not source.is_file():
            raise BadInputError(source, "snapshot image not found")
        sources[rel] = source
    return sources


def _jsonable(value):
    """Plain JSON types: numpy scalars/arrays to Python, paths to text, NaN/inf to None (null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if tolist is not None:
        return _jsonable(tolist())
    raise TypeError(f"report value of type {type(value).__name__} is not JSON: {value!r}")
