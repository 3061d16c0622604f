"""The compiled segment kernels against brute-force oracles (numpy / SimpleITK), on random masks."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import segment_kernels as sk


def _edges_oracle(m: np.ndarray) -> np.ndarray:
    """Boundary voxels: set voxels with a 6-neighbour unset or outside the array."""
    p = np.pad(m, 1)
    interior = p[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for step in (-1, 1):
            interior &= np.roll(p, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return m & ~interior


def _random_masks(rng, n):
    for trial in range(n):
        shape = tuple(int(v) for v in rng.integers(1, 22, 3))
        a = rng.random(shape) < rng.uniform(0.05, 0.95)
        b = rng.random(shape) < rng.uniform(0.01, 0.95)
        if trial % 5 == 0:  # one far-away voxel: distances beyond the row-search band
            b[:] = False
            b[tuple(int(rng.integers(0, s)) for s in shape)] = True
        yield trial, a, b


def test_runs_counts_boundaries_and_membership_match_numpy():
    rng = np.random.default_rng(3)
    for _trial, a, b in _random_masks(rng, 40):
        ra, rb = sk.runs(a), sk.runs(b)
        assert sk.mask_count(ra) == a.sum()
        assert sk.overlap(ra, rb, a.shape) == np.count_nonzero(a & b)
        ea = sk.boundary_voxels(ra, a.shape)
        assert np.array_equal(ea, np.argwhere(_edges_oracle(a)))  # also the C order
        assert np.array_equal(sk.in_mask(rb, b.shape, ea), b[tuple(ea.T)])


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 2.0), (1.0, 1.0, 1.0), (3.0, 0.4, 1.3), (6.0, 7.0, 9.0)])
def test_nearest_distances_equal_brute_force(spacing):
    rng = np.random.default_rng(int(10 * spacing[2]))
    scale = np.array(spacing[::-1])
    for _trial, a, b in _random_masks(rng, 25):
        ea, eb = np.argwhere(_edges_oracle(a)), np.argwhere(_edges_oracle(b))
        if not (len(ea) and len(eb)):
            continue
        got = sk.nearest_distances(eb, ea, spacing, a.shape)
        want = np.sqrt((((ea[:, None, :] - eb[None, :, :]) * scale) ** 2).sum(-1).min(axis=1))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_far_queries_are_answered_by_the_tree():
    """Targets 40 mm away (beyond the 10 mm band): every query takes the k-d tree; still exact."""
    shape = (3, 60, 60)
    targets = np.array([[1, 59, 59], [0, 58, 59], [2, 59, 3]])
    queries = np.argwhere(np.ones((3, 12, 12), bool))
    got = sk.nearest_distances(targets, queries, (1.0, 1.0, 1.0), shape)
    want = np.sqrt(((queries[:, None, :] - targets[None, :, :]) ** 2).sum(-1).min(axis=1))
    assert want.min() > 10
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_shifted_overlaps_match_numpy():
    rng = np.random.default_rng(5)
    for _trial, a, _b in _random_masks(rng, 20):
        r = sk.runs(a)
        for o in [(0, 0, 1), (1, 0, -1), (0, -2, 1), (2, 1, 3), (-1, -1, -4), (30, 0, 0)]:
            src = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(o, a.shape))
            dst = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(o, a.shape))
            want = 0 if any(abs(d) >= n for d, n in zip(o, a.shape)) else np.count_nonzero(a[src] & a[dst])
            assert sk.overlap(r, r, a.shape, o) == want


def test_components_largest_and_holes_match_simpleitk():
    rng = np.random.default_rng(7)
    for _trial in range(30):
        shape = tuple(int(v) for v in rng.integers(1, 14, 3))
        m = (rng.random(shape) < rng.uniform(0.2, 0.8)).astype(np.uint8)
        img = sitk.GetImageFromArray(m)
        labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(img, False))
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        largest = (labels == np.argmax(sizes)).astype(np.uint8) if sizes.max() else np.zeros_like(m)
        assert np.array_equal(sk.keep_components(m, 0, True), largest)
        islands = np.isin(labels, np.flatnonzero(sizes >= 3)).astype(np.uint8)
        assert np.array_equal(sk.keep_components(m, 3, False), islands)
        assert np.array_equal(sk.fill_holes(m), sitk.GetArrayFromImage(sitk.BinaryFillhole(img, False, 1)))


def _itk_otsu(a: np.ndarray) -> float | None:
    """The oracle: SimpleITK's OtsuThreshold on the array cast to float32, finite voxels as mask, 256 bins."""
    finite = np.isfinite(a.astype(np.float32))
    if not finite.any() or np.nanmin(a[finite]) == np.nanmax(a[finite]):
        return None
    img = sitk.GetImageFromArray(np.where(finite, a, a[finite].min()).astype(np.float32))
    mask = sitk.GetImageFromArray(finite.astype(np.uint8))
    f = sitk.OtsuThresholdImageFilter()
    f.SetNumberOfHistogramBins(256)
    f.SetInsideValue(0)
    f.SetOutsideValue(1)
    f.SetMaskValue(1)
    f.Execute(img, mask)
    return float(f.GetThreshold())


