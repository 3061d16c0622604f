"""Compiled (numba) kernels for the hot loops: evaluating a registration at every fixed voxel, warping images
and labelmaps through it, finite-difference Jacobians and the similarity sums / joint histogram.

Every kernel works on one z-slab of the fixed grid (slices ``k0 .. k1-1``) and is parallel over the slab's
rows (``prange``); the number of threads follows :func:`set_threads` (the cohort's per-worker split).
``cache=True`` keeps the compiled machine code in ``__pycache__`` so that only the very first run of an
installation pays the compile time (measured in docs/deformation.md).

Conventions: points are LPS millimetres in float64; a slab's displacement ``u = T(x) - x`` is float32 of shape
(slices, nj, ni, 3) (SimpleITK/numpy order); matrices are 4×4 homogeneous.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit, prange

# component kinds of a chain (see transforms.Chain)
LINEAR, BSPLINE = 0, 1


def set_threads(threads: int | None) -> None:
    """Use ``threads`` threads in the kernels (None: all cores, or ``RQ_THREADS`` when set)."""
    import numba

    if threads is None:
        threads = int(os.environ.get("RQ_THREADS", "0") or 0) or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


@njit(cache=True, inline="always")
def _weights(f, w, dw):
    """Cubic B-spline weights of the 4 control points from ``start = floor(g) - 1`` (f = frac(g)) and their
    derivatives with respect to g."""
    g = 1.0 - f
    w[0] = g * g * g / 6.0
    w[1] = (3.0 * f * f * f - 6.0 * f * f + 4.0) / 6.0
    w[2] = (-3.0 * f * f * f + 3.0 * f * f + 3.0 * f + 1.0) / 6.0
    w[3] = f * f * f / 6.0
    dw[0] = -0.5 * g * g
    dw[1] = 1.5 * f * f - 2.0 * f
    dw[2] = -1.5 * f * f + f + 0.5
    dw[3] = 0.5 * f * f


@njit(parallel=True, cache=True)
def chain_slab(k0, k1, ni, nj, ijk_to_lps, kinds, mats, coef, offsets, sizes, want_det, out_u, out_det):
    """u = T(x) - x (float32) and, when ``want_det``, det of the spatial Jacobian of T (float32) at the fixed voxel
    centres of slices k0..k1-1, T a chain of components applied in order (elastix's composition).

    ``kinds[c]``: LINEAR (``mats[c]``: the 4×4 matrix p -> A p + t) or BSPLINE (``mats[c][:3, :3]``: LPS ->
    continuous control-point index ``(D·S)^-1``, ``mats[c][:3, 3]``: the grid origin; the index is computed as ITK
    does, ``(D·S)^-1 (p - o)``, and the voxel centres as ``o + m·ijk`` summed in ITK's order, so that points on the
    edge of the valid region fall on the same side as in ITK/elastix); coefficients ``coef[offsets[c]:]``, shape (3, nz, ny, nx) flattened, ``sizes[c]`` =
    (nx, ny, nz)). A B-spline moves a point only inside its valid region ``1 <= g < n - 2`` on every axis (all
    4×4×4 control points present), elastix's and ITK's rule; elsewhere it is the identity (Jacobian I).
    """
    ncomp = kinds.shape[0]
    for kk in prange(k1 - k0):
        k = k0 + kk
        w = np.empty((3, 4))
        dw = np.empty((3, 4))
        p = np.empty(3)
        q = np.empty(3)
        f = np.empty((3, 3))
        t = np.empty((3, 3))
        dg = np.empty((3, 3))
        s0 = np.empty(3, np.int64)
        for j in range(nj):
            for i in range(ni):
                x0 = ijk_to_lps[0, 3] + ijk_to_lps[0, 0] * i + ijk_to_lps[0, 1] * j + ijk_to_lps[0, 2] * k
                x1 = ijk_to_lps[1, 3] + ijk_to_lps[1, 0] * i + ijk_to_lps[1, 1] * j + ijk_to_lps[1, 2] * k
                x2 = ijk_to_lps[2, 3] + ijk_to_lps[2, 0] * i + ijk_to_lps[2, 1] * j + ijk_to_lps[2, 2] * k
                p[0], p[1], p[2] = x0, x1, x2
                for a in range(3):
                    for b in range(3):
                        f[a, b] = 1.0 if a == b else 0.0
                for c in range(ncomp):
                    m = mats[c]
                    if kinds[c] == LINEAR:
                        for a in range(3):
                            q[a] = m[a, 0] * p[0] + m[a, 1] * p[1] + m[a, 2] * p[2] + m[a, 3]
                        if want_det:
                            for a in range(3):
                                for b in range(3):
                                    t[a, b] = m[a, 0] * f[0, b] + m[a, 1] * f[1, b] + m[a, 2] * f[2, b]
                            for a in range(3):
                                for b in range(3):
                                    f[a, b] = t[a, b]
                        p[0], p[1], p[2] = q[0], q[1], q[2]
                        continue
                    nx, ny, nz = sizes[c, 0], sizes[c, 1], sizes[c, 2]
                    inside = True
                    for a in range(3):
                        g = m[a, 0] * (p[0] - m[0, 3]) + m[a, 1] * (p[1] - m[1, 3]) + m[a, 2] * (p[2] - m[2, 3])
                        n = sizes[c, a]
                        if not (g >= 1.0 and g < n - 2.0):
                            inside = False
                            break
                        fl = math.floor(g)
                        s0[a] = int(fl) - 1
                        _weights(g - fl, w[a], dw[a])
                    if not inside:
                        continue
                    base = offsets[c]
                    plane = nx * ny
                    comp_stride = plane * nz
                    for a in range(3):
                        q[a] = 0.0
                        for b in range(3):
                            dg[a, b] = 0.0
                    for zz in range(4):
                        for yy in range(4):
                            row = base + (s0[2] + zz) * plane + (s0[1] + yy) * nx + s0[0]
                            wyz = w[1, yy] * w[2, zz]
                            dy = dw[1, yy] * w[2, zz]
                            dz = w[1, yy] * dw[2, zz]
                            for xx in range(4):
                                wx = w[0, xx]
                                ww = wx * wyz
                                if want_det:
                                    gx = dw[0, xx] * wyz
                                    gy = wx * dy
                                    gz = wx * dz
                                for a in range(3):
                                    v = coef[row + a * comp_stride + xx]
                                    q[a] += v * ww
                                    if want_det:
                                        dg[a, 0] += v * gx
                                        dg[a, 1] += v * gy
                                        dg[a, 2] += v * gz
                    if want_det:
                        # d(displacement)/dp = (d/dg) · (dg/dp); F <- (I + dU/dp) F
                        for a in range(3):
                            for b in range(3):
                                t[a, b] = dg[a, 0] * m[0, b] + dg[a, 1] * m[1, b] + dg[a, 2] * m[2, b]
                            t[a, a] += 1.0
                        for a in range(3):
                            for b in range(3):
                                dg[a, b] = t[a, 0] * f[0, b] + t[a, 1] * f[1, b] + t[a, 2] * f[2, b]
                        for a in range(3):
                            for b in range(3):
                                f[a, b] = dg[a, b]
                    for a in range(3):
                        p[a] += q[a]
                out_u[kk, j, i, 0] = p[0] - x0
                out_u[kk, j, i, 1] = p[1] - x1
                out_u[kk, j, i, 2] = p[2] - x2
                if want_det:
                    out_det[kk, j, i] = (f[0, 0] * (f[1, 1] * f[2, 2] - f[1, 2] * f[2, 1])
                                         - f[0, 1] * (f[1, 0] * f[2, 2] - f[1, 2] * f[2, 0])
                                         + f[0, 2] * (f[1, 0] * f[2, 1] - f[1, 1] * f[2, 0]))


@njit(parallel=True, cache=True)
def fd_jacobian_slab(u, first, count, nk_total, k_offset, a_mat, det_a, out):
    """det(I + ∂u/∂x) of slices ``first .. first+count-1`` of ``u`` (a slab with its halo; ``k_offset`` = the
    global index of ``u[0]``): index-space central differences (one-sided at the grid border, 0 along an axis of
    size 1) made physical with ``A = D·S``: ``J = det(A + ∂u/∂ijk) / det(A)``, in float64."""
    ns, nj, ni = u.shape[0], u.shape[1], u.shape[2]
    for kk in prange(count):
        s = first + kk
        k = k_offset + s
        klo = max(k - 1, 0) - k_offset
        khi = min(k + 1, nk_total - 1) - k_offset
        kscale = 1.0 / max(khi - klo, 1)
        f = np.empty((3, 3))
        for j in range(nj):
            jlo, jhi = max(j - 1, 0), min(j + 1, nj - 1)
            jscale = 1.0 / max(jhi - jlo, 1)
            for i in range(ni):
                ilo, ihi = max(i - 1, 0), min(i + 1, ni - 1)
                iscale = 1.0 / max(ihi - ilo, 1)
                for a in range(3):
                    f[a, 0] = a_mat[a, 0] + (np.float64(u[s, j, ihi, a]) - np.float64(u[s, j, ilo, a])) * iscale
                    f[a, 1] = a_mat[a, 1] + (np.float64(u[s, jhi, i, a]) - np.float64(u[s, jlo, i, a])) * jscale
                    if ns > 1 and nk_total > 1:
                        f[a, 2] = a_mat[a, 2] + (np.float64(u[khi, j, i, a]) - np.float64(u[klo, j, i, a])) * kscale
                    else:
                        f[a, 2] = a_mat[a, 2]
                det = (f[0, 0] * (f[1, 1] * f[2, 2] - f[1, 2] * f[2, 1])
                       - f[0, 1] * (f[1, 0] * f[2, 2] - f[1, 2] * f[2, 0])
                       + f[0, 2] * (f[1, 0] * f[2, 1] - f[1, 1] * f[2, 0]))
                out[kk, j, i] = det / det_a


@njit(parallel=True, cache=True)
def warp_slab(u, k0, ijk_to_lps, lps_to_index, image, linear, background, rounding, lo_clip, hi_clip, out):
    """The image sampled at T(x) = x + u(x) for the fixed voxels of slices k0.. (``u``: that slab's displacement).

    ``lps_to_index``: moving LPS -> continuous voxel index (i, j, k). Inside = index within half a voxel of the
    image's voxel centres (``-0.5 <= g <= n - 0.5``, VTK reslice's default border); outside -> ``background``.
    Linear: trilinear weights over the neighbours clamped at the border; nearest: floor(g + 0.5), clamped.
    ``rounding``: round to the nearest integer (floor(v + 0.5)) and clamp to [lo_clip, hi_clip] (integer outputs,
    as VTK does when it writes an integer image).
    """
    nz, ny, nx = image.shape
    ns, nj, ni = u.shape[0], u.shape[1], u.shape[2]
    for kk in prange(ns):
        k = k0 + kk
        for j in range(nj):
            for i in range(ni):
                y0 = ijk_to_lps[0, 0] * i + ijk_to_lps[0, 1] * j + ijk_to_lps[0, 2] * k + ijk_to_lps[0, 3] + u[kk, j, i, 0]
                y1 = ijk_to_lps[1, 0] * i + ijk_to_lps[1, 1] * j + ijk_to_lps[1, 2] * k + ijk_to_lps[1, 3] + u[kk, j, i, 1]
                y2 = ijk_to_lps[2, 0] * i + ijk_to_lps[2, 1] * j + ijk_to_lps[2, 2] * k + ijk_to_lps[2, 3] + u[kk, j, i, 2]
                gx = lps_to_index[0, 0] * y0 + lps_to_index[0, 1] * y1 + lps_to_index[0, 2] * y2 + lps_to_index[0, 3]
                gy = lps_to_index[1, 0] * y0 + lps_to_index[1, 1] * y1 + lps_to_index[1, 2] * y2 + lps_to_index[1, 3]
                gz = lps_to_index[2, 0] * y0 + lps_to_index[2, 1] * y1 + lps_to_index[2, 2] * y2 + lps_to_index[2, 3]
                if not (gx >= -0.5 and gx <= nx - 0.5 and gy >= -0.5 and gy <= ny - 0.5 and gz >= -0.5
                        and gz <= nz - 0.5):
                    out[kk, j, i] = background
                    continue
                if not linear:
                    ix = min(max(int(math.floor(gx + 0.5)), 0), nx - 1)
                    iy = min(max(int(math.floor(gy + 0.5)), 0), ny - 1)
                    iz = min(max(int(math.floor(gz + 0.5)), 0), nz - 1)
                    out[kk, j, i] = image[iz, iy, ix]
                    continue
                fx, fy, fz = math.floor(gx), math.floor(gy), math.floor(gz)
                tx, ty, tz = gx - fx, gy - fy, gz - fz
                x_a, y_a, z_a = int(fx), int(fy), int(fz)
                x_b, y_b, z_b = min(max(x_a + 1, 0), nx - 1), min(max(y_a + 1, 0), ny - 1), min(max(z_a + 1, 0), nz - 1)
                x_a, y_a, z_a = min(max(x_a, 0), nx - 1), min(max(y_a, 0), ny - 1), min(max(z_a, 0), nz - 1)
                v = ((1 - tz) * ((1 - ty) * ((1 - tx) * np.float64(image[z_a, y_a, x_a]) + tx * np.float64(image[z_a, y_a, x_b]))
                                 + ty * ((1 - tx) * np.float64(image[z_a, y_b, x_a]) + tx * np.float64(image[z_a, y_b, x_b])))
                     + tz * ((1 - ty) * ((1 - tx) * np.float64(image[z_b, y_a, x_a]) + tx * np.float64(image[z_b, y_a, x_b]))
                             + ty * ((1 - tx) * np.float64(image[z_b, y_b, x_a]) + tx * np.float64(image[z_b, y_b, x_b]))))
                if rounding:
                    v = min(max(math.floor(v + 0.5), lo_clip), hi_clip)
                out[kk, j, i] = v


@njit(parallel=True, cache=True)
def inside_slab(u, k0, ijk_to_lps, lps_to_index, size, out):
    """True where T(x) = x + u(x) falls in a moving voxel (nearest neighbour: ``-0.5 <= g < n - 0.5``)."""
    ns, nj, ni = u.shape[0], u.shape[1], u.shape[2]
    for kk in prange(ns):
        k = k0 + kk
        for j in range(nj):
            for i in range(ni):
                y0 = ijk_to_lps[0, 0] * i + ijk_to_lps[0, 1] * j + ijk_to_lps[0, 2] * k + ijk_to_lps[0, 3] + u[kk, j, i, 0]
                y1 = ijk_to_lps[1, 0] * i + ijk_to_lps[1, 1] * j + ijk_to_lps[1, 2] * k + ijk_to_lps[1, 3] + u[kk, j, i, 1]
                y2 = ijk_to_lps[2, 0] * i + ijk_to_lps[2, 1] * j + ijk_to_lps[2, 2] * k + ijk_to_lps[2, 3] + u[kk, j, i, 2]
                ok = True
                for a in range(3):
                    g = lps_to_index[a, 0] * y0 + lps_to_index[a, 1] * y1 + lps_to_index[a, 2] * y2 + lps_to_index[a, 3]
                    if not (g >= -0.5 and g < size[a] - 0.5):
                        ok = False
                        break
                out[kk, j, i] = ok


@njit(parallel=True, cache=True)
def magnitude_slab(u, out):
    """|u| in float32 (as numpy's float32 einsum + sqrt)."""
    ns, nj, ni = u.shape[0], u.shape[1], u.shape[2]
    for kk in prange(ns):
        for j in range(nj):
            for i in range(ni):
                a, b, c = u[kk, j, i, 0], u[kk, j, i, 1], u[kk, j, i, 2]
                out[kk, j, i] = np.float32(math.sqrt(np.float32(a * a + b * b + c * c)))


@njit(parallel=True, cache=True)
def similarity_pass1(a, b, mask, use_mask, nblocks):
    """Per block: [count, nonfinite, Σa, Σb, min a, max a, min b, max b] over the voxels (in the mask) where both
    values are finite. ``a``, ``b``, ``mask``: flat arrays of one length."""
    n = a.shape[0]
    out = np.zeros((nblocks, 8))
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        cnt, bad, sa, sb = 0.0, 0.0, 0.0, 0.0
        mina, maxa, minb, maxb = np.inf, -np.inf, np.inf, -np.inf
        for t in range(lo, hi):
            if use_mask and not mask[t]:
                continue
            va, vb = np.float64(a[t]), np.float64(b[t])
            if not (np.isfinite(va) and np.isfinite(vb)):
                bad += 1.0
                continue
            cnt += 1.0
            sa += va
            sb += vb
            mina, maxa = min(mina, va), max(maxa, va)
            minb, maxb = min(minb, vb), max(maxb, vb)
        out[blk, 0], out[blk, 1], out[blk, 2], out[blk, 3] = cnt, bad, sa, sb
        out[blk, 4], out[blk, 5], out[blk, 6], out[blk, 7] = mina, maxa, minb, maxb
    return out


@njit(parallel=True, cache=True)
def similarity_pass2(a, b, mask, use_mask, nblocks, ma, mb, bins, lo_a, hi_a, lo_b, hi_b):
    """Per block: [Σ(a-ā)², Σ(b-b̄)², Σ(a-ā)(b-b̄), Σ(a-b)², Σ|a-b|] and the joint histogram (bins × bins, each
    image's equal-width bins over its own [lo, hi], the maximum in the last bin)."""
    n = a.shape[0]
    sums = np.zeros((nblocks, 5))
    joint = np.zeros((nblocks, bins * bins), np.int64)
    size = (n + nblocks - 1) // nblocks
    scale_a = bins / (hi_a - lo_a) if hi_a > lo_a else 0.0
    scale_b = bins / (hi_b - lo_b) if hi_b > lo_b else 0.0
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        saa, sbb, sab, sdd, sad = 0.0, 0.0, 0.0, 0.0, 0.0
        for t in range(lo, hi):
            if use_mask and not mask[t]:
                continue
            va, vb = np.float64(a[t]), np.float64(b[t])
            if not (np.isfinite(va) and np.isfinite(vb)):
                continue
            da, db = va - ma, vb - mb
            saa += da * da
            sbb += db * db
            sab += da * db
            d = va - vb
            sdd += d * d
            sad += abs(d)
            ia = min(max(int((va - lo_a) * scale_a), 0), bins - 1) if hi_a > lo_a else 0
            ib = min(max(int((vb - lo_b) * scale_b), 0), bins - 1) if hi_b > lo_b else 0
            joint[blk, ia * bins + ib] += 1
        sums[blk, 0], sums[blk, 1], sums[blk, 2], sums[blk, 3], sums[blk, 4] = saa, sbb, sab, sdd, sad
    return sums, joint
