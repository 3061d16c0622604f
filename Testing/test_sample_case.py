"""The bundled sample case: geometry in a real scene, labels, landmarks, ground truth, and the two elastix results.

Every expected value comes from the data itself or from an independent tool: SimpleITK for geometry,
the generator's analytic phantom and true transform, the committed ground-truth displacement field, and
transformix for the registrations (skipped when transformix is not installed).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import io, transforms

from conftest import run_elastix_tool

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "Resources" / "SampleCase"
SPEC = json.loads((CASE / "case.json").read_text(encoding="utf-8"))
LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("generate_sample_case", CASE / "generate_sample_case.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case_path(key) -> Path:
    return CASE / SPEC[key]


def sitk_ijk_to_ras(image) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = LPS @ np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    m[:3, 3] = LPS @ np.array(image.GetOrigin())
    return m


def truth_field():
    field = sitk.ReadImage(str(CASE / SPEC["ground_truth"]["displacement_field"]), sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(field)


def dice(a, b) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# ---------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------
def manifest_paths():
    keys = ("fixed", "moving", "fixed_labels", "moving_labels", "fixed_segmentation", "moving_segmentation",
            "fixed_landmarks", "moving_landmarks", "fixed_landmarks_csv", "moving_landmarks_csv")
    paths = [SPEC[k] for k in keys] + [SPEC["ground_truth"]["displacement_field"]]
    for reg in SPEC["registrations"].values():
        paths += [reg["transform"], reg["result"], *reg["parameter_files"]]
    return paths


def test_manifest_names_existing_files():
    assert set(SPEC["registrations"]) == {"good", "imperfect"}
    missing = [p for p in manifest_paths() if not (CASE / p).is_file()]
    assert not missing
    for reg in SPEC["registrations"].values():
        assert (CASE / reg["elastix_dir"] / "elastix.log").is_file()


def test_sample_case_is_small():
    total = sum(p.stat().st_size for p in CASE.rglob("*") if p.is_file())
    assert total < 6 * 1024**2, f"sample case is {total / 1024**2:.1f} MB"


def test_no_absolute_or_machine_paths_in_committed_text():
    pattern = re.compile(r"(?<![\w.:])/(home|root|tmp|work|usr|Users|mnt|var|opt)/|[A-Za-z]:\\\\|runs at:")
    offenders = []
    for path in CASE.rglob("*"):
        if path.is_file() and path.suffix in (".txt", ".log", ".json", ".csv", ".md"):  # data, not code
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(CASE)}:{n}: {line.strip()[:80]}")
    assert not offenders, offenders[:10]


def test_elastix_chains_are_relative_to_their_folder():
    for reg in SPEC["registrations"].values():
        folder = CASE / reg["elastix_dir"]
        files = sorted(folder.glob("TransformParameters.*.txt"))
        assert files
        for tp in files:
            text = tp.read_text(encoding="utf-8")
            initial = re.search(r'\(InitialTransformParametersFileName "([^"]*)"\)', text).group(1)
            assert initial == "NoInitialTransform" or (folder / initial).is_file(), (tp.name, initial)
            assert not Path(initial).is_absolute()
            assert '(ResultImagePixelType "float")' in text and '(ResultImageFormat "nrrd")' in text


# ---------------------------------------------------------------------------------------------------
# Geometry in a real MRML scene
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["fixed", "moving", "fixed_labels", "moving_labels"])
def test_volume_geometry_in_the_scene_matches_simpleitk(ctx, key):
    path = case_path(key)
    image = sitk.ReadImage(str(path))
    expected = sitk_ijk_to_ras(image)
    # the library's loader and Slicer's own NRRD reader agree with SimpleITK's LPS geometry
    node = io.load_volume(ctx, path, labelmap="labels" in key)
    np.testing.assert_allclose(io.node_ijk_to_ras(node), expected, atol=1e-6)
    native = ctx.logic("Volumes").AddArchetypeVolume(str(path), f"native {key}", 1 if "labels" in key else 0)
    np.testing.assert_allclose(io.node_ijk_to_ras(native), expected, atol=1e-4)
    np.testing.assert_array_equal(io.volume_to_image(native).GetSize(), image.GetSize())
    # and with the geometry the generator declared
    declared = SPEC["geometry"]["fixed" if key.startswith("fixed") else "moving"]
    assert list(image.GetSize()) == declared["size"]
    np.testing.assert_allclose(image.GetSpacing(), declared["spacing_mm"], atol=1e-9)
    np.testing.assert_allclose(image.GetOrigin(), declared["origin_lps_mm"], atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), declared["direction"], atol=1e-8)


def test_the_two_modalities_have_the_described_grids():
    fixed, moving = sitk.ReadImage(str(case_path("fixed"))), sitk.ReadImage(str(case_path("moving")))
    assert fixed.GetPixelID() == sitk.sitkInt16 and moving.GetPixelID() == sitk.sitkFloat32
    assert max(fixed.GetSpacing()) / min(fixed.GetSpacing()) > 2  # thick slices
    assert fixed.GetSpacing() != moving.GetSpacing() and fixed.GetSize() != moving.GetSize()
    d = np.array(moving.GetDirection()).reshape(3, 3)
    assert np.max(np.abs(np.abs(d) - np.eye(3))) > 0.1  # oblique moving grid
    np.testing.assert_allclose(d @ d.T, np.eye(3), atol=1e-9)


def test_labels_present_and_named(ctx):
    names = SPEC["labels"]
    assert set(names.values()) >= {"brain", "ventricles", "lesion"}
    for key in ("fixed_labels", "moving_labels"):
        arr = sitk.GetArrayFromImage(io.read_labelmap(case_path(key)))
        assert set(np.unique(arr)) == {0} | {int(k) for k in names}
        seg = io.load_segmentation(ctx, case_path(key))
        values = {seg.GetSegmentation().GetNthSegment(i).GetLabelValue()
                  for i in range(seg.GetSegmentation().GetNumberOfSegments())}
        assert values == {int(k) for k in names}


@pytest.mark.parametrize("side", ["fixed", "moving"])
def test_segmentation_files_are_the_labelmaps_with_names(ctx, side):
    """The .seg.nrrd holds one named segment per label; exported on the image grid it equals the labelmap."""
    seg = io.load_segmentation(ctx, case_path(f"{side}_segmentation"))
    segmentation = seg.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetLabelValue(): segmentation.GetNthSegment(i).GetName()
             for i in range(segmentation.GetNumberOfSegments())}
    assert names == {int(k): v for k, v in SPEC["labels"].items()}
    reference = io.load_volume(ctx, case_path(side))
    exported = sitk.GetArrayFromImage(io.segmentation_to_labelmap_image(ctx, seg, reference))
    labels = sitk.GetArrayFromImage(io.read_labelmap(case_path(f"{side}_labels")))
    np.testing.assert_array_equal(exported, labels)


def test_structure_volumes_agree_between_the_two_spaces():
    """The deformation is nearly volume preserving: each structure's volume (cc) is similar on both grids."""
    volumes = {}
    for key in ("fixed_labels", "moving_labels"):
        image = io.read_labelmap(case_path(key))
        voxel_cc = float(np.prod(image.GetSpacing())) / 1000.0
        arr = sitk.GetArrayFromImage(image)
        volumes[key] = {int(k): np.count_nonzero(arr == int(k)) * voxel_cc for k in SPEC["labels"]}
    for label in volumes["fixed_labels"]:
        f, m = volumes["fixed_labels"][label], volumes["moving_labels"][label]
        assert abs(f - m) / m < 0.25, (SPEC["labels"][str(label)], f, m)


