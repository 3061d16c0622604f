"""Real-looking anatomy (issue 16): a head phantom, a T1-like fixed image and a perfusion-like moving map on a
tilted 1.8 x 1.8 x 5 mm grid with white-matter holes below Otsu's threshold (Testing/head_phantom.py)."""

from __future__ import annotations

import json

import head_phantom
import pytest

from RegistrationQualityLib import segmentation as seg
from RegistrationQualityLib.context import Context
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

from conftest import run_cli


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return head_phantom.write_case(tmp_path_factory.mktemp("head"))


def _threshold_entry(head, cleanup, transform="good.tfm"):
    inputs = EvaluationInputs(fixed=str(head / "fixed_t1.nrrd"), moving=str(head / "moving_cbf.nrrd"),
                              transform=str(head / transform), threshold=["otsu"])
    report = evaluate(Context.headless(), inputs, EvaluationOptions(snapshots=False, threshold_cleanup=cleanup)).report
    (entry,) = report["segments"]
    return entry, report


def test_cleanup_makes_a_good_registration_reach_the_voxel_size(head):
    raw, _ = _threshold_entry(head, seg.NO_CLEANUP)
    clean, report = _threshold_entry(head, None)  # the default clean-up
    # raw: the white-matter holes of the perfusion map dominate; the good registration does not improve HD95
    assert raw["threshold"]["moving"]["raw_volume_cc"] < 0.93 * clean["threshold"]["moving"]["volume_cc"]
    assert raw["after"]["hausdorff_percentile_mm"] > 15.0
    assert raw["before"]["hausdorff_percentile_mm"] - raw["after"]["hausdorff_percentile_mm"] < 1.0
    # cleaned: holes filled, largest component: HD95 improves and is within the moving voxel size (5 mm slices)
    b, a = clean["before"], clean["after"]
    assert a["hausdorff_percentile_mm"] < b["hausdorff_percentile_mm"] - 3.0
    assert a["hausdorff_percentile_mm"] <= 3.0 and a["hausdorff_mm"] <= 5.0
    assert a["dice"] > b["dice"] and a["dice"] > 0.96
    assert a["mean_surface_distance_mm"] < b["mean_surface_distance_mm"]
    assert clean["threshold"]["cleanup"] == {"fill_holes": True, "largest_component": True, "min_island_cc": 0.0,
                                             "closing_mm": 0.0}
    assert report["options"]["threshold_cleanup"] == clean["threshold"]["cleanup"]


def test_cleanup_options_from_the_cli_reach_report_and_page(head, tmp_path):
    out = tmp_path / "r"
    r = run_cli("evaluate", "--fixed", head / "fixed_t1.nrrd", "--moving", head / "moving_cbf.nrrd", "--transform",
                head / "good.tfm", "--threshold", "otsu", "--no-fill-holes", "--no-largest-component",
                "--min-island-cc", "2.5", "--no-snapshots", "--output", out)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    cleanup = {"fill_holes": False, "largest_component": False, "min_island_cc": 2.5, "closing_mm": 0.0}
    assert report["options"]["threshold_cleanup"] == cleanup
    assert report["segments"][0]["threshold"]["cleanup"] == cleanup
    assert "islands &lt; 2.5 cc removed" in (out / "report.html").read_text()
    r = run_cli("evaluate", "--fixed", head / "fixed_t1.nrrd", "--moving", head / "moving_cbf.nrrd", "--transform",
                head / "good.tfm", "--threshold", "otsu", "--closing-mm", "nan", "--output", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--closing-mm" in r.stderr
