"""Issue 18's done-when, as a test: every figure is in report.json, metrics.csv, report.html, the panel table and
the cohort summary, each derived from its measure registry entry (no figure is wired by hand).

One CLI run on the analytic shift case (landmarks, a transform, segmentations, a tolerance profile setting an NSD
tolerance) gives report.json, metrics.csv and report.html; the panel rows are ``panel.summary_rows`` of that
report and the cohort summary row is ``cohort.summary_row`` (what summary.csv holds). A measure added to the
registry without reaching these outputs fails here."""

from __future__ import annotations

import csv
import html
import json
import re

import pytest

from RegistrationQualityLib import cohort, measures, panel

from conftest import run_cli, write_shift_case

# issue 18's figures (registry keys): each must reach all five outputs
ISSUE_18 = ("nsd_2mm", "nsd_segment", "nsd_segment_tolerance_mm", "signed_distance_mean_mm", "signed_distance_p5_mm",
            "signed_distance_p95_mm", "signed_distance_max_outward_mm", "signed_distance_max_inward_mm",
            "shifted_self_dice_1mm", "shifted_self_dice_2mm", "jacobian_sdlogj_learn2reg", "jacobian_ndv_voxels",
            "jacobian_ndv_percent", "jacobian_ndv_cc", "tre_worst30_mean_mm", "tre_improved_fraction")
# not produced by evaluate: the Python console's similarity_before_after only
NOT_IN_EVALUATE = ("outside_moving_voxels",)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    case = write_shift_case(tmp_path_factory.mktemp("case"))
    (case / "profile.json").write_text(json.dumps({"source": "test", "checks": {
        "min_nsd": {"pass": 0.5, "tolerance_mm": 2.5}}}))
    out = case / "out"
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                  case / "moving_labels.nrrd", "--fixed-landmarks", case / "fixed.csv", "--moving-landmarks",
                  case / "moving.csv", "--profile", case / "profile.json", "--no-snapshots", "--output", out)
    assert res.returncode in (0, 1, 4), res.stderr
    report = json.loads((out / "report.json").read_text())
    with open(out / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    page = html.unescape(re.sub(r"<[^>]+>", " ", (out / "report.html").read_text())).lower()
    page = re.sub(r"\s+", " ", page)
    return {"report": report, "csv": rows, "html": page, "panel": panel.summary_rows(report),
            "cohort": cohort.summary_row("c1", report, out / "report.html", case)}


def _in_json(m, report) -> bool:
    section = report.get(m.section)
    if m.applies_to == "segment":
        return any(m.value_in(s.get(stage) or {}) is not None for s in section or [] for stage in ("before", "after"))
    return isinstance(section, dict) and any(
        m.value_in(section if stage == "-" else (section.get(stage) or {})) is not None for stage in m.stages)


def _csv_names(m) -> set:
    """metrics.csv names a segment row by its report.json field, a landmark row tre_<field>, others by key."""
    return {m.field} if m.applies_to == "segment" else {m.key, f"tre_{m.field}"}


def _measures():
    return [m for m in measures.MEASURES if m.key not in NOT_IN_EVALUATE]


@pytest.mark.parametrize("key", [m.key for m in _measures()])
def test_every_measure_is_in_report_json_and_metrics_csv_with_its_unit(outputs, key):
    m = measures.get(key)
    assert _in_json(m, outputs["report"]), f"{key}: not in report.json"
    rows = [r for r in outputs["csv"] if r["metric"] in _csv_names(m)]
    assert rows, f"{key}: not in metrics.csv"
    assert {r["unit"] for r in rows} == {m.unit}, f"{key}: metrics.csv unit is not the registry's"


@pytest.mark.parametrize("key", [m.key for m in _measures()])
def test_panel_and_cohort_carry_what_the_registry_declares(outputs, key):
    m = measures.get(key)
    keys = {r["key"] for r in outputs["panel"]}
    assert (m.key in keys) == m.in_panel, f"{key}: panel row {'missing' if m.in_panel else 'not declared'}"
    for column, _stage in m.cohort:
        assert column in cohort.SUMMARY_COLUMNS and outputs["cohort"].get(column) is not None, \
            f"{key}: cohort column {column} missing"


@pytest.mark.parametrize("key", [m.key for m in _measures() if m.shown or m.key in ISSUE_18])
def test_shown_and_issue_18_measures_are_titled_in_report_html(outputs, key):
    m = measures.get(key)
    titles = {m.short_for().lower(), m.title_for().lower()}
    assert any(t in outputs["html"] for t in titles), f"{key}: neither '{m.short_for()}' nor its title in report.html"


@pytest.mark.parametrize("key", ISSUE_18)
def test_issue_18_figures_are_declared_for_the_panel_and_the_cohort(key):
    m = measures.get(key)
    assert m.in_panel, f"{key}: not in the panel table"
    # the segment's NSD tolerance is a setting shown beside its NSD, not a figure to rank registrations by
    assert m.cohort or key == "nsd_segment_tolerance_mm", f"{key}: no cohort summary column"
    assert m.definition, f"{key}: no pinned definition"


def test_the_signed_distance_histogram_reaches_metrics_csv_and_the_page(outputs):
    (seg,) = outputs["report"]["segments"]
    hist = seg["after"]["signed_distance"]["histogram"]
    rows = [r for r in outputs["csv"] if r["metric"] == "signed_distance.histogram.count" and r["stage"] == "after"]
    assert [int(float(r["value"])) for r in rows] == hist["counts"]
    assert rows[0]["note"] == f"[{hist['edges_mm'][0]:g}, {hist['edges_mm'][1]:g}) mm" and rows[0]["unit"] == "voxels"
    assert "signed distance (mm): inside ← 0 → sticks out" in outputs["html"]
