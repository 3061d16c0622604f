"""Intensity similarity (NCC, NMI, MI, MSE, MAE) on analytic images, and before/after a known shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import similarity as s
from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.transforms import load_transform

from conftest import OBLIQUE, make_image

LPS4 = np.diag([-1.0, -1.0, 1.0, 1.0])


def blob_image(shift_lps=(0.0, 0.0, 0.0), size=(30, 26, 22)):
    """Smooth anisotropic structure on an oblique, anisotropic grid; content moved by ``shift_lps`` (mm)."""
    ref = make_image(np.zeros(size[::-1], np.float32), spacing=(1.2, 1.0, 1.5), origin=(-15.0, -12.0, -14.0),
                     direction=OBLIQUE)
    pts = np.array([[ref.TransformIndexToPhysicalPoint((i, j, k)) for i in range(size[0])]
                    for k in range(size[2]) for j in range(size[1])]).reshape(size[2], size[1], size[0], 3)
    y = pts - np.asarray(shift_lps)
    arr = 1000 * np.exp(-((y[..., 0] - 2) ** 2 / 40 + (y[..., 1] + 1) ** 2 / 25 + y[..., 2] ** 2 / 60))
    arr += 300 * np.exp(-(((y[..., 0] + 5) ** 2 + (y[..., 1] - 4) ** 2 + (y[..., 2] - 3) ** 2) / 8))
    img = make_image(arr.astype(np.float32), spacing=ref.GetSpacing(), origin=ref.GetOrigin(), direction=OBLIQUE)
    return img


def translation_node(ctx, t_lps):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = np.eye(4)
    m[:3, 3] = t_lps
    ras = LPS4 @ m @ LPS4
    vm = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, ras[r, c])
    node = ctx.add_node("vtkMRMLLinearTransformNode", "shift")
    node.SetMatrixTransformFromParent(vm)  # resampling transform fixed -> moving: x -> x + t
    return node


def test_identical_images_give_ncc_one_and_maximum_nmi():
    img = blob_image()
    r = s.similarity(img, img)
    assert r["ncc"] == pytest.approx(1.0) and r["nmi"] == pytest.approx(2.0)
    assert r["mse"] == 0 and r["mae"] == 0 and r["voxels"] == 30 * 26 * 22 and r["bins"] == 64
    assert r["mi"] == pytest.approx(_entropy_of(img))  # MI(A, A) = H(A), histogram by numpy


def _entropy_of(img, bins=64):
    a = sitk.GetArrayFromImage(img).ravel().astype(float)
    counts, _ = np.histogram(a, bins=bins, range=(a.min(), a.max()))
    p = counts[counts > 0] / a.size
    return float(-(p * np.log(p)).sum())


def test_affine_intensity_map_and_offsets():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 64, size=(6, 7, 8)).astype(np.float32)
    a.flat[0], a.flat[1] = 0, 63  # full range
    r = s.similarity(a, a + 3)
    assert r["ncc"] == pytest.approx(1.0) and r["nmi"] == pytest.approx(2.0)
    assert r["mse"] == pytest.approx(9.0) and r["mae"] == pytest.approx(3.0)
    inverted = s.similarity(a, 2 * (63 - a) + 5)
    assert inverted["ncc"] == pytest.approx(-1.0) and inverted["nmi"] == pytest.approx(2.0)


def test_independent_patterns_have_nmi_one_and_ncc_zero():
    k, j, i = np.meshgrid(np.arange(4), np.arange(4), np.arange(4), indexing="ij")
    a = (i % 2).astype(float)
    b = (j % 2).astype(float) * 10
    r = s.similarity(a, b)
    assert r["nmi"] == pytest.approx(1.0) and r["mi"] == pytest.approx(0.0, abs=1e-12)
    assert r["ncc"] == pytest.approx(0.0, abs=1e-12)


def test_nmi_by_hand_on_four_voxels():
    a = np.array([0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 4)
    b = np.array([0.0, 1.0, 1.0, 1.0]).reshape(1, 1, 4)
    h_a = math.log(2)
    h_b = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    h_ab = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))  # (0,0), (0,1), (1,1)x2
    r = s.similarity(a, b, bins=2)
    assert r["nmi"] == pytest.approx((h_a + h_b) / h_ab)
    assert r["mi"] == pytest.approx(h_a + h_b - h_ab)
    assert r["ncc"] == pytest.approx(1 / math.sqrt(3))  # cov 0.125, var 0.25 and 0.1875


def test_mask_restricts_the_region_and_constant_images_give_null_with_reason():
    a = np.zeros((4, 4, 4))
    a[:2] = 1.0
    b = a.copy()
    b[3] = 5.0
    mask = np.zeros(a.shape, bool)
    mask[:2] = True
    inside = s.similarity(a, b, mask=mask)
    assert inside["voxels"] == 32 and inside["mse"] == 0
    assert inside["ncc"] is None and inside["nmi"] is None and "constant" in inside["reason"]
    whole = s.similarity(a, b)
    assert whole["voxels"] == 64 and whole["mse"] == pytest.approx(25 * 16 / 64)
    empty = s.similarity(a, b, mask=np.zeros(a.shape, bool))
    assert empty["voxels"] == 0 and empty["ncc"] is None and empty["reason"] == "empty mask"


def test_images_on_different_grids_are_refused():
    img = blob_image(size=(6, 5, 4))
    other = sitk.Image(img)
    other.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(BadInputError) as err:
        s.similarity(img, other)
    assert str(err.value).startswith("moving image: not on the fixed grid")
    with pytest.raises(BadInputError):
        s.similarity(img, img, bins=1)


def test_shifted_copy_improves_after_applying_the_inverse_shift(ctx):
    shift = np.array([4.0, -3.0, 2.5])
    fixed = blob_image()
    moving = blob_image(shift_lps=shift)  # content moved by +shift: moving(x + shift) = fixed(x)
    node = translation_node(ctx, shift)
    result = s.similarity_before_after(ctx, fixed, moving, node)
    before, after = result["before"], result["after"]
    assert after["ncc"] > 0.999 and before["ncc"] < 0.9
    assert after["nmi"] > before["nmi"] and after["mse"] < 0.01 * before["mse"] and after["mae"] < before["mae"]
    assert before["outside_moving_voxels"] == 0 and after["outside_moving_voxels"] > 0  # shifted out at edges
    assert after["voxels"] + after["outside_moving_voxels"] == 30 * 26 * 22
    rows = s.similarity_rows(result, subject="case")
    assert {r["group"] for r in rows} == {"similarity.before", "similarity.after"}
    assert [r["value"] for r in rows if r["stage"] == "after" and r["metric"] == "ncc"] == [after["ncc"]]


def test_shift_through_a_nonlinear_node_and_a_labelmap_mask(ctx, tmp_path):

    shift = np.array([3.0, 2.0, -2.0])
    fixed = blob_image()
    moving = blob_image(shift_lps=shift)
    field = sitk.Image(fixed.GetSize(), sitk.sitkVectorFloat64, 3) + sitk.Compose([sitk.Image(fixed.GetSize(),
                                                                                   sitk.sitkFloat64) + v
                                                                                   for v in shift])
    field.CopyInformation(fixed)
    sitk.WriteImage(field, str(tmp_path / "shift.nrrd"))
    node = load_transform(ctx, tmp_path / "shift.nrrd")  # a grid transform doing the same shift
    labels = sitk.Cast(sitk.BinaryThreshold(fixed, 200, 1e9), sitk.sitkUInt8)
    result = s.similarity_before_after(ctx, fixed, moving, node, mask=labels)
    before, after = result["before"], result["after"]
    assert result["region"] == "mask"
    assert after["voxels"] + after["outside_moving_voxels"] == int(sitk.GetArrayViewFromImage(labels).sum())
    assert after["ncc"] > 0.999 and after["ncc"] > before["ncc"] and after["mse"] < before["mse"]


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (0.5, 0.5, 1.0), (-3.25, 1.5, 2.0)])
def test_domain_mask_without_transform_equals_itk_nearest_neighbour_rule(offset):
    """The world-space domain (no registration) by the compiled kernel = SimpleITK's nearest-neighbour resampling of
    a ones image (``-0.5 <= g < n - 0.5``), on oblique grids and with moving voxel centres half a voxel off."""
    from RegistrationQualityLib.resample import resample_image

    fixed = make_image(np.zeros((14, 30, 26), np.float32), (1.0, 1.0, 2.0), (-12.0, -14.0, -13.0), OBLIQUE)
    moving = make_image(np.zeros((6, 12, 10), np.float32), (2.0, 2.0, 4.0), offset)
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    expected = sitk.GetArrayFromImage(resample_image(None, ones, fixed, None, "nearest")) != 0
    got = s.domain_mask(None, moving, fixed, None)
    assert 0 < expected.sum() < expected.size
    assert np.array_equal(got, expected)


def _similarity_reference(a, b, mask, bins):
    """NCC, NMI, MI, MSE, MAE by numpy and exactly rounded sums (math.fsum), bins by the documented rule."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b) & (np.ones(a.shape, bool) if mask is None else mask.ravel())
    bad = int(np.count_nonzero(~(np.isfinite(a) & np.isfinite(b)) & (True if mask is None else mask.ravel())))
    a, b = a[keep], b[keep]
    n = a.size
    ma, mb = math.fsum(a) / n, math.fsum(b) / n
    saa, sbb, sab = math.fsum((a - ma) ** 2), math.fsum((b - mb) ** 2), math.fsum((a - ma) * (b - mb))

    def bin_of(v):
        lo, hi = v.min(), v.max()
        if hi == lo:
            return np.zeros(v.size, np.int64)
        return np.clip(((v - lo) * (bins / (hi - lo))).astype(np.int64), 0, bins - 1)

    joint = np.zeros((bins, bins), np.int64)
    np.add.at(joint, (bin_of(a), bin_of(b)), 1)

    def entropy(c):
        p = c[c > 0] / n
        return -math.fsum(p * np.log(p))

    h_a, h_b, h_ab = entropy(joint.sum(axis=1)), entropy(joint.sum(axis=0)), entropy(joint.ravel())
    return {"ncc": sab / math.sqrt(saa * sbb), "nmi": (h_a + h_b) / h_ab, "mi": h_a + h_b - h_ab,
            "mse": math.fsum((a - b) ** 2) / n, "mae": math.fsum(np.abs(a - b)) / n, "voxels": n,
            "nonfinite_voxels": bad}


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_similarity_equals_a_brute_force_reference(dtype):
    """Random images with a mask (and non-finite voxels for float): the compiled passes against numpy with exactly
    rounded sums; sizes not a multiple of the blocks or chunks, values exactly on bin edges (integers)."""
    rng = np.random.default_rng(5)
    shape = (23, 37, 41)
    if dtype == np.float32:
        a = rng.normal(100, 40, shape).astype(np.float32)
        b = (0.7 * a + rng.normal(0, 20, shape)).astype(np.float32)
        a[3, 4, 5], b[6, 7, 8], a[9, 9, 9] = np.nan, np.inf, -np.inf
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
        b = np.clip(a.astype(np.int64) // 2 + rng.integers(-30, 30, shape), info.min, info.max).astype(dtype)
    mask = rng.random(shape) < 0.8
    for m in (mask, None):
        for bins in (64, 7):
            got = s.similarity(a, b, mask=m, bins=bins)
            want = _similarity_reference(a, b, m, bins)
            assert got["voxels"] == want["voxels"] and got["nonfinite_voxels"] == want["nonfinite_voxels"]
            for key in ("ncc", "nmi", "mi", "mse", "mae"):
                assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), (key, m is None, bins)
