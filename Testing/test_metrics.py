"""Segment comparison: pinned definitions against a brute-force reference, analytic shapes, SimpleITK, edge cases,
files (.seg.nrrd read directly vs Slicer's reader), the MRML API and the ``compare`` CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from RegistrationQualityLib import measures, metrics
from RegistrationQualityLib.errors import BadInputError

from conftest import FLIPPED, OBLIQUE, make_image, run_cli

GRIDS = {"axial": None, "oblique": OBLIQUE, "flipped": FLIPPED}
SPACING = (0.7, 1.3, 2.1)


# ---------------------------------------------------------------------------------------------------
# Independent brute-force reference (all boundary voxel pairs, physical coordinates through the direction)
# ---------------------------------------------------------------------------------------------------
def brute_boundary(mask):
    """6-connected boundary with the image edge as outside, written independently of the library."""
    padded = np.pad(mask, 1, constant_values=False)
    outside_neighbour = np.zeros_like(mask)
    n0, n1, n2 = mask.shape
    for dk, dj, di in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
        neighbour = padded[1 + dk:1 + dk + n0, 1 + dj:1 + dj + n1, 1 + di:1 + di + n2]
        outside_neighbour |= ~neighbour
    return mask & outside_neighbour


def physical_points(image, mask):
    k, j, i = np.nonzero(mask)
    d = np.array(image.GetDirection()).reshape(3, 3)
    idx = np.stack([i, j, k], axis=1) * np.array(image.GetSpacing())
    return np.array(image.GetOrigin()) + idx @ d.T


def brute_force(image_a, mask_a, image_b, mask_b, p=95.0):
    pa = physical_points(image_a, brute_boundary(mask_a))
    pb = physical_points(image_b, brute_boundary(mask_b))
    dist = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    ab, ba = dist.min(axis=1), dist.min(axis=0)
    n_a, n_b, n_both = mask_a.sum(), mask_b.sum(), (mask_a & mask_b).sum()
    return {
        "dice": 2 * n_both / (n_a + n_b), "jaccard": n_both / (n_a + n_b - n_both),
        "hausdorff_mm": max(ab.max(), ba.max()),
        "hausdorff_percentile_mm": max(np.percentile(ab, p), np.percentile(ba, p)),
        "mean_surface_distance_mm": np.concatenate([ab, ba]).mean(),
        "directed": {"reference_to_compared": {"max_mm": ab.max(), "percentile_mm": np.percentile(ab, p),
                                               "mean_mm": ab.mean()},
                     "compared_to_reference": {"max_mm": ba.max(), "percentile_mm": np.percentile(ba, p),
                                               "mean_mm": ba.mean()}},
    }


def assert_close(result, expected, atol=1e-4):
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_close(result[key], value, atol)
        else:
            assert result[key] == pytest.approx(float(value), abs=atol), key


def random_blob(rng, shape, fill=0.55):
    """A random irregular shape: thresholded smoothed noise (several components, holes, border contact)."""
    noise = rng.random(shape)
    smooth = noise.copy()
    for axis in range(3):
        smooth = (np.roll(smooth, 1, axis) + smooth + np.roll(smooth, -1, axis)) / 3
    return smooth > np.quantile(smooth, fill)


# ---------------------------------------------------------------------------------------------------
# Pinned definitions: brute force on small random shapes, anisotropic / oblique / flipped grids
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_shapes_match_brute_force(grid, seed):
    rng = np.random.default_rng(seed)
    shape = (7, 9, 11)
    a1, b1 = random_blob(rng, shape), random_blob(rng, shape)
    a2, b2 = random_blob(rng, shape, 0.8), random_blob(rng, shape, 0.85)
    ref = np.where(a1, 1, 0) + np.where(a2 & ~a1, 4, 0)
    cmp = np.where(b1, 1, 0) + np.where(b2 & ~b1, 4, 0)
    img_a = make_image(ref.astype(np.uint8), SPACING, (3.0, -4.0, 10.0), GRIDS[grid])
    img_b = make_image(cmp.astype(np.uint8), SPACING, (3.0, -4.0, 10.0), GRIDS[grid])
    p = float(rng.choice([95.0, 50.0, 99.5]))
    results = metrics.compare_labelmaps(img_a, img_b, percentile=p)
    assert [r["label"] for r in results] == [1, 4]
    voxel_cc = np.prod(SPACING) / 1000
    for r in results:
        ma, mb = ref == r["label"], cmp == r["label"]
        assert r["status"] == "ok"
        assert_close(r, brute_force(img_a, ma, img_b, mb, p))
        assert r["reference_volume_cc"] == pytest.approx(ma.sum() * voxel_cc)
        assert r["compared_volume_cc"] == pytest.approx(mb.sum() * voxel_cc)
        assert r["volume_difference_cc"] == pytest.approx((mb.sum() - ma.sum()) * voxel_cc)
        assert r["false_positive_cc"] == pytest.approx((mb & ~ma).sum() * voxel_cc)
        assert r["false_negative_cc"] == pytest.approx((ma & ~mb).sum() * voxel_cc)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), spacing=st.tuples(*[st.floats(0.3, 3.0)] * 3),
       percentile=st.floats(0.0, 100.0), shape=st.tuples(*[st.integers(1, 7)] * 3))
def test_property_any_shape_spacing_percentile_matches_brute_force(seed, spacing, percentile, shape):
    rng = np.random.default_rng(seed)
    a = rng.random(shape) < 0.4
    b = rng.random(shape) < 0.4
    img_a = make_image(a.astype(np.uint8), spacing, direction=FLIPPED)
    img_b = make_image(b.astype(np.uint8), spacing, direction=FLIPPED)
    results = metrics.compare_labelmaps(img_a, img_b, percentile=percentile, labels=[1])
    (r,) = results
    if a.any() and b.any():
        assert r["status"] == "ok"
        assert_close(r, brute_force(img_a, a, img_b, b, percentile), atol=1e-4)
    else:
        assert r["hausdorff_mm"] is None and r["status"] != "ok"
        assert r["dice"] == (None if not (a.any() or b.any()) else 0.0)


def test_percentile_is_linear_interpolation_of_directed_sets():
    """HDp = max of directed numpy percentiles (not their mean, not nearest-rank): checked at several p."""
    rng = np.random.default_rng(5)
    a, b = random_blob(rng, (8, 8, 8)), random_blob(rng, (8, 8, 8))
    img_a = make_image(a.astype(np.uint8), (1.0, 1.0, 3.0))
    img_b = make_image(b.astype(np.uint8), (1.0, 1.0, 3.0))
    for p in (0.0, 12.5, 95.0, 100.0):
        r = metrics.compare_labelmaps(img_a, img_b, percentile=p)[0]
        assert_close(r, brute_force(img_a, a, img_b, b, p))
    r100 = metrics.compare_labelmaps(img_a, img_b, percentile=100)[0]
    assert r100["hausdorff_percentile_mm"] == pytest.approx(r100["hausdorff_mm"])


# ---------------------------------------------------------------------------------------------------
# Analytic shapes
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid", list(GRIDS))
def test_shifted_boxes(grid):
    """Box B = box A shifted by t voxels along i: HD = every directed max = t·s_i, Dice = (L − t)/L."""
    L, t = 8, 3
    a = np.zeros((12, 10, 16), np.uint8)
    b = np.zeros_like(a)
    a[2:9, 2:7, 2:2 + L] = 1
    b[2:9, 2:7, 2 + t:2 + t + L] = 1
    sp = (0.6, 1.1, 2.5)
    r = metrics.compare_labelmaps(make_image(a, sp, direction=GRIDS[grid]), make_image(b, sp, direction=GRIDS[grid]))[0]
    assert r["dice"] == pytest.approx((L - t) / L)
    assert r["jaccard"] == pytest.approx((L - t) / (L + t))
    assert r["hausdorff_mm"] == pytest.approx(t * sp[0], abs=1e-5)
    assert r["directed"]["reference_to_compared"]["max_mm"] == pytest.approx(t * sp[0], abs=1e-5)
    assert r["directed"]["compared_to_reference"]["max_mm"] == pytest.approx(t * sp[0], abs=1e-5)
    assert r["false_positive_cc"] == pytest.approx(t * 7 * 5 * np.prod(sp) / 1000)


def test_concentric_boxes_anisotropic():
    """B = A grown by n = (1, 2, 3) voxels on every side. HD = |n·s| (B's corner to A's corner); for an A boundary
    voxel p inside B, d(p, ∂B) = min over axes of the distance to B's nearer face along that axis."""
    sp = np.array([0.5, 0.9, 1.7])
    n = np.array([1, 2, 3])  # (i, j, k)
    a = np.zeros((24, 24, 24), np.uint8)
    b = np.zeros_like(a)
    a[6:18, 5:19, 4:20] = 1
    b_lo, b_hi = np.array([4 - n[0], 5 - n[1], 6 - n[2]]), np.array([19 + n[0], 18 + n[1], 17 + n[2]])  # (i, j, k)
    b[b_lo[2]:b_hi[2] + 1, b_lo[1]:b_hi[1] + 1, b_lo[0]:b_hi[0] + 1] = 1
    r = metrics.compare_labelmaps(make_image(a, sp, direction=OBLIQUE), make_image(b, sp, direction=OBLIQUE))[0]
    assert r["hausdorff_mm"] == pytest.approx(float(np.linalg.norm(n * sp)), abs=1e-5)
    assert r["directed"]["compared_to_reference"]["max_mm"] == pytest.approx(float(np.linalg.norm(n * sp)), abs=1e-5)
    k, j, i = np.nonzero(brute_boundary(a > 0))
    p = np.stack([i, j, k], axis=1)
    to_faces = np.minimum(p - b_lo, b_hi - p) * sp  # distance to the nearer B face along each axis
    d = to_faces.min(axis=1)
    assert r["directed"]["reference_to_compared"]["max_mm"] == pytest.approx(d.max(), abs=1e-5)
    assert r["directed"]["reference_to_compared"]["mean_mm"] == pytest.approx(d.mean(), abs=1e-5)
    assert r["directed"]["reference_to_compared"]["percentile_mm"] == pytest.approx(np.percentile(d, 95), abs=1e-5)
    assert r["dice"] == pytest.approx(2 * a.sum() / (a.sum() + b.sum()))


