"""Non-diffeomorphic volume (Liu et al. IJCV 2024) and Learn2Reg's SDlogJ against independent formulas."""

from __future__ import annotations

import numpy as np
import pytest

from RegistrationQualityLib import ndv
from RegistrationQualityLib.deformation import Grid, jacobian_determinant, jacobian_statistics


def _map(u, grid, **kw):
    out = np.full(grid.shape, np.nan)
    stats = ndv.non_diffeomorphic_volume(u, grid, out_map=out, **kw)
    return out, stats


def _ndv_oracle(trans):
    """The digital-diffeomorphism package's formula, written out with plain shifts (no torch): ``trans`` is the
    map in voxel units, shape (X, Y, Z, 3); the displacement is edge-padded; returns the per-voxel NDV."""
    shape = trans.shape[:3]
    ident = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    disp = np.pad(trans - ident, [(1, 1)] * 3 + [(0, 0)], mode="edge")
    ident_p = np.stack(np.meshgrid(*[np.arange(-1, n + 1) for n in shape], indexing="ij"), axis=-1).astype(float)
    phi = disp + ident_p

    def at(dx, dy, dz):
        return phi[1 + dx:1 + dx + shape[0], 1 + dy:1 + dy + shape[1], 1 + dz:1 + dz + shape[2]]

    c = at(0, 0, 0)
    unit = {0: (1, 0, 0), 1: (0, 1, 0), 2: (0, 0, 1)}
    fwd = {d: at(*unit[d]) - c for d in range(3)}
    bwd = {d: c - at(*(-v for v in unit[d])) for d in range(3)}
    jac = {}
    for sx in "+-":
        for sy in "+-":
            for sz in "+-":
                cols = [(fwd if s == "+" else bwd)[d] for d, s in enumerate((sx, sy, sz))]
                jac[sx + sy + sz] = np.linalg.det(np.stack(cols, axis=-1))
    jac["j1*"] = np.linalg.det(np.stack([at(-1, -1, 0) - c, at(-1, 0, -1) - c, at(0, -1, -1) - c], axis=-1))
    jac["j2*"] = np.linalg.det(np.stack([at(1, 1, 0) - c, at(0, 1, 1) - c, at(1, 0, 1) - c], axis=-1))
    out = np.zeros(shape)
    for key in ("+++", "++-", "+-+", "+--", "j1*", "j2*", "-++", "-+-", "--+", "---"):
        out += -0.5 * np.minimum(jac[key], 0) / 6
    return out


def _oracle_on_grid(u_kji, grid):
    """Physical (k, j, i, 3) LPS field -> the package's voxel-unit map in (i, j, k) order -> NDV back in (k, j, i)."""
    a_inv = np.linalg.inv(grid.ijk_to_lps[:3, :3])
    u_idx = u_kji @ a_inv.T  # displacement in (i, j, k) voxel units
    u_ijk = np.transpose(u_idx, (2, 1, 0, 3))
    ident = np.stack(np.meshgrid(*[np.arange(n) for n in u_ijk.shape[:3]], indexing="ij"), axis=-1)
    return np.transpose(_ndv_oracle(u_ijk + ident), (2, 1, 0))


def _oblique_grid(size, spacing, angle=0.4):
    c, s = np.cos(angle), np.sin(angle)
    d = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    m = np.eye(4)
    m[:3, :3] = d @ np.diag(spacing)
    m[:3, 3] = (5.0, -3.0, 12.0)
    return Grid(size, m)


def test_ndv_equals_the_package_formula_on_random_fields_on_an_oblique_anisotropic_grid():
    rng = np.random.default_rng(3)
    grid = _oblique_grid((9, 7, 6), (0.7, 1.3, 2.1))
    u = rng.normal(0, 0.9, grid.shape + (3,))  # rough: many stencils fold
    got, stats = _map(u.astype(np.float32), grid, slab_voxels=9 * 7 * 2)  # 2-slice slabs
    want = _oracle_on_grid(u.astype(np.float32).astype(float), grid)
    assert want.sum() > 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert stats["ndv_voxels"] == pytest.approx(want.sum(), rel=1e-6)
    assert stats["ndv_percent"] == pytest.approx(100 * want.sum() / want.size, rel=1e-6)
    assert stats["ndv_cc"] == pytest.approx(want.sum() * 0.7 * 1.3 * 2.1 / 1000, rel=1e-6)


