"""Compiled (numba) kernels of the segment comparison and of the threshold clean-up.

Segment comparison (metrics.py, surface.py): masks as runs along i (one pass over the crop), their voxel counts,
overlaps (also of a mask with itself shifted) and boundary voxels computed on the runs; exact Euclidean distances
from boundary voxels to the other boundary, searched row by row outwards from each query within a 10 mm band,
with a k-d tree of the boundary voxel centres for the queries farther than that (no distance map of the grid:
memory grows with the boundaries, not with the volume).

Threshold clean-up (segmentation.py): connected components (face connectivity) of a mask's runs along i with a
union-find, the component sizes, and the mask rewritten from the kept runs.

Every kernel is exact: integer counts, and distances computed as ``sqrt((Δk·sz)² + (Δj·sy)² + (Δi·sx)²)`` in
float64 between voxel centres (the nearest voxel is found exactly; ties do not matter for a distance).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


# ---------------------------------------------------------------------------------------------------
# Boundary voxels of a mask from its runs
# ---------------------------------------------------------------------------------------------------
@njit(cache=True)
def _row_edges(row_start, lo, hi, nk, nj, ni, k, j, out, pos, write):
    """Boundary voxels of row (k, j) (i in C order): written to ``out[pos:]`` when ``write``; returns the new pos.

    A run voxel is interior when it is not at a run end and the four rows (k ± 1, j), (k, j ± 1) cover it; the
    grid's faces are outside."""
    r = k * nj + j
    edge_row = k == 0 or k == nk - 1 or j == 0 or j == nj - 1
    n0 = (k - 1) * nj + j
    n1 = (k + 1) * nj + j
    n2 = r - 1
    n3 = r + 1
    p0 = row_start[n0] if not edge_row else 0
    p1 = row_start[n1] if not edge_row else 0
    p2 = row_start[n2] if not edge_row else 0
    p3 = row_start[n3] if not edge_row else 0
    for p in range(row_start[r], row_start[r + 1]):
        a, b = lo[p], hi[p]
        if edge_row or b - a <= 2:
            for i in range(a, b):
                if write:
                    out[pos, 0] = k
                    out[pos, 1] = j
                    out[pos, 2] = i
                pos += 1
            continue
        # the run's two ends are boundary voxels; between them, walk the neighbours' runs
        if write:
            out[pos, 0] = k
            out[pos, 1] = j
            out[pos, 2] = a
        pos += 1
        x = a + 1
        e = b - 1
        while x < e:
            # the end of the stretch from x that all four neighbours cover (x itself if one does not)
            cover = e
            gap_end = e
            for n in range(4):
                if n == 0:
                    q, q_end = p0, row_start[n0 + 1]
                elif n == 1:
                    q, q_end = p1, row_start[n1 + 1]
                elif n == 2:
                    q, q_end = p2, row_start[n2 + 1]
                else:
                    q, q_end = p3, row_start[n3 + 1]
                while q < q_end and hi[q] <= x:
                    q += 1
                if n == 0:
                    p0 = q
                elif n == 1:
                    p1 = q
                elif n == 2:
                    p2 = q
                else:
                    p3 = q
                if q < q_end and lo[q] <= x:
                    if hi[q] < cover:
                        cover = hi[q]
                else:
                    cover = x  # not covered: x starts a gap up to the next run of this neighbour
                    nxt = lo[q] if q < q_end else e
                    if nxt < gap_end:
                        gap_end = nxt
            if cover > x:
                x = cover  # interior stretch
            else:
                # x is a boundary voxel; so is everything up to the start of this neighbour's next run
                # (other neighbours may uncover more: the loop continues from there)
                stop = gap_end if gap_end > x else x + 1
                if stop > e:
                    stop = e
                for i in range(x, stop):
                    if write:
                        out[pos, 0] = k
                        out[pos, 1] = j
                        out[pos, 2] = i
                    pos += 1
                x = stop
        if write:
            out[pos, 0] = k
            out[pos, 1] = j
            out[pos, 2] = b - 1
        pos += 1
    return pos


@njit(parallel=True, cache=True)
def _edge_counts(row_start, lo, hi, nk, nj, ni):
    counts = np.zeros(nk, np.int64)
    dummy = np.empty((1, 3), np.int32)
    for k in prange(nk):
        pos = 0
        for j in range(nj):
            pos = _row_edges(row_start, lo, hi, nk, nj, ni, k, j, dummy, pos, False)
        counts[k] = pos
    return counts


@njit(parallel=True, cache=True)
def _edge_fill(row_start, lo, hi, nk, nj, ni, first, out):
    for k in prange(nk):
        pos = first[k]
        for j in range(nj):
            pos = _row_edges(row_start, lo, hi, nk, nj, ni, k, j, out, pos, True)


