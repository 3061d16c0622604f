"""Threshold segmentations (range, Otsu, post-processing) and outline display of segmentation nodes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import io
from RegistrationQualityLib import segmentation as seg
from RegistrationQualityLib.errors import BadInputError

from conftest import OBLIQUE, make_image


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def sphere_phantom(noise=8.0, seed=0, dtype=np.int16):
    """Noisy sphere (200) on background (50), oblique anisotropic grid; returns (image, truth array)."""
    rng = np.random.default_rng(seed)
    shape = (24, 32, 40)
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]]
    spacing = (0.8, 1.1, 2.0)
    truth = ((i - 20) * spacing[0]) ** 2 + ((j - 15) * spacing[1]) ** 2 + ((k - 12) * spacing[2]) ** 2 < 12.0**2
    arr = np.where(truth, 200.0, 50.0) + rng.normal(0, noise, shape)
    img = make_image(arr.astype(dtype), spacing=spacing, origin=(-3.0, 12.5, 40.0), direction=OBLIQUE)
    return img, truth


def test_range_threshold_recovers_known_sphere():
    img, truth = sphere_phantom()
    mask, info = seg.threshold_image(img, lower=125)
    arr = sitk.GetArrayFromImage(mask)
    assert mask.GetPixelID() == sitk.sitkUInt8 and set(np.unique(arr)) <= {0, 1}
    assert mask.GetSize() == img.GetSize()
    np.testing.assert_allclose(mask.GetDirection(), img.GetDirection())
    assert dice(arr, truth) >= 0.99
    assert info["method"] == "range" and info["lower"] == 125 and info["upper"] is None and info["lower_inclusive"]
    assert info["voxels"] == np.count_nonzero(arr)
    assert info["volume_cc"] == pytest.approx(np.count_nonzero(arr) * 0.8 * 1.1 * 2.0 / 1000.0)


def test_range_bounds_are_inclusive_and_upper_bound_works():
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    mask, info = seg.threshold_image(make_image(arr), lower=5, upper=10)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), ((arr >= 5) & (arr <= 10)).astype(np.uint8))
    mask, _ = seg.threshold_image(make_image(arr), upper=3)
    assert np.count_nonzero(sitk.GetArrayFromImage(mask)) == 4


def test_float_perfusion_map_in_its_own_units_and_nan_never_foreground():
    rng = np.random.default_rng(3)
    arr = rng.uniform(0.0, 0.2, size=(10, 12, 14)).astype(np.float32)  # e.g. a CBV map, ml/100 g scaled
    arr[3:7, 4:9, 5:11] += 0.5
    arr[0, 0, 0] = np.nan
    arr[5, 6, 7] = np.nan  # inside the structure
    mask, info = seg.threshold_image(make_image(arr, spacing=(2, 2, 5)), lower=0.35, upper=0.9)
    m = sitk.GetArrayFromImage(mask)
    expected = np.zeros(arr.shape, bool)
    expected[3:7, 4:9, 5:11] = True
    expected[5, 6, 7] = False
    np.testing.assert_array_equal(m.astype(bool), expected)
    assert info["volume_cc"] == pytest.approx(expected.sum() * 20 / 1000)


def numpy_otsu(values, bins=256):
    """Independent Otsu: maximise the between-class variance over histogram bin edges."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    p = hist / hist.sum()
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centers)
    w1 = 1 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return edges[np.argmax(between) + 1], edges[1] - edges[0]


def test_otsu_on_bimodal_image_separates_the_modes():
    rng = np.random.default_rng(7)
    shape = (16, 20, 24)
    truth = np.zeros(shape, bool)
    truth[:, :, 12:] = True  # two equal classes
    arr = np.where(truth, rng.normal(1200, 40, shape), rng.normal(400, 40, shape)).astype(np.float32)
    img = make_image(arr, spacing=(1.5, 1.5, 3.0))
    mask, info = seg.threshold_image(img, method="otsu")
    t = info["lower"]
    assert info["method"] == "otsu" and not info["lower_inclusive"]
    assert arr[~truth].max() < t < arr[truth].min()  # separated modes: any threshold in the gap is optimal
    assert info["upper"] == pytest.approx(float(arr.max()))
    expected_t, bin_width = numpy_otsu(arr.ravel())
    assert abs(t - expected_t) <= bin_width
    assert dice(sitk.GetArrayFromImage(mask), truth) >= 0.99
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask).astype(bool), arr > t)