def test_otsu_threshold_equals_simpleitk_bit_for_bit():
    rng = np.random.default_rng(11)
    for trial in range(48):
        shape = (int(rng.integers(1, 12)), int(rng.integers(1, 20)), int(rng.integers(2, 20)))
        kind = trial % 6
        if kind == 0:
            a = (rng.normal(0, 1, shape) * rng.uniform(0.001, 1e4)).astype(np.float32)
        elif kind == 1:
            a = rng.integers(-1024, 3000, shape).astype(np.int16)
        elif kind == 2:
            a = rng.integers(0, 255, shape).astype(np.uint8)
        elif kind == 3:  # float64 with NaN and inf: cast to float32, non-finite voxels left out
            a = rng.normal(0, 1, shape) * 100 + 37.3
            a.flat[rng.integers(0, a.size, 3)] = np.nan
            a.flat[rng.integers(0, a.size, 1)] = np.inf
        elif kind == 4:  # two classes (air and tissue)
            a = np.concatenate([rng.normal(-800, 50, shape), rng.normal(40, 30, shape)], axis=2).astype(np.float32)
        else:
            a = rng.integers(0, 60000, shape).astype(np.uint16)
        assert sk.otsu_threshold(a) == _itk_otsu(a), trial
    assert sk.otsu_threshold(np.full((2, 2, 2), 7, np.int16)) is None


def test_threshold_runs_and_clean_runs_match_numpy():
    rng = np.random.default_rng(13)
    for _trial in range(20):
        a = rng.normal(0, 1, (6, 9, 11)).astype(np.float32)
        a.flat[rng.integers(0, a.size, 4)] = np.nan
        a.flat[rng.integers(0, a.size, 2)] = np.inf
        above = np.isfinite(a) & (a > 0.3)
        r = sk.threshold_runs(a, above=0.3)
        assert np.array_equal(sk.clean_runs(r, a.shape, 0, False, False), above)
        r = sk.threshold_runs(a, -0.5, 0.7)
        assert np.array_equal(sk.clean_runs(r, a.shape, 0, False, False), np.isfinite(a) & (a >= -0.5) & (a <= 0.7))
        img = sitk.GetImageFromArray(above.astype(np.uint8))
        both = sitk.BinaryFillhole(sitk.GetImageFromArray(sk.keep_components(above, 0, True)), False, 1)
        got = sk.clean_runs(sk.threshold_runs(a, above=0.3), a.shape, 0, True, True)
        assert np.array_equal(got, sitk.GetArrayFromImage(both))
        assert img.GetSize() == got.shape[::-1]


def test_label_stats_box_runs_and_union_match_simpleitk_and_numpy():
    rng = np.random.default_rng(17)
    for trial in range(25):
        a = rng.integers(0, 5, tuple(int(v) for v in rng.integers(1, 9, 3))).astype(np.uint16)
        a[rng.random(a.shape) < 0.5] = 0
        f = sitk.LabelShapeStatisticsImageFilter()
        f.Execute(sitk.GetImageFromArray(a))
        want = {}
        for v in f.GetLabels():
            x, y, z, sx, sy, sz = f.GetBoundingBox(v)
            want[int(v)] = ((z, y, x), (z + sz, y + sy, x + sx), int(f.GetNumberOfPixels(v)))
        assert sk.label_stats(a) == want, trial
        lo = tuple(int(v) for v in rng.integers(-2, 3, 3))
        shape = tuple(int(v) for v in rng.integers(1, 12, 3))
        padded = np.zeros(tuple(s + 6 for s in a.shape), a.dtype)  # the box may reach beyond the array
        padded[3:-3, 3:-3, 3:-3] = a
        box = padded[tuple(slice(o + 3, o + 3 + s) for o, s in zip(lo, shape))] == 2
        box = np.pad(box, [(0, s - b) for s, b in zip(shape, box.shape)])
        got = sk.box_runs(a, 2, lo, shape)
        assert all(np.array_equal(x, y) for x, y in zip(got, sk.runs(box)))
        out = np.zeros(a.shape, np.uint8)
        sk.union_of_labels(a, [1, 3], out)
        assert np.array_equal(out, np.isin(a, [1, 3]))
    assert sk.label_stats(np.array([[[-1, 0]]], np.int16)) is None  # negative labels: the caller's other path
