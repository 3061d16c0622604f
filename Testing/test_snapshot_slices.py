"""Snapshots from the drawn slices only: pixel lookups against VTK's reslice, the checkerboard composed on the drawn
pixels against the whole-volume board, label overlays without masks, the Jacobian picture kept while streaming,
and no copy of the background's voxels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import rendering
from RegistrationQualityLib.context import Context
from RegistrationQualityLib.segmentation import FIXED_COLOR, MOVING_COLOR

from conftest import OBLIQUE, make_image

H0 = rendering.HEADER_HEIGHT


def _gl():
    ok, reason = rendering.rendering_available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def rctx():
    context = Context.headless()
    yield context
    rendering.close_renderer(context)
    context.scene.Clear(1)


def _vtk_reslice_nearest(arr, ras_to_ijk, xy_to_ras, width, height):
    """Oracle: vtkImageReslice (nearest neighbour, VTK's default half-voxel border) of a whole vtkImageData."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkImagingCore import vtkImageReslice

    from RegistrationQualityLib.io import matrix_to_vtk

    image = vtkImageData()
    image.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(arr).ravel(), deep=1))
    reslice = vtkImageReslice()
    reslice.SetInputData(image)
    reslice.SetInterpolationModeToNearestNeighbor()
    reslice.SetOutputExtent(0, width - 1, 0, height - 1, 0, 0)
    reslice.SetOutputSpacing(1.0, 1.0, 1.0)
    reslice.SetOutputOrigin(0.0, 0.0, 0.0)
    reslice.SetBackgroundLevel(-1.0)
    reslice.SetResliceAxes(matrix_to_vtk(ras_to_ijk @ xy_to_ras))
    reslice.Update()
    return vtk_to_numpy(reslice.GetOutput().GetPointData().GetScalars()).reshape(height, width)[::-1]


def test_pixel_lookup_equals_vtk_reslice_on_an_oblique_grid():
    from RegistrationQualityLib.io import image_ijk_to_ras

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 200, (9, 13, 17)).astype(np.int16)
    image = make_image(arr, (0.9, 1.3, 2.1), (-4.0, 7.0, 3.0), OBLIQUE)
    ras_to_ijk = np.linalg.inv(image_ijk_to_ras(image))
    for seed in range(4):  # random oblique planes through the volume, pixels of ~0.37 mm
        r = np.random.default_rng(seed)
        q, _ = np.linalg.qr(r.normal(size=(3, 3)))
        xy_to_ras = np.eye(4)
        xy_to_ras[:3, :3] = q * 0.37
        xy_to_ras[:3, 3] = (image_ijk_to_ras(image) @ [8.0, 6.0, 4.0, 1.0])[:3] - q @ [30.0, 25.0, 0.0] * 0.37
        ours = rendering.sample_pixels(arr, ras_to_ijk, xy_to_ras, 61, 47, background=-1)
        oracle = _vtk_reslice_nearest(arr, ras_to_ijk, xy_to_ras, 61, 47)
        assert (ours != -1).sum() > 500  # the plane crosses the volume
        assert np.count_nonzero(ours != oracle) <= 3, np.count_nonzero(ours != oracle)  # ties at half voxels only


def test_background_voxels_are_shared_not_copied(rctx):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    image = make_image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    data = rendering.shared_image_data(image)
    shared = vtk_to_numpy(data.GetPointData().GetScalars())
    view = sitk.GetArrayViewFromImage(image)
    assert shared.__array_interface__["data"][0] == view.__array_interface__["data"][0]
    assert np.array_equal(shared, view.ravel())