def test_otsu_on_overlapping_modes_sits_at_the_midpoint():
    rng = np.random.default_rng(9)
    truth = np.zeros((20, 20, 20), bool)
    truth[10:] = True
    arr = np.where(truth, rng.normal(1200, 150, truth.shape), rng.normal(400, 150, truth.shape)).astype(np.float32)
    t = seg.otsu_threshold(make_image(arr))
    expected_t, bin_width = numpy_otsu(arr.ravel())
    assert abs(t - expected_t) <= bin_width
    assert abs(t - 800) < 30  # equal classes and spreads: the optimum is the midpoint


def test_otsu_ignores_nan_and_handles_constant_image():
    rng = np.random.default_rng(8)
    arr = np.concatenate([rng.normal(10, 1, 500), rng.normal(30, 1, 500)]).astype(np.float32).reshape(10, 10, 10)
    arr_nan = arr.copy()
    arr_nan.flat[::7] = np.nan
    t_clean = seg.otsu_threshold(make_image(arr))
    t_nan = seg.otsu_threshold(make_image(arr_nan))
    for a, t in ((arr, t_clean), (arr_nan, t_nan)):
        finite = a[np.isfinite(a)]
        assert finite[finite < 20].max() < t < finite[finite > 20].min()
        assert abs(t - numpy_otsu(finite)[0]) <= numpy_otsu(finite)[1]
    assert seg.otsu_threshold(make_image(np.full((3, 3, 3), 5.0, np.float32))) is None
    mask, info = seg.threshold_image(make_image(np.full((3, 3, 3), 5.0, np.float32)), method="otsu")
    assert info["voxels"] == 0 and np.count_nonzero(sitk.GetArrayFromImage(mask)) == 0


def test_post_processing_islands_largest_component_and_holes():
    arr = np.zeros((20, 20, 20), np.int16)
    arr[2:12, 2:12, 2:12] = 100  # 1000 voxels with a 2x2x2 cavity
    arr[6:8, 6:8, 6:8] = 0
    arr[15:17, 15:17, 15:18] = 100  # island of 12 voxels
    arr[15, 2, 2] = 100  # island of 1 voxel
    img = make_image(arr, spacing=(1.0, 1.0, 2.0))  # voxel = 2 mm3

    def voxels(**kw):
        return seg.threshold_image(img, lower=50, cleanup=seg.Cleanup(**{"fill_holes": False,
                                                                          "largest_component": False, **kw}))[1]

    raw = seg.threshold_image(img, lower=50)[1]  # the library default is the raw threshold
    assert raw["voxels"] == 1000 - 8 + 12 + 1 and raw["raw_volume_cc"] == raw["volume_cc"]
    assert voxels(min_island_cc=0.002)["voxels"] == 992 + 12 + 1  # 1 voxel = 2 mm3 = 0.002 cc: kept
    assert voxels(min_island_cc=0.003)["voxels"] == 992 + 12  # 2 voxels needed: the single voxel goes
    assert voxels(min_island_cc=0.024)["voxels"] == 992 + 12  # 12 voxels = 24 mm3: kept
    assert voxels(min_island_cc=0.0245)["voxels"] == 992  # 13 voxels needed: dropped
    assert voxels(largest_component=True)["voxels"] == 992
    mask, info = seg.threshold_image(img, lower=50, cleanup=seg.Cleanup())  # the default clean-up
    assert info["voxels"] == 1000 and info["raw_volume_cc"] == pytest.approx(1005 * 0.002)
    assert info["cleanup"] == {"fill_holes": True, "largest_component": True, "min_island_cc": 0.0,
                               "closing_mm": 0.0}
    assert sitk.GetArrayFromImage(mask)[2:12, 2:12, 2:12].all()
    assert str(seg.Cleanup()) == "largest component, holes filled"
    assert str(seg.NO_CLEANUP) == "none (raw threshold)"


def test_closing_bridges_gaps_narrower_than_its_diameter_in_mm():
    # blocks 3 mm and 6 mm apart along x (1 mm voxels): a closing with a 2 mm ball (2 voxels along x and y, 1
    # along z's 2.5 mm) bridges the 3 mm gap and leaves the 6 mm gap open
    arr = np.zeros((12, 12, 30), np.uint8)
    arr[2:10, 2:10, 2:10] = 1
    arr[2:10, 2:10, 13:20] = 1  # 3 voxels = 3 mm gap (x 10..12)
    arr[2:10, 2:10, 26:29] = 1  # 6 mm gap (x 20..25)
    img = make_image(arr, spacing=(1.0, 1.0, 2.5), direction=OBLIQUE)
    assert seg.closing_radius_voxels(img, 2.0) == [2, 2, 1]
    out = sitk.GetArrayFromImage(seg.clean_mask(img, seg.Cleanup(False, False, 0.0, 2.0)))
    assert out[5, 5, 10:13].all() and not out[5, 5, 20:26].any()
    assert out[arr > 0].all()  # closing never removes foreground
    with pytest.raises(BadInputError, match="--closing-mm"):
        seg.Cleanup(closing_mm=-1.0)
    with pytest.raises(BadInputError, match="--min-island-cc"):
        seg.Cleanup(min_island_cc=float("nan"))


