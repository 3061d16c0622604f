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
    assert report["options"]["threshold_cleanup"] == cleanup and report["options"]["same_modality"] is False
    assert report["segments"][0]["threshold"]["cleanup"] == cleanup
    assert "islands &lt; 2.5 cc removed" in (out / "report.html").read_text()
    r = run_cli("evaluate", "--fixed", head / "fixed_t1.nrrd", "--moving", head / "moving_cbf.nrrd", "--transform",
                head / "good.tfm", "--threshold", "otsu", "--closing-mm", "nan", "--output", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--closing-mm" in r.stderr


def _numbers(obj, prefix=""):
    """{dotted path: number} of every numeric leaf (lists of dicts keyed by name/label/subject)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}.{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            key = next((f"{f}={v[f]}" for f in ("name", "label", "subject") if isinstance(v, dict) and f in v), i)
            out.update(_numbers(v, f"{prefix}[{key}]"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = obj
    return out


def test_an_elastix_folder_and_its_parameter_file_give_the_same_numbers():
    from pathlib import Path

    case = Path(__file__).resolve().parents[1] / "Resources" / "SampleCase"
    common = dict(fixed=str(case / "fixed_dwi.nrrd"), moving=str(case / "moving_cbf.nrrd"), threshold=["otsu"],
                  fixed_segmentation=str(case / "fixed_segmentation.seg.nrrd"),
                  moving_segmentation=str(case / "moving_segmentation.seg.nrrd"),
                  fixed_landmarks=str(case / "fixed_landmarks.mrk.json"),
                  moving_landmarks=str(case / "moving_landmarks.mrk.json"))
    options = EvaluationOptions(snapshots=False)
    folder = evaluate(Context.headless(), EvaluationInputs(elastix_dir=str(case / "registrations" / "good"), **common),
                      options).report
    tp = evaluate(Context.headless(), EvaluationInputs(
        transform=str(case / "registrations" / "good" / "TransformParameters.1.txt"), **common), options).report
    assert folder["elastix"]["result_image"].endswith("result.1.nrrd")  # there, but not used for "after"
    assert folder["inputs"]["registered"] is None and tp["inputs"]["registered"] is None
    a, b = ({k: v for k, v in _numbers(r).items() if k.split(".")[1] in (
        "segments", "landmarks", "deformation", "similarity", "checks")} for r in (folder, tp))
    assert a.keys() == b.keys() and len(a) > 300
    moved = {k: (a[k], b[k]) for k in a if abs(a[k] - b[k]) > 1e-9 * max(1.0, abs(a[k]))}
    assert not moved, moved


def test_jacobian_is_reported_in_both_named_regions_and_pictured(head, tmp_path):
    import numpy as np
    import SimpleITK as sitk

    scale = np.diag([1.1, 1.05, 0.95])  # det = 1.09725 everywhere
    t = sitk.AffineTransform(3)
    t.SetMatrix(tuple((head_phantom.T_ROTATION @ scale).ravel()))
    t.SetTranslation(tuple(head_phantom.T_SHIFT))
    sitk.WriteTransform(t, str(tmp_path / "scaled.tfm"))
    inputs = EvaluationInputs(fixed=str(head / "fixed_t1.nrrd"), moving=str(head / "moving_cbf.nrrd"),
                              transform=str(tmp_path / "scaled.tfm"), threshold=["otsu"])
    report = evaluate(Context.headless(), inputs, EvaluationOptions(), output_dir=tmp_path / "r").report
    regions = report["deformation"]["jacobian_by_region"]
    det = float(np.linalg.det(scale))
    fixed = sitk.ReadImage(str(head / "fixed_t1.nrrd"))
    moving = sitk.ReadImage(str(head / "moving_cbf.nrrd"))
    # independent domain count: fixed voxel centres x with T(x) inside the moving voxel box
    k, j, i = np.indices(fixed.GetSize()[::-1])
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], 1).astype(float)
    x = idx * fixed.GetSpacing() @ np.array(fixed.GetDirection()).reshape(3, 3).T + fixed.GetOrigin()
    y = x @ (head_phantom.T_ROTATION @ scale).T + head_phantom.T_SHIFT
    d = np.array(moving.GetDirection()).reshape(3, 3)
    m_idx = (y - moving.GetOrigin()) @ d / moving.GetSpacing()
    inside = np.all((m_idx >= -0.5) & (m_idx < np.array(moving.GetSize()) - 0.5), axis=1)
    domain = regions["moving_domain"]
    assert domain["region"] == "fixed image voxels that map into the moving image"
    assert abs(domain["voxels"] - int(inside.sum())) <= 2e-4 * inside.sum()  # voxels exactly on the box edge
    mask = regions["fixed_mask"]
    assert mask["region"] == "inside the fixed mask: fixed threshold mask"
    assert mask["voxels"] == report["segments"][0]["threshold"]["fixed"]["voxels"]
    for r in (domain, mask):
        assert abs(r["mean"] - det) < 1e-6 and abs(r["min"] - det) < 1e-6 and r["folding_voxels"] == 0
    snaps = [s for s in report["snapshots"] if s["file"].startswith("snapshots/jacobian_")]
    assert [s["file"] for s in snaps] == ["snapshots/jacobian_axial.png", "snapshots/jacobian_coronal.png"]
    assert "fixed segmentation's centre (nothing folds)" in snaps[0]["title"]
    assert (tmp_path / "r" / snaps[0]["file"]).is_file()
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Jacobian in each region" in html and "fixed image voxels that map into the moving image" in html