def _phantom(shape=(24, 40, 44)):
    k, j, i = np.indices(shape)
    body = ((i - 22) / 19.0) ** 2 + ((j - 20) / 16.0) ** 2 <= 1
    organ = ((i - 28) ** 2 + (j - 18) ** 2 + (k - 12) ** 2) <= 36
    fixed = np.where(body, 40.0, -900.0) + np.where(organ, 90.0, 0.0) + np.random.default_rng(0).normal(0, 8, shape)
    moved = np.roll(fixed, 2, axis=2) * 0.5 + 7  # other units, shifted
    f = make_image(fixed.astype(np.int16), (0.9, 0.9, 2.0), (10.0, -5.0, 3.0), OBLIQUE)
    m = make_image(moved.astype(np.float32), (0.9, 0.9, 2.0), (10.0, -5.0, 3.0), OBLIQUE)
    labels = make_image((organ * 2 + (body & ~organ & (i < 10)) * 5).astype(np.uint8), (0.9, 0.9, 2.0),
                        (10.0, -5.0, 3.0), OBLIQUE)
    return f, m, labels, organ


def test_checkerboard_from_the_drawn_pixels_looks_like_the_whole_volume_board(rctx, tmp_path):
    _gl()
    fixed, moved, _labels, organ = _phantom()
    ours = rendering.read_png(rendering.render_checkerboard(rctx, fixed, moved, tmp_path / "ours", squares=4,
                                                            views=("axial", "coronal"))[1]).astype(int)
    board = rendering.checkerboard_image(fixed, moved, 4)  # the whole normalised board, windowed automatically
    whole = rendering.read_png(rendering.render_snapshots(
        rctx, board, (), tmp_path / "whole", views=("coronal",), montage=False,
        title="checkerboard fixed / registered (4 squares)", center_ras=rendering._center_of(board))[0]).astype(int)
    assert ours.shape == whole.shape
    diff = np.abs(ours - whole).max(axis=-1)[H0:]
    # the same picture: only pixels where the interpolated whole board mixes two blocks (block edges) differ
    assert np.mean(diff > 8) < 0.03
    assert np.mean(diff) < 2.0
    assert len(np.unique(ours[H0:].mean(axis=2).round())) > 10  # both images visible, not a flat picture


def test_label_overlay_draws_the_same_outline_as_its_mask(rctx, tmp_path):
    _gl()
    fixed, _moved, labels, organ = _phantom()
    mask = make_image(organ.astype(np.uint8))
    mask.CopyInformation(labels)
    box = ((6, 12, 22), (19, 25, 35))  # k, j, i box of label 2 (the organ ball of radius 6)
    by_mask = rendering.render_snapshots(rctx, fixed, [(mask, FIXED_COLOR, "organ")], tmp_path / "mask",
                                         montage=False, size=200)
    by_label = rendering.render_snapshots(rctx, fixed, [(rendering.LabelMask(labels, 2, box), FIXED_COLOR, "organ")],
                                          tmp_path / "label", montage=False, size=200)
    no_box = rendering.render_snapshots(rctx, fixed, [(rendering.LabelMask(labels, 2), FIXED_COLOR, "organ")],
                                        tmp_path / "nobox", montage=False, size=200)
    for a, b, c in zip(by_mask, by_label, no_box):
        assert np.array_equal(rendering.read_png(a), rendering.read_png(b))
        assert np.array_equal(rendering.read_png(a), rendering.read_png(c))


def test_a_session_computes_each_window_and_overlay_once(rctx, tmp_path, monkeypatch):
    _gl()
    fixed, _moved, labels, organ = _phantom()
    calls = []
    original = rendering._auto_window
    monkeypatch.setattr(rendering, "_auto_window", lambda values: calls.append(1) or original(values))
    overlay = [(rendering.LabelMask(labels, 2), MOVING_COLOR, "organ")]
    with rendering.snapshot_session(rctx):
        first = rendering.render_snapshots(rctx, fixed, overlay, tmp_path / "a", montage=False, size=100)
        again = rendering.render_snapshots(rctx, fixed, overlay, tmp_path / "b", montage=False, size=100)
    assert len(calls) == 1
    rendering.render_snapshots(rctx, fixed, overlay, tmp_path / "c", montage=False, size=100)
    assert len(calls) == 2  # outside a session: computed per call, as before
    for a, b in zip(first, again):
        assert np.array_equal(rendering.read_png(a), rendering.read_png(b))