# ---------------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------------
def test_fixed_labels_are_the_generators_phantom_through_the_true_transform(generator):
    """Re-derive the fixed labelmap from the generator's analytic phantom and transform (reproducibility)."""
    committed = sitk.GetArrayFromImage(sitk.ReadImage(str(case_path("fixed_labels"))))
    regenerated = generator.fixed_labels_array()
    assert np.count_nonzero(committed != regenerated) <= committed.size * 1e-4


def test_moving_labels_are_the_generators_phantom(generator):
    committed = sitk.GetArrayFromImage(sitk.ReadImage(str(case_path("moving_labels"))))
    assert np.count_nonzero(committed != generator.moving_labels_array()) <= committed.size * 1e-4


def test_truth_field_is_the_analytic_transform(generator):
    fixed = sitk.ReadImage(str(case_path("fixed")))
    rng = np.random.default_rng(3)
    size = np.array(fixed.GetSize())
    points = [fixed.TransformContinuousIndexToPhysicalPoint((rng.random(3) * (size - 1)).tolist()) for _ in range(200)]
    field = truth_field()
    mapped = np.array([field.TransformPoint(p) for p in points])
    error = np.linalg.norm(mapped - generator.true_transform(np.array(points)), axis=1)
    assert error.max() < 0.1  # linear interpolation of the 6 mm field


