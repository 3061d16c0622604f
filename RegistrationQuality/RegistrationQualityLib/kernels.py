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

from .kernels_bspline import RUN, SIXTH, tensor_sum, tensor_sum_jacobian

# component kinds of a chain (see transforms.Chain)
LINEAR, BSPLINE = 0, 1


def set_threads(threads: int | None) -> None:
    """Use ``threads`` threads in the kernels (None: all cores, or ``RQ_THREADS`` when set)."""
    import numba

    if threads is None:
        threads = int(os.environ.get("RQ_THREADS", "0") or 0) or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


@njit(parallel=True, cache=True, nogil=True)  # nogil: transforms.stream samples ahead in a thread
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
    derivative sums riding along. Vectorised: each row of the slab is processed as arrays over i (positions and
    grid indices in float64, so that the valid-region test is ITK's), cut into runs of voxels that share one
    4×4×4 support; over a run the tensor sums (:mod:`kernels_bspline`, generated: the 192 coefficients as
    scalars, float32 sums) compile to SIMD code. With the Jacobian, the value and its three derivatives come from
    one pass over each run (``tensor_sum_jacobian``, RUN voxels at a time, the weights made from the fractional
    index in the loop), bit for bit the three separate sums it replaced: 121 -> 85 ns per voxel on one core,
    69 -> 50 ns on two (CT benchmark case, Euler -> B-spline). ``coef`` is float32.
    """
    ncomp = kinds.shape[0]
    for kk in prange(k1 - k0):
        k = k0 + kk
        # per-row scratch; every loop below runs over 1-D rows indexed from 0 (what LLVM vectorises)
        x = np.empty((3, ni))
        p = np.empty((3, ni))
        jd = np.empty(ni)  # det of the chain's Jacobian so far: the product of its components' (det(AB) = det A det B)
        g = np.empty((3, ni))  # continuous grid index
        gf = np.empty((3, ni))  # its floor
        valid = np.empty(ni, np.bool_)
        w = np.empty((12, ni), np.float32)  # without the Jacobian: the 4 weights along x, y, z
        wx, wy, wz = w[0:4], w[4:8], w[8:12]
        s_all = np.empty((12, ni), np.float32)  # value (3), d/dgx (3), d/dgy (3), d/dgz (3)
        s_v, s_y, s_z = s_all[0:6], s_all[6:9], s_all[9:12]
        frac = np.empty((3, ni))  # with the Jacobian: the fractional grid index (weights made in the tensor kernel)
        fr_run = np.empty(3 * RUN)  # tensor_sum_jacobian's input and output, rows RUN apart
        o_run = np.empty(12 * RUN, np.float32)
        cc = np.empty(192, np.float32)
        x0, x1, x2 = x[0], x[1], x[2]
        p0, p1, p2 = p[0], p[1], p[2]
        for j in range(nj):
            o0 = ijk_to_lps[0, 3] + ijk_to_lps[0, 1] * j + ijk_to_lps[0, 2] * k
            o1 = ijk_to_lps[1, 3] + ijk_to_lps[1, 1] * j + ijk_to_lps[1, 2] * k
            o2 = ijk_to_lps[2, 3] + ijk_to_lps[2, 1] * j + ijk_to_lps[2, 2] * k
            c0, c1, c2 = ijk_to_lps[0, 0], ijk_to_lps[1, 0], ijk_to_lps[2, 0]
            for i in range(ni):
                x0[i] = o0 + c0 * i
                x1[i] = o1 + c1 * i
                x2[i] = o2 + c2 * i
            p0[:] = x0
            p1[:] = x1
            p2[:] = x2
            if want_det:
                jd[:] = 1.0
            for c in range(ncomp):
                m = mats[c]
                m00, m01, m02, m03 = m[0, 0], m[0, 1], m[0, 2], m[0, 3]
                m10, m11, m12, m13 = m[1, 0], m[1, 1], m[1, 2], m[1, 3]
                m20, m21, m22, m23 = m[2, 0], m[2, 1], m[2, 2], m[2, 3]
                if kinds[c] == LINEAR:
                    for i in range(ni):
                        q0, q1, q2 = p0[i], p1[i], p2[i]
                        p0[i] = m00 * q0 + m01 * q1 + m02 * q2 + m03
                        p1[i] = m10 * q0 + m11 * q1 + m12 * q2 + m13
                        p2[i] = m20 * q0 + m21 * q1 + m22 * q2 + m23
                    if want_det:
                        det_m = (m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20)
                                 + m02 * (m10 * m21 - m11 * m20))
                        for i in range(ni):
                            jd[i] *= det_m
                    continue
                nx, ny, nz = sizes[c, 0], sizes[c, 1], sizes[c, 2]
                g0, g1, g2 = g[0], g[1], g[2]
                for i in range(ni):
                    e0, e1, e2 = p0[i] - m03, p1[i] - m13, p2[i] - m23
                    g0[i] = m00 * e0 + m01 * e1 + m02 * e2
                    g1[i] = m10 * e0 + m11 * e1 + m12 * e2
                    g2[i] = m20 * e0 + m21 * e1 + m22 * e2
                for i in range(ni):
                    valid[i] = ((g0[i] >= 1.0) & (g0[i] < nx - 2.0) & (g1[i] >= 1.0) & (g1[i] < ny - 2.0)
                                & (g2[i] >= 1.0) & (g2[i] < nz - 2.0))
                for axis in range(3):
                    ga, fl = g[axis], gf[axis]
                    if want_det:
                        fa = frac[axis]
                        for i in range(ni):
                            lo = np.floor(ga[i])
                            fl[i] = lo
                            fa[i] = ga[i] - lo
                        continue
                    w0, w1, w2, w3 = w[4 * axis], w[4 * axis + 1], w[4 * axis + 2], w[4 * axis + 3]
                    for i in range(ni):
                        lo = np.floor(ga[i])
                        fl[i] = lo
                        fr = ga[i] - lo
                        h = 1.0 - fr
                        f2 = fr * fr
                        f3 = f2 * fr
                        w0[i] = h * h * h * SIXTH
                        w1[i] = (3.0 * f3 - 6.0 * f2 + 4.0) * SIXTH
                        w2[i] = (-3.0 * f3 + 3.0 * f2 + 3.0 * fr + 1.0) * SIXTH
                        w3[i] = f3 * SIXTH
                s_v[:] = 0.0  # outside the valid region the B-spline is the identity: u += 0, T = I
                if want_det:
                    s_y[:] = 0.0
                    s_z[:] = 0.0
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
                    for zz in range(4):  # the run's 4×4×4 coefficients, contiguous (z, y, x, component)
                        for yy in range(4):
                            row = base + (((sz + zz) * ny + (sy + yy)) * nx + sx) * 3
                            for q in range(12):
                                cc[(zz * 4 + yy) * 12 + q] = coef[row + q]
                    if want_det:  # value and the 3 derivatives in one pass, RUN voxels at a time
                        a = i
                        while a < e:
                            nr = min(RUN, e - a)
                            f0, f1, f2_ = frac[0, a:a + nr], frac[1, a:a + nr], frac[2, a:a + nr]
                            for t in range(nr):
                                fr_run[t] = f0[t]
                                fr_run[RUN + t] = f1[t]
                                fr_run[2 * RUN + t] = f2_[t]
                            tensor_sum_jacobian(cc, fr_run, o_run, nr)
                            for q in range(12):
                                sq = s_all[q, a:a + nr]
                                for t in range(nr):
                                    sq[t] = o_run[q * RUN + t]
                            a += nr
                    else:
                        tensor_sum(cc, wx, wy, wz, s_v, i, e)
                    i = e
                v0, v1, v2 = s_v[0], s_v[1], s_v[2]
                for i in range(ni):
                    p0[i] += v0[i]
                    p1[i] += v1[i]
                    p2[i] += v2[i]
                if want_det:
                    # this component's Jacobian T = I + dU/dg · M (dU_a/dg_b: b = x from s_v[3+a], y from s_y[a],
                    # z from s_z[a]); the chain's J is the product of the det T (chain rule)
                    u00, u10, u20 = s_v[3], s_v[4], s_v[5]
                    u01, u11, u21 = s_y[0], s_y[1], s_y[2]
                    u02, u12, u22 = s_z[0], s_z[1], s_z[2]
                    for i in range(ni):
                        a00, a10, a20 = np.float64(u00[i]), np.float64(u10[i]), np.float64(u20[i])
                        a01, a11, a21 = np.float64(u01[i]), np.float64(u11[i]), np.float64(u21[i])
                        a02, a12, a22 = np.float64(u02[i]), np.float64(u12[i]), np.float64(u22[i])
                        t00 = a00 * m00 + a01 * m10 + a02 * m20 + 1.0
                        t01 = a00 * m01 + a01 * m11 + a02 * m21
                        t02 = a00 * m02 + a01 * m12 + a02 * m22
                        t10 = a10 * m00 + a11 * m10 + a12 * m20
                        t11 = a10 * m01 + a11 * m11 + a12 * m21 + 1.0
                        t12 = a10 * m02 + a11 * m12 + a12 * m22
                        t20 = a20 * m00 + a21 * m10 + a22 * m20
                        t21 = a20 * m01 + a21 * m11 + a22 * m21
                        t22 = a20 * m02 + a21 * m12 + a22 * m22 + 1.0
                        jd[i] *= (t00 * (t11 * t22 - t12 * t21) - t01 * (t10 * t22 - t12 * t20)
                                  + t02 * (t10 * t21 - t11 * t20))
            ou = out_u[kk, j]
            for i in range(ni):
                ou[i, 0] = p0[i] - x0[i]
                ou[i, 1] = p1[i] - x1[i]
                ou[i, 2] = p2[i] - x2[i]
            if want_det:
                od = out_det[kk, j]
                for i in range(ni):
                    od[i] = jd[i]


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
def warp_slab(u, with_u, k0, ijk_to_lps, lps_to_index, image, linear, background, rounding, lo_clip, hi_clip, out,
              want_inside, inside):
    """The image sampled at T(x) = x + u(x) for the fixed voxels of slices k0.. (``u``: that slab's displacement;
    without ``with_u`` T is the identity and ``u`` is not read: the moving image in world space).

    ``lps_to_index``: moving LPS -> continuous voxel index (i, j, k). Inside = index within half a voxel of the
    image's voxel centres (``-0.5 <= g <= n - 0.5``, VTK reslice's default border); outside -> ``background``.
    Linear: trilinear weights over the neighbours clamped at the border; nearest: floor(g + 0.5), clamped.
    ``rounding``: round to the nearest integer (floor(v + 0.5)) and clamp to [lo_clip, hi_clip] (integer outputs,
    as VTK does when it writes an integer image).

    Row by row over 1-D arrays, every loop but the reads of the image branch-free (vectorised): the continuous
    indices of the row; for linear their floors, fractions and the flat index of the 2×2×2 neighbourhood; its 8
    values; the weighted sum. Voxels whose neighbourhood is not wholly inside the image (outside, or clamped
    neighbours at the border) are then redone one by one with the clamps. The arithmetic of each voxel (the
    position, the weights and their order) is the same on both paths, so the result does not depend on the path
    (``Testing/test_warp_kernel.py`` checks it bit for bit against a per-voxel reference).

    ``want_inside``: also ``inside[kk, j, i]`` = T(x) falls in a moving voxel, :func:`inside_slab`'s rule from the
    same continuous index (``-0.5 <= g < n - 0.5``), so one pass gives the warped image and the moving domain.
    """
    nz, ny, nx = image.shape
    ns, nj, ni = out.shape[0], out.shape[1], out.shape[2]
    flat = image.reshape(-1)
    sy, sz = nx, nx * ny
    hx, hy, hz = nx - 0.5, ny - 0.5, nz - 0.5
    ex, ey, ez = nx - 1.0, ny - 1.0, nz - 1.0
    m00, m01, m02, m03 = ijk_to_lps[0, 0], ijk_to_lps[0, 1], ijk_to_lps[0, 2], ijk_to_lps[0, 3]
    m10, m11, m12, m13 = ijk_to_lps[1, 0], ijk_to_lps[1, 1], ijk_to_lps[1, 2], ijk_to_lps[1, 3]
    m20, m21, m22, m23 = ijk_to_lps[2, 0], ijk_to_lps[2, 1], ijk_to_lps[2, 2], ijk_to_lps[2, 3]
    l00, l01, l02, l03 = lps_to_index[0, 0], lps_to_index[0, 1], lps_to_index[0, 2], lps_to_index[0, 3]
    l10, l11, l12, l13 = lps_to_index[1, 0], lps_to_index[1, 1], lps_to_index[1, 2], lps_to_index[1, 3]
    l20, l21, l22, l23 = lps_to_index[2, 0], lps_to_index[2, 1], lps_to_index[2, 2], lps_to_index[2, 3]
    for kk in prange(ns):
        k = k0 + kk
        g = np.empty((6, ni))
        gx, gy, gz, tx_, ty_, tz_ = g[0], g[1], g[2], g[3], g[4], g[5]
        uc = np.empty((3, ni))
        u0, u1, u2 = uc[0], uc[1], uc[2]
        base = np.empty(ni, np.int64)
        fast = np.empty(ni, np.bool_)
        vals = np.empty((8, ni))
        res = np.empty(ni)
        for j in range(nj):
            if with_u:
                uu = u[kk, j]
                for i in range(ni):
                    u0[i] = uu[i, 0]
                    u1[i] = uu[i, 1]
                    u2[i] = uu[i, 2]
            else:  # x + 0.0 == x: the positions are those of the identity
                u0[:] = 0.0
                u1[:] = 0.0
                u2[:] = 0.0
            for i in range(ni):
                y0 = m00 * i + m01 * j + m02 * k + m03 + u0[i]
                y1 = m10 * i + m11 * j + m12 * k + m13 + u1[i]
                y2 = m20 * i + m21 * j + m22 * k + m23 + u2[i]
                gx[i] = l00 * y0 + l01 * y1 + l02 * y2 + l03
                gy[i] = l10 * y0 + l11 * y1 + l12 * y2 + l13
                gz[i] = l20 * y0 + l21 * y1 + l22 * y2 + l23
            if want_inside:
                in_row = inside[kk, j]
                for i in range(ni):
                    in_row[i] = ((gx[i] >= -0.5) & (gx[i] < nx - 0.5) & (gy[i] >= -0.5) & (gy[i] < ny - 0.5)
                                 & (gz[i] >= -0.5) & (gz[i] < nz - 0.5))
            row = out[kk, j]
            nslow = 0
            if linear:
                for i in range(ni):
                    ax, ay, az = gx[i], gy[i], gz[i]
                    fx, fy, fz = np.floor(ax), np.floor(ay), np.floor(az)
                    tx_[i], ty_[i], tz_[i] = ax - fx, ay - fy, az - fz
                    ok = (fx >= 0.0) & (fy >= 0.0) & (fz >= 0.0) & (fx < ex) & (fy < ey) & (fz < ez)
                    fast[i] = ok
                    nslow += 0 if ok else 1
                    b = np.int64(fz) * sz + np.int64(fy) * sy + np.int64(fx)
                    base[i] = b if ok else 0
                for i in range(ni):
                    b = base[i]
                    vals[0, i] = flat[b]
                    vals[1, i] = flat[b + 1]
                    vals[2, i] = flat[b + sy]
                    vals[3, i] = flat[b + sy + 1]
                    vals[4, i] = flat[b + sz]
                    vals[5, i] = flat[b + sz + 1]
                    vals[6, i] = flat[b + sz + sy]
                    vals[7, i] = flat[b + sz + sy + 1]
                v000, v001, v010, v011 = vals[0], vals[1], vals[2], vals[3]
                v100, v101, v110, v111 = vals[4], vals[5], vals[6], vals[7]
                for i in range(ni):
                    tx, ty, tz = tx_[i], ty_[i], tz_[i]
                    v = ((1 - tz) * ((1 - ty) * ((1 - tx) * v000[i] + tx * v001[i]) + ty * ((1 - tx) * v010[i] + tx * v011[i]))
                         + tz * ((1 - ty) * ((1 - tx) * v100[i] + tx * v101[i]) + ty * ((1 - tx) * v110[i] + tx * v111[i])))
                    res[i] = v
                if rounding:
                    for i in range(ni):
                        res[i] = min(max(np.floor(res[i] + 0.5), lo_clip), hi_clip)
                for i in range(ni):
                    row[i] = res[i]
            else:
                for i in range(ni):
                    ax, ay, az = gx[i], gy[i], gz[i]
                    ix = min(max(np.int64(np.floor(ax + 0.5)), 0), nx - 1)
                    iy = min(max(np.int64(np.floor(ay + 0.5)), 0), ny - 1)
                    iz = min(max(np.int64(np.floor(az + 0.5)), 0), nz - 1)
                    ok = (ax >= -0.5) & (ax <= hx) & (ay >= -0.5) & (ay <= hy) & (az >= -0.5) & (az <= hz)
                    fast[i] = ok
                    nslow += 0 if ok else 1
                    base[i] = iz * sz + iy * sy + ix
                for i in range(ni):
                    row[i] = flat[base[i]]
            if nslow == 0:
                continue
            for i in range(ni):  # voxels outside the image or with clamped neighbours
                if fast[i]:
                    continue
                ax, ay, az = gx[i], gy[i], gz[i]
                if not (ax >= -0.5 and ax <= hx and ay >= -0.5 and ay <= hy and az >= -0.5 and az <= hz):
                    row[i] = background
                    continue
                if not linear:
                    continue
                fx, fy, fz = math.floor(ax), math.floor(ay), math.floor(az)
                tx, ty, tz = ax - fx, ay - fy, az - fz
                x_a, y_a, z_a = int(fx), int(fy), int(fz)
                x_b, y_b, z_b = (min(max(x_a + 1, 0), nx - 1), min(max(y_a + 1, 0), ny - 1),
                                 min(max(z_a + 1, 0), nz - 1))
                x_a, y_a, z_a = min(max(x_a, 0), nx - 1), min(max(y_a, 0), ny - 1), min(max(z_a, 0), nz - 1)
                w000, w001 = np.float64(image[z_a, y_a, x_a]), np.float64(image[z_a, y_a, x_b])
                w010, w011 = np.float64(image[z_a, y_b, x_a]), np.float64(image[z_a, y_b, x_b])
                w100, w101 = np.float64(image[z_b, y_a, x_a]), np.float64(image[z_b, y_a, x_b])
                w110, w111 = np.float64(image[z_b, y_b, x_a]), np.float64(image[z_b, y_b, x_b])
                v = ((1 - tz) * ((1 - ty) * ((1 - tx) * w000 + tx * w001) + ty * ((1 - tx) * w010 + tx * w011))
                     + tz * ((1 - ty) * ((1 - tx) * w100 + tx * w101) + ty * ((1 - tx) * w110 + tx * w111)))
                if rounding:
                    v = min(max(math.floor(v + 0.5), lo_clip), hi_clip)
                row[i] = v


@njit(parallel=True, cache=True)
def inside_slab(u, with_u, k0, k1, ni, nj, ijk_to_lps, lps_to_index, size, out):
    """True where T(x) = x + u(x) (``with_u``; else x itself: no registration) falls in a moving voxel (nearest
    neighbour, ITK's rule: ``-0.5 <= g < n - 0.5`` on every axis), for the fixed voxels of slices k0..k1-1; ``u``
    is that slab's displacement (unused without ``with_u``). Row by row over 1-D arrays (vectorised)."""
    for kk in prange(k1 - k0):
        k = k0 + kk
        for j in range(nj):
            row = out[kk, j]
            for i in range(ni):
                y0 = ijk_to_lps[0, 0] * i + ijk_to_lps[0, 1] * j + ijk_to_lps[0, 2] * k + ijk_to_lps[0, 3]
                y1 = ijk_to_lps[1, 0] * i + ijk_to_lps[1, 1] * j + ijk_to_lps[1, 2] * k + ijk_to_lps[1, 3]
                y2 = ijk_to_lps[2, 0] * i + ijk_to_lps[2, 1] * j + ijk_to_lps[2, 2] * k + ijk_to_lps[2, 3]
                if with_u:
                    y0 += u[kk, j, i, 0]
                    y1 += u[kk, j, i, 1]
                    y2 += u[kk, j, i, 2]
                g0 = lps_to_index[0, 0] * y0 + lps_to_index[0, 1] * y1 + lps_to_index[0, 2] * y2 + lps_to_index[0, 3]
                g1 = lps_to_index[1, 0] * y0 + lps_to_index[1, 1] * y1 + lps_to_index[1, 2] * y2 + lps_to_index[1, 3]
                g2 = lps_to_index[2, 0] * y0 + lps_to_index[2, 1] * y1 + lps_to_index[2, 2] * y2 + lps_to_index[2, 3]
                row[i] = ((g0 >= -0.5) & (g0 < size[0] - 0.5) & (g1 >= -0.5) & (g1 < size[1] - 0.5)
                          & (g2 >= -0.5) & (g2 < size[2] - 0.5))


@njit(parallel=True, cache=True)
def magnitude_slab(u, out):
    """|u| in float32 (as numpy's float32 einsum + sqrt)."""
    ns, nj, ni = u.shape[0], u.shape[1], u.shape[2]
    for kk in prange(ns):
        for j in range(nj):
            for i in range(ni):
                a, b, c = u[kk, j, i, 0], u[kk, j, i, 1], u[kk, j, i, 2]
                out[kk, j, i] = np.float32(math.sqrt(np.float32(a * a + b * b + c * c)))


SIMILARITY_CHUNK = 2048  # voxels whose joint-histogram bins are computed together (vectorised), then counted


@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def similarity_pass1(a, b, mask, use_mask, nblocks):
    """Per block: [count, nonfinite, Σa, Σb, min a, max a, min b, max b] over the voxels (in the mask) where both
    values are finite. ``a``, ``b``, ``mask``: flat arrays of one length (``mask`` unused without ``use_mask``).
    Branch-free over each block's slices indexed from 0 (vectorised; the sums may be reassociated)."""
    n = a.shape[0]
    out = np.zeros((nblocks, 8))
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        aa, bb = a[lo:hi], b[lo:hi]
        mm = mask[lo:hi] if use_mask else mask[0:0]
        cnt, bad, sa, sb = 0.0, 0.0, 0.0, 0.0
        mina, maxa, minb, maxb = np.inf, -np.inf, np.inf, -np.inf
        for t in range(hi - lo):
            inside = (not use_mask) or mm[t]
            va, vb = np.float64(aa[t]), np.float64(bb[t])
            finite = (va - va == 0.0) & (vb - vb == 0.0)  # isfinite of both
            ok = inside & finite
            bad += 1.0 if inside & (not finite) else 0.0
            cnt += 1.0 if ok else 0.0
            sa += va if ok else 0.0
            sb += vb if ok else 0.0
            mina = min(mina, va if ok else np.inf)
            maxa = max(maxa, va if ok else -np.inf)
            minb = min(minb, vb if ok else np.inf)
            maxb = max(maxb, vb if ok else -np.inf)
        out[blk, 0], out[blk, 1], out[blk, 2], out[blk, 3] = cnt, bad, sa, sb
        out[blk, 4], out[blk, 5], out[blk, 6], out[blk, 7] = mina, maxa, minb, maxb
    return out


@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def similarity_pass2(a, b, mask, use_mask, nblocks, ma, mb):
    """Per block: [Σ(a-ā)², Σ(b-b̄)², Σ(a-ā)(b-b̄), Σ(a-b)², Σ|a-b|] over the voxels of :func:`similarity_pass1`
    (branch-free, vectorised; the reassociated sums are closer to the exact ones than a sequential sum: on the
    CT benchmark case 2e-15 relative to the exact integer sums, a sequential float64 sum 3e-12)."""
    n = a.shape[0]
    sums = np.zeros((nblocks, 5))
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        aa, bb = a[lo:hi], b[lo:hi]
        mm = mask[lo:hi] if use_mask else mask[0:0]
        saa, sbb, sab, sdd, sad = 0.0, 0.0, 0.0, 0.0, 0.0
        for t in range(hi - lo):
            va, vb = np.float64(aa[t]), np.float64(bb[t])
            ok = ((not use_mask) or mm[t]) & (va - va == 0.0) & (vb - vb == 0.0)
            da, db = va - ma, vb - mb
            d = va - vb
            saa += da * da if ok else 0.0
            sbb += db * db if ok else 0.0
            sab += da * db if ok else 0.0
            sdd += d * d if ok else 0.0
            sad += abs(d) if ok else 0.0
        sums[blk, 0], sums[blk, 1], sums[blk, 2], sums[blk, 3], sums[blk, 4] = saa, sbb, sab, sdd, sad
    return sums


@njit(parallel=True, cache=True)
def similarity_joint(a, b, mask, use_mask, nblocks, bins, lo_a, hi_a, lo_b, hi_b):
    """Per block: the joint histogram (bins × bins) of the voxels of :func:`similarity_pass1`, each image's
    equal-width bins over its own [lo, hi] (bin ``int((v - lo) · bins / (hi - lo))``, the maximum in the last
    bin; one bin when hi == lo). Chunk by chunk: the bins of a chunk in one vectorised loop (strict IEEE
    arithmetic, no fast-math), then counted into 4 interleaved histograms (consecutive voxels in one bin do not
    wait on each other's increment)."""
    n = a.shape[0]
    nb2 = bins * bins
    joint = np.zeros((nblocks, nb2), np.int64)
    size = (n + nblocks - 1) // nblocks
    scale_a = bins / (hi_a - lo_a) if hi_a > lo_a else 0.0
    scale_b = bins / (hi_b - lo_b) if hi_b > lo_b else 0.0
    top_a = bins - 1 if hi_a > lo_a else 0
    top_b = bins - 1 if hi_b > lo_b else 0
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        h = np.zeros((4, nb2 + 1), np.int64)  # the last slot takes the voxels left out
        idx = np.empty(SIMILARITY_CHUNK, np.int64)
        for c0 in range(lo, hi, SIMILARITY_CHUNK):
            c1 = min(hi, c0 + SIMILARITY_CHUNK)
            aa, bb = a[c0:c1], b[c0:c1]
            mm = mask[c0:c1] if use_mask else mask[0:0]
            for t in range(c1 - c0):
                va, vb = np.float64(aa[t]), np.float64(bb[t])
                ok = ((not use_mask) or mm[t]) & (va - va == 0.0) & (vb - vb == 0.0)
                ia = min(max(np.int64((va - lo_a) * scale_a), 0), top_a)
                ib = min(max(np.int64((vb - lo_b) * scale_b), 0), top_b)
                idx[t] = ia * bins + ib if ok else nb2
            for t in range(c1 - c0):
                h[t & 3, idx[t]] += 1
        for q in range(nb2):
            joint[blk, q] = h[0, q] + h[1, q] + h[2, q] + h[3, q]
    return joint


@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def moments_pass1(values, nblocks):
    """Per block of a flat float array: [finite count, non-finite count, Σx] (float64 sums; the sums may be
    reassociated). One straight loop sums every value and counts the non-finite ones (``v − v`` is 0 exactly
    for finite v; LLVM vectorises it); a block that holds non-finite values is summed again testing each."""
    n = values.shape[0]
    out = np.zeros((nblocks, 3))
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        w = values[lo:max(lo, hi)]  # indexed from 0: no wrap-around test (vectorised)
        s = 0.0
        bad = 0
        for t in range(w.shape[0]):
            v = np.float64(w[t])
            s += v
            bad += v - v != 0.0
        if bad:
            s = 0.0
            for t in range(w.shape[0]):
                v = np.float64(w[t])
                if np.isfinite(v):
                    s += v
        out[blk, 0], out[blk, 1], out[blk, 2] = w.shape[0] - bad, bad, s
    return out


@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def moments_pass2(values, nblocks, mean):
    """Per block: Σ(x − mean)² of the finite values (one straight loop when the block has no other)."""
    n = values.shape[0]
    out = np.zeros(nblocks)
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        w = values[lo:max(lo, hi)]
        a = 0.0
        bad = 0
        for t in range(w.shape[0]):
            v = np.float64(w[t])
            d = v - mean
            a += d * d
            bad += v - v != 0.0
        if bad:
            a = 0.0
            for t in range(w.shape[0]):
                v = np.float64(w[t])
                if np.isfinite(v):
                    d = v - mean
                    a += d * d
        out[blk] = a
    return out


@njit(cache=True)
def face_components(lin, ni, nj, nk):
    """Face-connected (6-neighbour) components of a sparse set of voxels: ``lin`` = their sorted linear indices
    (k, j, i C order) on an (nk, nj, ni) grid. Returns each voxel's component, numbered 0, 1, ... in the order
    of each component's first voxel (scan order, as ITK's ConnectedComponent). Union-find: memory grows with
    the voxels, not with the grid."""
    n = lin.shape[0]
    parent = np.arange(n)
    plane = ni * nj
    for a in range(n):
        v = lin[a]
        i = v % ni
        j = (v // ni) % nj
        for step, ok in ((1, i < ni - 1), (ni, j < nj - 1), (plane, v // plane < nk - 1)):
            if not ok:
                continue
            b = np.searchsorted(lin, v + step)
            if b < n and lin[b] == v + step:
                ra = a
                while parent[ra] != ra:
                    parent[ra] = parent[parent[ra]]
                    ra = parent[ra]
                rb = b
                while parent[rb] != rb:
                    parent[rb] = parent[parent[rb]]
                    rb = parent[rb]
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)  # the root is the component's first voxel
    out = np.empty(n, np.int64)
    number = np.full(n, -1)
    count = 0
    for a in range(n):
        r = a
        while parent[r] != r:
            r = parent[r]
        if number[r] < 0:
            number[r] = count
            count += 1
        out[a] = number[r]
    return out



@njit(inline="always", cache=True)
def _float32_key(bits):
    """Order-preserving unsigned key of a float32's bit pattern (as uint32): negative values flipped, the sign
    bit set on the others, so that keys compare as the values do (−0.0 just below +0.0)."""
    return ~bits if bits >= np.uint32(0x80000000) else bits | np.uint32(0x80000000)


@njit(parallel=True, cache=True)
def key_histogram(values, nblocks):
    """Per block of a flat float32 array of finite values: the counts of the 2^16 buckets of the values' keys'
    top 16 bits (``_float32_key``; bucket order = value order) and the smallest and largest key."""
    bits = values.view(np.uint32)
    n = bits.shape[0]
    counts = np.zeros((nblocks, 1 << 16), np.int64)
    ends = np.zeros((nblocks, 2), np.uint32)
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        w = bits[lo:max(lo, hi)]
        c = counts[blk]
        kmin, kmax = np.uint32(0xFFFFFFFF), np.uint32(0)
        for t in range(w.shape[0]):
            key = _float32_key(w[t])
            c[key >> np.uint32(16)] += 1
            kmin = min(kmin, key)
            kmax = max(kmax, key)
        ends[blk, 0], ends[blk, 1] = kmin, kmax
    return counts, ends


@njit(parallel=True, cache=True)
def gather_buckets(values, nblocks, wanted, offsets, out):
    """The values (flat float32, blocks as in :func:`key_histogram`) whose key bucket is marked in ``wanted``
    (2^16 booleans), block ``blk``'s written from ``out[offsets[blk]]`` in array order."""
    bits = values.view(np.uint32)
    n = bits.shape[0]
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        t_out = offsets[blk]
        for t in range(lo, hi):
            if wanted[_float32_key(bits[t]) >> np.uint32(16)]:
                out[t_out] = values[t]
                t_out += 1


@njit(parallel=True, cache=True)
def edge_histogram(values, nblocks, edges):
    """Per block: the counts of flat float32 values in the bins ``edges[b] <= v < edges[b + 1]`` (the last bin
    closed: ``v <= edges[-1]``), then the counts below ``edges[0]`` and above ``edges[-1]`` (``edges``: float32,
    increasing). The bin is estimated from equal widths and then settled by exact comparisons with the edges
    (so the estimate's rounding never matters)."""
    n = values.shape[0]
    bins = edges.shape[0] - 1
    out = np.zeros((nblocks, bins + 2), np.int64)
    size = (n + nblocks - 1) // nblocks
    first, last = edges[0], edges[bins]
    scale = bins / (np.float64(last) - np.float64(first))
    for blk in prange(nblocks):
        lo, hi = blk * size, min(n, (blk + 1) * size)
        c = out[blk]
        for t in range(lo, hi):
            v = values[t]
            if v < first:
                c[bins] += 1
            elif v > last:
                c[bins + 1] += 1
            else:
                b = min(max(int((np.float64(v) - first) * scale), 0), bins - 1)
                while v < edges[b]:
                    b -= 1
                while b < bins - 1 and v >= edges[b + 1]:
                    b += 1
                c[b] += 1
    return out
