"""NSD, signed surface distances and Dice under a shift against brute-force oracles (no distance transform)."""

from __future__ import annotations

import numpy as np
import pytest

from RegistrationQualityLib import surface
from RegistrationQualityLib.metrics import compare_labelmaps, compare_masks


def _ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    k, j, i = np.indices(shape)
    sx, sy, sz = spacing
    return ((i - centre[0]) * sx) ** 2 + ((j - centre[1]) * sy) ** 2 + ((k - centre[2]) * sz) ** 2 <= radius ** 2


def _edge_oracle(mask):
    """Boundary voxels the obvious way: a voxel of the mask with one of its six neighbours outside (pad = out)."""
    p = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            inner &= np.roll(p, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def _brute_distances(from_points, to_points):
    """min Euclidean distance from each point to the set, by full pairwise comparison (chunked)."""
    out = np.empty(len(from_points))
    for s in range(0, len(from_points), 256):
        d = from_points[s:s + 256, None, :] - to_points[None, :, :]
        out[s:s + 256] = np.sqrt((d ** 2).sum(axis=2)).min(axis=1)
    return out


def _points(mask, to_physical):
    kji = np.argwhere(mask)
    return to_physical(kji[:, ::-1].astype(float))


def _oracle(a, b, to_physical, tolerances):
    ea, eb = _edge_oracle(a), _edge_oracle(b)
    pa, pb = _points(ea, to_physical), _points(eb, to_physical)
    da, db = _brute_distances(pa, pb), _brute_distances(pb, pa)
    nsd = {t: (np.count_nonzero(da <= t + 1e-9) + np.count_nonzero(db <= t + 1e-9)) / (da.size + db.size)
           for t in tolerances}
    signed = np.where(a[eb], -db, db)
    return nsd, signed


def test_nsd_two_balls_known_offset_matches_brute_force_count():
    shape = (36, 36, 44)
    a = _ball(shape, (20, 18, 18), 9)
    b = _ball(shape, (24, 18, 18), 9)  # 4 mm along x
    tolerances = (1.0, 2.0, 3.0, 4.0)
    result = compare_masks(a, b, (1.0, 1.0, 1.0), nsd_tolerances=tolerances)
    nsd, _signed = _oracle(a, b, lambda ijk: ijk, tolerances)
    for t in tolerances:
        assert result[surface.tolerance_key(t)] == pytest.approx(nsd[t], abs=1e-12)
    assert result["nsd_4mm"] == 1.0  # every boundary voxel is within the 4 mm offset
    assert 0.0 < result["nsd_1mm"] < result["nsd_2mm"] < result["nsd_3mm"] < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nsd_and_signed_distances_match_brute_force_on_random_oblique_anisotropic_shapes(seed):
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    shape = (18, 22, 20)
    spacing = tuple(float(v) for v in rng.uniform(0.4, 2.0, 3))
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])

    def blobs():
        m = np.zeros(shape, bool)
        for _ in range(3):
            centre = rng.uniform(4, np.array(shape[::-1]) - 4)
            m |= _ball(shape, centre, rng.uniform(2.0, 5.0) * min(spacing), spacing)
        return m

    a, b = blobs(), blobs()

    def image(mask):
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.SetSpacing(spacing)
        img.SetDirection(tuple(direction.reshape(-1)))
        img.SetOrigin((3.0, -7.0, 11.0))
        return img

    ref = image(a)
    to_physical = lambda ijk: np.array([ref.TransformContinuousIndexToPhysicalPoint(p) for p in ijk])  # noqa: E731
    tolerances = (0.5, 1.0, 2.5)
    (result,) = compare_labelmaps(ref, image(b), nsd_tolerances=tolerances)
    nsd, signed = _oracle(a, b, to_physical, tolerances)
    for t in tolerances:
        assert result[surface.tolerance_key(t)] == pytest.approx(nsd[t], abs=1e-12)
    sd = result["signed_distance"]
    assert sd["voxels"] == signed.size
    assert sd["mean_mm"] == pytest.approx(signed.mean(), abs=1e-5)
    assert sd["p5_mm"] == pytest.approx(np.percentile(signed, 5), abs=1e-5)
    assert sd["p95_mm"] == pytest.approx(np.percentile(signed, 95), abs=1e-5)
    assert sd["max_outward_mm"] == pytest.approx(max(signed.max(), 0), abs=1e-5)
    assert sd["max_inward_mm"] == pytest.approx(max(-signed.min(), 0), abs=1e-5)
    assert sum(sd["histogram"]["counts"]) == signed.size


