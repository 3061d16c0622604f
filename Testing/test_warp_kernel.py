"""The streamed warp (resample.Warp, kernels.warp_slab) bit for bit against a per-voxel Python reference of its rule:
oblique and anisotropic grids, sample points outside, on the half-voxel border and in the border voxels (clamped
neighbours), non-finite displacements, integer (rounded, clamped) and float images, linear and nearest."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib.resample import Warp
from RegistrationQualityLib.transforms import image_ijk_to_lps

from conftest import OBLIQUE, make_image


def warp_reference(u, k0, ijk_to_lps, lps_to_index, image, linear, background, rounding, lo, hi, dtype):
    """The documented rule voxel by voxel in Python floats (same operations in the same order)."""
    nz, ny, nx = image.shape
    out = np.empty(u.shape[:3], dtype)
    m, inv = ijk_to_lps.tolist(), lps_to_index.tolist()
    for kk in range(u.shape[0]):
        k = k0 + kk
        for j in range(u.shape[1]):
            for i in range(u.shape[2]):
                y = [m[r][0] * i + m[r][1] * j + m[r][2] * k + m[r][3] + float(u[kk, j, i, r]) for r in range(3)]
                g = [inv[r][0] * y[0] + inv[r][1] * y[1] + inv[r][2] * y[2] + inv[r][3] for r in range(3)]
                if not all(-0.5 <= g[r] <= n - 0.5 for r, n in enumerate((nx, ny, nz))):
                    out[kk, j, i] = background
                    continue
                if not linear:
                    ix, iy, iz = (min(max(int(math.floor(g[r] + 0.5)), 0), n - 1) for r, n in enumerate((nx, ny, nz)))
                    out[kk, j, i] = image[iz, iy, ix]
                    continue
                f = [math.floor(v) for v in g]
                tx, ty, tz = (g[r] - f[r] for r in range(3))
                a = [int(v) for v in f]
                xb, yb, zb = (min(max(a[r] + 1, 0), n - 1) for r, n in enumerate((nx, ny, nz)))
                xa, ya, za = (min(max(a[r], 0), n - 1) for r, n in enumerate((nx, ny, nz)))

                def val(z, yy, x):
                    return float(image[z, yy, x])

                v = ((1 - tz) * ((1 - ty) * ((1 - tx) * val(za, ya, xa) + tx * val(za, ya, xb))
                                 + ty * ((1 - tx) * val(za, yb, xa) + tx * val(za, yb, xb)))
                     + tz * ((1 - ty) * ((1 - tx) * val(zb, ya, xa) + tx * val(zb, ya, xb))
                             + ty * ((1 - tx) * val(zb, yb, xa) + tx * val(zb, yb, xb))))
                if rounding:
                    v = min(max(math.floor(v + 0.5), lo), hi)
                out[kk, j, i] = v
    return out


def _grids():
    fixed = make_image(np.zeros((9, 14, 17), np.uint8), spacing=(1.1, 0.9, 2.3), origin=(-9.0, -7.5, -11.0),
                       direction=OBLIQUE)
    moving_geometry = dict(spacing=(1.3, 1.05, 1.9), origin=(-6.0, -8.0, -8.5), direction=OBLIQUE.T)
    return fixed, moving_geometry


def _displacement(fixed, seed):
    rng = np.random.default_rng(seed)
    ni, nj, nk = fixed.GetSize()
    u = rng.normal(0.0, 2.5, (nk, nj, ni, 3)).astype(np.float32)
    u[1, 2, 3] = np.nan
    u[2, 5, 6, 1] = np.inf
    u[3, 1, 1] = 1e30
    return u


def _run_warp(image, fixed, u, interpolation, slab=4):
    warp = Warp(image, fixed, interpolation)
    for k0 in range(0, u.shape[0], slab):  # several slabs: the slice index k0 + kk enters the positions
        k1 = min(k0 + slab, u.shape[0])
        warp.consume(SimpleNamespace(u=u[k0:k1], k0=k0, k1=k1))
    return warp, sitk.GetArrayFromImage(warp.finish())


@pytest.mark.parametrize("dtype,interpolation", [(np.int16, "linear"), (np.float32, "linear"), (np.uint8, "nearest"),
                                                 (np.int16, "nearest"), (np.uint8, "linear")])
def test_warp_equals_the_per_voxel_rule_bit_for_bit(dtype, interpolation):
    fixed, geometry = _grids()
    rng = np.random.default_rng(7)
    shape = (8, 11, 13)
    if dtype == np.float32:
        arr = rng.normal(0, 300, shape).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)  # the extremes: rounding clamps
    image = make_image(arr, **geometry)
    u = _displacement(fixed, 11)
    warp, got = _run_warp(image, fixed, u, interpolation)
    integer = np.issubdtype(dtype, np.integer)
    info = np.iinfo(dtype) if integer else None
    want = warp_reference(u, 0, image_ijk_to_lps(fixed), np.linalg.inv(image_ijk_to_lps(image)), arr,
                          interpolation == "linear", 0.0, integer and interpolation == "linear",
                          float(info.min) if integer else 0.0, float(info.max) if integer else 0.0, dtype)
    assert got.dtype == dtype
    background = got == 0
    assert 0.1 < background.mean() < 0.9  # points inside and outside the moving image
    np.testing.assert_array_equal(got, want)


def test_warp_half_voxel_border_and_border_voxels_bit_for_bit():
    """A moving grid shifted by exactly half a voxel (binary-exact spacings): sample points fall exactly on the
    ``-0.5`` / ``n - 0.5`` border and between the border voxels and the outside (clamped neighbours)."""
    fixed = make_image(np.zeros((6, 7, 8), np.uint8), spacing=(0.5, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    arr = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7) * 1.5 - 40.0
    image = make_image(arr, spacing=(0.5, 1.0, 2.0), origin=(0.25, 0.5, 1.0))
    ni, nj, nk = fixed.GetSize()
    u = np.zeros((nk, nj, ni, 3), np.float32)
    u[::2, :, :, 0] = 0.25  # half a voxel more on some slices: exactly on voxel centres and borders
    for interpolation in ("linear", "nearest"):
        warp, got = _run_warp(image, fixed, u, interpolation, slab=2)
        want = warp_reference(u, 0, image_ijk_to_lps(fixed), np.linalg.inv(image_ijk_to_lps(image)), arr,
                              interpolation == "linear", 0.0, False, 0.0, 0.0, np.float32)
        np.testing.assert_array_equal(got, want)
        assert (got[1::2, :, -1] != 0).all()  # index n - 0.5 on the border: inside
        assert (got[::2, :, -1] == 0).all()  # index n: outside


def test_fused_domain_mask_and_identity_slabs():
    """``Warp(..., inside=True)`` gives InsideMoving's mask bit for bit (same continuous indices), and the identity
    slabs of "before" give what a zero displacement gives, mask included."""
    from RegistrationQualityLib.resample import identity_slabs
    from RegistrationQualityLib.similarity import InsideMoving

    fixed, geometry = _grids()
    rng = np.random.default_rng(3)
    image = make_image(rng.integers(-1000, 2000, (8, 11, 13)).astype(np.int16), **geometry)
    u = _displacement(fixed, 5)
    for field in (u, np.zeros_like(u)):
        warp = Warp(image, fixed, "linear", inside=True)
        inside = InsideMoving(image, fixed)
        for k0 in range(0, u.shape[0], 3):
            slab = SimpleNamespace(u=field[k0:k0 + 3], k0=k0, k1=min(k0 + 3, u.shape[0]))
            warp.consume(slab)
            inside.consume(slab)
        np.testing.assert_array_equal(warp.inside, inside.finish())
        assert 0.1 < warp.inside.mean() < 0.95
    zero_image = sitk.GetArrayFromImage(warp.finish())
    before = Warp(image, fixed, "linear", inside=True)
    slabs = identity_slabs(fixed)
    assert [s.u for s in slabs] == [None] * len(slabs) and slabs[-1].k1 == fixed.GetSize()[2]
    for slab in slabs:
        before.consume(slab)
    np.testing.assert_array_equal(before.inside, warp.inside)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(before.finish()), zero_image)
