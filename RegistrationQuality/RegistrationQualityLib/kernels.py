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
SIXTH = 1.0 / 6.0


def set_threads(threads: int | None) -> None:
    """Use ``threads`` threads in the kernels (None: all cores, or ``RQ_THREADS`` when set)."""
    import numba

    if threads is None:
        threads = int(os.environ.get("RQ_THREADS", "0") or 0) or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


@njit(cache=True, inline="always")
def _weights(fr, w, dw, i):
    """Cubic B-spline weights and their derivatives at fraction ``fr`` into column ``i`` of ``w``/``dw`` (4, n)."""
    g = 1.0 - fr
    f2 = fr * fr
    f3 = f2 * fr
    w[0, i] = g * g * g * SIXTH
    w[1, i] = (3.0 * f3 - 6.0 * f2 + 4.0) * SIXTH
    w[2, i] = (-3.0 * f3 + 3.0 * f2 + 3.0 * fr + 1.0) * SIXTH
    w[3, i] = f3 * SIXTH
    dw[0, i] = -0.5 * g * g
    dw[1, i] = 1.5 * f2 - 2.0 * fr
    dw[2, i] = -1.5 * f2 + fr + 0.5
    dw[3, i] = 0.5 * f2



@njit(parallel=True, cache=True)
def chain_slab(k0, k1, ni, nj, ijk_to_lps, kinds, mats, coef, offsets, sizes, want_det, out_u, out_det):
    """u = T(x) - x (float32) and, when ``want_det``, det of the spatial Jacobian of T (float32) at the fixed voxel
    centres of slices k0..k1-1, T a chain of components applied in order (elastix's composition).

    ``kinds[c]``: LINEAR (``mats[c]``: the 4×4 matrix p -> A p + t) or BSPLINE (``mats[c][:3, :3]``: LPS ->
    continuous control-point index ``(D·S)^-1``, ``mats[c][:3, 3]``: the grid origin; the index is computed as ITK
    does, ``(D·S)^-1 (p - o)``, and the voxel centres as ``o + m·ijk`` summed in ITK's order, so that points on the
    edge of the valid region fall on the same side as in ITK/elastix); coefficients ``coef[offsets[c]:]``
    interleaved (nz, ny, nx, 3), ``sizes[c]`` = (nx, ny, nz). A B-spline moves a point only inside its valid
    region ``1 <= g < n - 2`` on every axis (all 4×4×4 control points present), elastix's and ITK's rule;
    elsewhere it is the identity (Jacobian I). The tensor-product sums are separable (x, then y, then z), the
    derivative sums riding along. Vectorised: each row of the slab is processed as arrays over i, cut into
    runs of voxels that share one 4×4×4 support (the coefficients then broadcast, and the loops over a run's
    voxels compile to SIMD code; every loop touches 1-D arrays indexed from 0, which LLVM needs to vectorise).
    """
    ncomp = kinds.shape[0]
    for kk in prange(k1 - k0):
        k = k0 + kk
        p = np.empty((3, ni))
        x = np.empty((3, ni))
        f = np.empty((9, ni))      # F row-major (a, b) -> 3a+b
        gf = np.empty((3, ni))
        valid = np.empty(ni, np.bool_)
        wx, wy, wz = np.empty((4, ni)), np.empty((4, ni)), np.empty((4, ni))
        dx, dy, dz = np.empty((4, ni)), np.empty((4, ni)), np.empty((4, ni))
        val = np.empty((3, ni))
        acc = np.empty((9, ni))   # dU_a/dg_b
        ys = np.empty((9, ni))    # per-z partial sums: value (3), d/dgx (3), d/dgy (3)
        for j in range(nj):
            for i in range(ni):
                x[0, i] = ijk_to_lps[0, 3] + ijk_to_lps[0, 0] * i + ijk_to_lps[0, 1] * j + ijk_to_lps[0, 2] * k
                x[1, i] = ijk_to_lps[1, 3] + ijk_to_lps[1, 0] * i + ijk_to_lps[1, 1] * j + ijk_to_lps[1, 2] * k
                x[2, i] = ijk_to_lps[2, 3] + ijk_to_lps[2, 0] * i + ijk_to_lps[2, 1] * j + ijk_to_lps[2, 2] * k
                p[0, i], p[1, i], p[2, i] = x[0, i], x[1, i], x[2, i]
            if want_det:
                for a in range(9):
                    one = 1.0 if a % 4 == 0 else 0.0
                    for i in range(ni):
                        f[a, i] = one
            for c in range(ncomp):
                if kinds[c] == LINEAR:
                    m = mats[c]
                    for i in range(ni):
                        p0, p1, p2 = p[0, i], p[1, i], p[2, i]
                        p[0, i] = m[0, 0] * p0 + m[0, 1] * p1 + m[0, 2] * p2 + m[0, 3]
                        p[1, i] = m[1, 0] * p0 + m[1, 1] * p1 + m[1, 2] * p2 + m[1, 3]
                        p[2, i] = m[2, 0] * p0 + m[2, 1] * p1 + m[2, 2] * p2 + m[2, 3]
                    if want_det:
                        for b in range(3):
                            for i in range(ni):
                                f0, f1, f2 = f[b, i], f[3 + b, i], f[6 + b, i]
                                f[b, i] = m[0, 0] * f0 + m[0, 1] * f1 + m[0, 2] * f2
                                f[3 + b, i] = m[1, 0] * f0 + m[1, 1] * f1 + m[1, 2] * f2
                                f[6 + b, i] = m[2, 0] * f0 + m[2, 1] * f1 + m[2, 2] * f2
                    continue
                m = mats[c]
                nx, ny, nz = sizes[c, 0], sizes[c, 1], sizes[c, 2]
                m00, m01, m02, m03 = m[0, 0], m[0, 1], m[0, 2], m[0, 3]
                m10, m11, m12, m13 = m[1, 0], m[1, 1], m[1, 2], m[1, 3]
                m20, m21, m22, m23 = m[2, 0], m[2, 1], m[2, 2], m[2, 3]
                lx, ly, lz = nx - 2.0, ny - 2.0, nz - 2.0
                for i in range(ni):  # branch-free: vectorised
                    e0, e1, e2 = p[0, i] - m03, p[1, i] - m13, p[2, i] - m23
                    gx = m00 * e0 + m01 * e1 + m02 * e2
                    gy = m10 * e0 + m11 * e1 + m12 * e2
                    gz = m20 * e0 + m21 * e1 + m22 * e2
                    valid[i] = (gx >= 1.0) & (gx < lx) & (gy >= 1.0) & (gy < ly) & (gz >= 1.0) & (gz < lz)
                    fx, fy, fz = np.floor(gx), np.floor(gy), np.floor(gz)
                    gf[0, i], gf[1, i], gf[2, i] = fx, fy, fz
                    _weights(gx - fx, wx, dx, i)
                    _weights(gy - fy, wy, dy, i)
                    _weights(gz - fz, wz, dz, i)
                base = offsets[c]
                i = 0
                while i < ni:
                    if not valid[i]:
                        i += 1
                        continue
                    bx, by, bz = gf[0, i], gf[1, i], gf[2, i]
                    e = i + 1
                    while e < ni and valid[e] and gf[0, e] == bx and gf[1, e] == by and gf[2, e] == bz:
                        e += 1
                    sx, sy, sz = int(bx) - 1, int(by) - 1, int(bz) - 1
                    n = e - i
                    v0, v1, v2 = val[0, i:e], val[1, i:e], val[2, i:e]
                    v0[:] = 0.0
                    v1[:] = 0.0
                    v2[:] = 0.0
                    a00, a01, a02 = acc[0, i:e], acc[1, i:e], acc[2, i:e]
                    a10, a11, a12 = acc[3, i:e], acc[4, i:e], acc[5, i:e]
                    a20, a21, a22 = acc[6, i:e], acc[7, i:e], acc[8, i:e]
                    if want_det:
                        acc[:, i:e] = 0.0
                    wx0, wx1, wx2, wx3 = wx[0, i:e], wx[1, i:e], wx[2, i:e], wx[3, i:e]
                    dx0, dx1, dx2, dx3 = dx[0, i:e], dx[1, i:e], dx[2, i:e], dx[3, i:e]
                    y0, y1, y2 = ys[0, i:e], ys[1, i:e], ys[2, i:e]
                    yx0, yx1, yx2 = ys[3, i:e], ys[4, i:e], ys[5, i:e]
                    yy0, yy1, yy2 = ys[6, i:e], ys[7, i:e], ys[8, i:e]
                    for zz in range(4):
                        ys[:, i:e] = 0.0
                        for yyi in range(4):
                            row = base + (((sz + zz) * ny + (sy + yyi)) * nx + sx) * 3
                            c00, c01, c02, c10, c11, c12 = (coef[row], coef[row + 1], coef[row + 2], coef[row + 3],
                                                            coef[row + 4], coef[row + 5])
                            c20, c21, c22, c30, c31, c32 = (coef[row + 6], coef[row + 7], coef[row + 8], coef[row + 9],
                                                            coef[row + 10], coef[row + 11])
                            wyr, dyr = wy[yyi, i:e], dy[yyi, i:e]
                            if want_det:
                                for t in range(n):
                                    w0, w1, w2, w3 = wx0[t], wx1[t], wx2[t], wx3[t]
                                    r0 = c00 * w0 + c10 * w1 + c20 * w2 + c30 * w3
                                    r1 = c01 * w0 + c11 * w1 + c21 * w2 + c31 * w3
                                    r2 = c02 * w0 + c12 * w1 + c22 * w2 + c32 * w3
                                    d0, d1, d2, d3 = dx0[t], dx1[t], dx2[t], dx3[t]
                                    rd0 = c00 * d0 + c10 * d1 + c20 * d2 + c30 * d3
                                    rd1 = c01 * d0 + c11 * d1 + c21 * d2 + c31 * d3
                                    rd2 = c02 * d0 + c12 * d1 + c22 * d2 + c32 * d3
                                    wyv, dyv = wyr[t], dyr[t]
                                    y0[t] += r0 * wyv
                                    y1[t] += r1 * wyv
                                    y2[t] += r2 * wyv
                                    yx0[t] += rd0 * wyv
                                    yx1[t] += rd1 * wyv
                                    yx2[t] += rd2 * wyv
                                    yy0[t] += r0 * dyv
                                    yy1[t] += r1 * dyv
                                    yy2[t] += r2 * dyv
                            else:
                                for t in range(n):
                                    w0, w1, w2, w3 = wx0[t], wx1[t], wx2[t], wx3[t]
                                    wyv = wyr[t]
                                    y0[t] += (c00 * w0 + c10 * w1 + c20 * w2 + c30 * w3) * wyv
                                    y1[t] += (c01 * w0 + c11 * w1 + c21 * w2 + c31 * w3) * wyv
                                    y2[t] += (c02 * w0 + c12 * w1 + c22 * w2 + c32 * w3) * wyv
                        wzr, dzr = wz[zz, i:e], dz[zz, i:e]
                        if want_det:
                            for t in range(n):
                                wzv, dzv = wzr[t], dzr[t]
                                v0[t] += y0[t] * wzv
                                v1[t] += y1[t] * wzv
                                v2[t] += y2[t] * wzv
                                a00[t] += yx0[t] * wzv
                                a10[t] += yx1[t] * wzv
                                a20[t] += yx2[t] * wzv
                                a01[t] += yy0[t] * wzv
                                a11[t] += yy1[t] * wzv
                                a21[t] += yy2[t] * wzv
                                a02[t] += y0[t] * dzv
                                a12[t] += y1[t] * dzv
                                a22[t] += y2[t] * dzv
                        else:
                            for t in range(n):
                                wzv = wzr[t]
                                v0[t] += y0[t] * wzv
                                v1[t] += y1[t] * wzv
                                v2[t] += y2[t] * wzv
                    p0r, p1r, p2r = p[0, i:e], p[1, i:e], p[2, i:e]
                    if want_det:
                        m00, m01, m02 = m[0, 0], m[0, 1], m[0, 2]
                        m10, m11, m12 = m[1, 0], m[1, 1], m[1, 2]
                        m20, m21, m22 = m[2, 0], m[2, 1], m[2, 2]
                        fa, fb, fc = f[0, i:e], f[1, i:e], f[2, i:e]
                        fd, fe, ff = f[3, i:e], f[4, i:e], f[5, i:e]
                        fg, fh, fi = f[6, i:e], f[7, i:e], f[8, i:e]
                        for t in range(n):
                            # T = I + dU/dg · M, F <- T F
                            t00 = a00[t] * m00 + a01[t] * m10 + a02[t] * m20 + 1.0
                            t01 = a00[t] * m01 + a01[t] * m11 + a02[t] * m21
                            t02 = a00[t] * m02 + a01[t] * m12 + a02[t] * m22
                            t10 = a10[t] * m00 + a11[t] * m10 + a12[t] * m20
                            t11 = a10[t] * m01 + a11[t] * m11 + a12[t] * m21 + 1.0
                            t12 = a10[t] * m02 + a11[t] * m12 + a12[t] * m22
                            t20 = a20[t] * m00 + a21[t] * m10 + a22[t] * m20
                            t21 = a20[t] * m01 + a21[t] * m11 + a22[t] * m21
                            t22 = a20[t] * m02 + a21[t] * m12 + a22[t] * m22 + 1.0
                            g0, g1, g2 = fa[t], fd[t], fg[t]
                            fa[t] = t00 * g0 + t01 * g1 + t02 * g2
                            fd[t] = t10 * g0 + t11 * g1 + t12 * g2
                            fg[t] = t20 * g0 + t21 * g1 + t22 * g2
                            g0, g1, g2 = fb[t], fe[t], fh[t]
                            fb[t] = t00 * g0 + t01 * g1 + t02 * g2
                            fe[t] = t10 * g0 + t11 * g1 + t12 * g2
                            fh[t] = t20 * g0 + t21 * g1 + t22 * g2
                            g0, g1, g2 = fc[t], ff[t], fi[t]
                            fc[t] = t00 * g0 + t01 * g1 + t02 * g2
                            ff[t] = t10 * g0 + t11 * g1 + t12 * g2
                            fi[t] = t20 * g0 + t21 * g1 + t22 * g2
                    for t in range(n):
                        p0r[t] += v0[t]
                        p1r[t] += v1[t]
                        p2r[t] += v2[t]
                    i = e
            for i in range(ni):
                out_u[kk, j, i, 0] = p[0, i] - x[0, i]
                out_u[kk, j, i, 1] = p[1, i] - x[1, i]
                out_u[kk, j, i, 2] = p[2, i] - x[2, i]
            if want_det:
                for i in range(ni):
                    out_det[kk, j, i] = (f[0, i] * (f[4, i] * f[8, i] - f[5, i] * f[7, i])
                                         - f[1, i] * (f[3, i] * f[8, i] - f[5, i] * f[6, i])
                                         + f[2, i] * (f[3, i] * f[7, i] - f[4, i] * f[6, i]))


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
