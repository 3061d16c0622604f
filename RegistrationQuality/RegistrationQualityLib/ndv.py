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


@njit(inline="always", cache=True)
def _ndv_row(rows, ym, y0, yp, zm_ym, zm_y0, zp_y0, zp_yp, t_lo, t_hi, a, inv, vals):
    """Per-voxel NDV (voxels) of the voxels ``t_lo .. t_hi − 1`` of one row into ``vals``.

    ``rows`` (3 planes k − 1, k, k + 1; 3 slots; 3 components; width + 2) float64: rows of u padded with their
    neighbour (edge value at the grid border) at both ends, ``rows[., ., c, t + 1]`` = voxel t of the box;
    the slots hold the rows j − 1 (``ym``), j (``y0``), j + 1 (``yp``) of plane k, j − 1 and j of plane k − 1,
    j and j + 1 of plane k + 1 (clamped at the grid border, the package's edge padding). ``a`` = A = D·S
    (3×3), ``inv`` = 1/det A.

    The six one-sided difference columns of φ = x + u, then det[x, y, z] = x · (y × z) with the four (y, z)
    cross products shared by the eight one-sided stencils, and the two star stencils. One straight loop over
    the row with every index ``t + constant`` into 1-D arrays (LLVM vectorises it)."""
    a00, a01, a02 = a[0, 0], a[0, 1], a[0, 2]
    a10, a11, a12 = a[1, 0], a[1, 1], a[1, 2]
    a20, a21, a22 = a[2, 0], a[2, 1], a[2, 2]
    u0, u1, u2 = rows[1, y0, 0, t_lo:], rows[1, y0, 1, t_lo:], rows[1, y0, 2, t_lo:]
    ym0, ym1, ym2 = rows[1, ym, 0, t_lo:], rows[1, ym, 1, t_lo:], rows[1, ym, 2, t_lo:]
    yp0, yp1, yp2 = rows[1, yp, 0, t_lo:], rows[1, yp, 1, t_lo:], rows[1, yp, 2, t_lo:]
    zm0, zm1, zm2 = rows[0, zm_y0, 0, t_lo:], rows[0, zm_y0, 1, t_lo:], rows[0, zm_y0, 2, t_lo:]
    zp0, zp1, zp2 = rows[2, zp_y0, 0, t_lo:], rows[2, zp_y0, 1, t_lo:], rows[2, zp_y0, 2, t_lo:]
    zmym0, zmym1, zmym2 = rows[0, zm_ym, 0, t_lo:], rows[0, zm_ym, 1, t_lo:], rows[0, zm_ym, 2, t_lo:]
    zpyp0, zpyp1, zpyp2 = rows[2, zp_yp, 0, t_lo:], rows[2, zp_yp, 1, t_lo:], rows[2, zp_yp, 2, t_lo:]
    out = vals[t_lo:]
    for t in range(t_hi - t_lo):  # indices from 0 (no wrap-around test: vectorised)
        c0, c1, c2 = u0[t + 1], u1[t + 1], u2[t + 1]
        # forward (f) and backward (b) differences of φ along i (x), j (y), k (z): columns of A + ΔU
        fx0 = a00 + u0[t + 2] - c0
        fx1 = a10 + u1[t + 2] - c1
        fx2 = a20 + u2[t + 2] - c2
        bx0 = a00 + c0 - u0[t]
        bx1 = a10 + c1 - u1[t]
        bx2 = a20 + c2 - u2[t]
        fy0 = a01 + yp0[t + 1] - c0
        fy1 = a11 + yp1[t + 1] - c1
        fy2 = a21 + yp2[t + 1] - c2
        by0 = a01 + c0 - ym0[t + 1]
        by1 = a11 + c1 - ym1[t + 1]
        by2 = a21 + c2 - ym2[t + 1]
        fz0 = a02 + zp0[t + 1] - c0
        fz1 = a12 + zp1[t + 1] - c1
        fz2 = a22 + zp2[t + 1] - c2
        bz0 = a02 + c0 - zm0[t + 1]
        bz1 = a12 + c1 - zm1[t + 1]
        bz2 = a22 + c2 - zm2[t + 1]
        # the eight one-sided stencils, (y, z) = (f, f), (f, b), (b, f), (b, b), each with x = f then b
        total = 0.0
        x0, x1, x2 = _cross(fy0, fy1, fy2, fz0, fz1, fz2)
        total += _neg((fx0 * x0 + fx1 * x1 + fx2 * x2) * inv)
        total += _neg((bx0 * x0 + bx1 * x1 + bx2 * x2) * inv)
        x0, x1, x2 = _cross(fy0, fy1, fy2, bz0, bz1, bz2)
        total += _neg((fx0 * x0 + fx1 * x1 + fx2 * x2) * inv)
        total += _neg((bx0 * x0 + bx1 * x1 + bx2 * x2) * inv)
        x0, x1, x2 = _cross(by0, by1, by2, fz0, fz1, fz2)
        total += _neg((fx0 * x0 + fx1 * x1 + fx2 * x2) * inv)
        total += _neg((bx0 * x0 + bx1 * x1 + bx2 * x2) * inv)
        x0, x1, x2 = _cross(by0, by1, by2, bz0, bz1, bz2)
        total += _neg((fx0 * x0 + fx1 * x1 + fx2 * x2) * inv)
        total += _neg((bx0 * x0 + bx1 * x1 + bx2 * x2) * inv)
        # star stencils: 1* = [(−i−j), (−i−k), (−j−k)], 2* = [(+i+j), (+j+k), (+i+k)] (each 2 for the identity)
        p0 = -a00 - a01 + ym0[t] - c0
        p1 = -a10 - a11 + ym1[t] - c1
        p2 = -a20 - a21 + ym2[t] - c2
        q0 = -a00 - a02 + zm0[t] - c0
        q1 = -a10 - a12 + zm1[t] - c1
        q2 = -a20 - a22 + zm2[t] - c2
        r0 = -a01 - a02 + zmym0[t + 1] - c0
        r1 = -a11 - a12 + zmym1[t + 1] - c1
        r2 = -a21 - a22 + zmym2[t + 1] - c2
        x0, x1, x2 = _cross(q0, q1, q2, r0, r1, r2)
        total += _neg((p0 * x0 + p1 * x1 + p2 * x2) * inv)
        p0 = a00 + a01 + yp0[t + 2] - c0
        p1 = a10 + a11 + yp1[t + 2] - c1
        p2 = a20 + a21 + yp2[t + 2] - c2
        q0 = a01 + a02 + zpyp0[t + 1] - c0
        q1 = a11 + a12 + zpyp1[t + 1] - c1
        q2 = a21 + a22 + zpyp2[t + 1] - c2
        r0 = a00 + a02 + zp0[t + 2] - c0
        r1 = a10 + a12 + zp1[t + 2] - c1
        r2 = a20 + a22 + zp2[t + 2] - c2
        x0, x1, x2 = _cross(q0, q1, q2, r0, r1, r2)
        total += _neg((p0 * x0 + p1 * x1 + p2 * x2) * inv)
        out[t] = 0.5 * total / 6.0