def test_checkerboard_folds_for_one_sided_stencils_while_central_differences_see_none():
    size = (16, 6, 5)  # (i, j, k)
    grid = Grid(size, np.diag([1.0, 1.0, 1.0, 1.0]))
    u = np.zeros(grid.shape + (3,), np.float32)
    i = np.arange(size[0])
    checker = np.where((i >= 2) & (i <= size[0] - 3), 0.6 * (-1.0) ** i, 0.0)
    u[..., 0] = checker[None, None, :]
    jac = jacobian_determinant(u, grid)
    assert jac.min() > 0  # central differences: J = 1 inside the checkerboard, no folding anywhere
    ndv_map, stats = _map(u, grid, jacobian=jac)
    # analytic: with u along x only, J± = 1 ± (u(i±1) − u(i)) and the star stencils are 2·J±, so a voxel's NDV is
    # (max(−J+, 0) + max(−J−, 0)) / 2 = 0.1 inside the checkerboard (one of J± is −0.2)
    assert np.allclose(ndv_map[:, :, 3:size[0] - 3], 0.1, atol=1e-6)
    np.testing.assert_allclose(ndv_map, _oracle_on_grid(u.astype(float), grid), atol=1e-6)
    assert stats["ndv_voxels"] == pytest.approx(ndv_map.sum(), rel=1e-6)
    assert stats["ndv_voxels"] > 0 and jacobian_statistics(jac)["folding_voxels"] == 0
    assert stats["ndv_percent"] == pytest.approx(100 * stats["ndv_voxels"] / ndv_map.size)


def test_smooth_field_has_zero_ndv_and_cc_follow_the_voxel_volume():
    grid = _oblique_grid((12, 10, 8), (0.5, 0.5, 2.0))
    k, j, i = np.indices(grid.shape)
    u = np.zeros(grid.shape + (3,), np.float32)
    u[..., 0] = 0.8 * np.sin(i / 3.0)
    u[..., 2] = 0.5 * np.cos(k / 2.0 + j / 4.0)
    ndv_map, stats = _map(u, grid)
    assert float(ndv_map.max()) == 0.0 and stats["ndv_cc"] == 0.0
    # a reflection folds everywhere: one-sided stencils det = −1, star stencils −2: NDV per voxel (8·1 + 2·2)·½/6 = 1
    flip = np.zeros(grid.shape + (3,), np.float32)
    pts = np.stack([i, j, k], axis=-1) @ grid.ijk_to_lps[:3, :3].T
    flip[..., 0] = -2 * pts[..., 0]  # x -> −x
    flip_map, _ = _map(flip, grid)
    assert np.allclose(flip_map[1:-1, 1:-1, 1:-1], (8 + 2 * 2) * 0.5 / 6, rtol=1e-5)  # (the edge-padded border differs)
    np.testing.assert_allclose(flip_map, _oracle_on_grid(flip.astype(float), grid), rtol=1e-5, atol=1e-6)
    inner = np.zeros(grid.shape, bool)
    inner[1:-1, 1:-1, 1:-1] = True
    stats = ndv.non_diffeomorphic_volume(flip, grid, inner, jacobian_determinant(flip, grid), slab_voxels=250)
    assert stats["ndv_voxels"] == pytest.approx((8 + 2 * 2) * 0.5 / 6 * inner.sum(), rel=1e-5)
    assert stats["ndv_cc"] == pytest.approx(stats["ndv_voxels"] * 0.5 * 0.5 * 2.0 / 1000, rel=1e-9)
    assert stats["ndv_percent"] == pytest.approx(100 * (8 + 2 * 2) * 0.5 / 6, rel=1e-5)


def test_learn2reg_sdlogj_on_a_field_with_a_known_jacobian():
    size = (20, 9, 8)
    grid = Grid(size, np.diag([1.0, 1.0, 1.0, 1.0]))
    x = np.arange(size[0], dtype=float)
    c = -0.08  # u_x = c x² -> J = 1 + 2 c x (central differences are exact on a quadratic); J < 0 for x > 6.25
    u = np.zeros(grid.shape + (3,), np.float32)
    u[..., 0] = (c * x ** 2)[None, None, :]
    jac = jacobian_determinant(u, grid)
    got = ndv.sdlogj_learn2reg(jac)
    inner_x = x[2:-2]
    j_true = np.broadcast_to(1 + 2 * c * inner_x, (size[2] - 4, size[1] - 4, inner_x.size))
    want = np.std(np.log(np.clip(j_true + 3, 1e-9, 1e9)))
    assert got["sdlogj_learn2reg"] == pytest.approx(want, rel=1e-6)
    assert got["sdlogj_learn2reg_voxels"] == j_true.size
    mask = np.zeros(grid.shape, bool)
    mask[:, :, :5] = True  # only x < 5 (and x >= 2 after the border)
    masked = ndv.sdlogj_learn2reg(jac, mask)
    jm = 1 + 2 * c * np.arange(2, 5)
    assert masked["sdlogj_learn2reg"] == pytest.approx(np.std(np.log(jm + 3)), rel=1e-6)


