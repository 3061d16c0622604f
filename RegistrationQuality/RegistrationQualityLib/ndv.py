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

import math

import numpy as np
from numba import njit, prange  # this module is imported only when a deformation is evaluated

from .errors import require

NDV_SLAB_VOXELS = 1 << 20
LEARN2REG_BORDER = 2


@njit(inline="always", cache=True)
def _cross(b0, b1, b2, c0, c1, c2):
    return b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0


@njit(inline="always", cache=True)
def _neg(d):
    return -d if d < 0.0 else 0.0


@njit(parallel=True, cache=True)
def _ndv_kernel(u, first, count, nk_total, k_offset, a_mat, det_a, out):
    """Per-voxel NDV (voxels, float64) of slices ``first .. first+count-1`` of ``u`` ((slices, nj, ni, 3) LPS
    mm with a one-slice halo where the grid has one; ``k_offset`` = the global k index of ``u[0]``).

    Scalar form: the six one-sided difference columns of φ = x + u, then det[x, y, z] = x · (y × z) with the four
    (y, z) cross products shared by the eight one-sided stencils, and the two star stencils."""
    nj, ni = u.shape[1], u.shape[2]
    a00, a01, a02 = a_mat[0, 0], a_mat[0, 1], a_mat[0, 2]
    a10, a11, a12 = a_mat[1, 0], a_mat[1, 1], a_mat[1, 2]
    a20, a21, a22 = a_mat[2, 0], a_mat[2, 1], a_mat[2, 2]
    inv = 1.0 / det_a
    for kk in prange(count):
        s = first + kk
        k = k_offset + s
        km = max(k - 1, 0) - k_offset
        kp = min(k + 1, nk_total - 1) - k_offset
        for j in range(nj):
            jm, jp = max(j - 1, 0), min(j + 1, nj - 1)
            for i in range(ni):
                im, ip = max(i - 1, 0), min(i + 1, ni - 1)
                c0, c1, c2 = np.float64(u[s, j, i, 0]), np.float64(u[s, j, i, 1]), np.float64(u[s, j, i, 2])
                # forward (f) and backward (b) differences of φ along i (x), j (y), k (z): columns of A + ΔU
                fx0 = a00 + u[s, j, ip, 0] - c0
                fx1 = a10 + u[s, j, ip, 1] - c1
                fx2 = a20 + u[s, j, ip, 2] - c2
                bx0 = a00 + c0 - u[s, j, im, 0]
                bx1 = a10 + c1 - u[s, j, im, 1]
                bx2 = a20 + c2 - u[s, j, im, 2]
                fy0 = a01 + u[s, jp, i, 0] - c0
                fy1 = a11 + u[s, jp, i, 1] - c1
                fy2 = a21 + u[s, jp, i, 2] - c2
                by0 = a01 + c0 - u[s, jm, i, 0]
                by1 = a11 + c1 - u[s, jm, i, 1]
                by2 = a21 + c2 - u[s, jm, i, 2]
                fz0 = a02 + u[kp, j, i, 0] - c0
                fz1 = a12 + u[kp, j, i, 1] - c1
                fz2 = a22 + u[kp, j, i, 2] - c2
                bz0 = a02 + c0 - u[km, j, i, 0]
                bz1 = a12 + c1 - u[km, j, i, 1]
                bz2 = a22 + c2 - u[km, j, i, 2]
                total = 0.0
                for yz in range(4):
                    if yz == 0:
                        y0, y1, y2, z0, z1, z2 = fy0, fy1, fy2, fz0, fz1, fz2
                    elif yz == 1:
                        y0, y1, y2, z0, z1, z2 = fy0, fy1, fy2, bz0, bz1, bz2
                    elif yz == 2:
                        y0, y1, y2, z0, z1, z2 = by0, by1, by2, fz0, fz1, fz2
                    else:
                        y0, y1, y2, z0, z1, z2 = by0, by1, by2, bz0, bz1, bz2
                    x0, x1, x2 = _cross(y0, y1, y2, z0, z1, z2)
                    total += _neg((fx0 * x0 + fx1 * x1 + fx2 * x2) * inv)
                    total += _neg((bx0 * x0 + bx1 * x1 + bx2 * x2) * inv)
                # star stencils: 1* = [(−i−j), (−i−k), (−j−k)], 2* = [(+i+j), (+j+k), (+i+k)] (each 2 for the identity)
                p0 = -a00 - a01 + u[s, jm, im, 0] - c0
                p1 = -a10 - a11 + u[s, jm, im, 1] - c1
                p2 = -a20 - a21 + u[s, jm, im, 2] - c2
                q0 = -a00 - a02 + u[km, j, im, 0] - c0
                q1 = -a10 - a12 + u[km, j, im, 1] - c1
                q2 = -a20 - a22 + u[km, j, im, 2] - c2
                r0 = -a01 - a02 + u[km, jm, i, 0] - c0
                r1 = -a11 - a12 + u[km, jm, i, 1] - c1
                r2 = -a21 - a22 + u[km, jm, i, 2] - c2
                x0, x1, x2 = _cross(q0, q1, q2, r0, r1, r2)
                total += _neg((p0 * x0 + p1 * x1 + p2 * x2) * inv)
                p0 = a00 + a01 + u[s, jp, ip, 0] - c0
                p1 = a10 + a11 + u[s, jp, ip, 1] - c1
                p2 = a20 + a21 + u[s, jp, ip, 2] - c2
                q0 = a01 + a02 + u[kp, jp, i, 0] - c0
                q1 = a11 + a12 + u[kp, jp, i, 1] - c1
                q2 = a21 + a22 + u[kp, jp, i, 2] - c2
                r0 = a00 + a02 + u[kp, j, ip, 0] - c0
                r1 = a10 + a12 + u[kp, j, ip, 1] - c1
                r2 = a20 + a22 + u[kp, j, ip, 2] - c2
                x0, x1, x2 = _cross(q0, q1, q2, r0, r1, r2)
                total += _neg((p0 * x0 + p1 * x1 + p2 * x2) * inv)
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