def test_concentric_spheres():
    """Spheres of radius 6 and 9 mm (1 mm grid): surface distances ≈ 3 mm within the discretisation (√3/2 mm)."""
    k, j, i = np.mgrid[:25, :25, :25] - 12.0
    r2 = i**2 + j**2 + k**2
    a = (r2 <= 6.0**2).astype(np.uint8)
    b = (r2 <= 9.0**2).astype(np.uint8)
    r = metrics.compare_labelmaps(make_image(a, direction=FLIPPED), make_image(b, direction=FLIPPED))[0]
    for key in ("hausdorff_mm", "hausdorff_percentile_mm", "mean_surface_distance_mm"):
        assert r[key] == pytest.approx(3.0, abs=math.sqrt(3) / 2), key
    assert r["dice"] == pytest.approx(2 * a.sum() / (a.sum() + b.sum()))
    assert r["reference_volume_cc"] == pytest.approx(4 / 3 * math.pi * 6**3 / 1000, rel=0.05)


def test_agrees_with_simpleitk_hausdorff_for_disjoint_convex_shapes():
    """For disjoint convex shapes the all-voxel Hausdorff of SimpleITK equals the boundary-voxel definition."""
    k, j, i = np.mgrid[:20, :30, :26]
    sp = (0.8, 1.2, 2.0)
    a = ((i - 7) ** 2 / 25 + (j - 10) ** 2 / 36 + (k - 8) ** 2 / 16 <= 1).astype(np.uint8)
    b = ((i - 19) ** 2 / 16 + (j - 20) ** 2 / 49 + (k - 12) ** 2 / 25 <= 1).astype(np.uint8)
    assert not (a & b).any()
    img_a, img_b = make_image(a, sp, direction=OBLIQUE), make_image(b, sp, direction=OBLIQUE)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(img_a, img_b)
    r = metrics.compare_labelmaps(img_a, img_b)[0]
    assert r["dice"] == 0.0 and r["status"] == "ok"
    assert r["hausdorff_mm"] == pytest.approx(f.GetHausdorffDistance(), abs=1e-4)