@pytest.mark.parametrize(
    "text, expected",
    [("100", ("range", 100.0, None)), ("-1e3:250.5", ("range", -1000.0, 250.5)), (":7", ("range", None, 7.0)),
     (" 0.2 : 0.8 ", ("range", 0.2, 0.8)), ("OTSU", ("otsu", None, None))],
)
def test_parse_threshold_spec(text, expected):
    spec = seg.parse_threshold_spec(text)
    assert (spec.method, spec.lower, spec.upper) == expected
    assert seg.parse_threshold_spec(str(spec)) == spec  # round trip of the printed form


@pytest.mark.parametrize("text", ["", "abc", "1:2:3", "nan", "inf", "5:-5", ":", "10..20", "1,2"])
def test_parse_threshold_spec_rejects_garbage_with_one_line(text):
    with pytest.raises(BadInputError) as err:
        seg.parse_threshold_spec(text)
    msg = str(err.value)
    assert msg.startswith("--threshold: ") and "\n" not in msg


def test_threshold_image_rejects_bad_requests():
    img = make_image(np.zeros((3, 3, 3), np.float32))
    with pytest.raises(BadInputError, match="above upper"):
        seg.threshold_image(img, lower=5, upper=1)
    with pytest.raises(BadInputError, match="unknown threshold method"):
        seg.threshold_image(img, method="median")
    with pytest.raises(BadInputError, match="2D image"):
        seg.threshold_image(sitk.Image(4, 4, sitk.sitkFloat32))


def test_threshold_segmentation_node_from_volume_node(ctx):
    img, truth = sphere_phantom()
    vol = io.image_to_volume(ctx, img, "fixed")
    before = io.volume_to_image(vol)
    transform = ctx.add_node("vtkMRMLLinearTransformNode", "reg")
    vol.SetAndObserveTransformNodeID(transform.GetID())
    node = seg.threshold_segmentation_node(ctx, vol, "125", "fixed threshold", color=seg.FIXED_COLOR,
                                           segment_name="fixed body")
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetNthSegment(0)
    assert segment.GetName() == "fixed body"
    np.testing.assert_allclose(segment.GetColor(), (0x00 / 255, 0x72 / 255, 0xB2 / 255))
    assert node.GetTransformNodeID() == transform.GetID()  # same place in the world as its volume
    assert node.GetAttribute("RegistrationQuality.Threshold") == "range 125.0 inf"
    # the labelmap the metrics engine exports is the thresholded truth on the volume's grid
    exported = sitk.GetArrayFromImage(io.segmentation_to_labelmap_image(ctx, node, vol))
    assert dice(exported, truth) >= 0.99
    assert int(node.GetAttribute("RegistrationQuality.Voxels")) == np.count_nonzero(exported)
    # outline-only display
    d = node.GetDisplayNode()
    assert not d.GetVisibility2DFill() and d.GetVisibility2DOutline() and d.GetSliceIntersectionThickness() == 2
    # input untouched
    after = io.volume_to_image(vol)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before))
    assert vol.GetTransformNodeID() == transform.GetID()


def test_empty_threshold_gives_an_empty_named_segment(ctx):
    img, _ = sphere_phantom()
    node = seg.threshold_segmentation_node(ctx, img, "5000:6000", "nothing", segment_name="none")
    assert node.GetSegmentation().GetNumberOfSegments() == 1
    assert node.GetSegmentation().GetNthSegment(0).GetName() == "none"
    assert node.GetAttribute("RegistrationQuality.Voxels") == "0"


def test_show_outlines_and_before_after_switch(ctx):
    img, _ = sphere_phantom()
    fixed = seg.threshold_segmentation_node(ctx, img, "otsu", "fixed", color=seg.FIXED_COLOR, outline=False)
    assert fixed.GetDisplayNode().GetVisibility2DFill()  # default display until outlines are asked for
    d = seg.show_outlines(ctx, fixed, "#E69F00", thickness=3)
    assert not d.GetVisibility2DFill() and d.GetVisibility2DOutline() and d.GetSliceIntersectionThickness() == 3
    np.testing.assert_allclose(fixed.GetSegmentation().GetNthSegment(0).GetColor(), (230 / 255, 159 / 255, 0.0))
    transform = ctx.add_node("vtkMRMLLinearTransformNode", "reg")
    after = seg.transformed_copy(ctx, fixed, transform, "after")
    assert after.GetTransformNodeID() == transform.GetID() and fixed.GetTransformNodeID() is None
    assert after.GetSegmentation().GetNumberOfSegments() == 1
    seg.show_before_after(fixed, [after], "before")
    assert fixed.GetDisplayNode().GetVisibility() and not after.GetDisplayNode().GetVisibility()
    seg.show_before_after(fixed, [after], "after")
    assert not fixed.GetDisplayNode().GetVisibility() and after.GetDisplayNode().GetVisibility()
    with pytest.raises(BadInputError):
        seg.show_before_after(fixed, after, "during")


