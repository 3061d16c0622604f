"""Per-segment NSD tolerances in tolerance profiles (profiles.py, checks.py ``min_nsd`` ``tolerance_mm``).

An analytic case: two balls (labels 1 and 2) and the same two balls shifted by 2 mm along x, identity
registration. The profile computes and checks label 1's NSD at 1 mm and label 2's at 3 mm; the expected NSD at
each tolerance is counted by brute force (6-connected boundary voxels, all pairwise distances between voxel
centres), independently of metrics.py. Through the parser, the check runner, the CLI, ``evaluate`` with nodes
(the Slicer logic path on a headless slicer-core scene) and the panel rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import checks, profiles
from RegistrationQualityLib.errors import BadInputError

from conftest import make_image, run_cli

SPACING = (1.0, 1.0, 1.0)
SHIFT_VOXELS = 2  # along x: 2 mm
PROFILE = {"profile": "two-tolerances", "source": "test: two segments at two tolerances",
           "checks": {"min_nsd": {"pass": 0.9, "review": 0.5, "tolerance_mm": 1.0,
                                  "segments": {"2": {"tolerance_mm": 3.0}}}}}


def _balls(shift: int) -> np.ndarray:
    k, j, i = np.mgrid[0:24, 0:24, 0:48]
    out = np.zeros((24, 24, 48), np.uint8)
    for label, cx in ((1, 12), (2, 34)):
        out[(i - cx - shift) ** 2 + (j - 12) ** 2 + (k - 12) ** 2 <= 5.2 ** 2] = label
    return out


def _boundary(mask: np.ndarray) -> np.ndarray:
    """(n, 3) physical points (x, y, z) of the voxels of ``mask`` with a 6-neighbour outside it."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    outside = np.zeros_like(inner)
    for axis in range(3):
        for step in (-1, 1):
            outside |= ~np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    k, j, i = np.nonzero(inner & outside)
    return np.stack([i * SPACING[0], j * SPACING[1], k * SPACING[2]], axis=1).astype(float)


def brute_force_nsd(a: np.ndarray, b: np.ndarray, tolerance: float) -> float:
    pa, pb = _boundary(a), _boundary(b)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return (np.count_nonzero(d.min(1) <= tolerance) + np.count_nonzero(d.min(0) <= tolerance)) / (len(pa) + len(pb))


@pytest.fixture(scope="module")
def expected():
    fixed, moving = _balls(0), _balls(SHIFT_VOXELS)
    out = {(label, t): brute_force_nsd(fixed == label, moving == label, t) for label in (1, 2)
           for t in (1.0, 2.0, 3.0)}
    assert 0.2 < out[(1, 1.0)] < 0.9 and out[(2, 3.0)] == 1.0  # the case discriminates the two tolerances
    return out


@pytest.fixture
def case(tmp_path):
    fixed, moving = _balls(0), _balls(SHIFT_VOXELS)
    sitk.WriteImage(make_image(fixed, SPACING), str(tmp_path / "fixed_labels.nrrd"))
    sitk.WriteImage(make_image(moving, SPACING), str(tmp_path / "moving_labels.nrrd"))
    sitk.WriteImage(make_image((fixed * 100 + 10).astype(np.float32), SPACING), str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(make_image((moving * 100 + 10).astype(np.float32), SPACING), str(tmp_path / "moving.nrrd"))
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.0, 0.0, 0.0)), str(tmp_path / "identity.tfm"))
    (tmp_path / "profile.json").write_text(json.dumps(PROFILE))
    return tmp_path


def _state(value, pass_=0.9, review=0.5):
    return "pass" if value >= pass_ else "review" if review is not None and value >= review else "fail"


def _assert_report(rep, expected, nsd_run_tolerances=(2.0,), pass_=0.9, review=0.5):
    segs = {s["name"]: s for s in rep["segments"]}
    for name, label, tol in (("1", 1, 1.0), ("2", 2, 3.0)):
        for stage in ("before", "after"):  # identity registration: before = after
            own = segs[name][stage]["nsd_at_tolerance"]
            assert own["tolerance_mm"] == tol
            assert own["value"] == pytest.approx(expected[(label, tol)], abs=1e-12)
            for t in nsd_run_tolerances:  # the run's tolerances are still reported for every segment
                key = "nsd_" + f"{t:g}".replace(".", "_") + "mm"
                assert segs[name][stage][key] == pytest.approx(expected[(label, t)], abs=1e-12)
    records = {c["subject"]: c for c in rep["checks"] if c["name"] == "min_nsd"}
    assert set(records) == {"1 (NSD 1 mm)", "2 (NSD 3 mm)"}  # one NSD per segment: at its own tolerance
    for subject, label, tol in (("1 (NSD 1 mm)", 1, 1.0), ("2 (NSD 3 mm)", 2, 3.0)):
        assert records[subject]["value"] == pytest.approx(expected[(label, tol)], abs=1e-12)
        assert records[subject]["status"] == _state(expected[(label, tol)], pass_, review)
    return records