def test_dice_agrees_with_simpleitk_overlap_filter():
    rng = np.random.default_rng(11)
    a, b = random_blob(rng, (10, 12, 14)), random_blob(rng, (10, 12, 14))
    img_a, img_b = make_image(a.astype(np.uint8), SPACING), make_image(b.astype(np.uint8), SPACING)
    f = sitk.LabelOverlapMeasuresImageFilter()
    f.Execute(img_a, img_b)
    r = metrics.compare_labelmaps(img_a, img_b)[0]
    assert r["dice"] == pytest.approx(f.GetDiceCoefficient())
    assert r["jaccard"] == pytest.approx(f.GetJaccardCoefficient())


def test_swapping_inputs_swaps_directed_values():
    rng = np.random.default_rng(3)
    a, b = random_blob(rng, (9, 10, 11)), random_blob(rng, (9, 10, 11))
    img_a, img_b = make_image(a.astype(np.uint8), SPACING), make_image(b.astype(np.uint8), SPACING)
    ab = metrics.compare_labelmaps(img_a, img_b)[0]
    ba = metrics.compare_labelmaps(img_b, img_a)[0]
    assert ab["directed"]["reference_to_compared"] == ba["directed"]["compared_to_reference"]
    assert ab["directed"]["compared_to_reference"] == ba["directed"]["reference_to_compared"]
    for key in ("dice", "jaccard", "hausdorff_mm", "hausdorff_percentile_mm"):
        assert ab[key] == ba[key]
    assert ab["mean_surface_distance_mm"] == pytest.approx(ba["mean_surface_distance_mm"], abs=1e-9)
    assert ab["false_positive_cc"] == pytest.approx(ba["false_negative_cc"])
    assert ab["volume_difference_cc"] == pytest.approx(-ba["volume_difference_cc"])


def test_compare_masks_matches_labelmap_path():
    rng = np.random.default_rng(8)
    a, b = random_blob(rng, (6, 7, 8)), random_blob(rng, (6, 7, 8))
    r = metrics.compare_masks(a, b, SPACING, 90)
    assert_close(r, brute_force(make_image(a.astype(np.uint8), SPACING), a, make_image(b.astype(np.uint8), SPACING),
                                b, 90))


def test_metric_registry_documents_every_result_key():
    from RegistrationQualityLib import surface

    r = metrics.compare_masks(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), nsd_tolerances=[1, 2.5])
    surface_keys = {"nsd_1mm", "nsd_2_5mm", "signed_distance", "shifted_self_dice"}
    flat = set()
    for key, value in r.items():
        if key in surface_keys:
            continue
        flat |= {f"{key}.{k}.{kk}" for k, v in value.items() for kk in v} if isinstance(value, dict) else {key}
    assert flat - {"label", "name", "status"} == {m.field for m in measures.of("segment") if m.compute is not None}
    documented = {k.replace("{t}", "1").replace("{d}", "1") for k in surface.DEFINITIONS}
    got = {"nsd_1mm"} | {f"signed_distance.{k}" for k in r["signed_distance"]} | \
        {f"shifted_self_dice.{k}" for k in r["shifted_self_dice"] if k != "2mm"}
    assert got == documented and surface.tolerance_key(2.5) in r
    for m in measures.of("segment"):
        assert m.definition and (m.unit in ("", "voxels") or f"({m.unit})" in m.column_title())  # counts untitled


# ---------------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------------
def test_both_empty_is_null_not_perfect():
    empty = make_image(np.zeros((4, 5, 6), np.uint8))
    (r,) = metrics.compare_labelmaps(empty, empty, labels=[3])
    assert r["label"] == 3 and r["dice"] is None and r["jaccard"] is None and r["hausdorff_mm"] is None
    assert r["directed"]["reference_to_compared"]["max_mm"] is None
    assert "both" in r["status"] and "empty" in r["status"]
    assert metrics.compare_labelmaps(empty, empty) == []


def test_one_side_empty_gives_dice_zero_and_null_distances():
    a = np.zeros((4, 5, 6), np.uint8)
    a[1:3, 1:3, 1:3] = 2
    img_a, img_0 = make_image(a, SPACING), make_image(np.zeros_like(a), SPACING)
    (r,) = metrics.compare_labelmaps(img_a, img_0)
    assert r["label"] == 2 and r["dice"] == 0.0 and r["jaccard"] == 0.0
    assert r["hausdorff_mm"] is None and r["mean_surface_distance_mm"] is None
    assert r["compared_volume_cc"] == 0.0 and r["reference_volume_cc"] == pytest.approx(8 * np.prod(SPACING) / 1000)
    assert r["false_negative_cc"] == pytest.approx(r["reference_volume_cc"])
    assert "not in compared" in r["status"]
    (r,) = metrics.compare_labelmaps(img_0, img_a)
    assert r["dice"] == 0.0 and r["hausdorff_mm"] is None and "not in reference" in r["status"]
    (r,) = metrics.compare_labelmaps(img_a, img_0, labels=[2])  # asked for explicitly: an empty segment
    assert r["dice"] == 0.0 and "compared segment is empty" in r["status"]


def test_labels_in_one_file_only_are_reported():
    a = np.zeros((6, 6, 6), np.uint8)
    b = np.zeros_like(a)
    a[1:3, 1:3, 1:3] = 1
    b[1:3, 1:3, 1:3] = 1
    a[4, 4, 4] = 7
    b[4:6, 0:2, 4:6] = 9
    results = metrics.compare_labelmaps(make_image(a), make_image(b))
    assert [r["label"] for r in results] == [1, 7, 9]
    assert results[0]["dice"] == 1.0 and results[0]["hausdorff_mm"] == 0.0
    assert results[1]["compared_volume_cc"] == 0.0 and results[1]["reference_volume_cc"] == pytest.approx(0.001)
    assert results[2]["reference_volume_cc"] == 0.0 and results[2]["compared_volume_cc"] == pytest.approx(0.008)


