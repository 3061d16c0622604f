"""Quick threshold segmentations and their outline display (fixed vs moving, before vs after).

The idea (the seed's advice): misalignment that is invisible on a blended image is obvious when the outline of a
quick threshold segmentation of each image is drawn over the other. This module makes those segmentations
(SimpleITK, each image in its own intensity units, float maps included) and sets the outline-only display in
the scene. Snapshots of the outlines are in :mod:`RegistrationQualityLib.rendering`.

Threshold definitions (pinned; see ``docs/overlays.md``):

* ``range``: foreground = finite voxels v with ``lower <= v <= upper`` (a missing bound is open).
* ``otsu``: foreground = finite voxels v with ``v > t``, t = Otsu's threshold (maximum between-class variance of
  the intensity histogram, Otsu 1979, IEEE SMC 9(1):62-66) computed by SimpleITK's ``OtsuThreshold`` over the
  finite voxels with 256 histogram bins. Reported as ``lower = t`` (exclusive), ``upper = max``.
* clean-up (:class:`Cleanup`), in this order: morphological closing with a ball of radius ``closing_mm``
  (physical: an axis-aligned ellipsoid of ``closing_mm / spacing`` voxels per axis; off at 0), removal of
  islands (connected components) smaller than ``min_island_cc``, keep the largest connected component, fill
  holes (3D: background not face-connected to the image border). Connectivity is face (6-) connectivity.
  Default: holes filled and the largest component kept (``docs/overlays.md`` gives the numbers behind it).

NaN/inf voxels are never foreground and never enter the histogram.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .errors import BadInputError, require
from .io import _sitk, check_scalar_3d, labelmap_image_to_segmentation, volume_to_image

# Okabe & Ito (2008) "Color Universal Design" palette: distinct for the common colour-vision deficiencies.
FIXED_COLOR = "#0072B2"  # blue
MOVING_COLOR = "#E69F00"  # orange
EXTRA_COLORS = ("#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")  # bluish green, purple, sky, vermillion, yellow
OUTLINE_THICKNESS = 2  # pixels in the slice views and snapshots

OTSU_BINS = 256
ATTRIBUTE_PREFIX = "RegistrationQuality."


@dataclass(frozen=True)
class ThresholdSpec:
    """A threshold request: ``method`` "range" (with ``lower``/``upper``, ``None`` = open) or "otsu"."""

    method: str = "range"
    lower: float | None = None
    upper: float | None = None

    def __str__(self) -> str:
        if self.method == "otsu":
            return "otsu"
        lo = "" if self.lower is None else f"{self.lower:g}"
        return lo if self.upper is None else f"{lo}:{self.upper:g}"


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SPEC = re.compile(rf"^\s*(?P<lo>{_NUMBER})?\s*(?:(?P<colon>:)\s*(?P<hi>{_NUMBER})?)?\s*$")


def parse_threshold_spec(text, subject: str = "--threshold") -> ThresholdSpec:
    """Parse the CLI ``--threshold`` syntax: ``LO``, ``LO:HI``, ``:HI`` (inclusive bounds) or ``otsu``.

    ``LO`` alone means ``>= LO``. Raises BadInputError ``"--threshold: ..."`` for anything else (empty text,
    non-numbers, non-finite values, ``LO > HI``).
    """
    if isinstance(text, ThresholdSpec):
        return text
    s = str(text).strip()
    if s.lower() == "otsu":
        return ThresholdSpec("otsu")
    m = _SPEC.match(s)
    if not s or m is None or (m.group("lo") is None and m.group("hi") is None):
        raise BadInputError(subject, f"'{text}' is not LO[:HI] (numbers) or 'otsu'")
    lo = float(m.group("lo")) if m.group("lo") is not None else None
    hi = float(m.group("hi")) if m.group("hi") is not None else None
    for v in (lo, hi):
        if v is not None and not math.isfinite(v):
            raise BadInputError(subject, f"'{text}': bounds must be finite numbers")
    if lo is not None and hi is not None and lo > hi:
        raise BadInputError(subject, f"'{text}': lower bound {lo:g} is above upper bound {hi:g}")
    return ThresholdSpec("range", lo, hi)


def _finite_max(arr: np.ndarray) -> float | None:
    """Largest finite value of an array (None when it has none), without a copy of the finite values."""
    if arr.dtype.kind != "f":
        return float(arr.max()) if arr.size else None
    top = float(np.nanmax(arr)) if arr.size and not np.isnan(arr).all() else None
    if top is None or math.isfinite(top):
        return top
    finite = arr[np.isfinite(arr)]
    return float(finite.max()) if finite.size else None


def _finite_array(image) -> tuple[np.ndarray, np.ndarray]:
    sitk = _sitk()
    arr = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, bool)
    return arr, finite


def otsu_threshold(image, bins: int = OTSU_BINS) -> float | None:
    """Otsu's threshold of the finite voxels of ``image`` (SimpleITK); ``None`` when fewer than 2 distinct values.

    The value of SimpleITK's ``OtsuThreshold`` on the image cast to float32 with the finite voxels as mask
    (``bins`` histogram bins), computed by :func:`segment_kernels.otsu_threshold` in one pass without copies of
    the image (the same histogram and the same sums; the tests compare both)."""
    from . import segment_kernels

    sitk = _sitk()
    return segment_kernels.otsu_threshold(sitk.GetArrayViewFromImage(image), int(bins))


def _voxel_volume_mm3(image) -> float:
    d = np.array(image.GetDirection(), float).reshape(3, 3)
    return float(abs(np.linalg.det(d)) * np.prod(image.GetSpacing()))


@dataclass(frozen=True)
class Cleanup:
    """Clean-up of a threshold mask (module docstring): what the CLI's ``--fill-holes``,
    ``--largest-component``, ``--min-island-cc`` and ``--closing-mm`` set. The default fills holes and keeps the
    largest component; :data:`NO_CLEANUP` keeps the raw threshold."""

    fill_holes: bool = True
    largest_component: bool = True
    min_island_cc: float = 0.0
    closing_mm: float = 0.0

    def __post_init__(self):
        for key in ("min_island_cc", "closing_mm"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise BadInputError("--" + key.replace("_", "-"), f"{v!r} is not a size >= 0")

    def as_dict(self) -> dict:
        return {"fill_holes": bool(self.fill_holes), "largest_component": bool(self.largest_component),
                "min_island_cc": float(self.min_island_cc), "closing_mm": float(self.closing_mm)}

    def __str__(self) -> str:
        parts = []
        if self.closing_mm > 0:
            parts.append(f"closing {self.closing_mm:g} mm")
        if self.min_island_cc > 0:
            parts.append(f"islands < {self.min_island_cc:g} cc removed")
        if self.largest_component:
            parts.append("largest component")
        if self.fill_holes:
            parts.append("holes filled")
        return ", ".join(parts) or "none (raw threshold)"


NO_CLEANUP = Cleanup(fill_holes=False, largest_component=False)


def cleanup_from_dict(value) -> Cleanup:
    """A :class:`Cleanup` from itself, ``None`` (the default) or a dict of its fields (report.json's shape)."""
    if value is None:
        return Cleanup()
    if isinstance(value, Cleanup):
        return value
    if not isinstance(value, dict) or set(value) - set(Cleanup().as_dict()):
        raise BadInputError("cleanup", f"{value!r} is not a threshold clean-up (fill_holes, largest_component, "
                            "min_island_cc, closing_mm)")
    return Cleanup(**value)


def threshold_image(image, lower=None, upper=None, method: str = "range", cleanup: Cleanup | None = NO_CLEANUP,
                    name: str = "image"):
    """Binary segmentation of a SimpleITK scalar image by intensity, then :func:`clean_mask`.

    Returns ``(mask, info)``: ``mask`` is a UInt8 image (0/1) on the image's grid (geometry copied), ``info`` a
    dict ``{"method", "lower", "upper", "lower_inclusive", "voxels", "volume_cc", "raw_volume_cc", "cleanup"}``
    giving the thresholds actually used, in the image's own units, the volume after and before the clean-up and
    the clean-up (``None`` = the default :class:`Cleanup`; :data:`NO_CLEANUP` = raw). Definitions: module
    docstring. An empty result is returned as is (``voxels == 0``): callers report it, they never turn it into
    a score.
    """
    sitk = _sitk()
    check_scalar_3d(image, name)
    cleanup = cleanup_from_dict(cleanup)
    method = str(method).lower()
    require(method in ("range", "otsu"), name, f"unknown threshold method '{method}' (use range or otsu)")
    for label, v in (("lower", lower), ("upper", upper)):
        require(v is None or (isinstance(v, (int, float)) and math.isfinite(v)), name,
                f"threshold {label} bound {v!r} is not a finite number")
    from . import segment_kernels

    arr = sitk.GetArrayViewFromImage(image)
    vmax = _finite_max(arr)
    if method == "otsu":
        t = otsu_threshold(image)
        if t is None:
            runs = segment_kernels.threshold_runs(arr, above=np.inf)  # nothing
            lower, upper = (vmax, vmax)
        else:
            runs = segment_kernels.threshold_runs(arr, above=t)
            lower, upper = t, vmax
        inclusive = False
    else:
        require(lower is None or upper is None or lower <= upper, name,
                f"threshold lower bound {lower:g} is above upper bound {upper:g}" if lower is not None
                and upper is not None else "bad threshold bounds")
        runs = segment_kernels.threshold_runs(arr, lower, upper)
        inclusive = True
    raw = segment_kernels.mask_count(runs)
    mask = _clean_runs(runs, arr.shape, cleanup, image)
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    voxel_cc = _voxel_volume_mm3(image) / 1000.0
    info = {
        "method": method,
        "lower": None if lower is None else float(lower),
        "upper": None if upper is None else float(upper),
        "lower_inclusive": inclusive,
        "voxels": count,
        "volume_cc": count * voxel_cc,
        "raw_volume_cc": raw * voxel_cc,
        "cleanup": cleanup.as_dict(),
    }
    return mask, info


def closing_radius_voxels(image, closing_mm: float) -> list:
    """Per-axis radius (voxels) of the ball of ``closing_mm`` on ``image``'s grid (rounded, at least 1)."""
    return [max(1, int(round(closing_mm / s))) for s in image.GetSpacing()]


def _from_array(arr: np.ndarray, like):
    sitk = _sitk()
    out = sitk.GetImageFromArray(arr.view(np.uint8) if arr.dtype == bool else arr.astype(np.uint8, copy=False))
    out.CopyInformation(like)
    return out


def clean_mask(mask, cleanup: Cleanup | None = None):
    """The :class:`Cleanup` of a 0/1 mask (``None`` = the default), in the module docstring's order.

    Components (face connectivity) are found on the mask's runs along i with a union-find
    (:mod:`.segment_kernels`, the same components as SimpleITK's ``ConnectedComponent``; equal sizes: the first
    in raster order); holes are the background components of the kept runs that touch no face of the grid (the
    same result as ``BinaryFillhole``); the result is written once from the kept runs. On a 512×512×300 CT-size
    mask the default clean-up takes well under a second (``Testing/benchmarks/bench_cleanup.py``); a 2 mm closing
    (SimpleITK's ``BinaryMorphologicalClosing``) about 50 s, which is why it is off by default.
    """
    from . import segment_kernels

    sitk = _sitk()
    arr = sitk.GetArrayViewFromImage(mask)
    return _clean_runs(segment_kernels.threshold_runs(arr, above=0.0), arr.shape, cleanup_from_dict(cleanup), mask)


def _clean_runs(runs, shape, cleanup: Cleanup, like):
    """UInt8 0/1 image on ``like``'s grid: the clean-up of the mask given by its runs along i."""
    from . import segment_kernels

    sitk = _sitk()
    if cleanup.closing_mm > 0:
        raw = _from_array(segment_kernels.clean_runs(runs, shape, 0, False, False), like)
        closed = sitk.BinaryMorphologicalClosing(raw, closing_radius_voxels(like, cleanup.closing_mm),
                                                 sitk.sitkBall, 1, True)
        runs = segment_kernels.threshold_runs(sitk.GetArrayViewFromImage(closed), above=0.0)
    min_voxels = 0
    if cleanup.min_island_cc > 0:
        min_voxels = int(math.ceil(cleanup.min_island_cc * 1000.0 / _voxel_volume_mm3(like) - 1e-9))
    out = segment_kernels.clean_runs(runs, shape, min_voxels, cleanup.largest_component, cleanup.fill_holes)
    return _from_array(out, like)


def suggest_ranges(image) -> dict:
    """Default threshold ranges from an image's histogram, for the panel's sliders and presets.

    Returns ``{"min", "max", "p01", "p99", "otsu": (t, max) or None, "bright": (t, max), "dark": (min, t)}``
    in the image's units (finite voxels only; ``p01``/``p99`` are the 1st and 99th percentiles).
    """
    arr, finite = _finite_array(image)
    values = arr[finite]
    if values.size == 0:
        raise BadInputError("image", "no finite voxels to suggest a threshold from")
    vmin, vmax = float(values.min()), float(values.max())
    p01, p99 = (float(v) for v in np.percentile(values, [1, 99]))
    t = otsu_threshold(image)
    return {
        "min": vmin, "max": vmax, "p01": p01, "p99": p99,
        "otsu": None if t is None else (t, vmax),
        "bright": (t if t is not None else p01, vmax),
        "dark": (vmin, t if t is not None else p99),
    }


# ---------------------------------------------------------------------------------------------------
# Scene: segmentation nodes and outline display
# ---------------------------------------------------------------------------------------------------
def parse_color(color) -> tuple[float, float, float]:
    """(r, g, b) in 0..1 from ``"#RRGGBB"`` or a 3-sequence in 0..1 (or 0..255 when any component > 1)."""
    if isinstance(color, str):
        s = color.strip().lstrip("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", s):
            raise BadInputError("color", f"'{color}' is not #RRGGBB")
        return tuple(int(s[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    try:
        rgb = [float(c) for c in color]
    except (TypeError, ValueError):
        raise BadInputError("color", f"{color!r} is not a colour") from None
    if len(rgb) != 3 or not all(math.isfinite(c) and c >= 0 for c in rgb):
        raise BadInputError("color", f"{color!r} is not a colour (r, g, b)")
    if max(rgb) > 1.0:
        rgb = [c / 255.0 for c in rgb]
    require(max(rgb) <= 1.0, "color", f"{color!r} has components above 255")
    return tuple(rgb)


def threshold_segmentation_node(ctx, volume_node_or_image, spec="otsu", name: str = "threshold",
                                color=FIXED_COLOR, segment_name: str | None = None, outline: bool = True,
                                cleanup: Cleanup | None = None):
    """Segmentation node with one named, coloured segment: the threshold of a volume node or SimpleITK image.

    ``spec``: ``"LO[:HI]"``, ``"otsu"`` or a :class:`ThresholdSpec`; ``cleanup``: a :class:`Cleanup`
    (``None`` = the default; see :func:`threshold_image`). A volume node is
    read in its own frame and the segmentation observes the node's parent transform, so both sit at the same
    place in the world. The thresholds used and the volume are stored as node attributes
    ``RegistrationQuality.Threshold`` (``"method lower upper"``), ``RegistrationQuality.VolumeCC`` and
    ``RegistrationQuality.Voxels``. With ``outline`` the display is outline-only (:func:`show_outlines`).
    The input node is not modified.
    """
    spec = parse_threshold_spec(spec)
    is_node = hasattr(volume_node_or_image, "GetImageData")
    source = f"node '{volume_node_or_image.GetName()}'" if is_node else name
    image = volume_to_image(volume_node_or_image) if is_node else volume_node_or_image
    mask, info = threshold_image(image, spec.lower, spec.upper, method=spec.method, name=source,
                                 cleanup=cleanup)
    segment_name = segment_name or name
    seg = labelmap_image_to_segmentation(ctx, mask, name, {1: segment_name})
    segmentation = seg.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:  # empty threshold: keep an empty, named segment
        segmentation.AddEmptySegment(segment_name, segment_name)
    segment = segmentation.GetNthSegment(0)
    segment.SetName(segment_name)
    segment.SetColor(*parse_color(color))
    if is_node and volume_node_or_image.GetTransformNodeID():
        seg.SetAndObserveTransformNodeID(volume_node_or_image.GetTransformNodeID())
    lo = "-inf" if info["lower"] is None else repr(info["lower"])
    hi = "inf" if info["upper"] is None else repr(info["upper"])
    seg.SetAttribute(ATTRIBUTE_PREFIX + "Threshold", f"{info['method']} {lo} {hi}")
    seg.SetAttribute(ATTRIBUTE_PREFIX + "Voxels", str(info["voxels"]))
    seg.SetAttribute(ATTRIBUTE_PREFIX + "VolumeCC", repr(info["volume_cc"]))
    if outline:
        show_outlines(ctx, seg, color)
    return seg


def show_outlines(ctx, segmentation_node, color=None, thickness: int = OUTLINE_THICKNESS, opacity: float = 1.0,
                  visible: bool = True):
    """Outline-only 2D display of a segmentation node: fill off, outline on, ``thickness`` pixels.

    ``color`` (``"#RRGGBB"`` or r, g, b) recolours every segment; ``None`` keeps their colours. This changes the
    display of the node it is given (that is its purpose); returns the display node.
    """
    require(segmentation_node is not None and segmentation_node.IsA("vtkMRMLSegmentationNode"), "segmentation",
            "a segmentation node is needed to show outlines")
    display = segmentation_node.GetDisplayNode()
    if display is None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    if color is not None:
        rgb = parse_color(color)
        segmentation = segmentation_node.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segmentation.GetNthSegment(i).SetColor(*rgb)
    display.SetVisibility(bool(visible))
    display.SetVisibility2DFill(False)
    display.SetVisibility2DOutline(True)
    display.SetSliceIntersectionThickness(int(thickness))
    display.SetOpacity2DOutline(float(opacity))
    display.SetVisibility3D(False)
    return display


def show_before_after(before_nodes, after_nodes, state: str = "after") -> None:
    """Switch the outline display between "before" and "after" registration.

    ``before_nodes`` (e.g. the moving segmentation as loaded) are shown when ``state == "before"`` and hidden
    otherwise; ``after_nodes`` (e.g. the moving segmentation resampled through the registration, or a copy under
    the transform: :func:`transformed_copy`) the other way round. Nodes may be single nodes or lists.
    """
    state = str(state).lower()
    require(state in ("before", "after"), "state", f"'{state}' is neither 'before' nor 'after'")

    def as_list(nodes):
        return [n for n in (nodes if isinstance(nodes, (list, tuple)) else [nodes]) if n is not None]

    for nodes, visible in ((before_nodes, state == "before"), (after_nodes, state == "after")):
        for node in as_list(nodes):
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(visible)


def transformed_copy(ctx, segmentation_node, transform_node, name: str | None = None, color=MOVING_COLOR):
    """Copy of a segmentation node observing ``transform_node`` (shown where the registration puts it).

    Applying a registration's node (resampling transform as FromParent) to the moving segmentation displays it
    aligned to the fixed image: the "after" outlines, without resampling. The input node is not modified.
    """
    copy = ctx.add_node("vtkMRMLSegmentationNode", name or segmentation_node.GetName() + " (registered)")
    copy.CreateDefaultDisplayNodes()
    copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
    if transform_node is not None:
        copy.SetAndObserveTransformNodeID(transform_node.GetID())
    show_outlines(ctx, copy, color)
    return copy


def outline_overlays(ctx, fixed_volume, moving_volume, fixed_spec="otsu", moving_spec=None, transform_node=None,
                     registered_volume=None, state: str = "after", cleanup: Cleanup | None = None) -> dict:
    """The panel's one click: threshold both images and show their outlines, before or after registration.

    * ``fixed``: threshold of the fixed volume (``fixed_spec``), blue outline, observing the fixed volume's
      parent transform (normally none).
    * ``moving_before``: threshold of the moving volume in its own frame, *without* any parent transform: where
      the moving image lies as loaded. Orange outline. ``moving_spec`` defaults to ``fixed_spec`` (each image is
      thresholded in its own units, so give both when they differ).
    * ``moving_after``: a copy of ``moving_before`` under ``transform_node`` (default: the moving volume's parent
      transform) — the same mask carried through the registration, as evaluate builds "after"; without a
      transform, ``registered_volume`` (the moving image already resampled onto the fixed grid) thresholded with
      the moving range — for Otsu, the moving image's own Otsu level; ``None`` when there is neither.

    ``cleanup`` (a :class:`Cleanup`, ``None`` = the default) is applied to each threshold on its own grid. The "before" or
    "after" outlines are shown according to ``state`` (:func:`show_before_after`). Inputs are not modified.
    Returns ``{"fixed", "moving_before", "moving_after", "thresholds": {"fixed", "moving"}}``.
    """
    fixed_spec = parse_threshold_spec(fixed_spec)
    moving_spec = parse_threshold_spec(moving_spec if moving_spec is not None else fixed_spec)
    fixed = threshold_segmentation_node(ctx, fixed_volume, fixed_spec, f"{fixed_volume.GetName()} threshold",
                                        FIXED_COLOR, "fixed", cleanup=cleanup)
    moving_image = volume_to_image(moving_volume)
    before = threshold_segmentation_node(ctx, moving_image, moving_spec, f"{moving_volume.GetName()} threshold",
                                         MOVING_COLOR, "moving", cleanup=cleanup)
    attr = before.GetAttribute(ATTRIBUTE_PREFIX + "Threshold").split()
    moving_lower, moving_upper = float(attr[1]), float(attr[2])
    after = None
    node = transform_node if transform_node is not None else moving_volume.GetParentTransformNode()
    if node is not None:  # the moving mask through the registration: built as "before", as evaluate does
        after = transformed_copy(ctx, before, node, f"{moving_volume.GetName()} threshold (registered)")
    elif registered_volume is not None:
        if moving_spec.method == "otsu":  # the moving image's Otsu level, strictly above (same definition)
            spec = ThresholdSpec("range", float(np.nextafter(moving_lower, np.inf)), None)
        else:
            spec = moving_spec
        after = threshold_segmentation_node(ctx, registered_volume, spec, f"{registered_volume.GetName()} threshold",
                                            MOVING_COLOR, "moving (registered)",
                                            cleanup=cleanup)
    show_before_after(before, after, state if after is not None else "before")
    return {"fixed": fixed, "moving_before": before, "moving_after": after,
            "thresholds": {"fixed": fixed.GetAttribute(ATTRIBUTE_PREFIX + "Threshold"),
                           "moving": f"{attr[0]} {moving_lower!r} {moving_upper!r}"}}