@njit(inline="always", cache=True)
def _row_slot(u, plane, s, j, i0, i1, rows, tags):
    """The slot of ``rows[plane]`` holding row ``j`` of slice ``s`` of ``u`` over the box columns ``i0 .. i1 − 1``
    (as float64, with the neighbour column at both ends, clamped at the grid border); filled when not held."""
    slot = j % 3
    if tags[plane, slot] != j:
        ni = u.shape[2]
        src = u[s, j]
        for c in range(3):
            d = rows[plane, slot, c]
            for t in range(i1 - i0):
                d[t + 1] = src[i0 + t, c]
            d[0] = src[max(i0 - 1, 0), c]
            d[i1 - i0 + 1] = src[min(i1, ni - 1), c]
        tags[plane, slot] = j
    return slot


@njit(fastmath={"reassoc", "nsz"}, cache=True)
def _kept_sum(vals, keep, lo, hi, offset):
    """(Σ of the finite ``vals[t]``, count) over t in lo .. hi − 1 with ``keep[t + offset]`` (vectorised; the
    per-row sum may be reassociated: the values are ≥ 0, its relative error stays below (hi − lo)·2^-53)."""
    total, count = 0.0, 0
    for t in range(lo, hi):
        k = keep[t + offset]
        v = vals[t]
        total += v if (k and v < np.inf) else 0.0
        count += 1 if k else 0
    return total, count