def test_no_overlap_gives_dice_zero_and_finite_distances():
    a = np.zeros((5, 5, 20), np.uint8)
    b = np.zeros_like(a)
    a[1:4, 1:4, 1:4] = 1
    b[1:4, 1:4, 10:13] = 1
    r = metrics.compare_labelmaps(make_image(a, (2.0, 1.0, 1.0)), make_image(b, (2.0, 1.0, 1.0)))[0]
    assert r["dice"] == 0.0 and r["status"] == "ok"
    assert r["hausdorff_mm"] == pytest.approx(9 * 2.0)  # far face to far face along i
    assert r["directed"]["reference_to_compared"]["max_mm"] == pytest.approx(9 * 2.0)
    assert min(r["directed"]["reference_to_compared"]["mean_mm"], 18) > 6 * 2.0 - 1e-9


def test_single_voxel_segments():
    a = np.zeros((5, 6, 7), np.uint8)
    b = np.zeros_like(a)
    a[2, 3, 1] = 1
    b[4, 3, 5] = 1
    sp = (0.5, 1.0, 3.0)
    r = metrics.compare_labelmaps(make_image(a, sp, direction=FLIPPED), make_image(b, sp, direction=FLIPPED))[0]
    expected = math.hypot(4 * 0.5, 2 * 3.0)
    for key in ("hausdorff_mm", "hausdorff_percentile_mm", "mean_surface_distance_mm"):
        assert r[key] == pytest.approx(expected, abs=1e-5)
    r = metrics.compare_labelmaps(make_image(a, sp), make_image(a, sp))[0]
    assert r["dice"] == 1.0 and r["hausdorff_mm"] == 0.0 and r["mean_surface_distance_mm"] == 0.0


def test_segments_touching_the_border_have_a_boundary_there():
    """A segment filling the whole image: every voxel of its outer layer is boundary (the edge is outside)."""
    a = np.ones((6, 7, 8), np.uint8)
    b = np.zeros_like(a)
    b[:, :, :5] = 1  # the last 3 columns missing: B's boundary includes the face i=4
    sp = (1.5, 1.0, 1.0)
    r = metrics.compare_labelmaps(make_image(a, sp), make_image(b, sp))[0]
    assert_close(r, brute_force(make_image(a, sp), a > 0, make_image(b, sp), b > 0))
    assert r["directed"]["reference_to_compared"]["max_mm"] == pytest.approx(3 * 1.5)
    # B's cut face i=4 lies inside A: its voxels are nearest to A's k faces (k extent 0..5: at most 2 voxels)
    assert r["directed"]["compared_to_reference"]["max_mm"] == pytest.approx(2.0)


