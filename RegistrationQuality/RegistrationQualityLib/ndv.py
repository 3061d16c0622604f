"""Jacobian figures named as others report them: non-diffeomorphic volume (Liu et al.) and Learn2Reg's SDlogJ.

**Non-diffeomorphic volume (NDV)** — Liu Y, Chen J, Wei S, Carass A, Prince J, "On finite difference Jacobian
computation in deformable image registration", IJCV 132:3678-3688, 2024 (reference implementation: the
``digital-diffeomorphism`` package). Central differences can miss folding (a checkerboard field has central
J > 0 everywhere), so each voxel's cube is checked with ten finite-difference Jacobians of the map
``φ(p) = p + u(p)``:

* the eight one-sided stencils ``J_{±±±} = det[D^{±}_i φ, D^{±}_j φ, D^{±}_k φ]`` (every ± combination of the
  forward difference ``D^+ φ = φ(p+e) − φ(p)`` and the backward one ``D^- φ = φ(p) − φ(p−e)`` along i, j, k);
* the two diagonal "star" stencils ``J_{1*} = det[φ(p−e_i−e_j) − φ(p), φ(p−e_i−e_k) − φ(p), φ(p−e_j−e_k) − φ(p)]``
  and ``J_{2*} = det[φ(p+e_i+e_j) − φ(p), φ(p+e_j+e_k) − φ(p), φ(p+e_i+e_k) − φ(p)]`` (each 2 for the identity);

and ``NDV = Σ_voxels Σ_{10 stencils} −½·min(J_s, 0) / 6`` in voxels. Here ``φ`` is physical (LPS mm) and the
determinants are divided by ``det(A)``, ``A = D·S`` (direction × spacing): ``det(A + ΔU)/det(A)`` equals the
index-space determinant of the package (displacement in voxels), so the numbers are the same on any grid.
At the grid border the displacement is extended by its edge value (the package pads with ``mode='edge'``).
Reported in voxels, as % of the region's voxels (Learn2Reg's "% NDV") and in cc (× voxel volume).

**SDlogJ, Learn2Reg convention** — ``std(log(clip(J + 3, 1e-9, 1e9)))`` (population std) of the
central-difference J (``det(I + ∇u)``, the same J as deformation.py), as Learn2Reg's evaluation computes it
(MDL-UzL/L2R ``evaluation/evaluation.py`` and ``evaluation/utils.py``: ``jacobian_determinant`` then
``np.log((jac_det + 3).clip(1e-9, 1e9)).std()``); Learn2Reg also drops a 2-voxel border of the image (its
zero-padded gradients are wrong there), so the region here leaves out the voxels within 2 of a grid face too.
The + 3 shift keeps folded voxels (J ≤ 0) in the statistic, unlike our ``sdlogj`` which excludes them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange  # this module is imported only when a deformation is evaluated

from .errors import require

NDV_SLAB_VOXELS = 1 << 20
LEARN2REG_BORDER = 2


@njit(inline="always", cache=True)
def det3(a0, a1, a2, b0, b1, b2, c0, c1, c2):
    """det of the 3×3 matrix with columns a, b, c."""
    return a0 * (b1 * c2 - b2 * c1) - b0 * (a1 * c2 - a2 * c1) + c0 * (a1 * b2 - a2 * b1)


@njit(parallel=True, cache=True)
def _ndv_kernel(u, first, count, nk_total, k_offset, a_mat, det_a, out):
    """Per-voxel NDV (voxels, float64) of slices ``first .. first+count-1`` of ``u`` ((slices, nj, ni, 3) LPS
    mm with a one-slice halo where the grid has one; ``k_offset`` = the global k index of ``u[0]``)."""
    nj, ni = u.shape[1], u.shape[2]
    for kk in prange(count):
        s = first + kk
        k = k_offset + s
        km = max(k - 1, 0) - k_offset
        kp = min(k + 1, nk_total - 1) - k_offset
        fw = np.empty((3, 3))  # fw[:, d] = φ(p + e_d) − φ(p); bw[:, d] = φ(p) − φ(p − e_d)
        bw = np.empty((3, 3))
        s1 = np.empty((3, 3))
        s2 = np.empty((3, 3))
        for j in range(nj):
            jm, jp = max(j - 1, 0), min(j + 1, nj - 1)
            for i in range(ni):
                im, ip = max(i - 1, 0), min(i + 1, ni - 1)
                for c in range(3):
                    u0 = np.float64(u[s, j, i, c])
                    fw[c, 0] = a_mat[c, 0] + np.float64(u[s, j, ip, c]) - u0
                    fw[c, 1] = a_mat[c, 1] + np.float64(u[s, jp, i, c]) - u0
                    fw[c, 2] = a_mat[c, 2] + np.float64(u[kp, j, i, c]) - u0
                    bw[c, 0] = a_mat[c, 0] + u0 - np.float64(u[s, j, im, c])
                    bw[c, 1] = a_mat[c, 1] + u0 - np.float64(u[s, jm, i, c])
                    bw[c, 2] = a_mat[c, 2] + u0 - np.float64(u[km, j, i, c])
                    # 1*: (−i−j), (−i−k), (−j−k); 2*: (+i+j), (+j+k), (+i+k)
                    s1[c, 0] = -a_mat[c, 0] - a_mat[c, 1] + np.float64(u[s, jm, im, c]) - u0
                    s1[c, 1] = -a_mat[c, 0] - a_mat[c, 2] + np.float64(u[km, j, im, c]) - u0
                    s1[c, 2] = -a_mat[c, 1] - a_mat[c, 2] + np.float64(u[km, jm, i, c]) - u0
                    s2[c, 0] = a_mat[c, 0] + a_mat[c, 1] + np.float64(u[s, jp, ip, c]) - u0
                    s2[c, 1] = a_mat[c, 1] + a_mat[c, 2] + np.float64(u[kp, jp, i, c]) - u0
                    s2[c, 2] = a_mat[c, 0] + a_mat[c, 2] + np.float64(u[kp, j, ip, c]) - u0
                total = 0.0
                for si in range(2):
                    x = fw if si == 0 else bw
                    for sj in range(2):
                        y = fw if sj == 0 else bw
                        for sk in range(2):
                            z = fw if sk == 0 else bw
                            d = det3(x[0, 0], x[1, 0], x[2, 0], y[0, 1], y[1, 1], y[2, 1],
                                     z[0, 2], z[1, 2], z[2, 2]) / det_a
                            if d < 0.0:
                                total -= d
                d = det3(s1[0, 0], s1[1, 0], s1[2, 0], s1[0, 1], s1[1, 1], s1[2, 1],
                         s1[0, 2], s1[1, 2], s1[2, 2]) / det_a
                if d < 0.0:
                    total -= d
                d = det3(s2[0, 0], s2[1, 0], s2[2, 0], s2[0, 1], s2[1, 1], s2[2, 1],
                         s2[0, 2], s2[1, 2], s2[2, 2]) / det_a
                if d < 0.0:
                    total -= d
                out[kk, j, i] = 0.5 * total / 6.0


def ndv_slab(u, first: int, count: int, nk_total: int, k_offset: int, a_mat, det_a: float, out) -> None:
    """Per-voxel NDV of ``count`` slices of a displacement slab (see the compiled kernel); fills ``out``.

    ``u``: (slices, nj, ni, 3) LPS mm of global slices ``k_offset ..``, holding the slices to compute
    (``first ..``) plus one slice of halo each side where the grid has it; ``a_mat`` = D·S (3×3), ``det_a`` its
    determinant; ``out``: (count, nj, ni) float64.
    """
    _ndv_kernel(u, int(first), int(count), int(nk_total), int(k_offset), np.ascontiguousarray(a_mat, dtype=np.float64),
              float(det_a), out)


NDV_KEYS = ("ndv_voxels", "ndv_percent", "ndv_cc")


def non_diffeomorphic_volume(displacement: np.ndarray, reference_image, mask=None, jacobian=None,
                             slab_voxels: int = NDV_SLAB_VOXELS, out_map: np.ndarray | None = None) -> dict:
    """NDV of a (k, j, i, 3) LPS displacement field over a region (whole grid when ``mask`` is None), slab by
    slab (one-slice halo; only a slab's per-voxel values are held): ``ndv_voxels``, ``ndv_percent`` (of the
    region's voxels), ``ndv_cc``. Voxels where ``jacobian`` (when given) is not finite are left out, as in
    jacobian_statistics. ``out_map``: a (k, j, i) float array to receive the per-voxel NDV (tests, maps)."""
    from .deformation import _slabs, reference_grid

    grid = reference_grid(reference_image)
    u = np.asarray(displacement)
    require(u.ndim == 4 and u.shape[3] == 3 and u.shape[:3] == grid.shape, "displacement",
            f"shape {u.shape}; (k, j, i, 3) on the reference grid {grid.shape} is needed")
    m = None if mask is None else np.asarray(mask, dtype=bool)
    jac = None if jacobian is None else np.asarray(jacobian)
    a = grid.ijk_to_lps[:3, :3]
    det_a = float(np.linalg.det(a))
    nk = grid.size[2]
    total, count = 0.0, 0
    for k0, k1 in _slabs(grid, slab_voxels):
        keep = np.ones((k1 - k0,) + grid.shape[1:], dtype=bool) if m is None else m[k0:k1]
        if jac is not None:
            keep = keep & np.isfinite(jac[k0:k1])
        n = int(np.count_nonzero(keep))
        if n == 0 and out_map is None:
            continue
        lo, hi = max(k0 - 1, 0), min(k1 + 1, nk)  # one slice of halo each side
        part = np.empty((k1 - k0,) + grid.shape[1:], dtype=np.float64)
        ndv_slab(u[lo:hi], k0 - lo, k1 - k0, nk, lo, a, det_a, part)
        if out_map is not None:
            out_map[k0:k1] = part
        values = part[keep]
        total += float(values[np.isfinite(values)].sum())
        count += n
    if count == 0:
        out = dict.fromkeys(NDV_KEYS)
        out["ndv_reason"] = "empty region"
        return out
    voxel_mm3 = abs(det_a)
    return {"ndv_voxels": total, "ndv_percent": 100.0 * total / count, "ndv_cc": total * voxel_mm3 / 1000.0}


def sdlogj_learn2reg(jacobian: np.ndarray, mask=None) -> dict:
    """Learn2Reg's SDlogJ ``std(log(clip(J + 3, 1e-9, 1e9)))`` over the region minus a 2-voxel grid border."""
    jac = np.asarray(jacobian)
    region = np.zeros(jac.shape, dtype=bool)
    b = LEARN2REG_BORDER
    inner = tuple(slice(b, n - b) if n > 2 * b else slice(0, 0) for n in jac.shape)
    region[inner] = True
    if mask is not None:
        region &= np.asarray(mask, dtype=bool)
    values = jac[region]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"sdlogj_learn2reg": None, "sdlogj_learn2reg_voxels": 0,
                "sdlogj_learn2reg_reason": "no finite J at least 2 voxels inside the grid in the region"}
    logs = np.log(np.clip(values.astype(np.float64) + 3.0, 1e-9, 1e9))
    return {"sdlogj_learn2reg": float(np.std(logs)), "sdlogj_learn2reg_voxels": int(values.size)}
