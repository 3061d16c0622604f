"""The Jacobian snapshot: diverging colours over the fixed image, J <= 0 ringed, through the worst folding region."""

from __future__ import annotations

import numpy as np
import pytest

from RegistrationQualityLib import rendering
from RegistrationQualityLib.segmentation import parse_color

from conftest import OBLIQUE, make_image


def test_colour_scale_is_white_at_one_and_diverges():
    rgb = rendering.jacobian_rgb(np.array([1.0, 0.5, 0.25, 2.0, 4.0, 0.0, -1.0]))
    np.testing.assert_allclose(rgb[0], 1.0)
    np.testing.assert_allclose(rgb[1], rendering.JACOBIAN_COMPRESSION)
    np.testing.assert_allclose(rgb[2], rendering.JACOBIAN_COMPRESSION)  # saturated below 0.5
    np.testing.assert_allclose(rgb[3], rendering.JACOBIAN_EXPANSION)
    np.testing.assert_allclose(rgb[4], rendering.JACOBIAN_EXPANSION)
    assert (rgb[5:] < 0.1).all()  # folding: near black
    mid = rendering.jacobian_rgb(np.array([2 ** -0.5]))[0]  # half way on the log scale
    np.testing.assert_allclose(mid, 0.5 + 0.5 * np.array(rendering.JACOBIAN_COMPRESSION))


def _case():
    shape = (30, 40, 44)
    fixed = make_image(np.random.default_rng(0).normal(100, 10, shape).astype(np.float32), (1.2, 1.0, 2.0),
                       (-20.0, 10.0, 5.0), OBLIQUE)
    jac = np.ones(shape, np.float32)
    k, j, i = np.indices(shape)
    small = (k - 8) ** 2 + (j - 10) ** 2 + (i - 10) ** 2 <= 4  # a small folding blob
    big = (k - 20) ** 2 + (j - 25) ** 2 + (i - 30) ** 2 <= 16  # the worst (largest) folding region
    jac[small] = -0.5
    jac[big] = -1.0
    jac[(k - 20) ** 2 + (j - 25) ** 2 + (i - 10) ** 2 <= 25] = 2.0  # expansion elsewhere in the same slices
    jac[0] = np.nan
    return fixed, jac, big


def test_worst_folding_point_is_the_largest_region_centroid():
    fixed, jac, big = _case()
    point, voxels = rendering.worst_folding_point(jac, fixed)
    assert voxels == int(big.sum())
    lps = np.array(fixed.TransformContinuousIndexToPhysicalPoint((30.0, 25.0, 20.0)))
    np.testing.assert_allclose(point, lps * [-1, -1, 1], atol=1e-6)
    none = np.ones_like(jac)
    none[3, 4, 5] = 0.2
    point, voxels = rendering.worst_folding_point(none, fixed)
    lps = np.array(fixed.TransformContinuousIndexToPhysicalPoint((5.0, 4.0, 3.0)))
    assert voxels == 0
    np.testing.assert_allclose(point, lps * [-1, -1, 1], atol=1e-6)


def test_snapshot_shows_folding_ring_and_both_colours(ctx, tmp_path):
    ok, reason = rendering.rendering_available()
    if not ok:
        pytest.skip(reason)
    fixed, jac, big = _case()
    paths = rendering.render_jacobian(ctx, fixed, jac, tmp_path, views=("axial",), size=400)
    assert [p.endswith("jacobian_axial.png") for p in paths] == [True]
    rgb = rendering.read_png(paths[0])[rendering.HEADER_HEIGHT:].astype(int)
    yellow = np.round(np.array(parse_color(rendering.FOLDING_COLOR)) * 255).astype(int)
    ring = np.all(rgb == yellow, axis=-1)
    assert ring.sum() > 20  # the folding region's outline
    ys, xs = np.nonzero(ring)
    inner = rgb[int(ys.mean()), int(xs.mean())]
    assert inner.max() < 80  # inside the ring: the dark folding fill over the grey image
    red = (rgb[..., 0] > rgb[..., 2] + 60)  # expansion blob tinted red
    assert red.sum() > 20
    with pytest.raises(Exception, match="not on the fixed grid"):
        rendering.render_jacobian(ctx, fixed, jac[1:], tmp_path)


def test_folding_voxels_become_a_segment_shown_with_the_jacobian(ctx):
    import SimpleITK as sitk

    from RegistrationQualityLib import deformation, io, panel

    fixed, jac, big = _case()
    node = deformation.jacobian_volume_node(ctx, jac, fixed)
    folding = deformation.folding_segmentation_node(ctx, node)
    expected = np.isfinite(jac) & (jac <= 0)
    assert folding.GetAttribute("RegistrationQuality.FoldingVoxels") == str(int(expected.sum()))
    seg = folding.GetSegmentation()
    assert seg.GetNumberOfSegments() == 1 and seg.GetNthSegment(0).GetName() == "folding (J <= 0)"
    exported = sitk.GetArrayFromImage(io.segmentation_to_labelmap_image(ctx, folding, node)) > 0
    np.testing.assert_array_equal(exported, expected)
    display = folding.GetDisplayNode()
    assert display.GetVisibility2DOutline() and not display.GetVisibility2DFill()
    panel.show_results(ctx, jacobian=node, folding=folding, show_jacobian=False)
    assert not display.GetVisibility()
    panel.show_results(ctx, jacobian=node, folding=folding, show_jacobian=True)
    assert display.GetVisibility()
    none = deformation.folding_segmentation_node(ctx, deformation.jacobian_volume_node(ctx, np.ones_like(jac), fixed))
    assert none.GetSegmentation().GetNumberOfSegments() == 1 and none.GetAttribute(
        "RegistrationQuality.FoldingVoxels") == "0"


@pytest.mark.parametrize("seed, density", [(1, 0.05), (2, 0.3), (3, 0.6)])
def test_face_components_equal_itk_connected_components(seed, density):
    """The folding regions are found on the folding voxels alone (kernels.face_components, union-find); ITK's
    ConnectedComponent (face connectivity) on the whole grid is the oracle: same partition, numbered in scan
    order, rows and slices never joined across the grid's edges."""
    import SimpleITK as sitk

    from RegistrationQualityLib.kernels import face_components

    shape = (7, 9, 11)
    mask = np.random.default_rng(seed).random(shape) < density
    lin = np.flatnonzero(mask)
    ours = face_components(lin, shape[2], shape[1], shape[0])
    itk = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False))
    theirs = itk.reshape(-1)[lin] - 1  # ITK numbers from 1 in scan order
    assert ours.max() > 0
    assert np.array_equal(ours, theirs)