def test_bad_percentile_and_non_integer_labelmaps_raise():
    img = make_image(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(BadInputError, match="percentile"):
        metrics.compare_labelmaps(img, img, percentile=101)
    frac = make_image(np.full((3, 3, 3), 0.5, np.float32))
    with pytest.raises(BadInputError, match="non-integer"):
        metrics.compare_labelmaps(frac, img)


# ---------------------------------------------------------------------------------------------------
# Grids: lattice offsets, resampling, volumes on own grids
# ---------------------------------------------------------------------------------------------------
def test_compared_on_shifted_lattice_is_used_exactly_and_may_extend_beyond_reference():
    """Same spacing/direction, origin shifted by whole voxels: no interpolation; voxels beyond the reference
    grid still count (the comparison lattice is extended)."""
    sp = (0.8, 1.0, 2.0)
    a = np.zeros((6, 8, 10), np.uint8)
    a[1:5, 2:6, 5:10] = 1  # touches the i edge of the reference
    big = np.zeros((6, 8, 14), np.uint8)
    big[1:5, 2:6, 5:14] = 1  # the same box continued 4 voxels past the reference's edge
    img_a = make_image(a, sp, (10.0, 20.0, 30.0), OBLIQUE)
    img_b = make_image(big, sp, (10.0, 20.0, 30.0), OBLIQUE)
    shifted = make_image(big[:, :, 3:], sp, img_b.TransformIndexToPhysicalPoint((3, 0, 0)), OBLIQUE)
    r = metrics.compare_labelmaps(img_a, shifted)[0]
    assert r["reference_volume_cc"] == pytest.approx(4 * 4 * 5 * np.prod(sp) / 1000)
    assert r["compared_volume_cc"] == pytest.approx(4 * 4 * 9 * np.prod(sp) / 1000)
    assert r["dice"] == pytest.approx(2 * 5 / 14)
    # reference boundary includes its border face at i=9; compared's far face is at i=13 (4 voxels further)
    assert r["directed"]["compared_to_reference"]["max_mm"] == pytest.approx(4 * sp[0], abs=1e-5)
    assert r["false_positive_cc"] == pytest.approx(4 * 4 * 4 * np.prod(sp) / 1000)


def test_compared_on_another_grid_is_resampled_nearest_neighbour_with_own_volumes():
    rng = np.random.default_rng(4)
    a = random_blob(rng, (10, 12, 14)).astype(np.uint8) * 2
    img_a = make_image(a, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), OBLIQUE)
    fine = np.zeros((24, 30, 34), np.uint8)
    fine[5:18, 6:20, 8:26] = 2  # inside the reference's field of view
    img_b = make_image(fine, (0.45, 0.5, 0.9), OBLIQUE @ np.array([0.3, 0.2, 0.1]), OBLIQUE)
    expected = sitk.Resample(img_b, img_a, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    want = metrics.compare_masks(a == 2, sitk.GetArrayFromImage(expected) == 2, (1.0, 1.0, 2.0))
    got = metrics.compare_labelmaps(img_a, img_b)[0]
    for key in ("dice", "hausdorff_mm", "hausdorff_percentile_mm", "mean_surface_distance_mm", "false_negative_cc"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert got["status"] == "ok"
    assert got["compared_volume_cc"] == pytest.approx(13 * 14 * 18 * 0.45 * 0.5 * 0.9 / 1000)  # own grid


# ---------------------------------------------------------------------------------------------------
# Files: .seg.nrrd read directly agrees with Slicer's reader
# ---------------------------------------------------------------------------------------------------
def _segmentation_file(ctx, tmp_path, name, overlapping=True):
    from RegistrationQualityLib import io

    arr = np.zeros((10, 12, 14), np.uint8)
    arr[2:5, 3:6, 4:8] = 1
    arr[6:8, 6:9, 6:9] = 3
    img = make_image(arr, (0.5, 0.7, 2.0), (1.0, 2.0, 3.0), OBLIQUE)
    seg = io.labelmap_image_to_segmentation(ctx, img, name, {1: "liver", 3: "kidney"})
    if overlapping:  # a second layer: overlaps "liver"
        extra = np.zeros_like(arr)
        extra[3:7, 3:8, 3:9] = 1
        lab = io.image_to_volume(ctx, make_image(extra, (0.5, 0.7, 2.0), (1.0, 2.0, 3.0), OBLIQUE), "t", True)
        ctx.logic("Segmentations").ImportLabelmapToSegmentationNode(lab, seg)
        segmentation = seg.GetSegmentation()
        segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1).SetName("tumour")
        ctx.remove_nodes([lab])
    path = tmp_path / f"{name}.seg.nrrd"
    io.save_node(seg, path)
    return seg, path, img


def test_seg_nrrd_direct_reader_matches_slicer_reader(ctx, tmp_path):
    from RegistrationQualityLib import io

    _seg, path, img = _segmentation_file(ctx, tmp_path, "s")
    src = metrics.read_segmentation_file(path)
    assert len(src.layers) == 2
    assert [s.name for s in src.segments] == ["liver", "kidney", "tumour"]
    loaded = io.load_segmentation(ctx, path)
    segmentation = loaded.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(sid)
        # Slicer's own reading of this segment, exported alone onto the original grid
        ref_node = io.image_to_volume(ctx, img, "grid")
        slicer_img = io.segmentation_to_labelmap_image(ctx, loaded, ref_node, [sid])
        slicer_src = metrics.LabelSource("slicer", [slicer_img], [metrics.Segment(segment.GetName(),
                                                                                   segment.GetLabelValue())])
        ours = metrics.LabelSource(src.source, src.layers, [s for s in src.segments if s.name == segment.GetName()])
        (r,) = metrics.compare_sources(slicer_src, ours)
        assert r["dice"] == 1.0 and r["hausdorff_mm"] == 0.0, segment.GetName()
        assert r["reference_volume_cc"] == pytest.approx(r["compared_volume_cc"])


def test_compare_files_matches_seg_nrrd_by_name(ctx, tmp_path):
    from RegistrationQualityLib import io

    _s1, p1, img = _segmentation_file(ctx, tmp_path, "a")
    arr = sitk.GetArrayFromImage(img)
    arr2 = np.zeros_like(arr)
    arr2[arr == 1] = 5  # "liver" with another label value, "kidney" missing, "spleen" new
    arr2[0:2, 0:2, 0:2] = 6
    seg2 = io.labelmap_image_to_segmentation(ctx, make_image(arr2, (0.5, 0.7, 2.0), (1.0, 2.0, 3.0), OBLIQUE), "b",
                                             {5: "liver", 6: "spleen"})
    p2 = tmp_path / "b.seg.nrrd"
    io.save_node(seg2, p2)
    out = metrics.compare_files(p1, p2, 90)
    assert out["matched_by"] == "name" and out["percentile"] == 90
    by_name = {r["name"]: r for r in out["segments"]}
    assert set(by_name) == {"liver", "kidney", "tumour", "spleen"}
    assert by_name["liver"]["dice"] == 1.0 and by_name["liver"]["hausdorff_mm"] == 0.0
    assert by_name["kidney"]["dice"] == 0.0 and by_name["kidney"]["hausdorff_mm"] is None
    assert by_name["spleen"]["reference_volume_cc"] == 0.0


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def test_cli_prints_pure_json_and_writes_json_file(tmp_path):
    rng = np.random.default_rng(9)
    a, b = random_blob(rng, (8, 9, 10)), random_blob(rng, (8, 9, 10))
    img_a, img_b = make_image(a.astype(np.uint8), SPACING, direction=OBLIQUE), make_image(
        b.astype(np.int16) * 3, SPACING, direction=OBLIQUE)
    sitk.WriteImage(img_a, str(tmp_path / "ref.nrrd"))
    sitk.WriteImage(img_b, str(tmp_path / "cmp.nii.gz"))
    proc = run_cli("compare", tmp_path / "ref.nrrd", tmp_path / "cmp.nii.gz", "--percentile", "90")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc["percentile"] == 90.0
    labels = {s["label"]: s for s in doc["segments"]}
    assert set(labels) == {1, 3}
    assert labels[1]["dice"] == 0.0 and labels[3]["dice"] == 0.0 and labels[1]["hausdorff_mm"] is None
    # same file as both inputs: perfect agreement; --json writes the file, stdout stays empty
    out = tmp_path / "res" / "r.json"
    proc = run_cli("compare", tmp_path / "ref.nrrd", tmp_path / "ref.nrrd", "--json", out)
    assert proc.returncode == 0 and proc.stdout == ""
    (seg,) = json.loads(out.read_text())["segments"]
    assert seg["dice"] == 1.0 and seg["hausdorff_mm"] == 0.0 and seg["status"] == "ok"


def test_cli_matches_library_on_brute_force_case(tmp_path):
    rng = np.random.default_rng(12)
    a, b = random_blob(rng, (7, 8, 9)), random_blob(rng, (7, 8, 9))
    img_a = make_image(a.astype(np.uint8), SPACING, (1, 2, 3), FLIPPED)
    img_b = make_image(b.astype(np.uint8), SPACING, (1, 2, 3), FLIPPED)
    sitk.WriteImage(img_a, str(tmp_path / "a.nrrd"))
    sitk.WriteImage(img_b, str(tmp_path / "b.nrrd"))
    proc = run_cli("compare", tmp_path / "a.nrrd", tmp_path / "b.nrrd")
    assert proc.returncode == 0, proc.stderr
    assert_close(json.loads(proc.stdout)["segments"][0], brute_force(img_a, a, img_b, b, 95.0))


@pytest.mark.parametrize("case", ["non-integer", "4d", "missing", "percentile", "vector"])
def test_cli_bad_input_exit_2_one_line(tmp_path, case):
    good = tmp_path / "good.nrrd"
    sitk.WriteImage(make_image(np.ones((3, 4, 5), np.uint8)), str(good))
    bad = tmp_path / "bad.nrrd"
    args = ["compare", good, bad]
    if case == "non-integer":
        sitk.WriteImage(make_image(np.full((3, 4, 5), 1.5, np.float32)), str(bad))
        expect = "non-integer"
    elif case == "4d":
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 3, 4, 5), np.uint8), isVector=False), str(bad))
        expect = "4D"
    elif case == "vector":
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5, 2), np.uint8), isVector=True), str(bad))
        expect = "vector"
    elif case == "missing":
        expect = "not found"
    else:
        args = ["compare", good, good, "--percentile", "120"]
        bad = "--percentile"
        expect = "outside 0-100"
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(bad) in lines[0] and expect in lines[0]