def test_moving_labels_through_the_truth_overlap_the_fixed_labels():
    """Cross-grid check of both files' geometry: moving labels resampled through the true transform onto the
    fixed grid overlap the fixed labels (nearest neighbour; limited by the coarser moving grid only)."""
    fixed = io.read_labelmap(case_path("fixed_labels"))
    moving = io.read_labelmap(case_path("moving_labels"))
    warped = sitk.Resample(moving, fixed, truth_field(), sitk.sitkNearestNeighbor, 0, moving.GetPixelID())
    f, w = sitk.GetArrayFromImage(fixed), sitk.GetArrayFromImage(warped)
    for key, name in SPEC["labels"].items():
        value = int(key)
        assert dice(f == value, w == value) > 0.8, name
    # while the unregistered pair (identity) does not overlap at all for the small structures
    unregistered = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                        moving.GetPixelID()))
    assert dice(f == 3, unregistered == 3) < 0.2


def test_landmark_files_agree_and_match_by_label(ctx):
    fixed = io.read_landmarks(case_path("fixed_landmarks"))
    moving = io.read_landmarks(case_path("moving_landmarks"))
    assert fixed.labels == moving.labels and 10 <= len(fixed) <= 20
    for side, lm in (("fixed", fixed), ("moving", moving)):
        csv = io.read_landmarks(case_path(f"{side}_landmarks_csv"))  # CSV is LPS
        assert csv.labels == lm.labels
        np.testing.assert_allclose(csv.ras, lm.ras, atol=1e-6)
        doc = json.loads(case_path(f"{side}_landmarks").read_text(encoding="utf-8"))
        assert doc["markups"][0]["coordinateSystem"] == "LPS"
        # Slicer's own markups reader gives the same world (RAS) positions
        node = ctx.scene.GetNodeByID(ctx.logic("Markups").LoadMarkups(str(case_path(f"{side}_landmarks")), side))
        native = io.landmarks_from_node(node)
        assert native.labels == lm.labels
        np.testing.assert_allclose(native.ras, lm.ras, atol=1e-4)


def test_moving_landmarks_are_the_true_transform_of_the_fixed_ones(generator, ctx):
    fixed = io.read_landmarks(case_path("fixed_landmarks"))
    moving = io.read_landmarks(case_path("moving_landmarks"))
    np.testing.assert_allclose(generator.true_transform(fixed.lps), moving.lps, atol=1e-5)  # exact by construction
    field = truth_field()
    mapped = np.array([field.TransformPoint(p.tolist()) for p in fixed.lps])
    assert np.linalg.norm(mapped - moving.lps, axis=1).max() < 0.1  # the committed field: TRE of the truth ~0
    # the same through Slicer: the field loaded as a transform node maps fixed RAS to moving RAS (FromParent)
    node = transforms.load_transform(ctx, CASE / SPEC["ground_truth"]["displacement_field"])
    from_parent = node.GetTransformFromParent()
    slicer_mapped = np.array([from_parent.TransformPoint(p.tolist()) for p in fixed.ras])
    np.testing.assert_allclose(slicer_mapped * np.array([-1.0, -1.0, 1.0]), mapped, atol=1e-3)
    # every landmark lies inside both images
    for key, lm in (("fixed", fixed), ("moving", moving)):
        image = sitk.ReadImage(str(case_path(key)))
        for p in lm.lps:
            idx = np.array(image.TransformPhysicalPointToContinuousIndex(p.tolist()))
            assert np.all(idx >= 0) and np.all(idx <= np.array(image.GetSize()) - 1)