def test_ndv_over_a_mask_equals_the_map_summed_over_the_mask():
    rng = np.random.default_rng(5)
    grid = _oblique_grid((14, 12, 9), (0.9, 1.1, 1.7))
    u = rng.normal(0, 0.8, grid.shape + (3,)).astype(np.float32)
    full, _ = _map(u, grid)
    mask = np.zeros(grid.shape, bool)
    mask[2:7, 3:9, 4:11] = True  # an inner box: computed on its (j, i) box plus a halo only
    mask[0, 0, 0] = False
    got = ndv.non_diffeomorphic_volume(u, grid, mask, slab_voxels=14 * 12 * 3)
    assert got["ndv_voxels"] == pytest.approx(full[mask].sum(), rel=1e-9)
    edge = np.zeros(grid.shape, bool)
    edge[:, 0, :4] = True  # touching the grid border: the edge padding applies there
    assert ndv.non_diffeomorphic_volume(u, grid, edge)["ndv_voxels"] == pytest.approx(full[edge].sum(), rel=1e-9)


def test_learn2reg_consumer_on_slabs_with_a_mask_equals_the_whole_map():
    from RegistrationQualityLib.kernels import fd_jacobian_slab

    rng = np.random.default_rng(9)
    grid = _oblique_grid((13, 11, 10), (0.8, 1.2, 1.9))
    u = rng.normal(0, 0.3, grid.shape + (3,)).astype(np.float32)
    jac = np.empty(grid.shape, np.float32)
    a = grid.ijk_to_lps[:3, :3]
    fd_jacobian_slab(u, 0, grid.shape[0], grid.shape[0], 0, np.ascontiguousarray(a), float(np.linalg.det(a)), jac)
    mask = np.zeros(grid.shape, bool)
    mask[3:8, 2:9, 4:10] = True
    consumer = ndv.Learn2RegSDlogJ(grid, mask)
    for slab in ndv._array_slabs(u, jac, 11 * 13 * 3):
        consumer.consume(slab)
    got = consumer.finish()
    want = ndv.sdlogj_learn2reg(jac, mask)
    assert got["sdlogj_learn2reg_voxels"] == want["sdlogj_learn2reg_voxels"] > 0
    assert got["sdlogj_learn2reg"] == pytest.approx(want["sdlogj_learn2reg"], rel=1e-6)


def test_streamed_figures_equal_brute_force_oracles_with_a_mask_and_undefined_jacobians():
    """The fused slab kernels (NDV over the kept voxels, Learn2Reg's gathered values) against numpy written out:
    NDV = Σ of the package formula's map over mask ∧ finite J, divided by that count; Learn2Reg =
    np.std(log(clip(J + 3))) of the central-difference J over the mask minus the 2-voxel border; slabs of 2
    slices."""
    from RegistrationQualityLib.kernels import fd_jacobian_slab

    rng = np.random.default_rng(11)
    grid = _oblique_grid((15, 13, 11), (0.7, 1.3, 2.1))
    u = rng.normal(0, 0.6, grid.shape + (3,)).astype(np.float32)
    jac = np.empty(grid.shape, np.float32)
    a = np.ascontiguousarray(grid.ijk_to_lps[:3, :3])
    fd_jacobian_slab(u, 0, grid.shape[0], grid.shape[0], 0, a, float(np.linalg.det(a)), jac)
    central = jac.copy()  # Learn2Reg's own J (central differences of u)
    jac[4, 5, 3:9] = np.nan  # the slabs' J: the transform undefined there (NDV leaves those voxels out)
    mask = rng.random(grid.shape) < 0.7
    mask[:, :, :2] = False
    keep = mask & np.isfinite(jac)
    want = _oracle_on_grid(u.astype(float), grid)[keep]
    ndv_consumer = ndv.NonDiffeomorphicVolume(grid, mask)
    l2r = ndv.Learn2RegSDlogJ(grid, mask)
    for slab in ndv._array_slabs(u, jac, 15 * 13 * 2):
        ndv_consumer.consume(slab)
        l2r.consume(slab)
    got = ndv_consumer.finish()
    assert want.sum() > 1.0
    assert got["ndv_voxels"] == pytest.approx(want.sum(), rel=1e-9)
    assert got["ndv_percent"] == pytest.approx(100 * want.sum() / keep.sum(), rel=1e-9)
    inner = np.zeros(grid.shape, bool)
    inner[2:-2, 2:-2, 2:-2] = True
    values = central[mask & inner].astype(np.float64)
    got = l2r.finish()
    assert got["sdlogj_learn2reg_voxels"] == values.size
    assert got["sdlogj_learn2reg"] == pytest.approx(np.std(np.log(np.clip(values + 3, 1e-9, 1e9))), rel=1e-12)