@njit(parallel=True, cache=True)
def _ndv_kernel(u, first, count, nk_total, k_offset, a_mat, det_a, box, mask, use_mask, jac, use_jac, want_map,
                out_map, sums):
    """NDV of slices ``first .. first+count-1`` of ``u`` ((slices, nj, ni, 3) LPS mm with a one-slice halo
    where the grid has one; ``k_offset`` = the global k index of ``u[0]``) over the voxels of the (j, i) ``box``
    (j0, j1, i0, i1) that are in ``mask`` (when ``use_mask``; (count, nj, ni) bool) and whose ``jac`` is finite
    (when ``use_jac``; (count, nj, ni)); neighbours are clamped at the grid border (the package's edge padding).

    ``sums[kk]`` = (Σ of the finite per-voxel NDV, number of voxels counted) of slice kk, summed row by row
    (each row's sum added to its slice's); with ``want_map`` the per-voxel NDV of every box voxel goes to
    ``out_map`` ((count, nj, ni) float64). Without a map only the span of a row's kept voxels is computed.
    Each row of u is converted once per slice and plane (a ring of three rows per plane)."""
    nj, ni = u.shape[1], u.shape[2]
    j0, j1, i0, i1 = box[0], box[1], box[2], box[3]
    width = i1 - i0
    inv = 1.0 / det_a
    for kk in prange(count):
        s = first + kk
        k = k_offset + s
        km = max(k - 1, 0) - k_offset
        kp = min(k + 1, nk_total - 1) - k_offset
        rows = np.empty((3, 3, 3, width + 2))
        tags = np.full((3, 3), -1, np.int64)
        vals = np.empty(width)
        keep = np.ones(ni, np.bool_)
        slice_sum, slice_count = 0.0, 0
        for j in range(j0, j1):
            jm, jp = max(j - 1, 0), min(j + 1, nj - 1)
            if use_mask and use_jac:
                mrow, jrow = mask[kk, j], jac[kk, j]
                for i in range(i0, i1):
                    keep[i] = mrow[i] & np.isfinite(jrow[i])
            elif use_mask:
                mrow = mask[kk, j]
                for i in range(i0, i1):
                    keep[i] = mrow[i]
            elif use_jac:
                jrow = jac[kk, j]
                for i in range(i0, i1):
                    keep[i] = np.isfinite(jrow[i])
            lo, hi = i0, i1
            if not want_map:  # only the span of the kept voxels
                while lo < hi and not keep[lo]:
                    lo += 1
                while hi > lo and not keep[hi - 1]:
                    hi -= 1
                if lo == hi:
                    continue
            y0 = _row_slot(u, 1, s, j, i0, i1, rows, tags)
            ym = _row_slot(u, 1, s, jm, i0, i1, rows, tags)
            yp = _row_slot(u, 1, s, jp, i0, i1, rows, tags)
            zm_y0 = _row_slot(u, 0, km, j, i0, i1, rows, tags)
            zm_ym = _row_slot(u, 0, km, jm, i0, i1, rows, tags)
            zp_y0 = _row_slot(u, 2, kp, j, i0, i1, rows, tags)
            zp_yp = _row_slot(u, 2, kp, jp, i0, i1, rows, tags)
            _ndv_row(rows, ym, y0, yp, zm_ym, zm_y0, zp_y0, zp_yp, lo - i0, hi - i0, a_mat, inv, vals)
            row_sum, row_count = _kept_sum(vals, keep, lo - i0, hi - i0, i0)
            slice_sum += row_sum
            slice_count += row_count
            if want_map:
                for t in range(width):
                    out_map[kk, j, i0 + t] = vals[t]
        sums[kk, 0] = slice_sum
        sums[kk, 1] = slice_count


@njit(parallel=True, cache=True)
def _learn2reg_gather(part, k0, j0, i0, nk, nj, ni, border, mask, use_mask, out):
    """``clip(J + 3, 1e-9, 1e9)`` (float64) of the voxels of ``part`` (J of a box: (slices, rows, columns) at global
    (k0, j0, i0) of an (nk, nj, ni) grid) that lie at least ``border`` voxels inside the grid, are in ``mask``
    (when ``use_mask``: (slices, nj, ni), the whole (j, i) extent) and have a finite J, in (k, j, i) order,
    into ``out`` (at least ``part.size`` long); returns their number. Counted per slice, then written at each
    slice's offset."""
    ns, nr, nc = part.shape
    lo_j, hi_j = max(border - j0, 0), min(nj - border - j0, nr)
    lo_i, hi_i = max(border - i0, 0), min(ni - border - i0, nc)
    counts = np.zeros(ns + 1, np.int64)
    if nj <= 2 * border or ni <= 2 * border:
        return 0
    for kk in prange(ns):
        k = k0 + kk
        if k < border or k >= nk - border:
            continue
        n = 0
        for j in range(lo_j, hi_j):
            row = part[kk, j]
            mrow = mask[kk, j0 + j] if use_mask else mask[0, 0]
            for i in range(lo_i, hi_i):
                n += 1 if (np.isfinite(row[i]) and ((not use_mask) or mrow[i0 + i])) else 0
        counts[kk + 1] = n
    offsets = np.cumsum(counts)
    for kk in prange(ns):
        k = k0 + kk
        if k < border or k >= nk - border:
            continue
        t = offsets[kk]
        for j in range(lo_j, hi_j):
            row = part[kk, j]
            mrow = mask[kk, j0 + j] if use_mask else mask[0, 0]
            for i in range(lo_i, hi_i):
                if np.isfinite(row[i]) and ((not use_mask) or mrow[i0 + i]):
                    out[t] = min(max(np.float64(row[i]) + 3.0, 1e-9), 1e9)
                    t += 1
    return offsets[ns]