def test_jacobian_picture_streamed_by_slabs_equals_the_whole_map():
    rng = np.random.default_rng(5)
    shape = (11, 12, 13)
    jac = rng.lognormal(0, 0.4, shape).astype(np.float32)
    jac[2, 3, 4] = -0.5
    jac[2, 3, 5] = 0.0
    jac[2, 3, 6] = -0.0
    jac[7, 8, 9] = 1e-30  # tiny but positive: not folding
    jac[0] = np.nan
    jac[9, 1, 1] = 0.01  # the smallest positive value ...
    jac[10, 1, 1] = 0.01  # ... twice: the first one counts
    fixed = make_image(np.zeros(shape, np.float32))
    whole = rendering.JacobianPicture.from_array(jac, fixed)
    streamed = rendering.JacobianPicture(fixed)
    for k0 in range(0, shape[0], 4):  # as transforms.stream feeds its consumers
        streamed.add(k0, jac[k0:k0 + 4])
    assert np.array_equal(whole.bits, streamed.bits)
    assert whole.folded == streamed.folded == 3
    assert np.array_equal(rendering.JacobianPicture.folding(whole.bits), np.isfinite(jac) & (jac <= 0))
    assert whole.min_value == streamed.min_value == -0.5 and whole.min_index == (2, 3, 4)
    values = whole.values(whole.bits)
    finite = np.isfinite(jac)
    assert np.array_equal(np.isnan(values), ~finite)
    np.testing.assert_allclose(values[finite], jac[finite], rtol=2.0 ** -8)
    positive = rendering.JacobianPicture.from_array(np.where((jac <= 0) | (jac < 1e-20), 1.0, jac), fixed)
    assert positive.folded == 0 and positive.min_index == (9, 1, 1)
    point, voxels = rendering.worst_folding_point(positive, fixed)
    assert voxels == 0
    np.testing.assert_allclose(point, np.array(fixed.TransformContinuousIndexToPhysicalPoint((1, 1, 9))) * [-1, -1, 1])