# ---------------------------------------------------------------------------------------------------
# MRML API
# ---------------------------------------------------------------------------------------------------
def _two_boxes(shift_voxels=(0, 0, 0)):
    """Reference: labels 1 (box) and 2 (random blob); compared: the same, box shifted by shift_voxels (i, j, k)."""
    rng = np.random.default_rng(21)
    a = np.zeros((12, 14, 16), np.uint8)
    a[3:8, 4:9, 3:10] = 1
    a[random_blob(rng, (12, 14, 16), 0.9) & (a == 0)] = 2
    b = np.zeros_like(a)
    si, sj, sk = shift_voxels
    b[3 + sk:8 + sk, 4 + sj:9 + sj, 3 + si:10 + si] = 1
    b[(a == 2) & (b == 0)] = 2
    return a, b


def _linear_transform_node(ctx, ras_translation):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    node = ctx.add_node("vtkMRMLLinearTransformNode", "t")
    m = vtkMatrix4x4()
    for r in range(3):
        m.SetElement(r, 3, float(ras_translation[r]))
    node.SetMatrixTransformToParent(m)
    return node


def test_mrml_segmentations_match_labelmap_engine_and_fill_a_table(ctx):
    from RegistrationQualityLib import io

    a, b = _two_boxes((2, 0, 1))
    sp = (0.8, 1.1, 2.0)
    img_a, img_b = make_image(a, sp, (5, 6, 7), OBLIQUE), make_image(b, sp, (5, 6, 7), OBLIQUE)
    seg_a = io.labelmap_image_to_segmentation(ctx, img_a, "ref", {1: "box", 2: "blob"})
    seg_b = io.labelmap_image_to_segmentation(ctx, img_b, "cmp", {1: "box", 2: "blob"})
    n_nodes = ctx.scene.GetNumberOfNodes()
    results, table = metrics.compare_segments(ctx, seg_a, seg_b, percentile=90)
    expected = {r["label"]: r for r in metrics.compare_labelmaps(img_a, img_b, percentile=90)}
    assert [r["name"] for r in results] == ["box", "blob"]
    for r in results:
        e = expected[r["label"]]
        for key in ("dice", "hausdorff_mm", "hausdorff_percentile_mm", "mean_surface_distance_mm",
                    "reference_volume_cc", "compared_volume_cc"):
            assert r[key] == pytest.approx(e[key], abs=1e-6), key
        assert r["reference_segment"] == r["compared_segment"] == r["name"]
    assert results[0]["hausdorff_mm"] == pytest.approx(math.hypot(2 * 0.8, 1 * 2.0), abs=1e-5)
    # the table: one row per pair, units in the column names, same numbers
    assert ctx.scene.GetNumberOfNodes() == n_nodes + 1  # only the table was added
    rows = io.table_node_to_rows(table)
    assert len(rows) == 2
    assert rows[0]["HD90 (mm)"] == pytest.approx(results[0]["hausdorff_percentile_mm"])
    assert rows[1]["Dice"] == pytest.approx(results[1]["dice"])
    assert rows[0]["Reference→compared max (mm)"] == pytest.approx(
        results[0]["directed"]["reference_to_compared"]["max_mm"])
    assert "Reference volume (cc)" in rows[0] and rows[0]["Status"] == "ok"


def test_mrml_linear_parent_transform_is_honoured(ctx):
    """Compared box shifted by (2, 0, 1) voxels, and a parent transform moving it back: perfect agreement."""
    from RegistrationQualityLib import io

    a, b = _two_boxes((2, 0, 1))
    sp = (0.8, 1.1, 2.0)
    img_a, img_b = make_image(a, sp), make_image(b, sp)
    seg_a = io.labelmap_image_to_segmentation(ctx, img_a, "ref")
    seg_b = io.labelmap_image_to_segmentation(ctx, img_b, "cmp")
    shift_lps = np.array([2 * 0.8, 0.0, 1 * 2.0])
    t = _linear_transform_node(ctx, -shift_lps * np.array([-1, -1, 1]))  # RAS translation undoing the shift
    seg_b.SetAndObserveTransformNodeID(t.GetID())
    results, _table = metrics.compare_segments(ctx, seg_a, seg_b, percentile=95)
    box = next(r for r in results if r["label"] == 1)
    assert box["dice"] == 1.0 and box["hausdorff_mm"] == 0.0
    assert box["compared_volume_cc"] == pytest.approx(box["reference_volume_cc"])
    # the input node keeps its transform and segments
    assert seg_b.GetTransformNodeID() == t.GetID() and seg_b.GetSegmentation().GetNumberOfSegments() == 2
    # the same transform on the reference instead doubles the shift: HD = |2 × shift|
    seg_b.SetAndObserveTransformNodeID(None)
    seg_a.SetAndObserveTransformNodeID(t.GetID())
    results, _table = metrics.compare_segments(ctx, seg_a, seg_b)
    box = next(r for r in results if r["label"] == 1)
    assert box["hausdorff_mm"] == pytest.approx(2 * np.linalg.norm(shift_lps), abs=1e-5)