def test_colours_are_distinct_and_parse():
    assert seg.parse_color(seg.FIXED_COLOR) != seg.parse_color(seg.MOVING_COLOR)
    assert seg.parse_color((230, 159, 0)) == pytest.approx(seg.parse_color("#E69F00"))
    with pytest.raises(BadInputError):
        seg.parse_color("#12345")


def test_suggest_ranges_brackets_the_histogram():
    img, _ = sphere_phantom()
    s = seg.suggest_ranges(img)
    assert s["min"] <= s["p01"] < s["otsu"][0] < s["p99"] <= s["max"]
    assert 80 < s["otsu"][0] < 170


def test_outline_overlays_one_click(ctx):
    """Fixed and moving thresholds in their own units; before = moving as loaded, after = under the transform."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    fixed_img, truth = sphere_phantom()
    moving_arr = sitk.GetArrayFromImage(fixed_img).astype(np.float32) / 100.0  # another unit (e.g. a float map)
    moving_img = sitk.GetImageFromArray(moving_arr)
    moving_img.CopyInformation(fixed_img)
    fixed_vol = io.image_to_volume(ctx, fixed_img, "fixed")
    moving_vol = io.image_to_volume(ctx, moving_img, "moving")
    transform = ctx.add_node("vtkMRMLLinearTransformNode", "registration")
    m = vtkMatrix4x4()
    m.SetElement(0, 3, 3.0)
    transform.SetMatrixTransformToParent(m)
    out = seg.outline_overlays(ctx, fixed_vol, moving_vol, "125", "1.25", transform_node=transform)
    assert out["fixed"].GetTransformNodeID() is None and out["moving_before"].GetTransformNodeID() is None
    assert out["moving_after"].GetTransformNodeID() == transform.GetID()
    assert not out["moving_before"].GetDisplayNode().GetVisibility() and out["moving_after"].GetDisplayNode()\
        .GetVisibility()
    for key in ("fixed", "moving_before"):  # same structure in both units
        exported = sitk.GetArrayFromImage(io.segmentation_to_labelmap_image(ctx, out[key], fixed_vol))
        assert dice(exported, truth) >= 0.99, key
    np.testing.assert_allclose(out["moving_after"].GetSegmentation().GetNthSegment(0).GetColor(),
                               seg.parse_color(seg.MOVING_COLOR))
    assert out["thresholds"]["moving"] == "range 1.25 inf"
    # a registered volume instead: Otsu level of the moving image reused, strictly above
    registered = io.image_to_volume(ctx, moving_img, "registered")
    out = seg.outline_overlays(ctx, fixed_vol, moving_vol, "otsu", registered_volume=registered, state="before")
    t = float(out["thresholds"]["moving"].split()[1])
    reg_t = float(out["moving_after"].GetAttribute("RegistrationQuality.Threshold").split()[1])
    assert reg_t == pytest.approx(t) and reg_t > t
    assert out["moving_before"].GetDisplayNode().GetVisibility()
    assert not out["moving_after"].GetDisplayNode().GetVisibility()
    assert moving_vol.GetTransformNodeID() is None


def test_outline_overlays_after_is_the_moving_mask_through_the_transform_even_with_a_registered_volume(ctx):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from RegistrationQualityLib import panel

    img, _ = sphere_phantom()
    fixed_vol = io.image_to_volume(ctx, img, "fixed")
    moving_vol = io.image_to_volume(ctx, img, "moving")
    registered = io.image_to_volume(ctx, img, "registered")
    transform = ctx.add_node("vtkMRMLLinearTransformNode", "registration")
    m = vtkMatrix4x4()
    m.SetElement(0, 3, 3.0)
    transform.SetMatrixTransformToParent(m)
    out = seg.outline_overlays(ctx, fixed_vol, moving_vol, "otsu", transform_node=transform,
                               registered_volume=registered, cleanup=seg.NO_CLEANUP)
    assert out["moving_after"].GetTransformNodeID() == transform.GetID()  # a copy of "before", not a new threshold
    assert out["moving_after"].GetAttribute("RegistrationQuality.Threshold") is None
    _, options = panel.evaluation_request(fixed_vol, moving_vol, transform=transform, cleanup=seg.NO_CLEANUP)
    assert options.threshold_cleanup == seg.NO_CLEANUP