def test_signed_distances_nested_balls_are_negative_with_the_radius_gap():
    shape = (40, 40, 40)
    outer = _ball(shape, (20, 20, 20), 12)
    inner = _ball(shape, (20, 20, 20), 7)
    sd = compare_masks(outer, inner)["signed_distance"]  # compared lies inside the reference everywhere
    assert sd["max_outward_mm"] == 0.0
    assert -6.0 < sd["mean_mm"] < -4.0  # radius gap 5 mm, voxelised
    assert 4.0 < sd["max_inward_mm"] < 6.2
    sd_out = compare_masks(inner, outer)["signed_distance"]  # compared contains the reference
    assert sd_out["max_inward_mm"] == 0.0 and 4.0 < sd_out["mean_mm"] < 6.0


def test_signed_distances_of_a_shifted_box_are_plus_and_minus_the_shift():
    a = np.zeros((20, 20, 30), bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 3, axis=2)  # 3 voxels of 0.5 mm along x
    sd = compare_masks(a, b, (0.5, 1.0, 1.0))["signed_distance"]
    assert sd["max_outward_mm"] == pytest.approx(1.5)
    assert sd["max_inward_mm"] == pytest.approx(1.5)
    edges, counts = np.array(sd["histogram"]["edges_mm"]), np.array(sd["histogram"]["counts"])
    assert edges[0] <= -1.5 and edges[-1] > 1.5 and counts.sum() == sd["voxels"]
    centre = int(np.searchsorted(edges, 0.0)) - 1  # the bin centred on 0 holds the voxels on the boundary
    assert edges[centre] == pytest.approx(-edges[centre + 1])
    assert counts[np.searchsorted(edges, 1.5, side="right") - 1] == 100  # the leading face: 10 × 10 voxels


def test_nsd_empty_sides_follow_dice():
    a = _ball((20, 20, 20), (10, 10, 10), 5)
    empty = np.zeros_like(a)
    assert compare_masks(a, empty)["nsd_2mm"] == 0.0
    assert compare_masks(empty, empty)["nsd_2mm"] is None
    assert compare_masks(a, empty)["signed_distance"]["mean_mm"] is None


def test_shifted_dice_of_a_box_is_one_minus_shift_over_length():
    a = np.zeros((30, 30, 30), bool)
    a[5:25, 5:15, 5:25] = True  # 20 along x and z, 10 along y (the worst axis)
    # 1 mm = 1 voxel along y: Dice = 1 - 1/10; 2 mm: 1 - 2/10
    assert surface.worst_shifted_dice(a, (1.0, 1.0, 1.0)) == {"1mm": pytest.approx(0.9), "2mm": pytest.approx(0.8)}
    # spacing 0.8 mm along y: 1 mm = 1.25 voxels, partial volume: 1 - 1.25/10
    got = surface.worst_shifted_dice(a, (1.0, 0.8, 1.0))
    assert got["1mm"] == pytest.approx(1 - 1.25 / 10) and got["2mm"] == pytest.approx(1 - 2.5 / 10)
    # a grid whose j axis is the physical x axis: the y shift (physical) moves along i now
    direction = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], float)
    b = np.zeros((30, 30, 30), bool)
    b[5:25, 5:25, 5:15] = True  # 10 along i (which is physical y)
    assert surface.worst_shifted_dice(b, (1.0, 1.0, 1.0), direction)["1mm"] == pytest.approx(0.9)


def test_shifted_self_dice_is_reported_and_the_warning_fires_only_when_a_pass_hides_a_2mm_error():
    big = _ball((50, 50, 50), (25, 25, 25), 18)
    small = _ball((50, 50, 50), (25, 25, 25), 3)
    r_big, r_small = compare_masks(big, big), compare_masks(small, small)
    assert r_big["shifted_self_dice"]["2mm"] > 0.9 > r_small["shifted_self_dice"]["2mm"]
    entries = [{"name": "big", "after": r_big}, {"name": "small", "after": r_small}]
    warnings = surface.dice_hiding_warnings(entries, 0.8)
    assert len(warnings) == 1 and "segment big" in warnings[0] and "2 mm" in warnings[0]
    assert surface.dice_hiding_warnings(entries, None) == []
    assert surface.dice_hiding_warnings(entries, 0.99) == []  # the check fails anyway: nothing hidden


def test_tolerances_are_checked():
    from RegistrationQualityLib.errors import BadInputError

    assert surface.check_tolerances([3, "1", 3]) == (1.0, 3.0)
    for bad in (["x"], [0], [-1], [float("nan")]):
        with pytest.raises(BadInputError, match="--nsd-tolerance"):
            surface.check_tolerances(bad)