def boundary_voxels(mask_runs, shape) -> np.ndarray:
    """(m, 3) int32 (k, j, i) of the boundary voxels (a 6-neighbour outside the mask; the array edge is
    outside), in C order, from :func:`runs` of the mask."""
    row_start, lo, hi = mask_runs
    nk, nj, ni = shape
    counts = _edge_counts(row_start, lo, hi, nk, nj, ni)
    first = np.zeros(nk + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    out = np.empty((int(first[-1]), 3), np.int32)
    _edge_fill(row_start, lo, hi, nk, nj, ni, first, out)
    return out


@njit(parallel=True, cache=True)
def _in_runs(row_start, lo, hi, nj, pts, out):
    for n in prange(pts.shape[0]):
        r = pts[n, 0] * nj + pts[n, 1]
        i = pts[n, 2]
        a, b = row_start[r], row_start[r + 1]
        while b - a > 1:  # the last run starting at or before i
            m = (a + b) // 2
            if lo[m] <= i:
                a = m
            else:
                b = m
        out[n] = a < row_start[r + 1] and lo[a] <= i < hi[a]


def in_mask(mask_runs, shape, pts_kji) -> np.ndarray:
    """Whether each (k, j, i) voxel lies in the mask (from its :func:`runs`)."""
    out = np.empty(len(pts_kji), np.bool_)
    if len(pts_kji):
        row_start, lo, hi = mask_runs
        _in_runs(row_start, lo, hi, shape[1], np.ascontiguousarray(pts_kji, dtype=np.int64), out)
    return out


def mask_count(mask_runs) -> int:
    _row_start, lo, hi = mask_runs
    return int(np.sum(hi.astype(np.int64) - lo))


# ---------------------------------------------------------------------------------------------------
# Exact nearest-point distances: a k-d tree of the target voxel centres (mm)
# ---------------------------------------------------------------------------------------------------
_LEAF = 8


@njit(cache=True)
def _select(order, pts, lo, hi, nth, dim):
    """Quickselect: reorder ``order[lo:hi]`` so that position ``nth`` holds the element of rank nth (by
    ``pts[:, dim]``), smaller-or-equal before it, greater-or-equal after it."""
    while hi - lo > 1:
        mid = (lo + hi - 1) // 2
        # median of three as the pivot
        x0, x1, x2 = pts[order[lo], dim], pts[order[mid], dim], pts[order[hi - 1], dim]
        if (x0 <= x1 <= x2) or (x2 <= x1 <= x0):
            pivot = x1
        elif (x1 <= x0 <= x2) or (x2 <= x0 <= x1):
            pivot = x0
        else:
            pivot = x2
        i, j = lo, hi - 1
        while i <= j:
            while pts[order[i], dim] < pivot:
                i += 1
            while pts[order[j], dim] > pivot:
                j -= 1
            if i <= j:
                t = order[i]
                order[i] = order[j]
                order[j] = t
                i += 1
                j -= 1
        if nth <= j:
            hi = j + 1
        elif nth >= i:
            lo = i
        else:
            return


@njit(cache=True)
def _build(pts):
    """k-d tree over ``pts`` (n, 3): (order, node arrays). Node c: points order[start[c]:stop[c]]; inner nodes
    split on ``dim[c]`` at ``split[c]`` into children 2c+1 (≤) and 2c+2 (≥); leaves have dim −1."""
    n = pts.shape[0]
    order = np.arange(n)
    size = 1
    while size * _LEAF < n:
        size *= 2
    n_nodes = 2 * size - 1
    start = np.zeros(n_nodes, np.int64)
    stop = np.zeros(n_nodes, np.int64)
    dim = -np.ones(n_nodes, np.int64)
    split = np.zeros(n_nodes)
    stack = np.empty(n_nodes, np.int64)
    top = 0
    stack[top] = 0
    top += 1
    start[0], stop[0] = 0, n
    while top > 0:
        top -= 1
        c = stack[top]
        lo, hi = start[c], stop[c]
        if hi - lo <= _LEAF or 2 * c + 2 >= n_nodes:
            continue
        lo_x = np.full(3, np.inf)
        hi_x = np.full(3, -np.inf)
        for p in range(lo, hi):
            for d in range(3):
                v = pts[order[p], d]
                if v < lo_x[d]:
                    lo_x[d] = v
                if v > hi_x[d]:
                    hi_x[d] = v
        d_best = 0
        for d in range(1, 3):
            if hi_x[d] - lo_x[d] > hi_x[d_best] - lo_x[d_best]:
                d_best = d
        mid = (lo + hi) // 2
        _select(order, pts, lo, hi, mid, d_best)
        dim[c] = d_best
        split[c] = pts[order[mid], d_best]
        left, right = 2 * c + 1, 2 * c + 2
        start[left], stop[left] = lo, mid
        start[right], stop[right] = mid, hi
        stack[top] = left
        top += 1
        stack[top] = right
        top += 1
    return order, start, stop, dim, split


@njit(parallel=True, cache=True)
def _query(tpts, order, start, stop, dim, split, qpts, chunk, out):
    """Squared distance from each query point to its nearest tree point. Queries are taken in chunks in order;
    within a chunk the previous answer bounds the next (``d(q) <= d(p) + |p - q|``), which prunes the search."""
    nq = qpts.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    n_nodes = start.shape[0]
    depth = 1
    while (1 << depth) < n_nodes + 1:
        depth += 1
    for c in prange(n_chunks):
        stack_node = np.empty(2 * depth + 2, np.int64)
        stack_bound = np.empty(2 * depth + 2)
        prev = -1
        for q in range(c * chunk, min(nq, (c + 1) * chunk)):
            x0, x1, x2 = qpts[q, 0], qpts[q, 1], qpts[q, 2]
            best = np.inf
            if prev >= 0:
                e0, e1, e2 = x0 - qpts[prev, 0], x1 - qpts[prev, 1], x2 - qpts[prev, 2]
                r = np.sqrt(out[prev]) + np.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                best = r * r * (1.0 + 1e-12) + 1e-300  # an upper bound: never below the true answer
            stack_node[0] = 0
            stack_bound[0] = 0.0
            top = 1
            found = np.inf
            while top > 0:
                top -= 1
                if stack_bound[top] >= best:
                    continue
                node = stack_node[top]
                while dim[node] >= 0:
                    d = dim[node]
                    diff = (x0 if d == 0 else (x1 if d == 1 else x2)) - split[node]
                    if diff < 0.0:
                        near, far = 2 * node + 1, 2 * node + 2
                    else:
                        near, far = 2 * node + 2, 2 * node + 1
                    b = diff * diff
                    if b < best:
                        stack_node[top] = far
                        stack_bound[top] = b
                        top += 1
                    node = near
                for p in range(start[node], stop[node]):
                    t = order[p]
                    e0, e1, e2 = x0 - tpts[t, 0], x1 - tpts[t, 1], x2 - tpts[t, 2]
                    s = e0 * e0 + e1 * e1 + e2 * e2
                    if s < found:
                        found = s
                        if s < best:
                            best = s
            out[q] = found
            prev = q


@njit(parallel=True, cache=True)
def _row_search(t_start, t_i, nk, nj, q, sx, sy, sz, cap2, chunk, out):
    """Squared distance (mm²) from each query voxel to the nearest target voxel, searching the targets' rows
    (k', j') in order of their distance to the query's row, within ``cap2``; ``inf`` where no target lies
    within the cap (the caller searches those otherwise). The previous query's answer bounds the next one."""
    nq = q.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for c in prange(n_chunks):
        prev = -1
        for n in range(c * chunk, min(nq, (c + 1) * chunk)):
            k, j, i = q[n, 0], q[n, 1], q[n, 2]
            best = cap2
            if prev >= 0 and out[prev] < np.inf:
                e0 = (k - q[prev, 0]) * sz
                e1 = (j - q[prev, 1]) * sy
                e2 = (i - q[prev, 2]) * sx
                ub = np.sqrt(out[prev]) + np.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                ub = ub * ub * (1.0 + 1e-12) + 1e-300
                if ub < best:
                    best = ub
            found = np.inf
            for tk in range(2 * nk + 1):
                dk = (tk + 1) // 2
                if tk % 2 == 0:
                    dk = -dk
                z2 = (dk * sz) * (dk * sz)
                if z2 >= best:
                    break
                kk = k + dk
                if kk < 0 or kk >= nk:
                    continue
                for tj in range(2 * nj + 1):
                    dj = (tj + 1) // 2
                    if tj % 2 == 0:
                        dj = -dj
                    base = z2 + (dj * sy) * (dj * sy)
                    if base >= best:
                        break
                    jj = j + dj
                    if jj < 0 or jj >= nj:
                        continue
                    r = kk * nj + jj
                    a, b = t_start[r], t_start[r + 1]
                    if a == b:
                        continue
                    lo_, hi_ = a, b
                    while hi_ - lo_ > 1:  # last target with t_i <= i (or the first one)
                        m = (lo_ + hi_) // 2
                        if t_i[m] <= i:
                            lo_ = m
                        else:
                            hi_ = m
                    di = abs(i - t_i[lo_])
                    if lo_ + 1 < b:
                        d2 = abs(t_i[lo_ + 1] - i)
                        if d2 < di:
                            di = d2
                    s = base + (di * sx) * (di * sx)
                    if s < found:
                        found = s
                        if s < best:
                            best = s
            out[n] = found if found <= cap2 else np.inf
            prev = n


def nearest_distances(targets_kji: np.ndarray, queries_kji: np.ndarray, spacing, shape) -> np.ndarray:
    """Euclidean distance (mm, float64) from each query voxel centre to the nearest target voxel centre.

    ``targets_kji``/``queries_kji``: (n, 3) integer (k, j, i) indices of one grid of ``shape``, the targets in
    C order (as :func:`boundary_voxels` gives them); ``spacing`` (x, y, z) mm. Exact: the targets' rows are
    searched outwards from the query's row within a band of 10 mm (at least 6 voxels), the previous query's
    answer bounding the next; queries with no target in the band are answered by a k-d tree of the targets.
    The target set must not be empty.
    """
    nk, nj, _ni = shape
    sx, sy, sz = (float(v) for v in spacing)
    t = np.ascontiguousarray(targets_kji, dtype=np.int64)
    q = np.ascontiguousarray(queries_kji, dtype=np.int64)
    out = np.empty(len(q))
    if len(q) == 0:
        return out
    t_start = np.zeros(nk * nj + 1, np.int64)
    np.cumsum(np.bincount(t[:, 0] * nj + t[:, 1], minlength=nk * nj), out=t_start[1:])
    band = max(10.0, 6.0 * max(sx, sy, sz))
    _row_search(t_start, np.ascontiguousarray(t[:, 2]), nk, nj, q, sx, sy, sz, band * band, 2048, out)
    far = np.flatnonzero(~np.isfinite(out))
    if far.size:
        scale = np.array([sz, sy, sx])
        tpts = t.astype(np.float64) * scale
        qpts = q[far].astype(np.float64) * scale
        order, start, stop, dim, split = _build(tpts)
        d2 = np.empty(far.size)
        _query(tpts, order, start, stop, dim, split, qpts, 2048, d2)
        out[far] = d2
    return np.sqrt(out)


# ---------------------------------------------------------------------------------------------------
# Runs along i
# ---------------------------------------------------------------------------------------------------
def runs(mask: np.ndarray, value=1):
    """Runs along i of the voxels equal to ``value`` of a (k, j, i) array: (row_start (nk·nj + 1), lo, hi);
    row r = k·nj + j holds runs ``row_start[r]:row_start[r + 1]``, each [lo, hi) in i, in order."""
    m = np.ascontiguousarray(mask)
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
        value = int(bool(value))
    return box_runs(m, value, (0, 0, 0), m.shape)


@njit(cache=True)
def _overlap(a_start, a_lo, a_hi, b_start, b_lo, b_hi, nk, nj, ok, oj, oi):
    """|{p ∈ A : p + (ok, oj, oi) ∈ B}| from the runs of A and B (outside the array = in neither)."""
    total = 0
    for k in range(max(0, -ok), min(nk, nk - ok)):
        for j in range(max(0, -oj), min(nj, nj - oj)):
            r1 = k * nj + j
            r2 = (k + ok) * nj + (j + oj)
            p, q = a_start[r1], b_start[r2]
            p_end, q_end = a_start[r1 + 1], b_start[r2 + 1]
            while p < p_end and q < q_end:
                a0, a1 = a_lo[p], a_hi[p]
                b0, b1 = b_lo[q] - oi, b_hi[q] - oi
                s = a0 if a0 > b0 else b0
                e = a1 if a1 < b1 else b1
                if e > s:
                    total += e - s
                if a1 < b1:
                    p += 1
                else:
                    q += 1
    return total


def overlap(a_runs, b_runs, shape, offset_kji=(0, 0, 0)) -> int:
    """|{p ∈ A : p + offset ∈ B}| for an integer (k, j, i) offset, from :func:`runs` of A and B (one shape);
    the offset 0 gives |A ∩ B|."""
    ok, oj, oi = (int(v) for v in offset_kji)
    if abs(ok) >= shape[0] or abs(oj) >= shape[1] or abs(oi) >= shape[2]:
        return 0
    return int(_overlap(a_runs[0], a_runs[1], a_runs[2], b_runs[0], b_runs[1], b_runs[2], shape[0], shape[1],
                        ok, oj, oi))


# ---------------------------------------------------------------------------------------------------
# Connected components of runs (face connectivity) and the clean-up
# ---------------------------------------------------------------------------------------------------
@njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(cache=True)
def _union_rows(parent, row_start, lo, hi, r1, r2):
    p, q = row_start[r1], row_start[r2]
    p_end, q_end = row_start[r1 + 1], row_start[r2 + 1]
    while p < p_end and q < q_end:
        if lo[p] < hi[q] and lo[q] < hi[p]:  # overlapping in i: face-connected
            a = _find(parent, p)
            b = _find(parent, q)
            if a != b:
                if a < b:
                    parent[b] = a
                else:
                    parent[a] = b
        if hi[p] < hi[q]:
            p += 1
        else:
            q += 1


@njit(cache=True)
def _components(row_start, lo, hi, nk, nj, ni):
    """Per run: component id (consecutive, in raster order of each component's first run); per component:
    voxel count and whether it touches a face of the grid."""
    n = lo.shape[0]
    parent = np.arange(n)
    for k in range(nk):
        for j in range(nj):
            r = k * nj + j
            if j > 0:
                _union_rows(parent, row_start, lo, hi, r, r - 1)
            if k > 0:
                _union_rows(parent, row_start, lo, hi, r, r - nj)
    label = -np.ones(n, np.int64)
    comp = np.empty(n, np.int64)
    n_comp = 0
    for p in range(n):
        root = _find(parent, p)
        if label[root] < 0:  # roots are the smallest run index of their component: raster order
            label[root] = n_comp
            n_comp += 1
        comp[p] = label[root]
    sizes = np.zeros(n_comp, np.int64)
    border = np.zeros(n_comp, np.bool_)
    for k in range(nk):
        for j in range(nj):
            r = k * nj + j
            for p in range(row_start[r], row_start[r + 1]):
                c = comp[p]
                sizes[c] += hi[p] - lo[p]
                if k == 0 or k == nk - 1 or j == 0 or j == nj - 1 or lo[p] == 0 or hi[p] == ni:
                    border[c] = True
    return comp, sizes, border


@njit(parallel=True, cache=True)
def _paint(out, row_start, lo, hi, comp, keep, value):
    nk, nj, _ni = out.shape
    for k in prange(nk):
        for j in range(nj):
            r = k * nj + j
            for p in range(row_start[r], row_start[r + 1]):
                if keep[comp[p]]:
                    for i in range(lo[p], hi[p]):
                        out[k, j, i] = value


def components(mask: np.ndarray, value=1):
    """Face-connected components of the voxels equal to ``value``: (runs, component of each run, sizes,
    touches-the-grid-face flags); components numbered in raster order of their first voxel."""
    r = runs(mask, value)
    nk, nj, ni = mask.shape
    comp, sizes, border = _components(r[0], r[1], r[2], nk, nj, ni)
    return r, comp, sizes, border


@njit(parallel=True, cache=True)
def _gaps(row_start, lo, hi, comp, keep, ni, out_start, out_lo, out_hi, write):
    """Per row, the maximal stretches of [0, ni) that no kept run covers (the background of the kept runs)."""
    n_rows = row_start.shape[0] - 1
    counts = np.zeros(n_rows, np.int64)
    for r in prange(n_rows):
        x = 0
        n = 0
        pos = out_start[r] if write else 0
        for p in range(row_start[r], row_start[r + 1]):
            if not keep[comp[p]]:
                continue
            if lo[p] > x:
                if write:
                    out_lo[pos + n] = x
                    out_hi[pos + n] = lo[p]
                n += 1
            x = hi[p]
        if x < ni:
            if write:
                out_lo[pos + n] = x
                out_hi[pos + n] = ni
            n += 1
        counts[r] = n
    return counts


@njit(cache=True, inline="always")
def _inside(x, mode, a, b):
    if mode == 0:
        return x > a and x < np.inf
    return x >= a and x <= b and np.isfinite(x)


@njit(parallel=True, cache=True)
def _threshold_counts(arr, mode, a, b):
    """Runs per row of the voxels above ``a`` (mode 0) or in [a, b] (mode 1); non-finite voxels are never in."""
    nk, nj, ni = arr.shape
    counts = np.zeros(nk * nj, np.int64)
    for k in prange(nk):
        for j in range(nj):
            row = arr[k, j]
            prev = False
            n = 0
            for i in range(ni):  # run starts, branch-free
                x = np.float64(row[i])
                v = (x > a) & (x < np.inf) if mode == 0 else (x >= a) & (x <= b) & (x - x == 0.0)
                n += v & (not prev)
                prev = v
            counts[k * nj + j] = n
    return counts


@njit(parallel=True, cache=True)
def _threshold_fill(arr, mode, a, b, row_start, lo, hi):
    nk, nj, ni = arr.shape
    for k in prange(nk):
        for j in range(nj):
            r = k * nj + j
            p = row_start[r]
            if row_start[r + 1] == p:
                continue
            row = arr[k, j]
            inside = False
            for i in range(ni):
                v = _inside(np.float64(row[i]), mode, a, b)
                if v and not inside:
                    lo[p] = i
                elif inside and not v:
                    hi[p] = i
                    p += 1
                inside = v
            if inside:
                hi[p] = ni


def threshold_runs(arr: np.ndarray, lower=None, upper=None, above=None):
    """Runs along i of the finite voxels of a (k, j, i) intensity array strictly ``above`` a value, or within
    [``lower``, ``upper``] (a missing bound is open), read straight from the intensities."""
    arr = np.ascontiguousarray(arr)
    if above is not None:
        mode, a, b = 0, float(above), 0.0
    else:
        mode = 1
        a = -np.inf if lower is None else float(lower)
        b = np.inf if upper is None else float(upper)
    counts = _threshold_counts(arr, mode, a, b)
    row_start = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=row_start[1:])
    lo = np.empty(int(row_start[-1]), np.int32)
    hi = np.empty(int(row_start[-1]), np.int32)
    _threshold_fill(arr, mode, a, b, row_start, lo, hi)
    return row_start, lo, hi