def test_mrml_nonlinear_transform_and_labelmap_nodes(ctx):
    """A grid (displacement field) transform with a constant displacement acts like the translation."""
    import slicer
    from vtkmodules.vtkCommonDataModel import vtkImageData

    from RegistrationQualityLib import io

    a, b = _two_boxes((3, 0, 0))
    sp = (1.0, 1.0, 1.5)
    lab_a = io.image_to_volume(ctx, make_image(a, sp), "ref", labelmap=True)
    lab_b = io.image_to_volume(ctx, make_image(b, sp), "cmp", labelmap=True)
    field = vtkImageData()
    field.SetDimensions(30, 30, 30)
    field.SetOrigin(-30.0, -30.0, -10.0)
    field.SetSpacing(2.0, 2.0, 2.0)
    field.AllocateScalars(11, 3)  # VTK_DOUBLE
    from vtkmodules.util.numpy_support import vtk_to_numpy

    disp = vtk_to_numpy(field.GetPointData().GetScalars())
    disp[:] = [-3.0, 0.0, 0.0]  # RAS: FromParent(x) = x + d; the box sits 3 mm further in L (= -R)
    grid = slicer.vtkOrientedGridTransform()
    grid.SetDisplacementGridData(field)
    node = ctx.add_node("vtkMRMLGridTransformNode", "grid")
    node.SetAndObserveTransformFromParent(grid)
    lab_b.SetAndObserveTransformNodeID(node.GetID())
    results, _table = metrics.compare_segments(ctx, lab_a, lab_b)
    assert [r["label"] for r in results] == [1, 2]
    assert results[0]["dice"] == 1.0 and results[0]["hausdorff_mm"] == 0.0
    assert results[1]["dice"] < 1.0  # the blob was not shifted in the compared file: now it is
    # explicit pairs by label value, and a chosen reference volume (finer grid covering both)
    fine = io.image_to_volume(ctx, make_image(np.zeros((24, 28, 32), np.int16), (0.5, 0.5, 0.75),
                                              (-0.25, -0.25, -0.25)), "fine")
    lab_b.SetAndObserveTransformNodeID(None)
    results, _table = metrics.compare_segments(ctx, lab_a, lab_b, ["1"], ["1"], reference_volume=fine)
    (box,) = results
    assert box["hausdorff_mm"] == pytest.approx(3.0, abs=1e-5)  # shift of 3 voxels along i, on the finer grid too
    assert box["reference_volume_cc"] == pytest.approx(5 * 5 * 7 * 1.5 / 1000)  # own grid


def test_mrml_bad_input(ctx):
    from RegistrationQualityLib import io

    seg = io.labelmap_image_to_segmentation(ctx, make_image(np.ones((3, 3, 3), np.uint8)), "s")
    with pytest.raises(BadInputError, match="no segment with ID 'nope'"):
        metrics.compare_segments(ctx, seg, seg, ["nope"], ["nope"])
    t = ctx.add_node("vtkMRMLLinearTransformNode", "t")
    with pytest.raises(BadInputError, match="node 't'.*segmentation or labelmap"):
        metrics.compare_segments(ctx, seg, t)


def test_mrml_overlapping_segments_in_layers_and_file_round_trip(ctx, tmp_path):
    """Overlapping segments (two shared labelmap layers) compared node vs its saved-and-reloaded copy, and vs
    the direct .seg.nrrd reader: identical."""
    from RegistrationQualityLib import io

    seg, path, _img = _segmentation_file(ctx, tmp_path, "layers")
    assert seg.GetSegmentation().GetNumberOfLayers() == 2
    loaded = io.load_segmentation(ctx, path)
    results, _table = metrics.compare_segments(ctx, seg, loaded)
    assert [r["name"] for r in results] == ["liver", "kidney", "tumour"]
    for r in results:
        assert r["dice"] == 1.0 and r["hausdorff_mm"] == 0.0 and r["reference_volume_cc"] > 0
    tumour = next(r for r in results if r["name"] == "tumour")
    liver = next(r for r in results if r["name"] == "liver")
    # the file-based engine on the same file: the same volumes
    file_results = {r["name"]: r for r in metrics.compare_files(path, path)["segments"]}
    assert file_results["tumour"]["reference_volume_cc"] == pytest.approx(tumour["reference_volume_cc"])
    assert file_results["liver"]["reference_volume_cc"] == pytest.approx(liver["reference_volume_cc"])
    # explicit cross pair: liver vs tumour (overlapping, different layers)
    ids = {seg.GetSegmentation().GetNthSegment(i).GetName(): seg.GetSegmentation().GetNthSegmentID(i)
           for i in range(3)}
    (r,), _t = metrics.compare_segments(ctx, seg, seg, [ids["liver"]], [ids["tumour"]])
    assert r["reference_segment"] == "liver" and r["compared_segment"] == "tumour"
    assert 0.0 < r["dice"] < 1.0 and r["hausdorff_mm"] > 0


def test_mrml_closed_surface_segmentation_is_converted_on_a_copy(ctx):
    """A segmentation whose source representation is a closed surface: compared through a binary labelmap made on
    a copy; the input node keeps only its closed surface."""
    from RegistrationQualityLib import io

    a = np.zeros((20, 20, 20), np.uint8)
    a[5:15, 5:15, 5:15] = 1
    seg = io.labelmap_image_to_segmentation(ctx, make_image(a), "cube")
    segmentation = seg.GetSegmentation()
    assert segmentation.CreateRepresentation("Closed surface")
    if hasattr(segmentation, "SetSourceRepresentationName"):
        segmentation.SetSourceRepresentationName("Closed surface")
    else:  # pragma: no cover - older Slicer
        segmentation.SetMasterRepresentationName("Closed surface")
    segmentation.RemoveRepresentation("Binary labelmap")
    assert not segmentation.ContainsRepresentation("Binary labelmap")
    lab = io.image_to_volume(ctx, make_image(a), "cube labels", labelmap=True)
    (r,), _t = metrics.compare_segments(ctx, lab, seg)
    assert not segmentation.ContainsRepresentation("Binary labelmap")
    assert r["status"] == "ok" and r["dice"] > 0.9
    assert r["compared_volume_cc"] == pytest.approx(1.0, rel=0.2)  # 10 mm cube


