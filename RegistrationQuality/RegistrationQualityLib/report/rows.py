"""``metrics.csv``: the report's numbers as long-format rows (write and read back)."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

from .. import checks, measures

METRICS_COLUMNS = ("section", "subject", "metric", "stage", "value", "unit", "note")




def _write_metrics_csv(rows, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in METRICS_COLUMNS})


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping text
    return value


def _unit(key: str, section: str | None = None) -> str:
    """The unit of a metrics.csv metric: its measure's (:mod:`..measures`), else from the key's suffix (keys no
    measure describes, e.g. elastix's run time)."""
    unit = measures.unit_of(section, key) if section else None
    if unit is not None:
        return unit
    for suffix, unit in (("_mm", "mm"), ("_cc", "cc"), ("_percent", "%"), ("_s", "s")):
        if key.endswith(suffix):
            return unit
    return ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(values: Mapping, prefix: str = ""):
    """(dotted key, value, note) for numbers and nulls of a nested dict; text and lists are skipped, except a
    histogram ({"edges_mm": [...], "counts": [...]}, e.g. signed_distance.histogram): one ``<key>.count`` per
    bin, the note naming the bin ("[-0.5, 0.5) mm")."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(value.get("edges_mm"), list) and \
                isinstance(value.get("counts"), list):
            edges = value["edges_mm"]
            for a, b, count in zip(edges[:-1], edges[1:], value["counts"]):
                yield f"{name}.count", count, f"[{_plain(a)}, {_plain(b)}) mm"
        elif isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        elif value is None or _is_number(value):
            yield name, value, ""


def metrics_rows(report: Mapping) -> list[dict]:
    """Long-format rows, one per metric and stage, for ``metrics.csv`` and cohort summaries.

    Columns: ``section`` (segments, landmarks, deformation, similarity, elastix, checks), ``subject`` (segment
    name, landmark label, "all landmarks", the region), ``metric`` (the report.json key; nested keys dotted,
    e.g. ``directed.reference_to_compared.max_mm``), ``stage`` (before / after / -), ``value`` (number or None
    when it could not be computed), ``unit`` (mm, cc, %, s or empty) and ``note`` (the reason for a None, or a
    check's outcome).
    """
    rows: list[dict] = []

    def add(section, subject, metric, stage, value, unit=None, note=""):
        rows.append({"section": section, "subject": "" if subject is None else str(subject), "metric": metric,
                     "stage": stage, "value": value, "unit": _unit(metric, section) if unit is None else unit,
                     "note": note or ""})

    for segment in report.get("segments") or []:
        subject = segment.get("name", segment.get("label"))
        for stage in ("before", "after"):
            values = segment.get(stage)
            if not isinstance(values, Mapping):
                continue
            status = values.get("status")
            reason = "" if status in (None, "ok") else str(status)
            for key, value, note in _flatten(values):
                add("segments", subject, key, stage, value, "voxels" if note else None,
                    note=reason if value is None else note)

    landmarks = report.get("landmarks")
    if isinstance(landmarks, Mapping):
        for point in landmarks.get("points") or []:
            note = "outside the transform's domain" if point.get("outside_domain") else ""
            for stage in ("before", "after"):
                add("landmarks", point.get("label"), "tre_mm", stage, point.get(f"{stage}_mm"), "mm", note)
        for stage in ("before", "after"):
            summary = landmarks.get(stage)
            if isinstance(summary, Mapping):
                for key, value, _note in _flatten(summary):
                    add("landmarks", "all landmarks", f"tre_{key}", stage, value)

    deformation = report.get("deformation")
    if isinstance(deformation, Mapping):
        jacobian = deformation.get("jacobian") or {}
        region = jacobian.get("region") or ""
        for key, value, _note in _flatten(jacobian):
            add("deformation", region, f"jacobian_{key}", "-", value)
        for key, value, _note in _flatten(deformation.get("displacement_mm") or {}):
            add("deformation", region, "displacement_voxels" if key == "voxels" else f"displacement_{key}_mm", "-",
                value)

    similarity = report.get("similarity")
    if isinstance(similarity, Mapping):
        for stage in ("before", "after"):
            for key, value, _note in _flatten(similarity.get(stage) or {}):
                add("similarity", similarity.get("region") or "", key, stage, value)

    elastix = report.get("elastix")
    if isinstance(elastix, Mapping):  # elastix.ElastixResult.provenance(): one row per stage (and resolution)
        for stage in elastix.get("stages") or []:
            if not isinstance(stage, Mapping):
                continue
            subject = f"stage {stage.get('index')}" + (f" {stage['transform']}" if stage.get("transform") else "")
            note = stage.get("metric") or ""
            add("elastix", subject, "final_metric_value", "-", stage.get("final_metric"), "", note)
            add("elastix", subject, "seconds", "-", stage.get("seconds"), "s")
            for r in stage.get("resolutions") or []:
                if not isinstance(r, Mapping):
                    continue
                sub = f"{subject} resolution {r.get('resolution')}"
                add("elastix", sub, "final_metric_value", "-", r.get("final_metric"), "", note)
                add("elastix", sub, "iterations", "-", r.get("iterations"), "", r.get("stop") or "")
                add("elastix", sub, "seconds", "-", r.get("seconds"), "s")
        add("elastix", "", "total_seconds", "-", elastix.get("total_seconds"), "s")

    for check in report.get("checks") or []:
        name = check.get("name", "")
        unit = check.get("unit")
        if unit is None:
            unit = checks.get(name).unit if name in checks.names() else ""
        outcome = "passed" if check.get("passed") else "failed"
        note = f"{outcome}: limit {check.get('comparison', '')} {_plain(check.get('limit'))}".replace("  ", " ")
        add("checks", check.get("subject") or "", name, "-", check.get("value"), unit, note)
    return rows


def _plain(value) -> str:
    return "" if value is None else (f"{value:g}" if _is_number(value) else str(value))


def _number(value):
    """A float from a number or numeric text (CSV cells), else None."""
    if _is_number(value):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def read_metrics_csv(path) -> list[dict]:
    """Rows of a ``metrics.csv`` with ``value`` as float or None (the inverse of the writer)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["value"] = _number(row.get("value"))
    return rows
