"""Snapshots (checked by their pixels), checkerboard and difference volumes, PNG helpers.

Snapshots need no OpenGL (Slicer's slice pipeline + VTK's FreeType text renderer); if text rendering is
unavailable the snapshot tests skip with the reason given by ``rendering.rendering_available()``.
Geometry used by most tests: 1 mm voxels in axial-aligned grids so that millimetres map to a known number of
pixels (the view fits the whole volume: pixels per mm = size / longest extent).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import io, rendering
from RegistrationQualityLib.context import Context
from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.segmentation import FIXED_COLOR, MOVING_COLOR, parse_color

from conftest import FLIPPED, make_image

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
H0 = rendering.HEADER_HEIGHT


def _gl():
    ok, reason = rendering.rendering_available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def rctx():
    """One scene and one snapshot renderer for the module's rendering tests (as a report would use it)."""
    context = Context.headless()
    yield context
    rendering.close_renderer(context)
    context.scene.Clear(1)


def physical_grid(image):
    """LPS coordinates (k, j, i, 3) of every voxel centre of a SimpleITK image."""
    size = image.GetSize()
    k, j, i = np.mgrid[: size[2], : size[1], : size[0]]
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    d = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    return ijk @ d.T + np.array(image.GetOrigin())


def phantom(size=(64, 48, 20), spacing=(1.0, 1.0, 1.0), direction=None, origin=(0.0, 0.0, 0.0)):
    """Body ellipse (100) filling the grid; returns (image, lps coordinates of voxels)."""
    img = make_image(np.zeros(size[::-1], np.float32), spacing=spacing, origin=origin, direction=direction)
    lps = physical_grid(img)
    return img, lps


def ball(reference, lps, center_lps, radius):
    inside = np.linalg.norm(lps - np.asarray(center_lps, float), axis=-1) <= radius
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


def colour_pixels(rgb, color, tol=12):
    """(rows, cols) of pixels of ``color`` in the view area (below the header)."""
    target = np.array(parse_color(color)) * 255
    area = rgb[H0:].astype(int)
    hit = np.all(np.abs(area - target) <= tol, axis=2)
    return np.nonzero(hit)


# ---------------------------------------------------------------------------------------------------
# No GL needed
# ---------------------------------------------------------------------------------------------------
def test_orientation_letters_follow_slicer_views():
    axial = np.array([[-1, 0, 0], [0, 1, 0], [0, 0, 1]], float)  # Slicer's Axial SliceToRAS
    coronal = np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]], float)
    sagittal = np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], float)
    assert rendering.orientation_letters(axial) == {"right": "L", "left": "R", "top": "A", "bottom": "P"}
    assert rendering.orientation_letters(coronal) == {"right": "L", "left": "R", "top": "S", "bottom": "I"}
    assert rendering.orientation_letters(sagittal) == {"right": "P", "left": "A", "top": "S", "bottom": "I"}