def clean_runs(mask_runs, shape, min_voxels: int, largest: bool, fill_holes: bool) -> np.ndarray:
    """uint8 0/1 (k, j, i) mask from a mask's runs after the clean-up: components (face connectivity) with fewer
    than ``min_voxels`` voxels dropped, or with ``largest`` all but the largest (equal sizes: the first in raster
    order); then with ``fill_holes`` every background component that touches no face of the grid filled."""
    nk, nj, ni = shape
    row_start, lo, hi = mask_runs
    if min_voxels > 1 or largest:
        comp, sizes, _border = _components(row_start, lo, hi, nk, nj, ni)
        keep = sizes >= max(int(min_voxels), 1)
        if largest and sizes.size and sizes.max() > 0:
            keep = np.zeros(sizes.size, np.bool_)
            keep[int(np.argmax(sizes))] = True  # argmax: the first of equal sizes
    else:
        comp = np.zeros(lo.size, np.int64)
        keep = np.ones(1, np.bool_)
    out = np.zeros(shape, np.uint8)
    _paint(out, row_start, lo, hi, comp, keep, np.uint8(1))
    if fill_holes and out.size:
        no_runs = np.zeros(0, np.int32)
        counts = _gaps(row_start, lo, hi, comp, keep, ni, row_start, no_runs, no_runs, False)
        g_start = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=g_start[1:])
        g_lo = np.empty(int(g_start[-1]), np.int32)
        g_hi = np.empty(int(g_start[-1]), np.int32)
        _gaps(row_start, lo, hi, comp, keep, ni, g_start, g_lo, g_hi, True)
        g_comp, _sizes, g_border = _components(g_start, g_lo, g_hi, nk, nj, ni)
        _paint(out, g_start, g_lo, g_hi, g_comp, ~g_border, np.uint8(1))
    return out