# ---------------------------------------------------------------------------------------------------
# The two registrations, measured with transformix (independent of the library)
# ---------------------------------------------------------------------------------------------------
def transformix_tre(registration: dict, tmp_path: Path, fixed, moving) -> np.ndarray:
    tp = CASE / registration["transform"]
    points = tmp_path / "points.txt"
    points.write_text(f"point\n{len(fixed)}\n" + "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in fixed.lps))
    out = tmp_path / "out"
    out.mkdir()
    # run in the parameter file's folder: the chain's InitialTransformParametersFileName is relative to it
    run = run_elastix_tool(["transformix", "-def", str(points), "-tp", tp.name, "-out", str(out)], cwd=tp.parent,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    rows = (out / "outputpoints.txt").read_text().splitlines()
    mapped = np.array([[float(v) for v in re.search(r"OutputPoint = \[([^\]]*)\]", r).group(1).split()] for r in rows])
    return np.linalg.norm(mapped - moving.lps, axis=1)


@pytest.mark.elastix
@pytest.mark.skipif(shutil.which("transformix") is None, reason="transformix is not installed (apt-get install elastix)")
def test_good_registration_is_good_and_imperfect_is_not(tmp_path):
    fixed = io.read_landmarks(case_path("fixed_landmarks"))
    moving = io.read_landmarks(case_path("moving_landmarks"))
    fixed_image = sitk.ReadImage(str(case_path("fixed")))
    tre = {}
    for name, registration in SPEC["registrations"].items():
        (tmp_path / name).mkdir()
        tre[name] = transformix_tre(registration, tmp_path / name, fixed, moving)
        # the numbers documented in case.json (and the sample case README) are the data's
        recorded = SPEC["measured_tre_mm"][name]
        assert tre[name].mean() == pytest.approx(recorded["mean"], abs=0.01)
        assert tre[name].max() == pytest.approx(recorded["max"], abs=0.01)
        for label, value in zip(fixed.labels, tre[name]):
            assert value == pytest.approx(recorded["per_landmark"][label], abs=0.01)
    identity = np.linalg.norm(fixed.lps - moving.lps, axis=1)
    assert identity.mean() == pytest.approx(SPEC["measured_tre_mm"]["identity"]["mean"], abs=0.01)
    in_plane, slice_thickness = min(fixed_image.GetSpacing()), max(fixed_image.GetSpacing())
    # good: sub-voxel on average (finer than the in-plane spacing), no landmark off by a slice thickness
    assert tre["good"].mean() < in_plane
    assert tre["good"].max() < slice_thickness
    # imperfect: visibly off (mean beyond a slice thickness), several times the good error, yet better than nothing
    assert tre["imperfect"].mean() > slice_thickness
    assert tre["imperfect"].mean() > 3 * tre["good"].mean()
    assert tre["imperfect"].mean() < identity.mean()


def test_result_images_are_on_the_fixed_grid():
    fixed = sitk.ReadImage(str(case_path("fixed")))
    for registration in SPEC["registrations"].values():
        result = sitk.ReadImage(str(CASE / registration["result"]))
        assert result.GetPixelID() == sitk.sitkFloat32
        assert result.GetSize() == fixed.GetSize()
        np.testing.assert_allclose(result.GetOrigin(), fixed.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(result.GetSpacing(), fixed.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(result.GetDirection(), fixed.GetDirection(), atol=1e-6)
