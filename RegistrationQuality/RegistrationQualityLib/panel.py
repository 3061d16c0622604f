"""What the Slicer panel asks of the library, Qt-free (the module file's widget and logic only call these).

The Registration Quality panel (``RegistrationQuality.py``: ``RegistrationQualityWidget`` and
``RegistrationQualityLogic``) gathers nodes and numbers from its parameter node and hands them to the functions
here; everything that computes is below or further down in the library, so the headless suite covers the panel's
code path (``Testing/test_module_panel.py``).

* :func:`evaluation_request` -- the panel's inputs as :class:`~.evaluate.EvaluationInputs` /
  :class:`~.evaluate.EvaluationOptions` (scene outputs on, no snapshots: nothing is written until "Save report").
* :func:`threshold_defaults` -- slider bounds and the default range of an image, from its histogram.
* :func:`slicer_elastix_inputs` -- the inputs SlicerElastix left in the scene for a moving volume.
* :func:`display_nodes` -- checkerboard, difference and contour (outline) nodes for the Display section;
  :func:`show_results` applies the Display toggles to the slice views and those nodes.
* :func:`summary_rows` -- the compact before/after results table of the panel.
"""

from __future__ import annotations

import math

from . import checks, heatmap, measures
from .errors import BadInputError

# Slider bounds of the panel's threshold range widgets (the parameter node's RangeBounds): values outside are
# clamped, so that a ctkRangeWidget never holds more steps than a Qt int slider can count.
THRESHOLD_LIMIT = 1.0e6


def threshold_spec(value_range) -> str | None:
    """``"LO:HI"`` (the CLI's --threshold syntax, inclusive bounds, exact float text) or None.

    ``value_range``: None, a ``(lower, upper)`` pair, or an object with ``minimum``/``maximum`` (Slicer's
    ``FloatRange``).
    """
    if value_range is None:
        return None
    if hasattr(value_range, "minimum"):
        lower, upper = value_range.minimum, value_range.maximum
    else:
        lower, upper = value_range
    lower, upper = float(lower), float(upper)
    if not (math.isfinite(lower) and math.isfinite(upper)):
        raise BadInputError("threshold", f"range {lower:g}..{upper:g} is not finite")
    if lower > upper:
        raise BadInputError("threshold", f"lower bound {lower:g} is above upper bound {upper:g}")
    return f"{lower!r}:{upper!r}"


def evaluation_request(fixed, moving, registered=None, transform=None, fixed_segmentation=None,
                       moving_segmentation=None, fixed_landmarks=None, moving_landmarks=None, fixed_threshold=None,
                       moving_threshold=None, percentile: float = measures.DEFAULT_PERCENTILE, case_id=None,
                       cleanup=None, profile=None, **limits):
    """(EvaluationInputs, EvaluationOptions) of the panel's state.

    Nodes are passed as they are (never modified by :func:`~.evaluate.evaluate`). Thresholds: ``(lower, upper)``
    ranges (or ``FloatRange``) of the fixed and moving images, each in its own units; give both or neither.
    ``limits``: one keyword per check of the check registry (``min_dice``, ``max_hausdorff``, ``max_tre``,
    ``max_folding``, ``max_tre_point``, ...; :mod:`.checks`); ``None`` means no check. ``cleanup``: the threshold
    clean-up (:class:`~.segmentation.Cleanup`, ``None`` = its default, as the CLI). ``profile``: a tolerance
    profile (built-in name or file, :mod:`.profiles`; a given limit replaces the profile's). The options ask for scene
    outputs (result nodes) and no snapshots.
    """
    from .evaluate import EvaluationInputs, EvaluationOptions

    specs = [threshold_spec(fixed_threshold), threshold_spec(moving_threshold)]
    if (specs[0] is None) != (specs[1] is None):
        raise BadInputError("threshold", "give a range for both the fixed and the moving image")
    inputs = EvaluationInputs(
        fixed=fixed, moving=moving, transform=transform, registered=registered,
        fixed_segmentation=fixed_segmentation, moving_segmentation=moving_segmentation,
        threshold=specs if specs[0] is not None else None,
        fixed_landmarks=fixed_landmarks, moving_landmarks=moving_landmarks, case_id=case_id,
    )
    unknown = sorted(set(limits) - set(checks.names()))
    if unknown:
        raise TypeError(f"evaluation_request: unknown check(s) {', '.join(unknown)} (known: {checks.names()})")
    options = EvaluationOptions(percentile=float(percentile), snapshots=False, scene_outputs=True,
                                threshold_cleanup=cleanup, profile=profile,
                                limits={k: v for k, v in limits.items() if v is not None})
    return inputs, options


