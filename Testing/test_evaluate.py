"""End to end: evaluate() and the evaluate CLI on an analytic case with a known translation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

from conftest import SHIFT_LPS, run_cli, write_shift_case


@pytest.fixture
def case(tmp_path):
    return write_shift_case(tmp_path)


def test_evaluate_good_translation(ctx, case, tmp_path):
    inputs = EvaluationInputs(
        fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "good.tfm",
        fixed_segmentation=case / "fixed_labels.nrrd", moving_segmentation=case / "moving_labels.nrrd",
        fixed_landmarks=case / "fixed.csv", moving_landmarks=case / "moving.csv", threshold=["300", "2"],
    )
    options = EvaluationOptions(min_dice=0.9, max_tre=0.5, max_folding=0.0, snapshots=False)
    result = evaluate(ctx, inputs, options, output_dir=tmp_path / "report")
    rep = result.report
    seg = {s["name"]: s for s in rep["segments"]}
    assert seg["3"]["after"]["dice"] > 0.9 > seg["3"]["before"]["dice"]
    assert seg["threshold"]["after"]["dice"] > 0.9 > seg["threshold"]["before"]["dice"]
    shift = float(np.linalg.norm(SHIFT_LPS))
    assert rep["landmarks"]["before"]["mean_mm"] == pytest.approx(shift, abs=1e-6)
    assert rep["landmarks"]["after"]["max_mm"] == pytest.approx(0.0, abs=1e-6)
    jac = rep["deformation"]["jacobian"]
    assert jac["min"] == pytest.approx(1.0, abs=1e-4) and jac["max"] == pytest.approx(1.0, abs=1e-4)
    assert rep["deformation"]["displacement_mm"]["mean"] == pytest.approx(shift, abs=1e-3)
    assert rep["similarity"]["after"]["ncc"] > rep["similarity"]["before"]["ncc"]
    assert result.verdict == "pass" and result.exit_code == 0
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["verdict"] == "pass"
    assert (tmp_path / "report" / "report.html").exists() and (tmp_path / "report" / "metrics.csv").exists()


def test_evaluate_identity_fails_checks_and_cli_exit_1(case, tmp_path):
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "identity.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd",
                  "--moving-segmentation", case / "moving_labels.nrrd", "--min-dice", "0.9", "--no-snapshots",
                  "--output", tmp_path / "out")
    assert res.returncode == 1, res.stderr
    assert "FAILED min_dice" in res.stdout
    assert res.stderr == ""
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["verdict"] == "fail"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fixed-landmarks", "fixed.csv"], "--fixed-landmarks: needs its partner --moving-landmarks"),
        (["--fixed-segmentation", "fixed_labels.nrrd"], "--fixed-segmentation: needs its partner"),
        (["--min-dice", "0.5"], "--min-dice: needs segmentations"),
        (["--percentile", "101"], "outside 0-100"),
        (["--threshold", "abc"], "--threshold"),
    ],
)
def test_evaluate_cli_bad_options(case, tmp_path, extra, message):
    args = ["evaluate", "--fixed", "fixed.nrrd", "--moving", "moving.nrrd", "--transform", "good.tfm",
            "--output", tmp_path / "o", *extra]
    res = run_cli(*args, cwd=case)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr, res.stderr
    assert not (tmp_path / "o").exists()


def test_landmarks_need_a_transform(ctx, case):
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", registered=case / "fixed.nrrd",
                              fixed_landmarks=case / "fixed.csv", moving_landmarks=case / "moving.csv")
    with pytest.raises(BadInputError, match="--fixed-landmarks: TRE after registration needs the transform"):
        evaluate(ctx, inputs)


def test_registered_on_another_grid_is_refused(ctx, case):
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", registered=case / "moving.nrrd")
    with pytest.raises(BadInputError, match="registered image grid .* differs from the fixed image's"):
        evaluate(ctx, inputs)


def test_output_that_is_a_file_is_refused(ctx, case, tmp_path):
    (tmp_path / "file").write_text("x")
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "good.tfm")
    with pytest.raises(BadInputError, match="--output: .* is an existing file"):
        evaluate(ctx, inputs, output_dir=tmp_path / "file")


def test_report_with_snapshots(ctx, case, tmp_path):
    from RegistrationQualityLib.rendering import rendering_available

    ok, reason = rendering_available()
    if not ok:
        pytest.skip(reason)
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "good.tfm",
                              fixed_segmentation=case / "fixed_labels.nrrd",
                              moving_segmentation=case / "moving_labels.nrrd")
    result = evaluate(ctx, inputs, EvaluationOptions(), output_dir=tmp_path / "rep")
    snaps = result.report["snapshots"]
    assert {s["file"] for s in snaps} >= {"snapshots/before_after_axial.png", "snapshots/checkerboard_axial.png"}
    for s in snaps:
        assert (tmp_path / "rep" / s["file"]).stat().st_size > 1000
    assert result.report["verdict"] == "no checks"
    assert not result.report["warnings"], result.report["warnings"]


def fake_slicer_application(ctx):
    """What batch_main needs of the ``slicer`` package of a running Slicer, built on a headless context."""
    from types import SimpleNamespace

    modules = SimpleNamespace(**{name.lower(): SimpleNamespace(logic=lambda logic=logic: logic)
                                 for name, logic in ctx.logics.items()})
    return SimpleNamespace(mrmlScene=ctx.scene, modules=modules, app=SimpleNamespace(applicationLogic=lambda: ctx.app))


def test_slicer_batch_mode_shares_the_cli_arguments(ctx, case, tmp_path, capsys):
    from RegistrationQualityLib.commands import batch_main

    fake = fake_slicer_application(ctx)
    before = ctx.scene.GetNumberOfNodes()
    code = batch_main(["--fixed", str(case / "fixed.nrrd"), "--moving", str(case / "moving.nrrd"), "--transform",
                       str(case / "good.tfm"), "--fixed-landmarks", str(case / "fixed.csv"), "--moving-landmarks",
                       str(case / "moving.csv"), "--max-tre", "0.1", "--no-snapshots", "--output",
                       str(tmp_path / "batch")], fake)
    assert code == 0
    assert "verdict: pass" in capsys.readouterr().out
    assert ctx.scene.GetNumberOfNodes() == before  # temporary nodes removed from the application's scene
    assert json.loads((tmp_path / "batch" / "report.json").read_text())["landmarks"]["after"]["max_mm"] < 1e-6
    # a tolerance profile from batch mode: tg132's mean TRE limit is the fixed image's largest voxel dimension
    code = batch_main(["--fixed", str(case / "fixed.nrrd"), "--moving", str(case / "moving.nrrd"), "--transform",
                       str(case / "good.tfm"), "--fixed-landmarks", str(case / "fixed.csv"), "--moving-landmarks",
                       str(case / "moving.csv"), "--profile", "tg132", "--no-snapshots", "--output",
                       str(tmp_path / "batch-profile")], fake)
    assert code == 0 and "verdict: pass" in capsys.readouterr().out
    rep = json.loads((tmp_path / "batch-profile" / "report.json").read_text())
    assert rep["profile"]["name"] == "tg132"
    tre = next(c for c in rep["checks"] if c["name"] == "max_tre")
    assert tre["limit"] == pytest.approx(max(sitk.ReadImage(str(case / "fixed.nrrd")).GetSpacing()))
    code = batch_main(["--fixed", str(case / "fixed.nrrd"), "--moving", str(case / "moving.nrrd"), "--output",
                       str(tmp_path / "b2")], fake)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "a registration result is needed" in err


def test_inside_moving_mask_from_the_displacement_equals_resampling_a_ones_image(ctx, tmp_path):
    from RegistrationQualityLib.similarity import InsideMoving, domain_mask
    from RegistrationQualityLib.transforms import load_registration, load_transform, stream

    from conftest import OBLIQUE, make_image

    fixed = make_image(np.zeros((12, 14, 16), np.float32), spacing=(2.0, 1.5, 3.0), origin=(-20, -15, -25))
    moving = make_image(np.zeros((9, 10, 11), np.float32), spacing=(2.2, 1.9, 2.5), origin=(-8, -12, -9),
                        direction=OBLIQUE)
    sitk.WriteTransform(sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3, (3.0, -2.0, 1.0)), str(tmp_path / "t.tfm"))
    node = load_transform(ctx, tmp_path / "t.tfm")
    (ours,) = stream(load_registration(ctx, node, fixed_image=fixed), fixed, [InsideMoving(moving, fixed)],
                     slab_voxels=16 * 14 * 5)
    reference = domain_mask(ctx, moving, fixed, node)
    assert 0.1 < reference.mean() < 0.9
    assert np.count_nonzero(ours != reference) <= 2  # ties exactly on a voxel border may round either way


def test_input_nodes_are_read_in_their_own_frame_whatever_their_parent(ctx, case):
    """Images, segmentations and landmarks given as nodes under a parent transform give one consistent answer."""
    from RegistrationQualityLib import io

    moving = io.load_volume(ctx, case / "moving.nrrd")
    moving_seg = io.load_segmentation(ctx, case / "moving_labels.nrrd")
    moving_lm = io.landmarks_to_node(ctx, io.read_landmarks(case / "moving.csv"), "moving landmarks")
    parent = ctx.add_node("vtkMRMLLinearTransformNode", "display shift")
    m = parent.GetMatrixTransformToParent()
    m.SetElement(0, 3, 5.0)
    parent.SetMatrixTransformToParent(m)
    for node in (moving, moving_seg, moving_lm):
        node.SetAndObserveTransformNodeID(parent.GetID())
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=moving, transform=case / "good.tfm",
                              fixed_segmentation=case / "fixed_labels.nrrd", moving_segmentation=moving_seg,
                              fixed_landmarks=case / "fixed.csv", moving_landmarks=moving_lm)
    rep = evaluate(ctx, inputs, EvaluationOptions(snapshots=False)).report
    assert rep["segments"][0]["after"]["dice"] > 0.9
    assert rep["landmarks"]["after"]["max_mm"] == pytest.approx(0.0, abs=1e-6)
    assert sum("under transform 'display shift'" in w for w in rep["warnings"]) == 3


SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "Resources" / "SampleCase"


@pytest.mark.skipif(not (SAMPLE / "case.json").exists(), reason="sample case not generated")
def test_demo_on_the_sample_case_good_passes_imperfect_fails_and_tre_matches_transformix(tmp_path):
    res = run_cli("demo", "--output", tmp_path / "demo")
    assert res.returncode == 0, res.stderr
    assert "good: verdict: pass" in res.stdout and "imperfect: verdict: fail" in res.stdout
    measured = json.loads((SAMPLE / "case.json").read_text(encoding="utf-8"))["measured_tre_mm"]
    for name in ("good", "imperfect"):
        rep = json.loads((tmp_path / "demo" / name / "report.json").read_text(encoding="utf-8"))
        ours = {p["label"]: p["after_mm"] for p in rep["landmarks"]["points"]}
        # the generator measured these TREs with transformix's output points (3 decimals)
        for label, value in measured[name]["per_landmark"].items():
            assert ours[label] == pytest.approx(value, abs=2e-3), (name, label)
        assert {s["name"] for s in rep["segments"]} == {"brain", "ventricles", "lesion", "skull"}
        assert rep["snapshots"], rep["warnings"]
        worst = min(rep["segments"], key=lambda s: s["after"]["dice"])["name"]
        titles = [s["title"] for s in rep["snapshots"] if s["file"].startswith("snapshots/worst_")]
        assert len(titles) == 2 and all(f"through '{worst}'" in t for t in titles)


def test_slicer_batch_script_runs_with_the_application_slicer_module(ctx, case, tmp_path, monkeypatch, capsys):
    """Resources/Scripts/batch_evaluate.py as Slicer runs it (sys.argv after '--'), on a headless scene."""
    import runpy
    import sys
    from types import SimpleNamespace

    import slicer as real_slicer

    app = fake_slicer_application(ctx)
    exits = []

    class ApplicationSlicer:  # the application's `slicer` package: its globals plus every vtk class
        mrmlScene, modules, app_ = app.mrmlScene, app.modules, app.app
        util = SimpleNamespace(exit=lambda code: exits.append(code))

        def __getattr__(self, name):
            return self.app_ if name == "app" else getattr(real_slicer, name)

    monkeypatch.setitem(sys.modules, "slicer", ApplicationSlicer())
    script = SAMPLE.parents[1] / "RegistrationQuality" / "Resources" / "Scripts" / "batch_evaluate.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--", "--fixed", str(case / "fixed.nrrd"), "--moving",
                                      str(case / "moving.nrrd"), "--transform", str(case / "identity.tfm"),
                                      "--fixed-landmarks", str(case / "fixed.csv"), "--moving-landmarks",
                                      str(case / "moving.csv"), "--max-tre", "1", "--no-snapshots", "--output",
                                      str(tmp_path / "batch")])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    assert stop.value.code == 1 and exits == [1]  # the identity registration fails the TRE check
    assert "FAILED max_tre" in capsys.readouterr().out
