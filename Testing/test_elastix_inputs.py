"""Swapped or wrong --fixed/--moving against what elastix registered (parameter-file grid, elastix.log names)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import elastix_inputs as ei
from RegistrationQualityLib.context import Context
from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

from conftest import OBLIQUE, make_image, run_cli, run_elastix_tool

HAVE_ELASTIX = shutil.which("elastix") is not None

PARAMS = """(Transform "EulerTransform")
(Registration "MultiResolutionRegistration")
(Metric "AdvancedMattesMutualInformation")
(Optimizer "AdaptiveStochasticGradientDescent")
(NumberOfResolutions 1)
(MaximumNumberOfIterations 20)
(NumberOfSpatialSamples 500)
(ImageSampler "Random")
(WriteResultImage "false")
(AutomaticTransformInitialization "true")
"""


def _blob(shape, spacing, origin, direction, seed):
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    img = make_image(np.zeros(shape, np.float32), spacing, origin, direction)
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], 1).astype(float)
    pts = idx * np.array(spacing) @ np.array(img.GetDirection()).reshape(3, 3).T + np.array(origin)
    r = np.linalg.norm((pts - [2.0, -1.0, 3.0]) / [14.0, 11.0, 9.0], axis=1).reshape(shape)
    arr = 100.0 * np.exp(-2 * r**2) + rng.normal(0, 1, shape)
    return make_image(arr.astype(np.float32), spacing, origin, direction)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real (short) elastix run with a tilted anisotropic fixed image and an axial moving image."""
    if not HAVE_ELASTIX:
        pytest.skip("elastix not on PATH")
    root = tmp_path_factory.mktemp("swap")
    fixed = _blob((16, 24, 28), (1.5, 1.5, 3.0), (-20.0, -18.0, -22.0), OBLIQUE, 0)
    moving = _blob((20, 26, 26), (1.6, 1.6, 2.5), (-21.0, -20.0, -25.0), None, 1)
    sitk.WriteImage(fixed, str(root / "fixed_t1.nrrd"))
    sitk.WriteImage(moving, str(root / "moving_cbf.nrrd"))
    (root / "p.txt").write_text(PARAMS)
    out = root / "out"
    out.mkdir()
    proc = run_elastix_tool(["elastix", "-f", "fixed_t1.nrrd", "-m", "moving_cbf.nrrd", "-p", "p.txt", "-out", "out"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return root


def test_parameter_file_direction_is_read_column_by_column(run):
    grid = ei.parameter_file_grid(run / "out" / "TransformParameters.0.txt")
    fixed = sitk.ReadImage(str(run / "fixed_t1.nrrd"))
    np.testing.assert_allclose(grid["direction"], fixed.GetDirection(), atol=1e-9)
    assert not np.allclose(OBLIQUE, OBLIQUE.T)  # the test image tells the two conventions apart
    assert grid["size"] == list(fixed.GetSize())
    assert ei.corner_distance_mm(grid, ei._grid_of(fixed)) < 1e-6


def _evaluate(run, fixed, moving, **kw):
    inputs = EvaluationInputs(fixed=str(run / fixed), moving=str(run / moving), **kw)
    return evaluate(Context.headless(), inputs, EvaluationOptions(snapshots=False)).report


def test_right_inputs_pass_without_warning(run):
    report = _evaluate(run, "fixed_t1.nrrd", "moving_cbf.nrrd", elastix_dir=str(run / "out"))
    assert not [w for w in report["warnings"] if "elastix registered" in w or "grid differs" in w]


def test_swapped_folder_is_refused_naming_both(run):
    with pytest.raises(BadInputError) as err:
        _evaluate(run, "moving_cbf.nrrd", "fixed_t1.nrrd", elastix_dir=str(run / "out"))
    msg = str(err.value)
    assert "moving_cbf.nrrd" in msg and "fixed_t1.nrrd" in msg and "swapped" in msg and "\n" not in msg


def test_swapped_parameter_file_is_refused_by_geometry(run, tmp_path):
    r = run_cli("evaluate", "--fixed", run / "moving_cbf.nrrd", "--moving", run / "fixed_t1.nrrd", "--transform",
                run / "out" / "TransformParameters.0.txt", "--no-snapshots", "--output", tmp_path / "r")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "not the fixed image elastix registered" in r.stderr and "look swapped" in r.stderr
    assert "TransformParameters.0.txt" in r.stderr and "moving_cbf.nrrd" in r.stderr


def test_a_resampled_copy_within_a_voxel_is_a_warning(run, tmp_path):
    fixed = sitk.ReadImage(str(run / "fixed_t1.nrrd"))
    shifted = sitk.Image(fixed)
    shifted.SetOrigin(tuple(np.array(fixed.GetOrigin()) + [0.4, 0.0, 0.0]))  # 0.4 mm < one 1.5 mm voxel
    sitk.WriteImage(shifted, str(tmp_path / "fixed_copy.nrrd"))
    report = evaluate(Context.headless(), EvaluationInputs(fixed=str(tmp_path / "fixed_copy.nrrd"),
                      moving=str(run / "moving_cbf.nrrd"), transform=str(run / "out" / "TransformParameters.0.txt")),
                      EvaluationOptions(snapshots=False)).report
    near = [w for w in report["warnings"] if "grid differs from the fixed grid elastix registered" in w]
    assert len(near) == 1 and "0.4 mm" in near[0]
    far = sitk.Image(fixed)
    far.SetOrigin(tuple(np.array(fixed.GetOrigin()) + [4.0, 0.0, 0.0]))  # more than the largest spacing (3 mm)
    sitk.WriteImage(far, str(tmp_path / "fixed_far.nrrd"))
    with pytest.raises(BadInputError, match="not the fixed image elastix registered"):
        evaluate(Context.headless(), EvaluationInputs(fixed=str(tmp_path / "fixed_far.nrrd"),
                 moving=str(run / "moving_cbf.nrrd"), transform=str(run / "out" / "TransformParameters.0.txt")),
                 EvaluationOptions(snapshots=False))


def test_info_describes_elastix_folder_parameter_file_segmentation_and_pixel_type(run):
    import json
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "Resources" / "SampleCase"
    r = run_cli("info", run / "out", run / "out" / "TransformParameters.0.txt", sample / "fixed_segmentation.seg.nrrd",
                run / "fixed_t1.nrrd")
    assert r.returncode == 0, r.stderr
    folder, tp, seg, image = json.loads(r.stdout)
    assert folder["kind"] == "elastix output folder" and folder["chain"] == "EulerTransform"
    assert folder["fixed_image"] == "fixed_t1.nrrd" and folder["moving_image"] == "moving_cbf.nrrd"
    (stage,) = folder["stages"]
    assert stage["metric"] == "AdvancedMattesMutualInformation" and stage["resolutions"][0]["iterations"] == 20
    assert folder["fixed_grid"]["size"] == [28, 24, 16]
    assert tp["chain"] == "EulerTransform" and tp["linear"] is True and tp["files"] == [str(run / "out" /
                                                                                          "TransformParameters.0.txt")]
    np.testing.assert_allclose(tp["fixed_grid"]["direction"], OBLIQUE.ravel(), atol=1e-9)
    assert seg["kind"] == "segmentation" and len(seg["segments"]) >= 2
    assert all(s["name"] and isinstance(s["label"], int) for s in seg["segments"])
    assert image["kind"] == "image" and image["pixel_type"] == "32-bit float"
