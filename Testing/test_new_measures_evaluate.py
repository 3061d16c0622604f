"""The issue-18 figures through evaluate, the CLI, the report folder and the panel: NSD at several tolerances,
signed distances, Dice under a shift and its warning, NDV / Learn2Reg SDlogJ on a sampled displacement field,
TRE robustness, distance heat maps (report pictures, scene models, panel toggle and vertex table)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

from conftest import run_cli, write_shift_case


@pytest.fixture
def case(tmp_path):
    return write_shift_case(tmp_path)


def test_cli_reports_nsd_at_each_tolerance_signed_distances_shift_dice_robustness_and_warns(case, tmp_path):
    out = tmp_path / "out"
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                  case / "moving_labels.nrrd", "--fixed-landmarks", case / "fixed.csv", "--moving-landmarks",
                  case / "moving.csv", "--nsd-tolerance", "3", "--nsd-tolerance", "1", "--min-dice", "0.5",
                  "--no-snapshots", "--output", out)
    assert res.returncode == 0, res.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["options"]["nsd_tolerances_mm"] == [1.0, 3.0]
    (seg,) = rep["segments"]
    before, after = seg["before"], seg["after"]
    assert before["nsd_1mm"] < after["nsd_1mm"] and before["nsd_3mm"] < after["nsd_3mm"] <= 1.0
    assert after["nsd_1mm"] <= after["nsd_3mm"] and "nsd_2mm" not in after
    sd = after["signed_distance"]
    assert abs(sd["mean_mm"]) < 1.0 and sd["p5_mm"] <= sd["mean_mm"] <= sd["p95_mm"]
    assert before["signed_distance"]["max_outward_mm"] > 3.0  # 8 mm shift before registration: it sticks out
    shifted = after["shifted_self_dice"]
    assert 0.5 < shifted["2mm"] < shifted["1mm"] < 1.0 and shifted == before["shifted_self_dice"]
    # the ball keeps Dice > 0.5 under a 2 mm shift: the --min-dice 0.5 check cannot see a 2 mm error on it
    assert any("cannot detect a 2 mm error" in w and "segment 3" in w for w in rep["warnings"])
    assert rep["landmarks"]["after"]["improved_fraction"] == 1.0
    assert rep["landmarks"]["before"]["worst30_mean_mm"] == pytest.approx(rep["landmarks"]["before"]["max_mm"])
    jac = rep["deformation"]["jacobian"]
    assert jac["ndv_voxels"] == 0.0 and jac["ndv_percent"] == 0.0 and jac["ndv_cc"] == 0.0
    assert jac["sdlogj_learn2reg"] == pytest.approx(0.0, abs=1e-6)
    with open(out / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    got = {(r["metric"], r["stage"]) for r in rows}
    assert {("nsd_1mm", "after"), ("nsd_3mm", "before"), ("signed_distance.mean_mm", "after"),
            ("shifted_self_dice.2mm", "after"), ("jacobian_ndv_percent", "-"), ("jacobian_sdlogj_learn2reg", "-"),
            ("tre_worst30_mean_mm", "after"), ("tre_improved_fraction", "after")} <= got
    units = {r["metric"]: r["unit"] for r in rows}
    assert units["jacobian_ndv_percent"] == "%" and units["jacobian_ndv_cc"] == "cc" and units["nsd_1mm"] == ""


def test_cli_refuses_a_bad_tolerance(case, tmp_path):
    res = run_cli("compare", case / "fixed_labels.nrrd", case / "fixed_labels.nrrd", "--nsd-tolerance", "0")
    assert res.returncode == 2 and "--nsd-tolerance" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("compare", case / "fixed_labels.nrrd", case / "fixed_labels.nrrd", "--nsd-tolerance", "1.5")
    assert res.returncode == 0, res.stderr
    (seg,) = json.loads(res.stdout)["segments"]
    assert seg["nsd_1_5mm"] == 1.0 and seg["signed_distance"]["max_outward_mm"] == 0.0


def test_ndv_of_a_checkerboard_displacement_field_that_central_differences_miss(case, ctx, tmp_path):
    fixed = sitk.ReadImage(str(case / "fixed.nrrd"))
    ni, nj, nk = fixed.GetSize()
    u = np.zeros((nk, nj, ni, 3))
    i = np.arange(ni)
    spacing_x = fixed.GetSpacing()[0]
    u[..., 0] = np.where((i >= 2) & (i <= ni - 3), 0.6 * spacing_x * (-1.0) ** i, 0.0)[None, None, :]
    field = sitk.GetImageFromArray(u, isVector=True)
    field.CopyInformation(fixed)
    sitk.WriteImage(field, str(tmp_path / "checker.nrrd"))
    result = evaluate(ctx, EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd",
                                            transform=tmp_path / "checker.nrrd"), EvaluationOptions(snapshots=False))
    jac = result.report["deformation"]["jacobian"]
    assert jac["folding_voxels"] == 0  # central differences: J = 1 inside the checkerboard
    # one-sided stencils fold: 0.1 voxel per voxel of the checkerboard interior (test_ndv.py has the algebra)
    assert jac["ndv_voxels"] >= 0.1 * (ni - 6) * nj * nk * (1 - 1e-4)
    assert jac["ndv_percent"] == pytest.approx(100 * jac["ndv_voxels"] / jac["voxels"])
    assert jac["ndv_cc"] == pytest.approx(jac["ndv_voxels"] * np.prod(fixed.GetSpacing()) / 1000)


def test_heat_maps_in_the_report_and_in_the_scene_with_the_panel_toggle(ctx, case, tmp_path):
    from RegistrationQualityLib import heatmap, panel

    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "good.tfm",
                              fixed_segmentation=case / "fixed_labels.nrrd",
                              moving_segmentation=case / "moving_labels.nrrd")
    result = evaluate(ctx, inputs, EvaluationOptions(scene_outputs=True), output_dir=tmp_path / "rep")
    pictures = [s for s in result.report["snapshots"] if s["file"].startswith("snapshots/heatmap_")]
    skipped = [w for w in result.report["warnings"] if w.startswith("distance heat maps skipped")]
    assert len(pictures) == 1 or skipped
    for s in pictures:
        assert (tmp_path / "rep" / s["file"]).is_file() and "signed distance" in s["title"]
    models = {k.split(":", 1)[1]: v for k, v in result.nodes.items() if k.startswith("heatmap:")}
    assert list(models) == ["3"]
    model = models["3"]
    values = np.array([r["Signed distance (mm)"] for r in heatmap.vertex_rows(model.GetPolyData())])
    # a good registration: the surfaces agree within a voxel (1.5 × 1.5 × 3 mm; the registered labels are
    # resampled from another grid, so they differ from the fixed ones by a voxel here and there)
    assert np.abs(values).max() <= 3.0 and np.abs(values).mean() < 1.5
    assert not model.GetDisplayNode().GetVisibility()
    assert panel.heatmap_models(ctx) == [model]
    panel.show_results(ctx, show_heatmaps=True)
    assert model.GetDisplayNode().GetVisibility()
    table = panel.heatmap_table_node(ctx, model)
    assert table.GetTable().GetNumberOfRows() == model.GetPolyData().GetNumberOfPoints()


def _report_with_new_figures():
    seg = lambda nsd_b, nsd_a, dice, shift2: {  # noqa: E731
        "before": {"nsd_1mm": nsd_b, "nsd_3mm": nsd_b + 0.1, "dice": 0.3},
        "after": {"nsd_1mm": nsd_a, "nsd_3mm": min(1.0, nsd_a + 0.1), "dice": dice,
                  "signed_distance": {"mean_mm": -0.4, "p5_mm": -2.0, "p95_mm": 1.5, "max_outward_mm": 3.25,
                                      "max_inward_mm": 2.5, "voxels": 10,
                                      "histogram": {"edges_mm": [-2.5, -1.5, -0.5, 0.5, 1.5], "counts": [1, 0, 6, 3]}},
                  "shifted_self_dice": {"1mm": 0.97, "2mm": shift2}}}
    return {"options": {"nsd_tolerances_mm": [1.0, 3.0], "percentile": 95.0},
            "segments": [dict(name="big", label=1, **seg(0.2, 0.6, 0.93, 0.95)),
                         dict(name="small", label=2, **seg(0.1, 0.8, 0.9, 0.7))],
            "landmarks": {"before": {"mean_mm": 5.0, "max_mm": 9.0, "worst30_mean_mm": 8.5, "count": 4},
                          "after": {"mean_mm": 1.0, "max_mm": 2.0, "worst30_mean_mm": 1.75, "count": 4,
                                    "improved_fraction": 0.75}},
            "deformation": {"region": "whole image", "jacobian": {"min": 0.5, "max": 1.5, "folding_percent": 0.0,
                                                                  "ndv_percent": 0.0125, "ndv_cc": 0.002,
                                                                  "sdlogj_learn2reg": 0.0321}},
            "checks": []}


def test_panel_rows_cohort_columns_and_the_surface_section_carry_the_new_figures(tmp_path):
    import re

    from RegistrationQualityLib import cohort, panel
    from RegistrationQualityLib.report.surface_section import signed_distance_histogram_svg, surface_section

    report = _report_with_new_figures()
    rows = {(r["measure"], r["subject"]): r for r in panel.summary_rows(report)}
    assert rows[("NSD 1 mm", "big")]["before"] == "0.200" and rows[("NSD 1 mm", "big")]["after"] == "0.600"
    assert rows[("NSD 3 mm", "small")]["after"] == "0.900"
    assert rows[("Dice of itself shifted 2 mm", "small")]["after"] == "0.700"
    assert rows[("TRE worst 30 % mean", "4 landmarks")]["after"] == "1.75"
    assert rows[("Landmarks improved", "4 landmarks")]["after"] == "75"
    assert rows[("Non-diffeomorphic volume", "whole image")]["after"] == "0.013"
    assert rows[("SDlogJ (Learn2Reg)", "whole image")]["after"] == "0.032"
    row = cohort.summary_row("c1", report, tmp_path / "c1" / "report.html", tmp_path)
    assert row["min_nsd_before"] == 0.1 and row["min_nsd_after"] == 0.6  # the first (smallest) tolerance
    assert row["tre_worst30_after_mm"] == 1.75 and row["tre_improved_fraction"] == 0.75
    assert row["ndv_percent"] == 0.0125 and row["sdlogj_learn2reg"] == 0.0321
    assert set(row) <= set(cohort.SUMMARY_COLUMNS)
    page = surface_section(report)
    text = re.sub(r"<[^>]+>", " ", page)
    assert "NSD 1 mm" in text and "NSD 3 mm" in text
    # largest outward / inward excursion, in the columns titled by their registry entries
    assert "Largest outward  mm" in text and "Largest inward  mm" in text and "3.25 mm  2.50 mm" in text
    # big: Dice 0.93 is no higher than its 2 mm-shift Dice 0.95 -> highlighted; small (0.9 > 0.7) is not
    assert page.count('class="worse" title="the Dice after registration') == 1
    svg = signed_distance_histogram_svg([-2.5, -1.5, -0.5, 0.5, 1.5], [1, 0, 6, 3], "x")
    assert svg.count("<rect") == 3  # empty bins are not drawn


def test_min_nsd_and_max_ndv_checks_through_the_cli(case, tmp_path):
    out = tmp_path / "out"
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "identity.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                  case / "moving_labels.nrrd", "--nsd-tolerance", "2", "--nsd-tolerance", "20", "--min-nsd", "0.9",
                  "--max-ndv", "0", "--no-snapshots", "--output", out)
    assert res.returncode == 1, res.stderr
    rep = json.loads((out / "report.json").read_text())
    checks = {(c["name"], c["subject"]): c for c in rep["checks"]}
    seg = rep["segments"][0]["after"]
    low, high = checks[("min_nsd", "3 (NSD 2 mm)")], checks[("min_nsd", "3 (NSD 20 mm)")]
    assert low["value"] == pytest.approx(seg["nsd_2mm"]) and not low["passed"]  # 8 mm off: NSD at 2 mm is low
    assert high["value"] == 1.0 and high["passed"]  # everything is within 20 mm
    ndv_check = [c for c in rep["checks"] if c["name"] == "max_ndv"]
    assert len(ndv_check) == 1 and ndv_check[0]["passed"] and ndv_check[0]["value"] == 0.0
    assert rep["options"]["min_nsd"] == 0.9 and rep["options"]["max_ndv"] == 0.0
    assert "FAILED min_nsd [3 (NSD 2 mm)]" in res.stdout
    bad = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--min-nsd", "0.5", "--no-snapshots", "--output", tmp_path / "bad")
    assert bad.returncode == 2 and "--min-nsd: needs segmentations" in bad.stderr
    bad = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--registered",
                  case / "fixed.nrrd", "--max-ndv", "1", "--no-snapshots", "--output", tmp_path / "bad")
    assert bad.returncode == 2 and "--max-ndv: needs a transform" in bad.stderr
