"""A smooth head-like phantom for threshold tests on real-looking data (issue 16).

Tissue model in fixed space (LPS mm): a brain ellipsoid with a folded (gyri-like) surface, a cortex shell of
``CORTEX_MM``, white matter inside it, two ventricles, and a scalp shell outside a gap. Two renderings:

* ``t1``: a skull-stripped-T1-like image (WM 110, GM 80, CSF 25, scalp 0, background 0, Gaussian noise) on the
  fixed grid (axial, 1.5 mm isotropic).
* ``cbf``: a perfusion-like map (GM 60, WM 34 with low-perfusion blotches down to 7, CSF 2, scalp 4, air 0,
  noise) on a tilted 1.8 x 1.8 x 5 mm grid, with partial-volume averaging (2 x 2 x 4 sub-samples per voxel), of
  the tissue moved by a known rigid transform: the moving image shows at point y the tissue at T^-1(y), with T
  the resampling transform fixed -> moving written as ``good.tfm``.

On the cbf map Otsu's threshold keeps the cortex and drops the white matter: a shell with holes (the issue's
"white-matter holes below threshold"); hole filling turns it back into the brain the t1 threshold shows.
"""

from __future__ import annotations

import numpy as np

from conftest import make_image, rotation_matrix

CORTEX_MM = 4.0
BRAIN_RADII = np.array([62.0, 75.0, 55.0])
TILT = rotation_matrix((1, 0.3, 0), 15.0)
T_ROTATION = rotation_matrix((0.2, 1, 0.4), 7.0)  # resampling transform fixed -> moving: y = R x + t
T_SHIFT = np.array([4.0, -6.0, 3.0])


def _radius_scale(p):
    """Folded surface: the brain boundary at ``r = 1 + 0.04 sin(...)`` in ellipsoid units."""
    u = p / BRAIN_RADII
    r = np.linalg.norm(u, axis=-1)
    theta = np.arctan2(u[..., 1], u[..., 0])
    phi = np.arccos(np.clip(u[..., 2] / np.maximum(r, 1e-9), -1, 1))
    folds = 1.0 + 0.04 * np.sin(9 * theta) * np.sin(7 * phi)
    return r / folds


def tissue(p, seed=3):
    """(n,) tissue class of LPS points (n, 3): 0 air, 1 scalp, 2 CSF, 3 GM, 4 WM (+ WM perfusion factor)."""
    s = _radius_scale(p)
    depth = (1.0 - s) * BRAIN_RADII.min()  # approximate distance inside the brain surface (mm)
    out = np.zeros(p.shape[:-1], np.int8)
    head = np.linalg.norm(p / (BRAIN_RADII + 14.0), axis=-1)
    out[(head <= 1.0) & (s > 1.0 + 6.0 / BRAIN_RADII.min())] = 1  # scalp, outside a CSF/skull gap
    out[(s <= 1.0)] = 3
    out[depth > CORTEX_MM] = 4
    for c in ([-12.0, 5.0, 8.0], [12.0, 5.0, 8.0]):  # ventricles
        v = np.linalg.norm((p - c) / [6.0, 18.0, 9.0], axis=-1) <= 1.0
        out[v] = 2
    return out


def _wm_blotches(p):
    """Low-perfusion white-matter blotches: a smooth factor in [0.2, 1]."""
    f = np.sin(p[..., 0] / 5.0) * np.sin(p[..., 1] / 6.0 + 1.0) * np.sin(p[..., 2] / 5.0 + 2.0)
    return 0.6 + 0.4 * f


def _grid_points(shape_kji, spacing, origin, direction, sub=(1, 1, 1)):
    """LPS points of the voxel centres (or of sub-samples) of a grid: (k, j, i, S, 3)."""
    nk, nj, ni = shape_kji
    offs = [(np.arange(n) + 0.5) / n - 0.5 for n in sub]  # sub-sample offsets in voxel units (i, j, k)
    oi, oj, ok = np.meshgrid(*offs, indexing="ij")
    o = np.stack([oi.ravel(), oj.ravel(), ok.ravel()], 1)  # (S, 3) in (i, j, k)
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    idx = np.stack([i, j, k], -1)[..., None, :].astype(float) + o  # (k, j, i, S, 3)
    d = np.asarray(direction, float).reshape(3, 3)
    return (idx * np.asarray(spacing)) @ d.T + np.asarray(origin)


def t1_image(seed=0):
    spacing, shape = (1.5, 1.5, 1.5), (90, 120, 100)
    origin = -np.array(shape[::-1]) * np.array(spacing) / 2.0
    p = _grid_points(shape, spacing, origin, np.eye(3))[..., 0, :]
    t = tissue(p)
    values = np.array([0.0, 0.0, 25.0, 80.0, 110.0], np.float32)[t]
    rng = np.random.default_rng(seed)
    arr = values + rng.normal(0, 4.0, values.shape).astype(np.float32)
    return make_image(np.clip(arr, 0, None).astype(np.float32), spacing, origin, np.eye(3)), t


def cbf_image(seed=1):
    spacing, shape = (1.8, 1.8, 5.0), (30, 100, 84)
    centre = np.array([0.0, 0.0, 0.0]) + T_SHIFT
    origin = centre - TILT @ (np.array(shape[::-1]) * np.array(spacing) / 2.0)
    y = _grid_points(shape, spacing, origin, TILT, sub=(2, 2, 4))
    x = (y - T_SHIFT) @ T_ROTATION  # T^-1(y) = R^T (y - t), rows: x = (y - t) R
    t = tissue(x)
    values = np.array([0.0, 4.0, 2.0, 60.0, 34.0], np.float32)[t]
    values = np.where(t == 4, values * _wm_blotches(x), values).mean(axis=-1)
    rng = np.random.default_rng(seed)
    arr = values + rng.normal(0, 1.5, values.shape)
    return make_image(np.clip(arr, 0, None).astype(np.float32), spacing, origin, TILT)


def write_case(folder):
    """fixed_t1.nrrd, moving_cbf.nrrd, good.tfm (the exact transform) and identity.tfm in ``folder``."""
    import SimpleITK as sitk

    fixed, _ = t1_image()
    sitk.WriteImage(fixed, str(folder / "fixed_t1.nrrd"))
    sitk.WriteImage(cbf_image(), str(folder / "moving_cbf.nrrd"))
    t = sitk.AffineTransform(3)
    t.SetMatrix(tuple(T_ROTATION.ravel()))
    t.SetTranslation(tuple(T_SHIFT))
    sitk.WriteTransform(t, str(folder / "good.tfm"))
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.0, 0.0, 0.0)), str(folder / "identity.tfm"))
    return folder