def test_orientation_presets_of_the_scene_match(ctx):
    import slicer

    node = ctx.add_node("vtkMRMLSliceNode", "probe")
    node.SetLayoutName("probe")
    expected = {"Axial": ("L", "A"), "Coronal": ("L", "S"), "Sagittal": ("P", "S")}
    for orientation, (right, top) in expected.items():
        node.SetOrientation(orientation)
        m = node.GetSliceToRAS()
        letters = rendering.orientation_letters([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
        assert (letters["right"], letters["top"]) == (right, top), orientation
    assert slicer is not None


def test_checkerboard_and_difference_images():
    a = np.full((4, 6, 8), 10.0, np.float32)
    b = np.full((4, 6, 8), 30.0, np.float32)
    fixed, registered = make_image(a, spacing=(1, 2, 3)), make_image(b, spacing=(1, 2, 3))
    board = sitk.GetArrayFromImage(rendering.checkerboard_image(fixed, registered, squares=2, normalize=False))
    # blocks of 4 (i) x 3 (j) x 2 (k) voxels alternate, fixed at the origin block
    assert board[0, 0, 0] == 10 and board[0, 0, 4] == 30 and board[0, 3, 0] == 30 and board[2, 0, 0] == 30
    assert board[2, 3, 4] == 30 and board[0, 3, 4] == 10
    assert np.count_nonzero(board == 10) == board.size // 2
    diff = rendering.difference_image(fixed, registered)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(diff), 20.0)
    assert diff.GetSpacing() == (1.0, 2.0, 3.0)
    # normalised: each image's 1st..99th percentile -> 0..1, so different units become comparable
    rng = np.random.default_rng(0)
    x = rng.normal(100, 10, (4, 6, 8)).astype(np.float32)
    same = rendering.difference_image(make_image(x), make_image(3 * x + 50), normalize=True)
    assert float(sitk.GetArrayFromImage(same).max()) < 1e-4


def test_checkerboard_refuses_other_grids():
    a = make_image(np.zeros((4, 6, 8), np.float32))
    b = make_image(np.zeros((4, 6, 8), np.float32), spacing=(1, 1, 2))
    with pytest.raises(BadInputError, match="registered image: not on the fixed image's grid"):
        rendering.checkerboard_image(a, b)


def test_checkerboard_and_difference_nodes(ctx):
    a = make_image(np.arange(48, dtype=np.float32).reshape(2, 4, 6))
    b = make_image(np.zeros((2, 4, 6), np.float32))
    diff = rendering.difference_node(ctx, io.image_to_volume(ctx, a, "fixed"), b)
    arr = sitk.GetArrayFromImage(io.volume_to_image(diff))
    np.testing.assert_array_equal(arr, np.arange(48).reshape(2, 4, 6))
    display = diff.GetDisplayNode()
    assert not display.GetAutoWindowLevel()
    lo, hi = rendering.auto_window(io.volume_to_image(diff))
    assert display.GetWindowLevelMin() == pytest.approx(lo) and display.GetWindowLevelMax() == pytest.approx(hi)
    board = rendering.checkerboard_node(ctx, a, b, squares=2)
    assert board.GetImageData().GetDimensions() == (6, 4, 2)


def test_auto_window_shows_the_object_not_the_air():
    rng = np.random.default_rng(2)
    n = 100_000
    values = np.concatenate([rng.normal(-1000, 5, int(0.6 * n)), rng.normal(40, 10, int(0.39 * n)),
                             np.full(n // 100, 300.0)]).astype(np.float32)
    lo, hi = rendering.auto_window(values.reshape(10, 100, -1))
    tissue_and_bone = values[values > -500]
    assert lo == pytest.approx(np.percentile(tissue_and_bone, 1), abs=0.5)
    assert hi == pytest.approx(np.percentile(tissue_and_bone, 99), abs=0.5)
    assert 0 < lo < 40 < hi <= 300
    # a tiny object (0.5 % of the voxels): all voxels' percentiles, widened to min..max when they coincide
    sparse = np.zeros((10, 20, 100), np.float32)
    sparse.flat[::200] = 100.0
    assert rendering.auto_window(sparse) == (0.0, 100.0)


def test_png_helpers_round_trip_and_side_by_side(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (20, 10, 3), dtype=np.uint8)
    rendering.write_png(a, tmp_path / "a.png")
    rendering.write_png(b, tmp_path / "b.png")
    np.testing.assert_array_equal(rendering.read_png(tmp_path / "a.png"), a)  # rows top to bottom
    out = rendering.read_png(rendering.side_by_side(tmp_path / "a.png", tmp_path / "b.png", tmp_path / "ab.png", gap=4))
    assert out.shape == (30, 40 + 4 + 10, 3)
    np.testing.assert_array_equal(out[:, :40], a)
    np.testing.assert_array_equal(out[:20, 44:], b)
    grid = rendering.tile([a, a, a], columns=2, gap=2)
    assert grid.shape == (62, 82, 3)
    np.testing.assert_array_equal(grid[32:, :40], a)


def test_rendering_available_reports_a_reason():
    ok, reason = rendering.rendering_available()
    assert isinstance(ok, bool) and (ok or reason)


# ---------------------------------------------------------------------------------------------------
# Rendered pixels
# ---------------------------------------------------------------------------------------------------
def test_known_shift_shows_both_outlines_apart_by_the_right_pixels(rctx, tmp_path):
    _gl()
    img, lps = phantom(size=(64, 48, 20))
    center = np.array([30.0, 24.0, 10.0])
    shift = 5.0  # mm towards patient left (LPS +x): screen right in axial
    fixed = ball(img, lps, center, 8.0)
    moving = ball(img, lps, center + [shift, 0, 0], 8.0)
    size = 256
    paths = rendering.render_snapshots(rctx, img, [(fixed, FIXED_COLOR, "fixed"), (moving, MOVING_COLOR, "moving")],
                                       tmp_path, views=("axial", "coronal"), montage=False, size=size)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["axial.png", "coronal.png"]
    extents = {"axial.png": (64.0, 48.0), "coronal.png": (64.0, 20.0)}  # mm across, mm up
    for path in paths:
        rgb = rendering.read_png(path)
        # the view fits the whole volume, letterboxed: millimetres per pixel set by the tighter direction
        ext_w, ext_h = extents[path.rsplit("/", 1)[-1]]
        px_per_mm = min(rgb.shape[1] / ext_w, (rgb.shape[0] - H0) / ext_h)
        assert px_per_mm == pytest.approx(4.0 if ext_h == 48 else 4.8)  # 256 / 64; coronal: 96 px (min) / 20 mm
        fr, fc = colour_pixels(rgb, FIXED_COLOR)
        mr, mc = colour_pixels(rgb, MOVING_COLOR)
        assert fr.size > 100 and mr.size > 100, path
        # the outlines' outer edges (the structures' boundaries) are apart by the shift, on both sides
        row = (fr.min() + fr.max()) // 2  # through the centre
        f_cols, m_cols = fc[fr == row], mc[mr == row]
        assert abs((m_cols.min() - f_cols.min()) - shift * px_per_mm) <= 1.5, path
        assert abs((m_cols.max() - f_cols.max()) - shift * px_per_mm) <= 1.5, path
        # same extent vertically (no shift along A-P / S-I)
        assert abs(fr.min() - mr.min()) <= 1 and abs(fr.max() - mr.max()) <= 1
        # the fixed ball's diameter: 16 mm (+1 voxel of labelmap edge) in pixels
        assert abs((f_cols.max() - f_cols.min() + 1) - 17 * px_per_mm) <= 2 * px_per_mm


def test_orientation_and_aspect_with_an_asymmetric_phantom(rctx, tmp_path):
    """Ball at patient left, anterior, superior, on a flipped/rotated anisotropic grid: where does it show up?"""
    _gl()
    size_ijk, spacing = (60, 50, 16), (1.0, 1.2, 3.0)
    img, lps = phantom(size=size_ijk, spacing=spacing, direction=FLIPPED, origin=(10.0, -20.0, 5.0))
    corners = np.array([lps[k, j, i] for k in (0, -1) for j in (0, -1) for i in (0, -1)])
    mid = (corners.min(axis=0) + corners.max(axis=0)) / 2
    # patient left = +x (LPS), anterior = -y (LPS), superior = +z
    target = mid + np.array([12.0, -10.0, 12.0])
    blob = ball(img, lps, target, 6.0)
    arr = sitk.GetArrayFromImage(blob).astype(np.float32) * 200 + 20
    background = sitk.GetImageFromArray(arr)
    background.CopyInformation(img)
    paths = rendering.render_snapshots(rctx, background, [(blob, FIXED_COLOR, "ball")], tmp_path, montage=False,
                                       size=200)
    ras_bounds = np.array([(-corners[:, 0]).min(), (-corners[:, 0]).max(), (-corners[:, 1]).min(),
                           (-corners[:, 1]).max(), corners[:, 2].min(), corners[:, 2].max()])
    extent = ras_bounds[1::2] - ras_bounds[::2]
    for path, view in zip(paths, rendering.VIEWS):
        rgb = rendering.read_png(path)
        rows, cols = colour_pixels(rgb, FIXED_COLOR)
        assert rows.size > 50, view
        h, w = rgb.shape[0] - H0, rgb.shape[1]
        r_c, c_c = rows.mean() / h, cols.mean() / w  # 0..1, top-left origin
        bright = rgb[H0:].mean(axis=2) > 200  # the ball itself, white (and the edge letters: masked out)
        bright[:22], bright[-22:], bright[:, :22], bright[:, -22:] = False, False, False, False
        br, bc = np.nonzero(bright)
        assert abs(br.mean() / h - r_c) < 0.05 and abs(bc.mean() / w - c_c) < 0.05, view  # outline on the ball
        if view == "axial":
            assert c_c > 0.5 and r_c < 0.5, view  # patient left on screen right; anterior at top
        elif view == "coronal":
            assert c_c > 0.5 and r_c < 0.5, view  # patient left on screen right; superior at top
        else:
            assert c_c < 0.5 and r_c < 0.5, view  # anterior on screen left; superior at top
        # square pixels: the ball (12 mm across) is as wide as it is tall on screen, despite 3 mm slices
        height_px, width_px = br.max() - br.min() + 1, bc.max() - bc.min() + 1
        assert abs(height_px - width_px) <= 0.25 * max(height_px, width_px), view
    # view sizes follow the physical extents (longest side 200 px; narrow views are letterboxed to MIN_WIDTH)
    axial = rendering.read_png(paths[0])
    ah, aw = axial.shape[0] - H0, axial.shape[1]
    expected_aspect = extent[0] / extent[1]
    if aw > rendering.MIN_WIDTH:
        assert abs(aw / ah - expected_aspect) < 0.05


def _shift_transform(ctx, kind, dx_ras):
    """A transform node moving its children by ``dx_ras`` mm along RAS x: linear, or a uniform grid (non-linear)."""
    import slicer
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    if kind == "linear":
        node = ctx.add_node("vtkMRMLLinearTransformNode", "shift")
        m = vtkMatrix4x4()
        m.SetElement(0, 3, dx_ras)
        node.SetMatrixTransformToParent(m)
        return node
    node = ctx.add_node("vtkMRMLGridTransformNode", "grid shift")
    grid = vtkImageData()
    grid.SetDimensions(10, 10, 10)
    grid.SetOrigin(-100.0, -100.0, -100.0)
    grid.SetSpacing(25.0, 25.0, 25.0)
    disp = np.zeros((1000, 3))
    disp[:, 0] = dx_ras
    grid.GetPointData().SetScalars(numpy_to_vtk(disp, deep=1))
    field = slicer.vtkOrientedGridTransform()
    field.SetDisplacementGridData(grid)
    field.SetInterpolationModeToLinear()
    node.SetAndObserveTransformToParent(field)
    assert not node.IsTransformToWorldLinear()
    return node


@pytest.mark.parametrize("kind", ["linear", "grid"])
def test_segmentation_node_overlay_is_shown_through_its_parent_transform(rctx, tmp_path, kind):
    _gl()
    img, lps = phantom(size=(64, 48, 20))
    mask = ball(img, lps, (30.0, 24.0, 10.0), 8.0)
    seg_fixed = io.labelmap_image_to_segmentation(rctx, mask, "fixed seg")
    seg_moved = io.labelmap_image_to_segmentation(rctx, mask, "moved seg")
    transform = _shift_transform(rctx, kind, -6.0)  # RAS x -6 mm = 6 mm towards patient left (ToParent)
    seg_moved.SetAndObserveTransformNodeID(transform.GetID())
    before_nodes = rctx.scene.GetNumberOfNodes()
    colour_before = seg_moved.GetSegmentation().GetNthSegment(0).GetColor()
    paths = rendering.render_snapshots(rctx, io.image_to_volume(rctx, img, "bg"),
                                       [(seg_fixed, FIXED_COLOR, "fixed"), (seg_moved, MOVING_COLOR, "moved")],
                                       tmp_path, views=("axial",), montage=False, size=256)
    rgb = rendering.read_png(paths[0])
    fr, fc = colour_pixels(rgb, FIXED_COLOR)
    mr, mc = colour_pixels(rgb, MOVING_COLOR)
    row = (fr.min() + fr.max()) // 2  # through the centre
    assert abs((mc[mr == row].min() - fc[fr == row].min()) - 6.0 * 4.0) <= 1.5
    # temporary nodes are gone (the background node 'bg' added by the test itself stays), inputs untouched
    assert rctx.scene.GetNumberOfNodes() == before_nodes + 2  # bg volume + its display node
    assert seg_moved.GetSegmentation().GetNthSegment(0).GetColor() == colour_before
    assert seg_moved.GetDisplayNode().GetVisibility2DFill()


def test_before_after_montage_and_checkerboard_files(rctx, tmp_path):
    _gl()
    img, lps = phantom(size=(48, 48, 24))
    fixed = ball(img, lps, (24.0, 24.0, 12.0), 7.0)
    moving_before = ball(img, lps, (20.0, 24.0, 12.0), 7.0)
    background = sitk.Cast(fixed, sitk.sitkFloat32) * 150 + 30
    out = rendering.render_before_after(rctx, background, fixed, moving_before, fixed, tmp_path, size=160)
    assert [len(out[k]) for k in ("before", "after", "side_by_side")] == [4, 4, 4]
    before, after = rendering.read_png(out["before"][0]), rendering.read_png(out["after"][0])
    pair = rendering.read_png(out["side_by_side"][0])
    assert pair.shape[1] == before.shape[1] + 8 + after.shape[1]
    # before: the moving outline sits 4 mm to the patient's right (screen left) of the fixed one
    fr, fc = colour_pixels(before, FIXED_COLOR)
    mr, mc = colour_pixels(before, MOVING_COLOR)
    px_per_mm = 160 / 48
    row = (fr.min() + fr.max()) // 2  # through the centre
    assert abs((fc[fr == row].min() - mc[mr == row].min()) - 4 * px_per_mm) <= 1.5
    # outlines sit on the background's own pixels: the fixed ball is white (window: auto), air black; on the
    # right edge (no moving outline there) the pixel just outside the blue ring is dark, just inside it bright
    right = fc[fr == row].max()
    grey = before[H0:].mean(axis=2)
    assert grey[row, right + 2] < 60 and grey[row, right - 6] > 200
    # after: perfect overlap; the wider fixed outline still shows inside the moving one
    fr, fc = colour_pixels(after, FIXED_COLOR)
    mr, mc = colour_pixels(after, MOVING_COLOR)
    row = (fr.min() + fr.max()) // 2  # through the centre
    assert mc[mr == row].min() < fc[fr == row].min() <= mc[mr == row].min() + 3
    # montage: 9 distinct voxel slices through the ball (15 slices of 1 mm) in a 3 x 3 grid of 106 px tiles
    montage = rendering.read_png(out["after"][3])
    assert montage.shape == (H0 + 3 * 106 + 2 * 2, 3 * 106 + 2 * 2, 3)
    boards = rendering.render_checkerboard(rctx, background, sitk.Cast(moving_before, sitk.sitkFloat32) * 150 + 30,
                                           tmp_path, squares=4)
    board = rendering.read_png(boards[0])[H0:]
    assert board.shape[0] > 100 and len(np.unique(board.mean(axis=2).round())) > 3


def test_renderer_is_reused_and_cheap_after_the_first_snapshot(rctx, tmp_path):
    _gl()
    img, lps = phantom(size=(32, 32, 8))
    mask = ball(img, lps, (16.0, 16.0, 4.0), 5.0)
    first = rendering.get_renderer(rctx)
    rendering.render_snapshots(rctx, img, [(mask, FIXED_COLOR, "m")], tmp_path, views=("axial",), montage=False,
                               size=64)
    assert rendering.get_renderer(rctx) is first
    assert first.last_absent == set()
    far = ball(img, lps, (16.0, 16.0, 0.0), 1.0)  # a single slice away from the plane through the first centroid
    rendering.render_snapshots(rctx, img, [(mask, FIXED_COLOR, "m"), (far, MOVING_COLOR, "far")], tmp_path,
                               views=("axial",), montage=False, size=64)
    assert first.last_absent == {"far"}  # the legend says "far (not in this slice)"
    with pytest.raises(BadInputError, match="unknown view 'oblique'"):
        rendering.render_snapshots(rctx, img, [], tmp_path, views=("oblique",))


@pytest.mark.parametrize("shape, squares", [((13, 17, 19), 8), ((20, 9, 31), (3, 4, 5)), ((7, 7, 7), 2)])
def test_checkerboard_equals_itk_checkerboard_filter_of_the_normalised_images(shape, squares):
    from RegistrationQualityLib.rendering import _normalized

    rng = np.random.default_rng(0)
    fa = sitk.GetImageFromArray(rng.normal(100, 20, shape).astype(np.int16))
    fa.SetSpacing((0.7, 0.8, 2.0))
    fb = sitk.GetImageFromArray(rng.normal(3, 1, shape).astype(np.float32))
    fb.CopyInformation(fa)
    pattern = [min(p, n) for p, n in zip([squares] * 3 if np.isscalar(squares) else squares, fa.GetSize())]
    for normalize in (True, False):
        a = _normalized(fa) if normalize else sitk.Cast(fa, sitk.sitkFloat32)
        b = _normalized(fb) if normalize else sitk.Cast(fb, sitk.sitkFloat32)
        b.CopyInformation(a)
        reference = sitk.GetArrayFromImage(sitk.CheckerBoard(a, b, pattern))
        ours = rendering.checkerboard_image(fa, fb, squares, normalize)
        assert np.array_equal(sitk.GetArrayFromImage(ours), reference)
        assert ours.GetSpacing() == fa.GetSpacing()