def test_fixed_outline_coloured_by_signed_distance_to_a_shifted_ball(rctx, tmp_path):
    """Fixed ball (r 9 mm) and the registered one shifted 4 mm to the patient's left (LPS +x): on the fixed outline
    the registered ball extends beyond on the left (red, +4 mm at the extreme) and falls short on the right (blue,
    -4 mm); colours are the heat maps' (heatmap.diverging_rgb over heatmap.legend_range)."""
    _gl()
    from RegistrationQualityLib import heatmap
    from RegistrationQualityLib.metrics import labelmap_source

    shape, spacing = (40, 48, 48), (1.0, 1.0, 1.0)
    k, j, i = np.indices(shape)
    fixed_ball = (i - 24) ** 2 + (j - 24) ** 2 + (k - 20) ** 2 <= 81
    moved_ball = (i - 28) ** 2 + (j - 24) ** 2 + (k - 20) ** 2 <= 81
    labels = [make_image(m.astype(np.uint8), spacing) for m in (fixed_ball, moved_ball)]
    background = make_image(np.full(shape, 10, np.int16), spacing)
    distances = heatmap.OutlineDistances(labelmap_source(labels[0]), labelmap_source(labels[1]), labels[0])
    # the values at the fixed boundary: the signed distances of heatmap.signed_distance_map, range as the heat map's
    sd = heatmap.signed_distance_map(moved_ball, spacing)
    assert distances.values(np.array([20]), np.array([24]), np.array([33]))[0] == pytest.approx(sd[20, 24, 33])
    # 4 mm at the extremes, less up to a voxel: distances are to the registered ball's boundary voxels (metrics.py)
    assert 3.0 <= sd[20, 24, 33] <= 4.0 and -4.0 <= sd[20, 24, 15] <= -3.0
    assert 3.0 <= distances.value_range[1] <= 4.5
    assert np.isnan(distances.values(np.array([0]), np.array([0]), np.array([0]))[0])  # outside every segment
    paths = rendering.render_snapshots(rctx, background, [(labels[0], FIXED_COLOR, "fixed", distances)],
                                       tmp_path, views=("axial",), montage=False, size=192)
    rgb = rendering.read_png(paths[0]).astype(int)
    view = rgb[H0:]
    r, g, b = view[..., 0], view[..., 1], view[..., 2]
    red, blue = (r > b + 80) & (r > g + 40), (b > r + 80)
    rows, cols = np.nonzero(red | blue)
    centre_row = (rows.min() + rows.max()) // 2
    row_red, row_blue = np.flatnonzero(red[centre_row]), np.flatnonzero(blue[centre_row])
    # radiological axial view: the patient's left (LPS +x, where the registered ball went) on the screen's right
    assert row_red.size and row_blue.size and row_red.min() > row_blue.max()
    # the outermost ring pixels on that row are the extreme voxels i = 33 and i = 15: their heat-map colours
    big = distances.value_range[1]
    np.testing.assert_allclose(view[centre_row, row_red.max()],
                               np.round(heatmap.diverging_rgb(sd[20, 24, 33] / big) * 255), atol=2)
    np.testing.assert_allclose(view[centre_row, row_blue.min()],
                               np.round(heatmap.diverging_rgb(sd[20, 24, 15] / big) * 255), atol=2)
    # top and bottom of the circle cross the registered outline: near zero, near white
    top = view[rows.min():rows.min() + 3, (cols.min() + cols.max()) // 2]
    assert (top.min(axis=-1) > 120).any()
    # the legend shows the colour bar (the diverging colours in the header)
    header = rgb[:H0]
    assert ((header[..., 0] > header[..., 2] + 80).sum() > 20) and ((header[..., 2] > header[..., 0] + 80).sum() > 20)


def test_cli_option_colours_the_fixed_outline_after_registration(tmp_path):
    """--outline-distance-colour through the CLI: the identity 'registration' leaves the moving ball shifted, so
    the after panel's fixed outline shows both signs; without the option it is the plain fixed colour."""
    _gl()
    from conftest import run_cli, write_shift_case

    (tmp_path / "case").mkdir()
    case = write_shift_case(tmp_path / "case")
    common = ["evaluate", "--fixed", str(case / "fixed.nrrd"), "--moving", str(case / "moving.nrrd"),
              "--transform", str(case / "identity.tfm"), "--fixed-segmentation", str(case / "fixed_labels.nrrd"),
              "--moving-segmentation", str(case / "moving_labels.nrrd")]
    plain = run_cli(*common, "--output", str(tmp_path / "plain"))
    coloured = run_cli(*common, "--outline-distance-colour", "--output", str(tmp_path / "coloured"))
    assert plain.returncode == 0 and coloured.returncode == 0, coloured.stderr
    import json

    report = json.loads((tmp_path / "coloured" / "report.json").read_text())
    entry = next(s for s in report["snapshots"] if s["file"] == "snapshots/before_after_axial.png")
    assert "signed distance" in entry["caption"]

    def after_panel(folder):
        rgb = rendering.read_png(folder / "snapshots" / "before_after_axial.png").astype(int)
        return rgb[H0:, rgb.shape[1] // 2 + 8:]

    def counts(view):
        r, b = view[..., 0], view[..., 2]
        return int(np.count_nonzero(r > b + 80)), int(np.count_nonzero(b > r + 80))

    red, blue = counts(after_panel(tmp_path / "coloured"))
    assert red > 20 and blue > 20
    plain_before = rendering.read_png(tmp_path / "plain" / "snapshots" / "before_after_axial.png")
    coloured_before = rendering.read_png(tmp_path / "coloured" / "snapshots" / "before_after_axial.png")
    half = plain_before.shape[1] // 2
    assert np.array_equal(plain_before[H0:, :half], coloured_before[H0:, :half])  # the before panel is unchanged