def test_cli_seg_nrrd_pair_matched_by_name(ctx, tmp_path):
    _s1, p1, _img = _segmentation_file(ctx, tmp_path, "one")
    _s2, p2, _img = _segmentation_file(ctx, tmp_path, "two", overlapping=False)
    proc = run_cli("compare", p1, p2, "--percentile", "50")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["matched_by"] == "name" and doc["percentile"] == 50.0
    by_name = {s["name"]: s for s in doc["segments"]}
    assert by_name["liver"]["dice"] == 1.0 and by_name["kidney"]["hausdorff_percentile_mm"] == 0.0
    assert by_name["tumour"]["compared_volume_cc"] == 0.0 and by_name["tumour"]["dice"] == 0.0
    assert "not in" in by_name["tumour"]["status"]


def test_mrml_rotated_parent_transform_equals_slicer_hardening(ctx):
    """A rigid rotation + translation on the compared node gives the same numbers as Slicer's own hardening of
    that transform (slicer.vtkSlicerTransformLogic.hardenTransform) on an identical copy."""
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from RegistrationQualityLib import io

    from conftest import rotation_matrix

    a, b = _two_boxes((1, 1, 0))
    sp = (0.9, 1.0, 1.6)
    img_a, img_b = make_image(a, sp, (1, 2, 3), OBLIQUE), make_image(b, sp, (1, 2, 3), OBLIQUE)
    ref = io.labelmap_image_to_segmentation(ctx, img_a, "ref")
    moved = io.labelmap_image_to_segmentation(ctx, img_b, "moved")
    hardened = io.labelmap_image_to_segmentation(ctx, img_b, "hardened")
    t = ctx.add_node("vtkMRMLLinearTransformNode", "rigid")
    m = vtkMatrix4x4()
    rot = rotation_matrix((0.3, -0.5, 1.0), 7.0)
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, float(rot[r, c]))
        m.SetElement(r, 3, float([0.6, -1.2, 0.4][r]))
    t.SetMatrixTransformToParent(m)
    moved.SetAndObserveTransformNodeID(t.GetID())
    hardened.SetAndObserveTransformNodeID(t.GetID())
    slicer.vtkSlicerTransformLogic.hardenTransform(hardened)
    assert hardened.GetParentTransformNode() is None
    with_transform, _t1 = metrics.compare_segments(ctx, ref, moved)
    after_hardening, _t2 = metrics.compare_segments(ctx, ref, hardened)
    assert len(with_transform) == len(after_hardening) == 2
    for x, y in zip(with_transform, after_hardening):
        for key in ("dice", "hausdorff_mm", "hausdorff_percentile_mm", "mean_surface_distance_mm",
                    "reference_volume_cc", "compared_volume_cc"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), key
    assert 0.3 < with_transform[0]["dice"] < 1.0


def test_labelmap_against_named_segmentation_takes_the_segment_names(tmp_path):
    """Matched by label value (one side is a plain labelmap); the named side gives the names."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "Resources" / "SampleCase"
    if not (sample / "fixed_labels.nrrd").exists():
        pytest.skip("sample case not generated")
    out = metrics.compare_files(sample / "fixed_labels.nrrd", sample / "moving_segmentation.seg.nrrd")
    assert out["matched_by"] == "label"
    assert [s["name"] for s in out["segments"]] == ["brain", "ventricles", "lesion", "skull"]


def test_on_lattice_gives_the_voxels_of_a_resampling_onto_the_whole_grid():
    """A labelmap on another (rotated, shifted, coarser) grid brought onto the part of the reference grid that
    covers it: the same segment numbers as after resampling it onto the whole reference grid (which clips it to
    the reference image's extent), and its union pasted back equals the full resampling."""
    import SimpleITK as sitk

    from RegistrationQualityLib import evaluate as ev
    from RegistrationQualityLib.context import Context

    rng = np.random.default_rng(4)
    ref = sitk.Image(80, 72, 30, sitk.sitkUInt8)
    ref.SetSpacing((0.9, 0.9, 2.0))
    ref.SetOrigin((-8.0, -9.0, -6.0))
    arr = np.zeros((30, 72, 80), np.uint8)
    arr[5:15, 8:30, 10:34] = 1
    arr[8:12, 12:20, 12:20] = 2
    ref_img = sitk.GetImageFromArray(arr)
    ref_img.CopyInformation(ref)
    mov = np.zeros((18, 30, 30), np.uint8)
    mov[4:14, 6:26, 5:27] = 1
    mov[7:11, 9:16, 8:14] = 2
    mov[rng.random(mov.shape) < 0.01] = 2
    mov_img = sitk.GetImageFromArray(mov)
    mov_img.SetSpacing((1.3, 1.1, 2.3))
    mov_img.SetOrigin((3.1, -2.7, 30.0))  # partly outside the reference grid: clipped as a resampling clips
    c, s_ = np.cos(0.3), np.sin(0.3)
    mov_img.SetDirection((c, -s_, 0.0, s_, c, 0.0, 0.0, 0.0, 1.0))
    f_src = metrics.labelmap_source(ref_img, "fixed")
    m_src = metrics.labelmap_source(mov_img, "moving")
    before = metrics.on_lattice(m_src, ref_img)
    full = ev._resampled_source(Context.headless(), m_src, ref_img, None)
    assert before.geometry.GetSize() != full.geometry.GetSize()  # a part of the grid, not all of it
    assert metrics.compare_sources(f_src, before, lattice=ref_img) == metrics.compare_sources(f_src, full,
                                                                                              lattice=ref_img)
    pasted = ev._union_on(None, before, ref_img)
    assert np.array_equal(sitk.GetArrayViewFromImage(pasted), sitk.GetArrayViewFromImage(ev._union_of(full)))