def _binary(mask: np.ndarray) -> np.ndarray:
    """uint8 0/1 C-contiguous view or copy of ``mask > 0``."""
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        return np.ascontiguousarray(m).view(np.uint8)
    return np.ascontiguousarray(m > 0).view(np.uint8)


def keep_components(mask: np.ndarray, min_voxels: int, largest: bool) -> np.ndarray:
    """uint8 0/1 mask of the components of ``mask > 0`` with at least ``min_voxels`` voxels; with ``largest``,
    only the largest (ties: the first in raster order)."""
    m = _binary(mask)
    return clean_runs(runs(m, 1), m.shape, min_voxels, largest, False)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask with every background component that touches no face of the grid filled."""
    m = _binary(mask)
    return clean_runs(runs(m, 1), m.shape, 0, False, True)


# ---------------------------------------------------------------------------------------------------
# Otsu's threshold: ITK's histogram and calculator, reproduced
# ---------------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _finite_min_max(arr, n_chunks):
    """(min, max, count) of the finite values of ``arr`` taken as float32 (the image cast to float32)."""
    flat = arr.ravel()
    n = flat.size
    lo = np.full(n_chunks, np.inf)
    hi = np.full(n_chunks, -np.inf)
    cnt = np.zeros(n_chunks, np.int64)
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        a, b = np.inf, -np.inf
        m = 0
        for p in range(c * step, min(n, (c + 1) * step)):
            x = np.float64(np.float32(flat[p]))
            if np.isfinite(x):
                m += 1
                if x < a:
                    a = x
                if x > b:
                    b = x
        lo[c], hi[c], cnt[c] = a, b, m
    return lo.min(), hi.max(), cnt.sum()


@njit(cache=True, inline="always")
def _bin_of(x, first, interval, mins):
    nb = mins.shape[0]
    j = int((x - first) / interval)
    if j < 0:
        j = 0
    if j > nb - 1:
        j = nb - 1
    while j > 0 and x < mins[j]:
        j -= 1
    while j < nb - 1 and x >= mins[j + 1]:
        j += 1
    return j


@njit(parallel=True, cache=True)
def _histogram(arr, mins, interval, n_chunks):
    """Counts per bin of the finite float32 values: bin j = the last bin whose lower edge is <= the value
    (ITK's Histogram::GetIndex on contiguous bins)."""
    flat = arr.ravel()
    n = flat.size
    nb = mins.shape[0]
    counts = np.zeros((n_chunks, nb), np.int64)
    step = (n + n_chunks - 1) // n_chunks
    first = mins[0]
    for c in prange(n_chunks):
        for p in range(c * step, min(n, (c + 1) * step)):
            x = np.float64(np.float32(flat[p]))
            if np.isfinite(x):
                counts[c, _bin_of(x, first, interval, mins)] += 1
    return counts.sum(axis=0)


@njit(parallel=True, cache=True)
def _value_counts_16(arr, offset, n_chunks):
    """Voxel count per value of a ≤ 16-bit integer array (index = value + offset)."""
    flat = arr.ravel()
    n = flat.size
    counts = np.zeros((n_chunks, 65536), np.int64)
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        for p in range(c * step, min(n, (c + 1) * step)):
            counts[c, np.int64(flat[p]) + offset] += 1
    return counts.sum(axis=0)


def _almost_equal_1ulp(x: float, y: float) -> bool:
    """ITK's Math::FloatAlmostEqual(x, y, maxUlps=1) for doubles."""
    if abs(x - y) <= 0.1 * np.finfo(np.float64).eps:
        return True
    if (x < 0) != (y < 0):
        return False
    ix = int(np.array(abs(x)).view(np.int64))
    iy = int(np.array(abs(y)).view(np.int64))
    return abs(ix - iy) <= 1


def otsu_threshold(arr: np.ndarray, bins: int = 256) -> float | None:
    """Otsu's threshold of the finite values of ``arr`` (as float32), exactly as SimpleITK's
    ``OtsuThresholdImageFilter`` on the image cast to float32 with the finite voxels as mask: ``bins`` bins from
    the minimum to the maximum plus 1/100 of a bin (ITK's marginal scale) with float32 bin widths, each value in the last bin whose lower
    edge it reaches, the between-class variance maximised over the bins (ITK's OtsuMultipleThresholdsCalculator
    with one threshold, the same sums in the same order), returned as the upper edge of the chosen bin in float32.
    ``None`` when fewer than two distinct finite values."""
    arr = np.ascontiguousarray(arr)
    n_chunks = 8
    small_int = arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2
    if small_int:
        offset = 32768 if arr.dtype.kind == "i" else 0
        per_value = _value_counts_16(arr, offset, n_chunks)
        present = np.flatnonzero(per_value)
        if present.size < 2:
            return None
        lo, hi = float(present[0] - offset), float(present[-1] - offset)
    else:
        lo, hi, count = _finite_min_max(arr, n_chunks)
        if count == 0 or lo == hi:
            return None
    margin = ((hi - lo) / bins) / 100.0
    upper = hi + margin
    # ITK's Histogram::Initialize: a float32 bin width, edges lower + float32(j * width)
    width = np.float32(np.float32(upper) - np.float32(lo)) / np.float32(bins)
    j = np.arange(bins, dtype=np.float32)
    mins = lo + (j * width).astype(np.float64)
    maxs = lo + ((j + np.float32(1.0)) * width).astype(np.float64)
    maxs[-1] = upper
    interval = float(width)
    if small_int:
        values = (present - offset).astype(np.float64)
        idx = np.array([_bin_of(v, mins[0], interval, mins) for v in values], np.int64)
        freq = np.bincount(idx, weights=per_value[present], minlength=bins).astype(np.int64)
    else:
        freq = _histogram(arr, mins, interval, n_chunks)
    freq = [int(f) for f in freq]
    centre = [(float(a) + float(b)) / 2.0 for a, b in zip(mins, maxs)]
    total = sum(freq)
    global_mean = 0.0
    for c, f in zip(centre, freq):
        global_mean += c * float(f)
    global_mean /= float(total)
    # one threshold: class 0 = bins 0..t, class 1 = the rest (ITK's loop, its operations in its order)
    t = 0
    f0 = freq[0]
    f1 = total - f0
    m0 = centre[0] if f0 > 0 else 0.0
    mean_sum = m0 * float(f0)
    m1 = (global_mean * float(total) - mean_sum) / float(f1) if f1 > 0 else 0.0
    best = (float(f0) * (m0 * m0) + float(f1) * (m1 * m1)) / float(total)
    best_t = 0
    while t < bins - 2:
        t += 1
        m_old, f_old = m0, f0
        f0 += freq[t]
        m0 = (m_old * float(f_old) + centre[t] * float(freq[t])) / float(f0) if f0 > 0 else 0.0
        f1 = total - f0
        m1 = global_mean * float(total) - m0 * float(f0)
        m1 = m1 / float(f1) if f1 > 0 else 0.0
        var = (float(f0) * (m0 * m0) + float(f1) * (m1 * m1)) / float(total)
        if var > best and not _almost_equal_1ulp(best, var):
            best, best_t = var, t
    return float(np.float32(maxs[best_t]))


# ---------------------------------------------------------------------------------------------------
# Labelmaps: per-label boxes and counts, one label's runs in a box, the union of labels
# ---------------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _label_stats(arr, n_values, n_chunks):
    nk, nj, ni = arr.shape
    st = np.zeros((n_chunks, n_values, 7), np.int64)  # count, lo k j i, hi k j i (exclusive)
    for c in range(n_chunks):
        for v in range(n_values):
            st[c, v, 1] = st[c, v, 2] = st[c, v, 3] = 1 << 40
    step = (nk + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        for k in range(c * step, min(nk, (c + 1) * step)):
            for j in range(nj):
                i = 0
                while i < ni:  # runs of one value along i: one update per run
                    v = np.int64(arr[k, j, i])
                    e = i + 1
                    while e < ni and arr[k, j, e] == arr[k, j, i]:
                        e += 1
                    if v != 0:
                        st[c, v, 0] += e - i
                        if k < st[c, v, 1]:
                            st[c, v, 1] = k
                        if j < st[c, v, 2]:
                            st[c, v, 2] = j
                        if i < st[c, v, 3]:
                            st[c, v, 3] = i
                        if k + 1 > st[c, v, 4]:
                            st[c, v, 4] = k + 1
                        if j + 1 > st[c, v, 5]:
                            st[c, v, 5] = j + 1
                        if e > st[c, v, 6]:
                            st[c, v, 6] = e
                    i = e
    out = np.zeros((n_values, 7), np.int64)
    for v in range(n_values):
        out[v, 1] = out[v, 2] = out[v, 3] = 1 << 40
        for c in range(n_chunks):
            out[v, 0] += st[c, v, 0]
            for d in range(3):
                out[v, 1 + d] = min(out[v, 1 + d], st[c, v, 1 + d])
                out[v, 4 + d] = max(out[v, 4 + d], st[c, v, 4 + d])
    return out


def label_stats(arr: np.ndarray, max_values: int = 1 << 16):
    """{label: ((k0, j0, i0), (k1, j1, i1) exclusive, voxel count)} of every non-zero label of an integer
    (k, j, i) array in one pass; ``None`` when labels are negative or above ``max_values`` (the caller then uses
    another method)."""
    if arr.size == 0:
        return {}
    top, bottom = int(arr.max()), int(arr.min())
    if bottom < 0 or top >= max_values:
        return None
    st = _label_stats(np.ascontiguousarray(arr), top + 1, 8)
    return {v: ((int(s[1]), int(s[2]), int(s[3])), (int(s[4]), int(s[5]), int(s[6])), int(s[0]))
            for v, s in enumerate(st) if v and s[0]}


@njit(parallel=True, cache=True)
def _box_run_counts(arr, value, o_k, o_j, o_i, nbk, nbj, nbi):
    """Runs per box row of ``arr == value``; box voxel (bk, bj, bi) is array voxel (bk + o_k, ...)."""
    nk, nj, ni = arr.shape
    counts = np.zeros(nbk * nbj, np.int64)
    i0 = max(0, o_i)
    i1 = min(ni, nbi + o_i)
    if i1 <= i0:
        return counts
    for bk in prange(nbk):
        k = bk + o_k
        if k < 0 or k >= nk:
            continue
        for bj in range(nbj):
            j = bj + o_j
            if j < 0 or j >= nj:
                continue
            row = arr[k, j]
            n = np.int64(row[i0] == value)
            for i in range(i0 + 1, i1):  # run starts, branch-free (vectorised)
                n += (row[i] == value) & (row[i - 1] != value)
            counts[bk * nbj + bj] = n
    return counts


@njit(parallel=True, cache=True)
def _box_run_fill(arr, value, o_k, o_j, o_i, nbk, nbj, nbi, row_start, lo, hi):
    nk, nj, ni = arr.shape
    i0 = max(0, o_i)
    i1 = min(ni, nbi + o_i)
    for bk in prange(nbk):
        k = bk + o_k
        for bj in range(nbj):
            r = bk * nbj + bj
            p = row_start[r]
            if row_start[r + 1] == p:
                continue
            row = arr[k, bj + o_j]
            inside = False
            for i in range(i0, i1):
                v = row[i] == value
                if v and not inside:
                    lo[p] = i - o_i
                elif inside and not v:
                    hi[p] = i - o_i
                    p += 1
                inside = v
            if inside:
                hi[p] = i1 - o_i


def box_runs(arr: np.ndarray, value, offset_kji, shape):
    """Runs along i of ``arr == value`` in a box of ``shape`` whose voxel (0, 0, 0) is array voxel
    ``offset_kji`` (the box may reach beyond the array: nothing there)."""
    o_k, o_j, o_i = (int(v) for v in offset_kji)
    nbk, nbj, nbi = (int(v) for v in shape)
    arr = np.ascontiguousarray(arr)
    value = arr.dtype.type(value)
    counts = _box_run_counts(arr, value, o_k, o_j, o_i, nbk, nbj, nbi)
    row_start = np.zeros(nbk * nbj + 1, np.int64)
    np.cumsum(counts, out=row_start[1:])
    lo = np.empty(int(row_start[-1]), np.int32)
    hi = np.empty(int(row_start[-1]), np.int32)
    _box_run_fill(arr, value, o_k, o_j, o_i, nbk, nbj, nbi, row_start, lo, hi)
    return row_start, lo, hi


def empty_runs(shape):
    return np.zeros(int(shape[0]) * int(shape[1]) + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)


@njit(parallel=True, cache=True)
def _lut_or(arr, lut, out):
    nk, nj, ni = arr.shape
    n = lut.shape[0]
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                v = np.int64(arr[k, j, i])
                if 0 <= v < n and lut[v]:
                    out[k, j, i] = 1


def union_of_labels(arr: np.ndarray, labels, out: np.ndarray) -> None:
    """``out[arr ∈ labels] = 1`` (uint8 out of arr's shape), one pass."""
    labels = [int(v) for v in labels]
    wanted = [v for v in labels if v >= 0]
    if not wanted:
        return
    lut = np.zeros(max(wanted) + 1, np.uint8)
    lut[wanted] = 1
    _lut_or(np.ascontiguousarray(arr), lut, out)
