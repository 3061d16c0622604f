"""elastix TransformParameters -> Slicer transform nodes, checked against real transformix.

Reference: the ``elastix``/``transformix`` executables (Debian 5.0.1 or any on PATH; the tests that need them
skip with a reason when absent). One session-scoped elastix run (rigid -> affine -> B-spline, 2 resolutions,
30 iterations, oblique anisotropic images with non-zero origins) provides real parameter files; hand-written
files cover the other models. Files written by a newer elastix (5.2, via itk-elastix; 5.1+ key spelling) and its
transformix output points are stored in Testing/data_elastix (regenerate with make_data.py). Optional: itk-elastix (a newer elastix, 5.1+ key spelling, SimilarityTransform and
AffineDTITransform, which Debian's build lacks) in one subprocess, opt-in with RQ_ITK_ELASTIX=1 (slow).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from RegistrationQualityLib import elastix as ex
from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.transforms import load_transform, points_outside_domain

from conftest import OBLIQUE, make_image, rotation_matrix, run_elastix_tool

RAS = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS for points
TOL_MM = 0.01
HAVE_ELASTIX = shutil.which("elastix") is not None and shutil.which("transformix") is not None
needs_elastix = pytest.mark.skipif(not HAVE_ELASTIX, reason="elastix/transformix executables not on PATH")

FIXED_SIZE, FIXED_SPACING, FIXED_ORIGIN = (22, 24, 20), (1.2, 1.0, 1.6), (-10.0, 20.0, 5.0)


def _images():
    def blobs(shape, first, specs):
        z, y, x = (a + first for a in np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(float))
        return sum(v * np.exp(-(((z - cz) / r) ** 2 + ((y - cy) / r) ** 2 + ((x - cx) / r) ** 2))
                   for v, cz, cy, cx, r in specs).astype(np.float32)

    f = blobs((20, 24, 22), 0, [(100, 10, 12, 11, 5), (60, 6, 8, 14, 3), (40, 14, 16, 7, 3)])
    # the moving grid extends 6 voxels beyond the blobs' frame on every side (more of the fixed image maps into it)
    m = blobs((32, 36, 34), -6, [(100, 10.5, 11.2, 11.8, 5.3), (60, 6.5, 7.5, 14.8, 3), (40, 14.2, 16.5, 7.5, 3.2)])
    fixed = make_image(f, spacing=FIXED_SPACING, origin=FIXED_ORIGIN, direction=OBLIQUE)
    d, s = rotation_matrix((0, 1, 1), -20), np.array([1.1, 1.3, 1.5])
    moving = make_image(m, spacing=s, origin=np.array([-12.0, 18.0, 6.0]) - d @ (6 * s), direction=d)
    return fixed, moving


def _registration_parameters(transform: str) -> str:
    return textwrap.dedent(f"""\
        (FixedInternalImagePixelType "float")
        (MovingInternalImagePixelType "float")
        (Registration "MultiResolutionRegistration")
        (Interpolator "BSplineInterpolator")
        (ResampleInterpolator "FinalBSplineInterpolator")
        (Resampler "DefaultResampler")
        (FixedImagePyramid "FixedSmoothingImagePyramid")
        (MovingImagePyramid "MovingSmoothingImagePyramid")
        (Optimizer "AdaptiveStochasticGradientDescent")
        (Transform "{transform}")
        (Metric "AdvancedMeanSquares")
        (AutomaticTransformInitialization "false")
        (AutomaticScalesEstimation "true")
        (NumberOfResolutions 2)
        (MaximumNumberOfIterations 30)
        (NumberOfSpatialSamples 500)
        (ImageSampler "RandomCoordinate")
        (NewSamplesEveryIteration "true")
        (FinalGridSpacingInPhysicalUnits 8)
        (WriteResultImage "true")
        (ResultImageFormat "mha")
        (DefaultPixelValue 0)
        """)


def _grid_header(initial: str, key: str = "InitialTransformParametersFileName") -> str:
    """Image-specific keys of a hand-written TransformParameters file (the fixed grid above)."""
    d = " ".join(f"{v:.10f}" for v in OBLIQUE.T.ravel())  # elastix writes direction matrices column by column
    return textwrap.dedent(f"""\
        ({key} "{initial}")
        (HowToCombineTransforms "Compose")
        (FixedImageDimension 3)
        (MovingImageDimension 3)
        (FixedInternalImagePixelType "float")
        (MovingInternalImagePixelType "float")
        (Size {FIXED_SIZE[0]} {FIXED_SIZE[1]} {FIXED_SIZE[2]})
        (Index 0 0 0)
        (Spacing {FIXED_SPACING[0]} {FIXED_SPACING[1]} {FIXED_SPACING[2]})
        (Origin {FIXED_ORIGIN[0]} {FIXED_ORIGIN[1]} {FIXED_ORIGIN[2]})
        (Direction {d})
        (UseDirectionCosines "true")
        (ResampleInterpolator "FinalBSplineInterpolator")
        (FinalBSplineInterpolationOrder 1)
        (Resampler "DefaultResampler")
        (DefaultPixelValue 0)
        (ResultImageFormat "mha")
        (ResultImagePixelType "float")
        """)


def write_params(path: Path, transform: str, parameters, initial="NoInitialTransform", extra: str = "",
                 key: str = "InitialTransformParametersFileName") -> Path:
    values = " ".join(repr(float(v)) for v in parameters)
    path.write_text(f'(Transform "{transform}")\n(NumberOfParameters {len(parameters)})\n'
                    f"(TransformParameters {values})\n{extra}\n" + _grid_header(initial, key))
    return path


def run_transformix(tp: Path, lps_points: np.ndarray, out: Path) -> np.ndarray:
    """transformix -def: the output points (LPS) of ``lps_points`` through parameter file ``tp``."""
    out.mkdir(parents=True, exist_ok=True)
    inputs = out / "inputpoints.txt"
    rows = "".join(f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in lps_points)
    inputs.write_text(f"point\n{len(lps_points)}\n{rows}")
    proc = run_elastix_tool(["transformix", "-def", str(inputs), "-out", str(out), "-tp", str(tp)],
                          capture_output=True, text=True, cwd=out)
    assert proc.returncode == 0, proc.stdout[-2000:]
    text = (out / "outputpoints.txt").read_text()
    return np.array([[float(v) for v in m.split()] for m in re.findall(r"OutputPoint = \[([^\]]*)\]", text)])


def ours(ctx, tp, lps_points):
    node = ex.load_transform_parameters(ctx, tp)
    mapped = ex.map_points_fixed_to_moving(node, lps_points * RAS) * RAS
    return node, mapped


@pytest.fixture(scope="session")
def case(tmp_path_factory):
    """One real elastix run (Euler -> Affine -> B-spline) plus transformix reference points."""
    if not HAVE_ELASTIX:
        pytest.skip("elastix/transformix executables not on PATH")
    import SimpleITK as sitk

    root = tmp_path_factory.mktemp("elastix")
    fixed, moving = _images()
    sitk.WriteImage(fixed, str(root / "fixed.mha"))
    sitk.WriteImage(moving, str(root / "moving.mha"))
    params = []
    for t in ("EulerTransform", "AffineTransform", "BSplineTransform"):
        p = root / f"p_{t}.txt"
        p.write_text(_registration_parameters(t))
        params += ["-p", str(p)]
    out = root / "out"
    out.mkdir()
    proc = run_elastix_tool(["elastix", "-f", str(root / "fixed.mha"), "-m", str(root / "moving.mha"), *params,
                           "-out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    rng = np.random.default_rng(7)
    # points around and beyond the fixed image (LPS): some fall outside the B-spline grid on purpose
    points = rng.uniform([-15.0, 15.0, 0.0], [25.0, 55.0, 40.0], size=(150, 3))
    reference = {k: run_transformix(out / f"TransformParameters.{k}.txt", points, root / f"tx{k}") for k in range(3)}
    return {"root": root, "out": out, "fixed": fixed, "moving": moving, "points": points, "reference": reference}


# ---------------------------------------------------------------------------------------------------
# Real elastix output: every stage of the chain reproduces transformix
# ---------------------------------------------------------------------------------------------------
@pytest.mark.elastix
@pytest.mark.parametrize("stage, node_class, chain", [
    (0, "vtkMRMLLinearTransformNode", "EulerTransform"),
    (1, "vtkMRMLLinearTransformNode", "EulerTransform -> AffineTransform"),
    (2, "vtkMRMLTransformNode", "EulerTransform -> AffineTransform -> BSplineTransform"),
])
def test_real_chain_matches_transformix(ctx, case, stage, node_class, chain):
    tp = case["out"] / f"TransformParameters.{stage}.txt"
    node, mapped = ours(ctx, tp, case["points"])
    ref = case["reference"][stage]
    assert node.GetClassName() == node_class
    assert node.GetAttribute(ex.NODE_CHAIN_ATTRIBUTE) == chain
    outside = points_outside_domain(node, case["points"] * RAS)
    assert (~outside).sum() > 50
    err = np.linalg.norm(mapped - ref, axis=1)
    assert err[~outside].max() < TOL_MM
    assert np.abs(mapped - case["points"]).max() > 5.0  # the transform is far from identity
    # the SimpleITK equivalent agrees everywhere (ITK's B-spline is also the identity outside its grid)
    st = ex.to_sitk_transform(tp)
    via_sitk = np.array([st.TransformPoint(tuple(p)) for p in case["points"]])
    assert np.linalg.norm(via_sitk - ref, axis=1).max() < TOL_MM


@pytest.mark.elastix
def test_bspline_alone_and_outside_domain_flags(ctx, case, tmp_path):
    """Points we flag are exactly those transformix leaves unchanged (identity outside the grid)."""
    text = (case["out"] / "TransformParameters.2.txt").read_text()
    text = re.sub(r'\(InitialTransformParametersFileName "[^"]*"\)',
                  '(InitialTransformParametersFileName "NoInitialTransform")', text)
    tp = tmp_path / "bspline.txt"
    tp.write_text(text)
    ref = run_transformix(tp, case["points"], tmp_path / "tx")
    node, mapped = ours(ctx, tp, case["points"])
    assert node.GetClassName() == "vtkMRMLBSplineTransformNode"
    outside = points_outside_domain(node, case["points"] * RAS)
    moved = np.linalg.norm(ref - case["points"], axis=1) > 1e-4
    assert outside.sum() > 5 and (~outside).sum() > 50
    np.testing.assert_array_equal(outside, ~moved)
    assert np.linalg.norm(mapped - ref, axis=1)[~outside].max() < TOL_MM


@pytest.mark.elastix
def test_transformix_deformation_field_through_the_loader(ctx, case, tmp_path):
    """transformix -def all writes the displacement at every fixed voxel; io.load_transform reads it as a grid
    transform whose FromParent maps fixed voxel centres exactly like our parameter-file node."""
    import SimpleITK as sitk


    tp = case["out"] / "TransformParameters.2.txt"
    proc = run_elastix_tool(["transformix", "-def", "all", "-out", str(tmp_path), "-tp", str(tp)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    field = load_transform(ctx, tmp_path / "deformationField.mha")
    assert field.IsA("vtkMRMLGridTransformNode")
    fixed = case["fixed"]
    rng = np.random.default_rng(11)
    size = np.array(fixed.GetSize())
    idx = rng.integers(0, size, size=(60, 3))
    lps = np.array([fixed.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in idx])
    via_field = ex.map_points_fixed_to_moving(field, lps * RAS) * RAS
    node = ex.load_transform_parameters(ctx, tp)
    via_params = ex.map_points_fixed_to_moving(node, lps * RAS) * RAS
    assert np.abs(via_params - lps).max() > 5
    assert np.linalg.norm(via_field - via_params, axis=1).max() < TOL_MM
    assert not points_outside_domain(field, lps * RAS).any()
    beyond = np.array([fixed.TransformContinuousIndexToPhysicalPoint([-2.0, 3.0, 3.0])])
    assert points_outside_domain(field, beyond * RAS).all()
    assert sitk.ReadImage(str(tmp_path / "deformationField.mha")).GetNumberOfComponentsPerPixel() == 3


@pytest.mark.elastix
def test_saved_node_is_an_itk_composite_equal_to_transformix(ctx, case, tmp_path):
    """Saving the composite node writes an ITK composite transform (.h5) that maps like transformix everywhere;
    loading it back gives the same mapping inside the B-spline grid."""
    import SimpleITK as sitk

    from RegistrationQualityLib import io

    node = ex.load_transform_parameters(ctx, case["out"] / "TransformParameters.2.txt")
    io.save_node(node, tmp_path / "saved.h5")
    itk = sitk.ReadTransform(str(tmp_path / "saved.h5"))
    mapped = np.array([itk.TransformPoint(tuple(p)) for p in case["points"]])
    assert np.linalg.norm(mapped - case["reference"][2], axis=1).max() < TOL_MM
    again = load_transform(ctx, tmp_path / "saved.h5")
    inside = ~points_outside_domain(again, case["points"] * RAS)
    assert inside.sum() > 50
    back = ex.map_points_fixed_to_moving(again, case["points"] * RAS) * RAS
    assert np.linalg.norm(back - case["reference"][2], axis=1)[inside].max() < TOL_MM


@pytest.mark.elastix
def test_moving_to_fixed_inverts_with_residual(ctx, case):
    node = ex.load_transform_parameters(ctx, case["out"] / "TransformParameters.2.txt")
    fixed_ras = case["points"] * RAS
    inside = ~points_outside_domain(node, fixed_ras)
    moving_ras = case["reference"][2][inside] * RAS
    back, residual = ex.map_points_moving_to_fixed(node, moving_ras)
    assert np.linalg.norm(back - fixed_ras[inside], axis=1).max() < TOL_MM
    assert residual.max() < TOL_MM
    assert residual.shape == (inside.sum(),)


@pytest.mark.elastix
def test_resampled_image_matches_transformix(ctx, case, tmp_path):
    """Our node (Slicer's resampler) and the SimpleITK equivalent reproduce transformix's result image."""
    import SimpleITK as sitk

    from RegistrationQualityLib.resample import resample_image

    text = (case["out"] / "TransformParameters.2.txt").read_text()
    text = text.replace('(FinalBSplineInterpolationOrder 3)', '(FinalBSplineInterpolationOrder 1)')
    text = text.replace('(ResultImagePixelType "short")', '(ResultImagePixelType "float")')
    tp = tmp_path / "linear-interp.txt"
    tp.write_text(text)  # initial transform path is absolute (elastix ran with an absolute -out)
    out = tmp_path / "tx"
    out.mkdir()
    proc = run_elastix_tool(["transformix", "-in", str(case["root"] / "moving.mha"), "-out", str(out), "-tp", str(tp)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "result.mha")))
    node = ex.load_transform_parameters(ctx, tp)
    ours_img = sitk.GetArrayFromImage(resample_image(ctx, case["moving"], case["fixed"], node))
    via_sitk = sitk.GetArrayFromImage(sitk.Resample(case["moving"], case["fixed"], ex.to_sitk_transform(tp),
                                                    sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    # compare where the sample point is well inside the moving image (edges: each tool pads differently)
    grid = sitk.GetArrayFromImage(sitk.Resample(sitk.Image(case["moving"].GetSize(), sitk.sitkUInt8) + 1,
                                                case["fixed"], ex.to_sitk_transform(tp), sitk.sitkNearestNeighbor))
    eroded = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(grid), [1, 1, 1])) > 0
    assert eroded.sum() > 1000 and ref.max() > 50
    assert np.abs(ours_img - ref)[eroded].max() < 0.05
    assert np.abs(via_sitk - ref)[eroded].max() < 0.05


@pytest.mark.elastix
def test_use_direction_cosines_false_needs_moving_image_and_matches_transformix(ctx, case, tmp_path):
    """elastix with (UseDirectionCosines "false") registers direction-free images: transformix -in resamples
    through W_m o T o W_f^-1; our node (given the moving image) reproduces its result image."""
    import SimpleITK as sitk

    from RegistrationQualityLib.resample import resample_image

    params = _registration_parameters("AffineTransform").replace("(NumberOfResolutions 2)", "(NumberOfResolutions 1)")
    (tmp_path / "p.txt").write_text(params + '(UseDirectionCosines "false")\n(ResultImagePixelType "float")\n'
                                    "(FinalBSplineInterpolationOrder 1)\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = run_elastix_tool(["elastix", "-f", str(case["root"] / "fixed.mha"), "-m", str(case["root"] / "moving.mha"),
                           "-p", str(tmp_path / "p.txt"), "-out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    tp = out / "TransformParameters.0.txt"
    _bad(ctx, tp, "(UseDirectionCosines)", "moving image")
    ref = sitk.ReadImage(str(out / "result.0.mha"))
    node = ex.load_transform_parameters(ctx, tp, moving_image=case["moving"])
    assert node.GetAttribute(ex.NODE_CHAIN_ATTRIBUTE) == "fixed frame -> AffineTransform -> moving frame"
    got = sitk.GetArrayFromImage(resample_image(ctx, case["moving"], case["fixed"], node))
    want = sitk.GetArrayFromImage(ref)
    assert want.max() > 50 and np.count_nonzero(want) > 1000
    assert np.abs(got - want).max() < 0.05
    # the moving image as a file or a volume node gives the same transform; the node rebuilds its SimpleITK twin
    from RegistrationQualityLib import io

    moving_node = io.image_to_volume(ctx, case["moving"], "moving")
    p = (3.0, 25.0, 12.0)
    expected = ex.to_sitk_transform(tp, moving_image=case["moving"]).TransformPoint(p)
    for moving in (case["root"] / "moving.mha", moving_node):
        np.testing.assert_allclose(ex.to_sitk_transform(tp, moving_image=moving).TransformPoint(p), expected, atol=1e-9)
    np.testing.assert_allclose(ex.to_sitk_transform(node).TransformPoint(p), expected, atol=1e-9)
    mapped = ex.map_points_fixed_to_moving(node, np.array([p]) * RAS) * RAS
    np.testing.assert_allclose(mapped[0], expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Hand-written parameter files: each model, chains, key spellings, paths
# ---------------------------------------------------------------------------------------------------
@pytest.mark.elastix
@needs_elastix
@pytest.mark.parametrize("transform, parameters, extra", [
    ("EulerTransform", [0.1, -0.2, 0.3, 1, 2, -3], "(CenterOfRotationPoint 1 30 15)\n(ComputeZYX \"false\")"),
    ("EulerTransform", [0.1, -0.2, 0.3, 1, 2, -3], "(CenterOfRotationPoint 1 30 15)\n(ComputeZYX \"true\")"),
    ("TranslationTransform", [1.5, -2, 3.25], ""),
    ("AffineTransform", [1.1, 0.1, -0.05, 0.02, 0.9, 0.1, 0.03, -0.04, 1.05, 1, -2, 3],
     "(CenterOfRotationPoint 2 25 9)"),
])
def test_linear_models_match_transformix(ctx, tmp_path, transform, parameters, extra):
    tp = write_params(tmp_path / "tp.txt", transform, parameters, extra=extra)
    points = np.random.default_rng(3).uniform([-15, 15, 0], [25, 55, 40], size=(20, 3))
    ref = run_transformix(tp, points, tmp_path / "tx")
    node, mapped = ours(ctx, tp, points)
    assert node.IsA("vtkMRMLLinearTransformNode")
    assert np.linalg.norm(mapped - ref, axis=1).max() < TOL_MM
    assert np.linalg.norm(ref - points, axis=1).min() > 0.5


def test_euler_and_similarity_against_simpleitk(tmp_path):
    """Independent implementations: SimpleITK's Euler3D (both rotation orders) and Similarity3D transforms."""
    import SimpleITK as sitk

    points = np.random.default_rng(4).uniform(-30, 30, size=(10, 3))
    for zyx in (False, True):
        tp = write_params(tmp_path / f"euler{zyx}.txt", "EulerTransform", [0.1, -0.2, 0.3, 1, 2, -3],
                          extra=f'(CenterOfRotationPoint 1 30 15)\n(ComputeZYX "{str(zyx).lower()}")')
        ref = sitk.Euler3DTransform((1, 30, 15), 0.1, -0.2, 0.3, (1, 2, -3))
        ref.SetComputeZYX(zyx)
        got = ex.to_sitk_transform(tp)
        for p in points:
            np.testing.assert_allclose(got.TransformPoint(tuple(p)), ref.TransformPoint(tuple(p)), atol=1e-9)
    tp = write_params(tmp_path / "sim.txt", "SimilarityTransform", [0.05, -0.1, 0.15, 1, 2, -3, 1.1],
                      extra="(CenterOfRotationPoint 1 30 15)")
    w = float(np.sqrt(1 - 0.05**2 - 0.1**2 - 0.15**2))
    ref = sitk.Similarity3DTransform(1.1, (0.05, -0.1, 0.15, w), (1, 2, -3), (1, 30, 15))
    got = ex.to_sitk_transform(tp)
    for p in points:
        np.testing.assert_allclose(got.TransformPoint(tuple(p)), ref.TransformPoint(tuple(p)), atol=1e-9)


@pytest.mark.elastix
@needs_elastix
def test_recursive_bspline_chain_new_key_spelling_and_relative_paths(ctx, case, tmp_path):
    """Euler -> Translation -> RecursiveBSpline written by hand; the same chain with elastix >= 5.1's key
    spelling (InitialTransformParameterFileName) must give the same points (transformix 5.0 reads the old one)."""
    bs = (case["out"] / "TransformParameters.2.txt").read_text()
    grid = "\n".join(re.findall(r"^\((?:Grid\w+|BSplineTransformSplineOrder|UseCyclicTransform) [^)]*\)", bs, re.M))
    coefficients = re.search(r"^\(TransformParameters ([^)]*)\)", bs, re.M).group(1).split()
    for key, folder in (("InitialTransformParametersFileName", "old"), ("InitialTransformParameterFileName", "new")):
        d = tmp_path / folder
        d.mkdir()
        write_params(d / "euler.txt", "EulerTransform", [0.05, -0.02, 0.1, 1, 2, -3], key=key,
                     extra="(CenterOfRotationPoint 1 30 15)")
        write_params(d / "translation.txt", "TranslationTransform", [1.5, -2, 3.25], initial="euler.txt", key=key)
        write_params(d / "rbs.txt", "RecursiveBSplineTransform", coefficients, initial="translation.txt", key=key,
                     extra=grid)
    ref = run_transformix(tmp_path / "old" / "rbs.txt", case["points"], tmp_path / "old")  # cwd: relative names work
    for folder in ("old", "new"):
        node, mapped = ours(ctx, tmp_path / folder / "rbs.txt", case["points"])
        assert node.GetAttribute(ex.NODE_CHAIN_ATTRIBUTE) == (
            "EulerTransform -> TranslationTransform -> RecursiveBSplineTransform")
        outside = points_outside_domain(node, case["points"] * RAS)
        assert (~outside).sum() > 50
        assert np.linalg.norm(mapped - ref, axis=1)[~outside].max() < TOL_MM


DATA_51 = Path(__file__).parent / "data_elastix"


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_files_written_by_elastix_5_2(ctx, stage):
    """Real files from a newer elastix (itk-elastix 0.25.4; Testing/data_elastix/make_data.py): the 5.1+ key
    InitialTransformParameterFileName, written relative to elastix's working folder (found here by file name
    beside the file), and that elastix's own transformix output points as the reference."""
    tp = DATA_51 / f"TransformParameters.{stage}.txt"
    assert "InitialTransformParameterFileName" in tp.read_text()
    points = np.loadtxt(DATA_51 / "points_lps.csv", delimiter=",")
    ref = np.loadtxt(DATA_51 / f"transformix_{stage}_lps.csv", delimiter=",")
    node, mapped = ours(ctx, tp, points)
    assert node.GetAttribute(ex.NODE_CHAIN_ATTRIBUTE) == " -> ".join(
        ["EulerTransform", "AffineTransform", "BSplineTransform"][: stage + 1])
    inside = ~points_outside_domain(node, points * RAS)
    assert inside.sum() > 20
    assert np.linalg.norm(mapped - ref, axis=1)[inside].max() < TOL_MM
    assert np.abs(mapped - points).max() > 5.0
    st = ex.to_sitk_transform(tp)
    assert np.linalg.norm(np.array([st.TransformPoint(tuple(p)) for p in points]) - ref, axis=1).max() < TOL_MM


def test_initial_path_resolution(ctx, tmp_path, monkeypatch):
    """Beside the file first, then as written (elastix writes paths relative to its working folder), then
    by file name beside the file (an output folder that was moved)."""
    (tmp_path / "run" / "out").mkdir(parents=True)
    write_params(tmp_path / "run" / "out" / "a.txt", "TranslationTransform", [1, 0, 0])
    write_params(tmp_path / "run" / "out" / "b.txt", "TranslationTransform", [0, 2, 0], initial="out/a.txt")
    p = np.array([[1.0, 2.0, 3.0]])
    monkeypatch.chdir(tmp_path / "run")  # as written, relative to the working folder
    assert np.allclose(ex.to_sitk_transform(tmp_path / "run" / "out" / "b.txt").TransformPoint((1, 2, 3)), (2, 4, 3))
    monkeypatch.chdir(tmp_path)  # not found as written any more: found by name beside the file
    shutil.move(str(tmp_path / "run" / "out"), str(tmp_path / "moved"))
    node, mapped = ours(ctx, tmp_path / "moved" / "b.txt", p)
    np.testing.assert_allclose(mapped, [[2, 4, 3]], atol=1e-9)
    # an absolute path is used as is
    write_params(tmp_path / "c.txt", "TranslationTransform", [0, 0, 5], initial=str(tmp_path / "moved" / "b.txt"))
    np.testing.assert_allclose(ours(ctx, tmp_path / "c.txt", p)[1], [[2, 4, 8]], atol=1e-9)


def test_itk_transform_file_as_initial(ctx, tmp_path):
    """A .tfm/.h5 initial transform (ITK convention fixed -> moving) is applied first; so is a SlicerElastix-style
    (Transform "File") parameter file pointing to one."""
    import SimpleITK as sitk

    init = sitk.AffineTransform(3)
    init.SetMatrix((1.1, 0.1, 0, 0, 0.9, 0.05, 0.02, 0, 1.05))
    init.SetTranslation((2, -1, 0.5))
    init.SetCenter((0, 30, 10))
    sitk.WriteTransform(init, str(tmp_path / "init.tfm"))
    sitk.WriteTransform(init, str(tmp_path / "init.h5"))
    (tmp_path / "file.txt").write_text('(InitialTransformParametersFileName "NoInitialTransform")\n'
                                       '(HowToCombineTransforms "Compose")\n(Transform "File")\n'
                                       '(TransformFileName "init.h5")\n')
    # a B-spline .h5 (ITK BSplineTransform) too
    coefficients = np.random.default_rng(6).normal(0, 2, size=(3, 6, 7, 8))
    images = []
    for c in coefficients:
        img = sitk.GetImageFromArray(c)
        img.SetOrigin((-30, -25, -20))
        img.SetSpacing((12, 14, 15))
        img.SetDirection(tuple(OBLIQUE.ravel()))
        images.append(img)
    bspline = sitk.BSplineTransform(images, 3)
    sitk.WriteTransform(bspline, str(tmp_path / "bspline.h5"))
    points = np.random.default_rng(5).uniform(-5, 25, size=(10, 3))
    expected = np.array([init.TransformPoint(tuple(p)) for p in points]) + np.array([1.5, -2, 3.25])
    b_expected = np.array([bspline.TransformPoint(tuple(p)) for p in points]) + np.array([1.5, -2, 3.25])
    assert np.abs(b_expected - points - np.array([1.5, -2, 3.25])).max() > 1  # inside its grid
    tp = write_params(tmp_path / "t_bspline.txt", "TranslationTransform", [1.5, -2, 3.25], initial="bspline.h5")
    node, mapped = ours(ctx, tp, points)
    outside = points_outside_domain(node, points * RAS)
    identity = np.linalg.norm(b_expected - points - np.array([1.5, -2, 3.25]), axis=1) < 1e-9  # ITK: outside grid
    np.testing.assert_array_equal(outside, identity)
    assert (~outside).sum() >= 5
    np.testing.assert_allclose(mapped[~outside], b_expected[~outside], atol=1e-6)
    # an ITK composite file (what SlicerElastix's TransformParameters.N-Composite.h5 is): affine first, then B-spline
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(bspline)
    composite.AddTransform(init)  # ITK applies the transform added last first
    sitk.WriteTransform(composite, str(tmp_path / "composite.h5"))
    c_expected = np.array([composite.TransformPoint(tuple(p)) for p in points]) + np.array([1.5, -2, 3.25])
    tp = write_params(tmp_path / "t_composite.txt", "TranslationTransform", [1.5, -2, 3.25], initial="composite.h5")
    node, mapped = ours(ctx, tp, points)
    inside = ~points_outside_domain(node, points * RAS)
    assert inside.sum() >= 5
    np.testing.assert_allclose(mapped[inside], c_expected[inside], atol=1e-6)
    for initial in ("init.tfm", "init.h5", "file.txt"):
        tp = write_params(tmp_path / f"t_{initial}.txt", "TranslationTransform", [1.5, -2, 3.25], initial=initial)
        node, mapped = ours(ctx, tp, points)
        np.testing.assert_allclose(mapped, expected, atol=1e-6)
        st = ex.to_sitk_transform(tp)
        np.testing.assert_allclose([st.TransformPoint(tuple(p)) for p in points], expected, atol=1e-6)


def test_io_load_transform_dispatches_and_sitk_from_any_node(ctx, tmp_path):

    tp = write_params(tmp_path / "TransformParameters.0.txt", "EulerTransform", [0.1, -0.2, 0.3, 1, 2, -3],
                      extra="(CenterOfRotationPoint 1 30 15)")
    node = load_transform(ctx, tp)
    assert node.GetName() == "TransformParameters.0" and node.IsA("vtkMRMLLinearTransformNode")
    ref = ex.to_sitk_transform(tp)
    # a node not made by us: Slicer writes it as ITK and SimpleITK reads it back
    other = ctx.add_node("vtkMRMLLinearTransformNode", "copy")
    other.SetAndObserveTransformFromParent(node.GetTransformFromParent())
    p = (3.0, 25.0, 12.0)
    np.testing.assert_allclose(ex.to_sitk_transform(other).TransformPoint(p), ref.TransformPoint(p), atol=1e-9)
    np.testing.assert_allclose(ex.to_sitk_transform(node).TransformPoint(p), ref.TransformPoint(p), atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the key
# ---------------------------------------------------------------------------------------------------
def _bad(ctx, path, *words):
    with pytest.raises(BadInputError) as info:
        ex.load_transform_parameters(ctx, path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for word in words:
        assert word in message, message
    return message


def test_bad_inputs(ctx, tmp_path):
    t = tmp_path
    _bad(ctx, write_params(t / "unknown.txt", "SplineKernelTransform", [1, 2, 3]), "(Transform)", "SplineKernel")
    _bad(ctx, write_params(t / "missing.txt", "TranslationTransform", [1, 2, 3], initial="nowhere.txt"),
         "(InitialTransformParametersFileName)", "nowhere.txt", "not found")
    _bad(ctx, write_params(t / "count.txt", "EulerTransform", [1, 2, 3, 4, 5], extra="(CenterOfRotationPoint 0 0 0)"),
         "(TransformParameters)", "5 values", "6")
    text = (t / "count.txt").read_text().replace("(NumberOfParameters 5)", "(NumberOfParameters 6)")
    (t / "declared.txt").write_text(text)
    _bad(ctx, t / "declared.txt", "(TransformParameters)", "NumberOfParameters 6")
    write_params(t / "nan.txt", "TranslationTransform", [1, 2, 3])
    text = (t / "nan.txt").read_text()
    (t / "nan.txt").write_text(text.replace("(TransformParameters 1.0", "(TransformParameters 1,0"))
    _bad(ctx, t / "nan.txt", "(TransformParameters)", "'1,0' is not a number")
    write_params(t / "center.txt", "EulerTransform", [0, 0, 0, 1, 2, 3], extra="(CenterOfRotationPoint 1 abc 3)")
    _bad(ctx, t / "center.txt", "(CenterOfRotationPoint)", "'abc'")
    two_d = write_params(t / "2d.txt", "TranslationTransform", [1, 2, 3]).read_text()
    (t / "2d.txt").write_text(two_d.replace("(FixedImageDimension 3)", "(FixedImageDimension 2)"))
    _bad(ctx, t / "2d.txt", "(FixedImageDimension)", "2D")
    write_params(t / "a.txt", "TranslationTransform", [1, 0, 0], initial="b.txt")
    write_params(t / "b.txt", "TranslationTransform", [0, 1, 0], initial="a.txt")
    _bad(ctx, t / "a.txt", "cycle", "a.txt -> b.txt -> a.txt")
    add = write_params(t / "add.txt", "TranslationTransform", [1, 0, 0], initial="count.txt").read_text()
    (t / "add.txt").write_text(add.replace('"Compose"', '"Add"'))
    _bad(ctx, t / "add.txt", "(HowToCombineTransforms)", "Add")
    (t / "broken.txt").write_text('(Transform "EulerTransform"\n(NumberOfParameters 6)\n')
    _bad(ctx, t / "broken.txt", "unbalanced")
    (t / "notparams.txt").write_text("hello world\n")
    _bad(ctx, t / "notparams.txt")
    write_params(t / "ok.txt", "TranslationTransform", [1, 2, 3])
    nodir = write_params(t / "nodir.txt", "TranslationTransform", [1, 2, 3], initial="ok.txt").read_text()
    (t / "nodir.txt").write_text(nodir.replace('(UseDirectionCosines "true")', '(UseDirectionCosines "false")'))
    with pytest.raises(BadInputError, match=r"ok\.txt: \(UseDirectionCosines\) is true but .*nodir\.txt has false"):
        ex.load_transform_parameters(ctx, t / "nodir.txt", moving_image=make_image(np.zeros((2, 2, 2))))
    # a bad file deeper in the chain is named, not the one given
    write_params(t / "top.txt", "TranslationTransform", [1, 2, 3], initial="unknown.txt")
    with pytest.raises(BadInputError, match=r"unknown\.txt: \(Transform\)"):
        ex.load_transform_parameters(ctx, t / "top.txt")
    assert ctx.scene.GetNodesByClass("vtkMRMLTransformNode").GetNumberOfItems() == 0  # nothing left behind


# ---------------------------------------------------------------------------------------------------
# Output folders and SlicerElastix scenes
# ---------------------------------------------------------------------------------------------------
@pytest.mark.elastix
def test_find_elastix_result(case):
    res = ex.find_elastix_result(case["out"])
    assert Path(res.transform_parameters).name == "TransformParameters.2.txt"
    assert [Path(p).name for p in res.transform_files] == [f"TransformParameters.{k}.txt" for k in range(3)]
    assert Path(res.final_result_image).name == "result.2.mha"
    assert sorted(res.result_images) == [0, 1, 2]
    assert res.elastix_version and re.fullmatch(r"\d+\.\d+(\.\d+)?", res.elastix_version)
    assert [r.transform for r in res.runs] == ["EulerTransform", "AffineTransform", "BSplineTransform"]
    assert all(r.metric == "AdvancedMeanSquares" for r in res.runs)
    for run in res.runs:
        assert [r["resolution"] for r in run.resolutions] == [0, 1]
        assert all(r["iterations"] == 30 for r in run.resolutions)
        last = (case["out"] / f"IterationInfo.{run.index}.R1.txt").read_text().strip().splitlines()[-1].split()
        assert run.resolutions[-1]["final_metric"] == pytest.approx(float(last[1]))
        assert run.final_metric is not None and run.seconds is not None
        assert "Maximum number of iterations" in run.resolutions[0]["stop"]
    assert res.total_seconds is not None
    assert res.result_pixel_type == "16-bit signed integer" and res.moving_pixel_type == "32-bit float"
    assert len(res.warnings) == 1 and "result.2.mha" in res.warnings[0] and "32-bit float" in res.warnings[0]
    prov = res.provenance()
    assert prov["stages"][2]["transform"] == "BSplineTransform"


@pytest.mark.elastix
def test_load_elastix_folder(ctx, case, tmp_path):
    node, res = ex.load_elastix_folder(ctx, case["out"], name="registration")
    assert node.GetName() == "registration" and Path(res.transform_parameters).name == "TransformParameters.2.txt"
    inside = ~points_outside_domain(node, case["points"] * RAS)
    mapped = ex.map_points_fixed_to_moving(node, case["points"] * RAS) * RAS
    assert np.linalg.norm(mapped - case["reference"][2], axis=1)[inside].max() < TOL_MM
    # a folder with result images only (e.g. transformix output) has no transform to load
    shutil.copy(case["out"] / "result.0.mha", tmp_path / "result.mha")
    with pytest.raises(BadInputError, match="no TransformParameters"):
        ex.load_elastix_folder(ctx, tmp_path)


@pytest.mark.elastix
def test_find_elastix_result_slicer_elastix_layout(case, tmp_path):
    """SlicerElastix's temporary folder: result-transform/ (elastix) and result-resample/ (transformix)."""
    (tmp_path / "result-transform").mkdir()
    (tmp_path / "result-resample").mkdir()
    for f in case["out"].iterdir():
        if f.name.startswith(("TransformParameters", "IterationInfo")) or f.name == "elastix.log":
            shutil.copy(f, tmp_path / "result-transform" / f.name)
    shutil.copy(case["out"] / "result.2.mha", tmp_path / "result-resample" / "result.mha")
    res = ex.find_elastix_result(tmp_path)
    assert Path(res.transform_parameters).name == "TransformParameters.2.txt"
    assert Path(res.final_result_image).parent.name == "result-resample"
    assert [r.transform for r in res.runs] == ["EulerTransform", "AffineTransform", "BSplineTransform"]
    assert res.warnings and "32-bit float" in res.warnings[0]


def test_find_elastix_result_bad_folders(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        ex.find_elastix_result(tmp_path / "nothing")
    with pytest.raises(BadInputError, match="not an elastix output folder"):
        ex.find_elastix_result(tmp_path)


def test_find_slicer_elastix_result(ctx):
    import slicer

    fixed = ctx.add_node("vtkMRMLScalarVolumeNode", "fixed")
    moving = ctx.add_node("vtkMRMLScalarVolumeNode", "moving")
    other = ctx.add_node("vtkMRMLScalarVolumeNode", "other")
    assert ex.find_slicer_elastix_result(ctx, moving) is None
    # displacement-field output: transform linked with the registration reference roles
    field = ctx.add_node("vtkMRMLGridTransformNode", "field")
    field.AddNodeReferenceID(slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole(), moving.GetID())
    field.AddNodeReferenceID(slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole(), fixed.GetID())
    found = ex.find_slicer_elastix_result(ctx, moving)
    assert found.output_transform is field and found.fixed_node is fixed and found.output_volume is None
    assert ex.find_slicer_elastix_result(ctx, other) is None
    # the module's parameter node names every output
    pnode = ctx.add_node("vtkMRMLScriptedModuleNode", "ElastixParameters")
    pnode.SetAttribute("ModuleName", "Elastix")
    result = ctx.add_node("vtkMRMLScalarVolumeNode", "moving registered")
    xform = ctx.add_node("vtkMRMLLinearTransformNode", "moving to fixed")
    for ref, node in (("FixedVolume", fixed), ("MovingVolume", moving), ("OutputVolume", result),
                      ("OutputTransform", xform)):
        pnode.SetNodeReferenceID(ref, node.GetID())
    found = ex.find_slicer_elastix_result(ctx, moving)
    assert (found.output_volume, found.output_transform, found.fixed_node, found.parameter_node) == (
        result, xform, fixed, pnode)


# ---------------------------------------------------------------------------------------------------
# Optional: a newer elastix (itk-elastix): SimilarityTransform, AffineDTITransform, the 5.1+ key spelling
# ---------------------------------------------------------------------------------------------------
ITK_SCRIPT = """
import itk, re, sys, json
out = {}
for name, tp, pts, folder in json.loads(sys.argv[1]):
    po = itk.ParameterObject.New()
    po.ReadParameterFile(tp)
    f = itk.TransformixFilter.New(itk.imread(sys.argv[2], itk.F))
    f.SetTransformParameterObject(po)
    f.SetFixedPointSetFileName(pts)
    f.SetOutputDirectory(folder)
    f.SetComputeDeformationField(False)
    f.UpdateLargestPossibleRegion()
    text = open(folder + "/outputpoints.txt").read()
    out[name] = [[float(v) for v in m.split()] for m in re.findall(r"OutputPoint = \\[([^\\]]*)\\]", text)]
print(json.dumps(out))
"""


@pytest.mark.elastix
@pytest.mark.slow
def test_models_match_itk_elastix(ctx, case, tmp_path):
    import importlib.util
    import json

    if not os.environ.get("RQ_ITK_ELASTIX"):
        pytest.skip("opt-in (~20-40 s to load itk-elastix): set RQ_ITK_ELASTIX=1")
    if importlib.util.find_spec("itk") is None or importlib.util.find_spec("itk.elxParameterObjectPython") is None:
        pytest.skip("itk-elastix not installed (pip install itk-elastix)")
    points = case["points"][:40]
    pts_file = tmp_path / "points.txt"
    pts_file.write_text(f"point\n{len(points)}\n" + "".join(f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in points))
    key = "InitialTransformParameterFileName"
    files = {
        "similarity": write_params(tmp_path / "sim.txt", "SimilarityTransform", [0.05, -0.1, 0.15, 1, 2, -3, 1.1],
                                   extra="(CenterOfRotationPoint 1 30 15)", key=key),
        "dti": write_params(tmp_path / "dti.txt", "AffineDTITransform",
                            [0.1, -0.2, 0.3, 0.05, -0.04, 0.03, 1.1, 0.9, 1.05, 1, 2, -3],
                            extra="(CenterOfRotationPoint 1 30 15)", key=key),
    }
    files["chain"] = write_params(tmp_path / "chain.txt", "TranslationTransform", [1.5, -2, 3.25],
                                  initial=str(files["dti"]), key=key)
    jobs = []
    for name, tp in files.items():
        (tmp_path / name).mkdir()
        jobs.append([name, str(tp), str(pts_file), str(tmp_path / name)])
    proc = subprocess.run([sys.executable, "-c", ITK_SCRIPT, json.dumps(jobs), str(case["root"] / "moving.mha")],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, tp in files.items():
        _, mapped = ours(ctx, tp, points)
        assert np.linalg.norm(mapped - np.array(ref[name]), axis=1).max() < TOL_MM, name