def test_profile_parameters_parse_resolve_and_inherit_the_check_limits():
    p = profiles.parse(PROFILE, "p.json")
    limits = profiles.resolve(p, {"max_voxel": 2.5}, {})
    assert limits.parameter("min_nsd", "tolerance_mm", "1") == 1.0
    assert limits.parameter("min_nsd", "tolerance_mm", "2") == 3.0
    assert limits.parameter("min_nsd", "tolerance_mm", None) == 1.0
    # a segment rule that sets only the tolerance keeps the check's limits
    assert limits.for_subject("min_nsd", "2").pass_ == 0.9 and limits.for_subject("min_nsd", "2").review == 0.5
    # exact name beats glob, a data-dependent tolerance, no default: segments without a rule get None
    p = profiles.parse({"source": "s", "checks": {"min_nsd": {"pass": 0.8, "segments": {
        "Parotid*": {"tolerance_mm": "1.2*max_voxel"}, "Parotid_L": {"tolerance_mm": 2.0, "pass": 0.7}}}}}, "q.json")
    limits = profiles.resolve(p, {"max_voxel": 2.5}, {"min_nsd": 0.6})
    assert limits.parameter("min_nsd", "tolerance_mm", "Parotid_R") == pytest.approx(3.0)
    assert limits.parameter("min_nsd", "tolerance_mm", "Parotid_L") == 2.0
    assert limits.parameter("min_nsd", "tolerance_mm", "Liver") is None
    # the flag replaced the limits but not the tolerances
    assert limits.for_subject("min_nsd", "Parotid_L").pass_ == 0.6
    tolerance_of = checks.nsd_tolerance_of(limits)
    assert tolerance_of("Parotid_R") == pytest.approx(3.0) and tolerance_of("Liver") is None
    assert checks.nsd_tolerance_of(profiles.resolve(None, {}, {"min_nsd": 0.5})) is None
    text = "\n".join(profiles.describe(profiles.parse(PROFILE, "p.json")))
    assert "tolerance_mm 1 mm" in text and "segment 2: pass ≥ 0.9, review ≥ 0.5, tolerance_mm 3 mm" in text


@pytest.mark.parametrize("entry, message", [
    ({"pass": 0.9, "tolerance_mm": 0}, "checks.min_nsd.tolerance_mm: 0 is not a valid NSD tolerance"),
    ({"pass": 0.9, "tolerance_mm": -1}, "checks.min_nsd.tolerance_mm: -1 is not a valid limit"),
    ({"pass": 0.9, "tolerance_mm": "wide"}, "checks.min_nsd.tolerance_mm: 'wide' is not a limit"),
    ({"pass": 0.9, "segments": {"a": {"tolerance": 2}}}, "checks.min_nsd.segments.a: unknown key 'tolerance'"),
    ({"segments": {"a": {"tolerance_mm": 2}}}, "checks.min_nsd.segments.a: 'pass' is missing"),
])
def test_broken_tolerances_are_bad_input_naming_the_entry(entry, message):
    with pytest.raises(BadInputError, match=message.replace("(", r"\(")):
        profiles.parse({"source": "s", "checks": {"min_nsd": entry}}, "bad.json")


def test_a_tolerance_on_a_check_without_parameters_is_refused():
    with pytest.raises(BadInputError, match="checks.min_dice: unknown key 'tolerance_mm'"):
        profiles.parse({"source": "s", "checks": {"min_dice": {"pass": 0.9, "tolerance_mm": 2}}}, "bad.json")