class NonDiffeomorphicVolume:
    """Consumer of :func:`transforms.stream` (``halo=True``): the NDV over ``mask`` (whole grid when None).

    Per slab the kernel runs on ``slab.u_halo`` (the sampled displacement with its one-slice halo), on the
    mask's (j, i) box plus a one-voxel halo only (every voxel of the box then has its true neighbours; the
    kernel clamps at the edges of what it is given, which is the package's edge padding at the grid border).
    Voxels whose J (``slab.jacobian()``) is not finite are left out, as in the Jacobian statistics.
    ``finish()`` -> ``{"ndv_voxels", "ndv_percent", "ndv_cc"}``. ``out_map`` (k, j, i): receives the per-voxel
    NDV of every voxel (then the whole (j, i) extent is computed).
    """

    def __init__(self, fixed_image, mask=None, out_map: np.ndarray | None = None, check_jacobian: bool = True):
        from .deformation import reference_grid

        grid = reference_grid(fixed_image)
        self.a = np.ascontiguousarray(grid.ijk_to_lps[:3, :3])
        self.det_a = float(np.linalg.det(self.a))
        self.shape = grid.shape
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        require(self.mask is None or self.mask.shape == self.shape, "mask",
                f"shape {None if self.mask is None else self.mask.shape} does not match the grid {self.shape}")
        self.out_map = out_map
        self.check_jacobian = check_jacobian
        nk, nj, ni = self.shape
        self.box = (0, nj, 0, ni)
        if self.mask is not None and out_map is None:
            rows, cols = np.flatnonzero(self.mask.any(axis=(0, 2))), np.flatnonzero(self.mask.any(axis=(0, 1)))
            if rows.size:
                self.box = (max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, nj),
                            max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, ni))
        self.total, self.count = 0.0, 0

    def consume(self, slab) -> None:
        k0, k1 = slab.k0, slab.k1
        keep = np.ones((k1 - k0,) + self.shape[1:], dtype=bool) if self.mask is None else self.mask[k0:k1]
        if self.check_jacobian:
            keep = keep & np.isfinite(slab.jacobian())
        n = int(np.count_nonzero(keep))
        if n == 0 and self.out_map is None:
            return
        j0, j1, i0, i1 = self.box
        part = np.empty((k1 - k0, j1 - j0, i1 - i0), dtype=np.float64)
        ndv_slab(slab.u_halo[:, j0:j1, i0:i1], slab.first, k1 - k0, slab.nk, slab.k_offset, self.a, self.det_a,
                 part)
        if self.out_map is not None:
            self.out_map[k0:k1] = part
        values = part[keep[:, j0:j1, i0:i1]]
        self.total += float(values[np.isfinite(values)].sum())
        self.count += n

    def finish(self) -> dict:
        if self.count == 0:
            out = dict.fromkeys(NDV_KEYS)
            out["ndv_reason"] = "empty region"
            return out
        return {"ndv_voxels": self.total, "ndv_percent": 100.0 * self.total / self.count,
                "ndv_cc": self.total * abs(self.det_a) / 1000.0}


