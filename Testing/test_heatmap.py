"""Distance heat map: vertex scalars against brute-force signed distances, legend range, scene node, picture."""

from __future__ import annotations

import numpy as np
import pytest

from RegistrationQualityLib import heatmap
from RegistrationQualityLib.metrics import boundary_voxels

SPACING = (0.8, 1.0, 1.5)


def _balls(shift_mm=3.0):
    shape = (30, 40, 50)
    k, j, i = np.indices(shape)
    x, y, z = i * SPACING[0], j * SPACING[1], k * SPACING[2]
    a = (x - 20) ** 2 + (y - 20) ** 2 + (z - 22) ** 2 <= 10 ** 2
    b = (x - 20 - shift_mm) ** 2 + (y - 20) ** 2 + (z - 22) ** 2 <= 10 ** 2
    return a, b


def _oblique(spacing):
    c, s = np.cos(0.5), np.sin(0.5)
    m = np.eye(4)
    m[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(spacing)
    m[:3, 3] = (-30.0, 12.0, 4.0)
    return m


def test_vertex_scalars_are_the_signed_distances_within_half_a_voxel():
    from vtkmodules.util.numpy_support import vtk_to_numpy

    a, b = _balls()
    m = _oblique(SPACING)
    poly, values = heatmap.heatmap_polydata(a, b, m, SPACING)
    ras = vtk_to_numpy(poly.GetPoints().GetData()).astype(float)
    assert np.allclose(vtk_to_numpy(poly.GetPointData().GetArray(heatmap.ARRAY_NAME)), values, atol=1e-5)
    # oracle: brute-force distance from each vertex (RAS) to the compared boundary voxel centres (RAS), + inside B
    kji = np.argwhere(boundary_voxels(b))
    edge_ras = kji[:, ::-1] @ m[:3, :3].T + m[:3, 3]
    dist = np.array([np.sqrt(((edge_ras - p) ** 2).sum(axis=1)).min() for p in ras])
    ijk = np.linalg.solve(m[:3, :3], (ras - m[:3, 3]).T).T
    inside = b[tuple(np.round(ijk[:, ::-1]).astype(int).T)]  # vertices lie half-way: the voxel it rounds to
    half_voxel = 0.5 * max(SPACING)
    assert np.all(np.abs(np.abs(values) - dist) <= half_voxel + 1e-6)
    far = dist > half_voxel + 1e-6
    assert far.sum() > 100 and np.all((values[far] > 0) == inside[far])
    # the fixed ball's +x side lies inside the shifted registered ball (positive), its −x side outside
    centre = ras.mean(axis=0)
    x_axis = m[:3, 0] / SPACING[0]
    side = (ras - centre) @ x_axis
    assert values[side > 8].min() > 0 and values[side < -8].max() < 0
    lo, hi = heatmap.legend_range(values, SPACING)
    assert hi == pytest.approx(np.abs(values).max()) and lo == -hi


def test_no_registered_segment_gives_nan_and_an_empty_reference_no_surface():
    a, _b = _balls()
    poly, values = heatmap.heatmap_polydata(a, np.zeros_like(a), np.eye(4), SPACING)
    assert poly.GetNumberOfPoints() > 0 and np.isnan(values).all()
    assert heatmap.heatmap_polydata(np.zeros_like(a), a, np.eye(4), SPACING) == (None, None)
    assert heatmap.legend_range(values, SPACING) == (-0.8, 0.8)


def test_model_node_legend_table_rows_and_toggle(ctx):
    a, b = _balls()
    poly, values = heatmap.heatmap_polydata(a, b, np.diag(SPACING + (1.0,)), SPACING)
    rng = heatmap.legend_range(values, SPACING)
    node = heatmap.heatmap_model_node(ctx, poly, "heat map: ball", rng)
    display = node.GetDisplayNode()
    assert display.GetActiveScalarName() == heatmap.ARRAY_NAME and display.GetScalarVisibility()
    assert display.GetScalarRange() == pytest.approx(rng)
    legend = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())
              if node.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")]
    assert len(legend) == 1 and legend[0].GetPrimaryDisplayNode() is display
    heatmap.set_visible(node, False)
    assert not display.GetVisibility() and not legend[0].GetVisibility()
    rows = heatmap.vertex_rows(poly)
    assert len(rows) == poly.GetNumberOfPoints()
    assert rows[0]["Signed distance (mm)"] == pytest.approx(float(values[0]), abs=1e-5)
    # the colour table is diverging: white in the middle, red at the top, blue at the bottom
    table = heatmap.color_node(ctx)
    rgba = [0.0] * 4
    table.GetColor(127, rgba)
    assert rgba[:3] == pytest.approx([1, 1, 1])
    table.GetColor(254, rgba)
    assert rgba[0] > rgba[2]


def test_offscreen_picture_or_a_reason(tmp_path):
    a, b = _balls()
    poly, values = heatmap.heatmap_polydata(a, b, np.diag(SPACING + (1.0,)), SPACING)
    path, reason = heatmap.render_png(poly, heatmap.legend_range(values, SPACING), tmp_path / "heat.png")
    if path is None:
        pytest.skip(f"no offscreen rendering here: {reason}")
    from RegistrationQualityLib.rendering import read_png

    rgb = read_png(path)
    assert rgb.shape[0] > 100 and rgb.shape[1] > 100
    reddish = (rgb[..., 0].astype(int) - rgb[..., 2] > 40).sum()
    bluish = (rgb[..., 2].astype(int) - rgb[..., 0] > 40).sum()
    assert reddish > 50 and bluish > 50  # both signs visible (surface and legend)


def test_one_window_for_several_pictures_draws_each_as_alone(tmp_path):
    """heatmap.Painter reuses one offscreen window: each picture equals the one render_png draws in its own window
    (within a grey level: the same frame, read back once)."""
    from RegistrationQualityLib.rendering import read_png

    pictures = []
    for shift in (3.0, -2.0):
        a, b = _balls(shift)
        poly, values = heatmap.heatmap_polydata(a, b, np.diag(SPACING + (1.0,)), SPACING)
        pictures.append((poly, heatmap.legend_range(values, SPACING)))
    alone = [heatmap.render_png(poly, r, tmp_path / f"alone{n}.png") for n, (poly, r) in enumerate(pictures)]
    if alone[0][0] is None:
        pytest.skip(f"no offscreen rendering here: {alone[0][1]}")
    painter = heatmap.Painter()
    try:
        shared = [painter.render(poly, r, tmp_path / f"shared{n}.png") for n, (poly, r) in enumerate(pictures)]
    finally:
        painter.close()
    assert painter.render(*pictures[0], tmp_path / "closed.png")[0] is None  # closed: a reason, no picture
    for (a_path, _), (s_path, _) in zip(alone, shared):
        a_rgb, s_rgb = read_png(a_path).astype(int), read_png(s_path).astype(int)
        assert a_rgb.shape == s_rgb.shape
        assert np.abs(a_rgb - s_rgb).max() <= 1
    assert not np.array_equal(read_png(shared[0][0]), read_png(shared[1][0]))  # two different pictures