def threshold_defaults(volume_node) -> dict:
    """Bounds and default range of a volume's threshold slider, from its histogram (finite voxels).

    Returns ``{"bounds": (min, max), "suggested": (lo, hi), "otsu": (t, max) or None, "decimals", "step"}``:
    ``suggested`` is :func:`~.segmentation.suggest_ranges`' ``"bright"`` range (Otsu's level to the maximum, or
    the 1st percentile when Otsu is undefined); bounds are clamped to +-:data:`THRESHOLD_LIMIT`. ``decimals``
    and ``step`` give about a thousand steps over the image's range (whole numbers for integer images).
    """
    from .io import volume_to_image
    from .segmentation import suggest_ranges

    image = volume_to_image(volume_node)
    ranges = suggest_ranges(image)

    def clamp(v):
        return min(max(float(v), -THRESHOLD_LIMIT), THRESHOLD_LIMIT)

    lo, hi = clamp(ranges["min"]), clamp(ranges["max"])
    span = hi - lo
    if "int" in image.GetPixelIDTypeAsString() or span >= 1000:
        decimals = 0
    else:
        decimals = min(6, 3 - math.floor(math.log10(span))) if span > 0 else 3
    return {
        "bounds": (lo, hi),
        "suggested": (clamp(ranges["bright"][0]), clamp(ranges["bright"][1])),
        "otsu": None if ranges["otsu"] is None else (clamp(ranges["otsu"][0]), clamp(ranges["otsu"][1])),
        "decimals": int(decimals),
        "step": 10.0 ** (-decimals),
    }


def slicer_elastix_inputs(ctx, moving_node) -> dict | None:
    """The registration SlicerElastix left in the scene for ``moving_node``, as panel inputs, or None.

    ``{"fixed", "registered", "transform", "source"}`` (nodes or None; ``source`` says where they were found).
    SlicerElastix's output transform is the resampling transform fixed -> moving (Slicer's FromParent), what
    the panel's transform input expects. See :func:`~.elastix.find_slicer_elastix_result`.
    """
    from .elastix import find_slicer_elastix_result

    if moving_node is None:
        return None
    found = find_slicer_elastix_result(ctx, moving_node)
    if found is None:
        return None
    return {"fixed": found.fixed_node, "registered": found.output_volume, "transform": found.output_transform,
            "source": found.source}


def registered_image(ctx, fixed, moving, registered=None, transform=None):
    """The moving image on the fixed grid (SimpleITK): ``registered`` as given, else ``moving`` resampled
    (linear) through the resampling transform ``transform`` (world space when None)."""
    from .io import volume_to_image
    from .resample import resample_image

    fixed_image = volume_to_image(fixed)
    if registered is not None:
        return fixed_image, volume_to_image(registered)
    return fixed_image, resample_image(ctx, volume_to_image(moving), fixed_image, transform, "linear")