class Learn2RegSDlogJ:
    """Consumer of :func:`transforms.stream` (``halo=True``): Learn2Reg's SDlogJ over ``mask`` minus a 2-voxel
    grid border, ``std(log(clip(J + 3, 1e-9, 1e9)))`` of the **central-difference** J of the sampled
    displacement (Learn2Reg differentiates the displacement field; for a parametric transform our ``jacobian``
    is analytic, so it is recomputed here the Learn2Reg way), accumulated per slab (Chan's pairwise update)."""

    def __init__(self, fixed_image, mask=None):
        from .deformation import reference_grid

        grid = reference_grid(fixed_image)
        self.a = np.ascontiguousarray(grid.ijk_to_lps[:3, :3])
        self.det_a = float(np.linalg.det(self.a))
        self.shape = grid.shape
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.moments = [0, 0.0, 0.0]  # count, mean, Σ(x − mean)² of log(clip(J + 3))
        nk, nj, ni = self.shape
        self.box = (0, nj, 0, ni)  # with a mask: its (j, i) box plus a one-voxel halo (true neighbours inside)
        if self.mask is not None:
            rows, cols = np.flatnonzero(self.mask.any(axis=(0, 2))), np.flatnonzero(self.mask.any(axis=(0, 1)))
            if rows.size:
                self.box = (max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, nj),
                            max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, ni))

    def consume(self, slab) -> None:
        from .kernels import fd_jacobian_slab

        if self.mask is not None and not self.mask[slab.k0:slab.k1].any():
            return
        j0, j1, i0, i1 = self.box
        det = np.full((slab.k1 - slab.k0,) + self.shape[1:], np.nan, np.float32)
        part = np.empty((slab.k1 - slab.k0, j1 - j0, i1 - i0), np.float32)
        fd_jacobian_slab(slab.u_halo[:, j0:j1, i0:i1], slab.first, slab.k1 - slab.k0, slab.nk, slab.k_offset, self.a,
                         self.det_a, part)
        det[:, j0:j1, i0:i1] = part
        self.consume_jacobian(slab.k0, slab.k1, det)

    def consume_jacobian(self, k0: int, k1: int, det: np.ndarray) -> None:
        b = LEARN2REG_BORDER
        nk, nj, ni = self.shape
        region = np.zeros(det.shape, dtype=bool)
        ks = np.arange(k0, k1)
        inner_k = (ks >= b) & (ks < nk - b)
        if nj > 2 * b and ni > 2 * b:
            region[inner_k, b:nj - b, b:ni - b] = True
        if self.mask is not None:
            region &= self.mask[k0:k1]
        values = det[region]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        logs = np.log(np.clip(values.astype(np.float64) + 3.0, 1e-9, 1e9))
        from .deformation import _chan_merge

        mc = float(logs.mean())
        _chan_merge(self.moments, logs.size, mc, float(np.dot(logs - mc, logs - mc)))

    def finish(self) -> dict:
        n, _mean, m2 = self.moments
        if n == 0:
            return {"sdlogj_learn2reg": None, "sdlogj_learn2reg_voxels": 0,
                    "sdlogj_learn2reg_reason": "no finite J at least 2 voxels inside the grid in the region"}
        return {"sdlogj_learn2reg": math.sqrt(m2 / n), "sdlogj_learn2reg_voxels": int(n)}


class _ArraySlab:
    """A slab of a whole (k, j, i, 3) displacement array, shaped as transforms.stream's (tests, arrays)."""

    def __init__(self, u, k0, k1, jacobian=None):
        nk = u.shape[0]
        lo, hi = max(k0 - 1, 0), min(k1 + 1, nk)
        self.k0, self.k1, self.nk = k0, k1, nk
        self.u = u[k0:k1]
        self.u_halo, self.first, self.k_offset = u[lo:hi], k0 - lo, lo
        self._jacobian = jacobian

    def jacobian(self):
        return self._jacobian[self.k0:self.k1]


def _array_slabs(u, jacobian, slab_voxels):
    nk, nj, ni = u.shape[:3]
    step = max(1, int(slab_voxels) // max(1, ni * nj))
    for k0 in range(0, nk, step):
        yield _ArraySlab(u, k0, min(nk, k0 + step), jacobian)


def non_diffeomorphic_volume(displacement: np.ndarray, reference_image, mask=None, jacobian=None,
                             slab_voxels: int = NDV_SLAB_VOXELS, out_map: np.ndarray | None = None) -> dict:
    """:class:`NonDiffeomorphicVolume` of a whole (k, j, i, 3) LPS displacement array (``jacobian``: leave out
    the voxels where it is not finite)."""
    from .deformation import reference_grid

    grid = reference_grid(reference_image)
    u = np.asarray(displacement)
    require(u.ndim == 4 and u.shape[3] == 3 and u.shape[:3] == grid.shape, "displacement",
            f"shape {u.shape}; (k, j, i, 3) on the reference grid {grid.shape} is needed")
    consumer = NonDiffeomorphicVolume(grid, mask, out_map, check_jacobian=jacobian is not None)
    for slab in _array_slabs(u, None if jacobian is None else np.asarray(jacobian), slab_voxels):
        consumer.consume(slab)
    return consumer.finish()


def sdlogj_learn2reg(jacobian: np.ndarray, mask=None) -> dict:
    """Learn2Reg's SDlogJ of a whole J map (see :class:`Learn2RegSDlogJ`) over ``mask`` minus a 2-voxel border."""
    from .deformation import Grid

    jac = np.asarray(jacobian)
    consumer = Learn2RegSDlogJ(Grid(tuple(jac.shape)[::-1], np.eye(4)), mask)  # only the shape matters here
    consumer.consume_jacobian(0, jac.shape[0], jac)
    return consumer.finish()