def test_check_runner_compares_the_nsd_at_the_segments_tolerance():
    report = {"options": {"nsd_tolerances_mm": [2.0]}, "segments": [
        {"name": "1", "after": {"nsd_2mm": 0.95, "nsd_at_tolerance": {"tolerance_mm": 1.0, "value": 0.6}}},
        {"name": "2", "after": {"nsd_2mm": 0.4, "nsd_at_tolerance": {"tolerance_mm": 3.0, "value": 0.92}}},
        {"name": "3", "after": {"nsd_2mm": 0.95}}]}
    records = {r["subject"]: r for r in checks.run_checks(report, profiles.resolve(profiles.parse(PROFILE), {}, {}))}
    assert records["1 (NSD 1 mm)"]["status"] == "review" and records["1 (NSD 1 mm)"]["value"] == 0.6
    assert records["2 (NSD 3 mm)"]["status"] == "pass"
    assert records["3 (NSD 2 mm)"]["status"] == "pass"  # no tolerance of its own: the run's tolerances


def test_through_the_cli(case, expected):
    out = case / "out"
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "identity.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                  case / "moving_labels.nrrd", "--profile", case / "profile.json", "--nsd-tolerance", "2",
                  "--no-snapshots", "--output", out)
    rep = json.loads((out / "report.json").read_text())
    records = _assert_report(rep, expected)
    assert res.returncode == checks.EXIT_CODES[checks.verdict(list(records.values()))], res.stderr
    rows = [r for r in (out / "metrics.csv").read_text().splitlines() if "nsd_at_tolerance" in r]
    assert any(r.startswith("segments,1,nsd_at_tolerance.tolerance_mm,after,1.0,mm") for r in rows)
    assert any(r.startswith(f"segments,2,nsd_at_tolerance.value,after,{float(expected[(2, 3.0)])!r},") for r in rows)
    html = (out / "report.html").read_text()
    assert "NSD at segment τ" in html and "τ 3.00 mm" in html and "τ 1.00 mm" in html
    # a command-line limit replaces the profile's limit, the profile's tolerances stay
    out2 = case / "out2"
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "identity.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                  case / "moving_labels.nrrd", "--profile", case / "profile.json", "--min-nsd", "0.99",
                  "--nsd-tolerance", "1", "--nsd-tolerance", "3", "--no-snapshots", "--output", out2)
    rep = json.loads((out2 / "report.json").read_text())
    records = _assert_report(rep, expected, nsd_run_tolerances=(1.0, 3.0), pass_=0.99, review=None)
    assert records["1 (NSD 1 mm)"]["status"] == "fail" and records["2 (NSD 3 mm)"]["status"] == "pass"
    assert records["1 (NSD 1 mm)"]["limit"] == 0.99 and records["1 (NSD 1 mm)"]["source"] == "command line"
    assert res.returncode == 1


def test_through_evaluate_with_nodes_and_the_panel_rows(ctx, case, expected):
    """The Slicer logic path: nodes in a headless slicer-core scene, the panel's compute with the profile field,
    then the panel's results table."""
    from test_module_panel import ParameterBag, headless_logic

    from RegistrationQualityLib import io, panel
    from RegistrationQualityLib.transforms import load_transform

    p = ParameterBag(fixedVolume=io.load_volume(ctx, case / "fixed.nrrd", name="fixed"),
                     movingVolume=io.load_volume(ctx, case / "moving.nrrd", name="moving"),
                     transform=load_transform(ctx, case / "identity.tfm", name="identity"),
                     fixedSegmentation=io.load_segmentation(ctx, case / "fixed_labels.nrrd", name="fixed seg"),
                     movingSegmentation=io.load_segmentation(ctx, case / "moving_labels.nrrd", name="moving seg"),
                     useThreshold=False, profile=str(case / "profile.json"))
    rep = headless_logic(ctx).compute(p).report
    assert rep["profile"]["name"] == "two-tolerances"
    _assert_report(rep, expected)
    rows = {(r["key"], r["subject"]): r for r in panel.summary_rows(rep)}
    for name, label, tol in (("1", 1, 1.0), ("2", 2, 3.0)):
        row = rows[("nsd_segment", name)]
        assert row["measure"] == "NSD at segment τ" and row["after"] == f"{expected[(label, tol)]:.3f}"
        assert row["before"] == row["after"]
        assert state_word(_state(expected[(label, tol)])) in row["check"]
        tau = rows[("nsd_segment_tolerance_mm", name)]
        assert tau["after"] == f"{tol:.2f}" and tau["before"] == "" and tau["unit"] == "mm"


def state_word(state: str) -> str:
    return {"pass": "pass", "review": "REVIEW", "fail": "fail"}[state]