def display_nodes(ctx, fixed, moving, registered=None, transform=None, fixed_threshold=None, moving_threshold=None,
                  fixed_segmentation=None, moving_segmentation=None, state: str = "after", squares: int = 8,
                  cleanup=None) -> dict:
    """Nodes for the panel's Display section (new nodes; inputs untouched). ``cleanup``: the threshold clean-up
    (:class:`~.segmentation.Cleanup`, ``None`` = its default, as in the evaluation).

    * ``checkerboard``, ``difference``: fixed vs registered image (:func:`registered_image`),
      :func:`~.rendering.checkerboard_node` and :func:`~.rendering.difference_node`; None when the registered
      image is not on the fixed grid.
    * ``contours_fixed``, ``contours_before``, ``contours_after``: outline-only segmentation nodes -- the
      threshold ranges when given (:func:`~.segmentation.outline_overlays`), else copies of the segmentations
      (fixed; moving as loaded; moving under ``transform``: :func:`~.segmentation.transformed_copy`); None when
      there is neither. ``state`` ("before"/"after") selects the moving outline shown.
    """
    from . import rendering, segmentation

    nodes = {"checkerboard": None, "difference": None, "contours_fixed": None, "contours_before": None,
             "contours_after": None}
    fixed_image, reg = registered_image(ctx, fixed, moving, registered, transform)
    if reg.GetSize() == fixed_image.GetSize():  # a registered image on another grid is refused by evaluate
        nodes["checkerboard"] = rendering.checkerboard_node(ctx, fixed_image, reg, squares,
                                                            name=f"{moving.GetName()} checkerboard")
        nodes["difference"] = rendering.difference_node(ctx, fixed_image, reg, name=f"{moving.GetName()} difference")
    if fixed_threshold is not None and moving_threshold is not None:
        out = segmentation.outline_overlays(ctx, fixed, moving, threshold_spec(fixed_threshold),
                                            threshold_spec(moving_threshold), transform_node=transform,
                                            registered_volume=registered, state=state, cleanup=cleanup)
        nodes.update(contours_fixed=out["fixed"], contours_before=out["moving_before"],
                     contours_after=out["moving_after"])
    elif fixed_segmentation is not None and moving_segmentation is not None:
        if not (fixed_segmentation.IsA("vtkMRMLSegmentationNode") and moving_segmentation.IsA("vtkMRMLSegmentationNode")):
            return nodes  # labelmap volumes: no outline copies (their metrics are still computed)
        nodes["contours_fixed"] = segmentation.transformed_copy(
            ctx, fixed_segmentation, None, f"{fixed_segmentation.GetName()} outline", segmentation.FIXED_COLOR)
        nodes["contours_before"] = segmentation.transformed_copy(
            ctx, moving_segmentation, None, f"{moving_segmentation.GetName()} outline (before)")
        if transform is not None:
            nodes["contours_after"] = segmentation.transformed_copy(
                ctx, moving_segmentation, transform, f"{moving_segmentation.GetName()} outline (after)")
        segmentation.show_before_after(nodes["contours_before"], nodes["contours_after"],
                                       state if nodes["contours_after"] is not None else "before")
    return nodes


def show_results(ctx, fixed=None, checkerboard=None, difference=None, jacobian=None, tre_vectors=None,
                 contours=(None, None, None), show_contours=True, contours_after=True, show_checkerboard=False,
                 show_difference=False, show_jacobian=False, show_tre_vectors=True, jacobian_opacity=0.5,
                 folding=None, show_heatmaps=None) -> dict:
    """Apply the Display toggles: slice-view layers of every slice composite node of the scene, and the
    visibility of the contour and TRE-vector nodes. Returns ``{"background", "foreground"}`` (nodes or None).

    Background: the checkerboard, else the difference image (when ticked and computed), else the fixed volume
    (no change when there is none). Foreground: the Jacobian map at ``jacobian_opacity`` when ticked, else none;
    ``folding`` (the J <= 0 segment, :func:`deformation.folding_segmentation_node`) is shown with it.
    ``contours``: (fixed, moving before, moving after) outline nodes; the moving one shown follows
    ``contours_after`` (before when there is no "after" node). ``show_heatmaps`` (True/False; None = leave as
    is): the distance heat-map models of the scene (heatmap.py; found by their role attribute) and their legends.
    """
    from . import segmentation

    background = fixed
    if show_checkerboard and checkerboard is not None:
        background = checkerboard
    elif show_difference and difference is not None:
        background = difference
    foreground = jacobian if show_jacobian and jacobian is not None else None
    if background is not None:
        composites = ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for i in range(composites.GetNumberOfItems()):
            composite = composites.GetItemAsObject(i)
            composite.SetBackgroundVolumeID(background.GetID())
            composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
            if foreground is not None:
                composite.SetForegroundOpacity(float(jacobian_opacity))
    fixed_outline, before, after = contours
    for node in (fixed_outline, before, after):
        if node is not None and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetVisibility(bool(show_contours))
    if show_contours and (before is not None or after is not None):
        segmentation.show_before_after(before, after, "after" if contours_after and after is not None else "before")
    if folding is not None and folding.GetDisplayNode() is not None:
        folding.GetDisplayNode().SetVisibility(bool(show_jacobian))
    if tre_vectors is not None and tre_vectors.GetDisplayNode() is not None:
        tre_vectors.GetDisplayNode().SetVisibility(bool(show_tre_vectors))
    if show_heatmaps is not None:
        for model in heatmap_models(ctx):
            heatmap.set_visible(model, bool(show_heatmaps))
    return {"background": background, "foreground": foreground}