NDV_KEYS = ("ndv_voxels", "ndv_percent", "ndv_cc")


def _mask_box(mask, shape) -> tuple:
    """(j0, j1, i0, i1): the (j, i) bounding box of ``mask``'s voxels (the whole (j, i) extent when None)."""
    nj, ni = shape[1], shape[2]
    if mask is None:
        return 0, nj, 0, ni
    rows, cols = np.flatnonzero(mask.any(axis=(0, 2))), np.flatnonzero(mask.any(axis=(0, 1)))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


_NOTHING = np.zeros((1, 1, 1), dtype=bool)  # stands for an absent mask / J slab in the kernels
_NO_VALUES = np.zeros((1, 1, 1), dtype=np.float32)
_NO_MAP = np.zeros((1, 1, 1), dtype=np.float64)


class NonDiffeomorphicVolume:
    """Consumer of :func:`transforms.stream` (``halo=True``): the NDV over ``mask`` (whole grid when None).

    Per slab one compiled pass over ``slab.u_halo`` (the sampled displacement with its one-slice halo) within
    the mask's (j, i) box: every voxel has its true neighbours (clamped at the grid border: the package's edge
    padding), and only the voxels in the mask whose J (``slab.jacobian()``) is finite are summed and counted,
    as in the Jacobian statistics. ``finish()`` -> ``{"ndv_voxels", "ndv_percent", "ndv_cc"}``. ``out_map``
    (k, j, i): receives the per-voxel NDV of every voxel (then the whole (j, i) extent is computed).
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
        self.box = np.array(_mask_box(self.mask if out_map is None else None, self.shape), np.int64)
        self.total, self.count = 0.0, 0

    def consume(self, slab) -> None:
        k0, k1 = slab.k0, slab.k1
        want_map = self.out_map is not None
        if not want_map and (self.box[0] == self.box[1] or (self.mask is not None and not self.mask[k0:k1].any())):
            return
        mask = _NOTHING if self.mask is None else self.mask[k0:k1]
        jac = np.ascontiguousarray(slab.jacobian()) if self.check_jacobian else _NO_VALUES
        sums = np.zeros((k1 - k0, 2))
        _ndv_kernel(slab.u_halo, int(slab.first), k1 - k0, int(slab.nk), int(slab.k_offset), self.a, self.det_a,
                    self.box, mask, self.mask is not None, jac, self.check_jacobian, want_map,
                    self.out_map[k0:k1] if want_map else _NO_MAP, sums)
        for total, count in sums:
            self.total += float(total)
            self.count += int(count)

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
        self._part = self._values = None  # buffers kept from slab to slab
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
        shape = (slab.k1 - slab.k0, j1 - j0, i1 - i0)
        if self._part is None or self._part.size < int(np.prod(shape)):
            self._part = np.empty(int(np.prod(shape)), np.float32)  # kept from slab to slab (no page faults)
        part = self._part[:int(np.prod(shape))].reshape(shape)
        fd_jacobian_slab(slab.u_halo[:, j0:j1, i0:i1], slab.first, slab.k1 - slab.k0, slab.nk, slab.k_offset, self.a,
                         self.det_a, part)
        self._consume_box(slab.k0, part, j0, i0)

    def consume_jacobian(self, k0: int, k1: int, det: np.ndarray) -> None:
        """Merge the J of slices ``k0 .. k1 − 1`` (``det``: (k1 − k0, nj, ni), the whole (j, i) extent)."""
        self._consume_box(k0, np.ascontiguousarray(det), 0, 0)

    def _consume_box(self, k0: int, part: np.ndarray, j0: int, i0: int) -> None:
        """Merge the J of a box of slices (``part`` (slices, rows, columns) at global (k0, j0, i0)): the region's
        finite values as ``clip(J + 3, 1e-9, 1e9)`` (float64, in (k, j, i) order) gathered by one compiled pass,
        numpy's float64 log and mean of the batch, its centred sum of squares (kernels.moments_pass2), merged
        by Chan's update."""
        from .deformation import _chan_merge
        from .kernels import moments_pass2

        nk, nj, ni = self.shape
        if self._values is None or self._values.size < part.size:
            self._values = np.empty(part.size)
        mask = _NOTHING if self.mask is None else self.mask[k0:k0 + part.shape[0]]
        n = _learn2reg_gather(part, k0, j0, i0, nk, nj, ni, LEARN2REG_BORDER, mask, self.mask is not None,
                              self._values)
        if n == 0:
            return
        logs = np.log(self._values[:n], out=self._values[:n])
        mc = float(logs.mean())
        m2 = float(moments_pass2(logs, max(1, min(64, n // (1 << 16))), mc).sum())
        _chan_merge(self.moments, n, mc, m2)

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