def heatmap_models(ctx) -> list:
    """The distance heat-map model nodes of the scene (role attribute set by heatmap.heatmap_model_node)."""
    models = ctx.scene.GetNodesByClass("vtkMRMLModelNode")
    return [models.GetItemAsObject(i) for i in range(models.GetNumberOfItems())
            if models.GetItemAsObject(i).GetAttribute("RegistrationQuality.role") == "heatmap"]


def heatmap_table_node(ctx, model_node, name: str | None = None):
    """Export a heat-map model's per-vertex signed distances as a table node (R, A, S, signed distance in mm)."""
    from .io import rows_to_table_node

    return rows_to_table_node(ctx, heatmap.vertex_rows(model_node.GetPolyData()),
                              name or f"{model_node.GetName()} vertices")


# ---------------------------------------------------------------------------------------------------
# The panel's results table
# ---------------------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ("measure", "subject", "before", "after", "unit", "check")


def _fmt(value, digits: int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if digits is None:  # free format (intensities of unknown scale)
        return f"{float(value):.4g}"
    return f"{float(value):.{digits}f}"


def _check_text(records, check, subject, field=None) -> str:
    """A requested check's outcome and limit, found by check name (and segment and compared field for
    per-segment checks)."""
    each = check.statistic == "each"
    record = checks.find(records, check.name, subject if each else None, field if each else None)
    if record is None:
        return ""
    state = checks.status(record)
    review = f"; review {check.symbol} {record['review_limit']:g}" if record.get("review_limit") is not None else ""
    word = {"pass": "pass", "review": "REVIEW"}.get(state, "FAIL")
    return f"{word} ({check.symbol} {record['limit']:g}{review})"


def summary_rows(report: dict) -> list[dict]:
    """The panel's results: one row per measure and subject with its value before and after registration.

    Rows and their titles, units and digits come from the measure registry (:mod:`.measures`: the measures
    shown in the panel, ``Measure.in_panel``), in its order: per segment (Dice, HD<p>, maximum Hausdorff, mean
    surface distance), landmark TRE mean and max, Jacobian min/max and folding, image NCC and NMI. Columns
    :data:`SUMMARY_COLUMNS` plus ``key`` (the measure's registry key); values are text ("n/a" when not computed,
    the reason in ``check`` for segments). ``check`` holds the outcome and limit of a requested check gating
    that measure (:mod:`.checks`, matched by check name and segment). The full table is
    :func:`~.report.metrics_rows`.
    """
    records = report.get("checks") or []
    percentile = (report.get("options") or {}).get("percentile", measures.DEFAULT_PERCENTILE)
    rows = []

    def add(m, subject, before, after, check="", single_stage=False, title=None):
        digits = m.digits if m.panel_digits is None else m.panel_digits
        if m.panel_scale != 1.0:
            before, after = (None if v is None else v * m.panel_scale for v in (before, after))
        rows.append({"key": m.key, "measure": title or m.short_for(percentile), "subject": str(subject),
                     "before": "" if single_stage else _fmt(before, digits), "after": _fmt(after, digits),
                     "unit": m.unit if m.panel_unit is None else m.panel_unit, "check": check})

    def check_column(m, subject, field=None):
        """The checks that compared this row's value: by measure key, or (per segment) by the compared field."""
        gating = [c for c in checks.CHECKS if c.measure == m.key or (field is not None and c.values_of is not None)]
        return "; ".join(t for t in (_check_text(records, c, subject, field) for c in gating) if t)

    panel_measures = [m for m in measures.MEASURES if m.in_panel]
    for entry in report.get("segments") or []:
        name = entry.get("name") if entry.get("name") is not None else entry.get("label")
        b, a = entry.get("before") or {}, entry.get("after") or {}
        reason = "; ".join(sorted({str(s.get("status")) for s in (b, a) if s.get("status") not in (None, "ok")}))
        for i, m in enumerate(x for x in panel_measures if x.applies_to == "segment"):
            if m.expand is not None:  # NSD at each tolerance
                for field_, title in m.expand(report):
                    if field_ in a or field_ in b:
                        add(m, name, b.get(field_), a.get(field_), check_column(m, name, field_), title=title)
                continue
            if m.value_in(a) is None and m.value_in(b) is None and m.computed_by.startswith("surface."):
                continue  # surface figures not computed for this segment
            add(m, name, m.value_in(b), m.value_in(a), check_column(m, name, m.field) or (reason if i == 0 else ""),
                single_stage=m.stage_free)
    landmarks = report.get("landmarks")
    if landmarks:
        b, a = landmarks.get("before") or {}, landmarks.get("after") or {}
        subject = f"{a.get('count', b.get('count', 0))} landmarks"
        for m in (x for x in panel_measures if x.applies_to == "landmarks"):
            add(m, subject, m.value_in(b), m.value_in(a), check_column(m, subject))
    deformation = report.get("deformation")
    if deformation:
        region = deformation.get("region") or ""
        for m in (x for x in panel_measures if x.applies_to == "deformation"):
            add(m, region, None, m.value_in(deformation), check_column(m, region), single_stage=True)
    similarity = report.get("similarity")
    if similarity:
        b, a = similarity.get("before") or {}, similarity.get("after") or {}
        for m in (x for x in panel_measures if x.applies_to == "similarity"):
            add(m, "image", m.value_in(b), m.value_in(a), check_column(m, "image"))
    return rows


def summary_table_node(ctx, report: dict, name: str = "Registration quality summary", headers=None, node=None):
    """A table node of :func:`summary_rows`; ``headers`` maps column keys to (translated) column titles."""
    from .io import rows_to_table_node

    headers = dict(headers or {})
    rows = [{headers.get(k, k): row[k] for k in SUMMARY_COLUMNS} for row in summary_rows(report)]
    return rows_to_table_node(ctx, rows, name=name, node=node)


# ---------------------------------------------------------------------------------------------------
# The report of the last computation (kept in the parameter node as JSON text)
# ---------------------------------------------------------------------------------------------------
def report_json(report: dict) -> str:
    """The report as JSON text (numpy values made plain, NaN/inf as null), as ``report.json`` holds it."""
    import json

    from .report import _jsonable

    return json.dumps(_jsonable(report), allow_nan=False, ensure_ascii=False)


def report_from_json(text: str) -> dict:
    import json

    try:
        report = json.loads(text)
    except ValueError as err:
        raise BadInputError("saved report", f"not JSON ({err})") from None
    if not isinstance(report, dict) or "verdict" not in report:
        raise BadInputError("saved report", "not a RegistrationQuality report")
    return report


def report_folder(chosen, case_id=None):
    """Where "Save report" writes: ``chosen`` itself when it is empty or a previous report folder (it holds a
    ``report.json``), else ``chosen/RegistrationQuality-<case id>`` (a previous report there is replaced)."""
    import re
    from pathlib import Path

    chosen = Path(chosen)
    if not chosen.exists() or (chosen.is_dir() and (not any(chosen.iterdir()) or (chosen / "report.json").is_file())):
        return chosen
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(case_id or "report")).strip("._") or "report"
    return chosen / f"RegistrationQuality-{name}"
