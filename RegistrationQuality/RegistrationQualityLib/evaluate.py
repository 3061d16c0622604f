"""Evaluate one registration end to end: the facade used by the Slicer panel, the Python console, Slicer batch
mode, the CLI (``registration-quality evaluate``) and cohort runs.

Data flow (forward only): load -> align (resample the moving data onto the fixed grid, before = world space
as loaded, after = through the resampling transform T or elastix's result image) -> segment (labelmaps or
thresholds) -> measure (segments, landmarks, deformation, similarity) -> check -> render -> report.

>>> from RegistrationQualityLib.context import Context
>>> from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate
>>> result = evaluate(Context.headless(), EvaluationInputs(fixed="f.nrrd", moving="m.nrrd",
...                   elastix_dir="out/"), EvaluationOptions(min_dice=0.8), output_dir="report")
>>> result.verdict, result.exit_code
"""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

import numpy as np

from . import __version__, checks, measures, profiles
from .context import TemporaryNodes
from .errors import BadInputError
from .surface import dice_hiding_warnings

# ---------------------------------------------------------------------------------------------------
# Inputs and options
# ---------------------------------------------------------------------------------------------------


@dataclass
class EvaluationInputs:
    """What to evaluate. Each entry is a file path, an MRML node, or None.

    ``transform``: the registration's resampling transform (fixed -> moving): ITK/elastix file or transform
    node. ``elastix_dir``: an elastix output folder (its final TransformParameters file and result image).
    ``registered``: the moving image already resampled onto the fixed grid. ``threshold``: list of one spec
    (both images) or two (fixed, moving): ``"LO[:HI]"`` or ``"otsu"``. ``labels``: list of one label-name table
    (both labelmaps) or two (fixed, moving), see :func:`io.read_label_table`.
    """

    fixed: object = None
    moving: object = None
    transform: object = None
    elastix_dir: object = None
    registered: object = None
    fixed_segmentation: object = None
    moving_segmentation: object = None
    labels: list | None = None
    threshold: list | None = None
    fixed_landmarks: object = None
    moving_landmarks: object = None
    case_id: str | None = None


_OPTIONS_DOC = """How to evaluate: ``percentile`` (HD\\ :sub:`p`), one limit field per check of the check registry
(:mod:`.checks`: ``min_dice``, ``max_hausdorff``, ``max_tre``, ``max_folding``, ``max_tre_point``, ...; None =
not checked), ``limits`` (more limits by check name, e.g. of checks registered after import), ``snapshots``,
``scene_outputs`` (create result nodes in the scene: the Slicer panel), ``jacobian_histogram_bins``,
``nsd_tolerances`` (mm), ``heatmaps`` (distance heat-map pictures), ``threshold_cleanup`` (segmentation.Cleanup for --threshold masks; None = its default), ``same_modality``
(fixed and moving share intensity units: MSE/MAE are judged)."""


def _check_limits(self) -> dict:
    """{check name: limit} of every requested check (limit fields, then ``limits``; None = not requested)."""
    out = {}
    for check in checks.CHECKS:
        value = getattr(self, check.name, None)
        if value is None:
            value = self.limits.get(check.name)
        if value is not None:
            out[check.name] = value
    for name, value in self.limits.items():  # unknown names are kept: validation names them
        if value is not None:
            out.setdefault(name, value)
    return out


def _options_post_init(self) -> None:
    """A limit given in ``limits`` for a check that has its own field goes to the field (one place to read it)."""
    self.limits = dict(self.limits or {})
    for name in list(self.limits):
        if name in self.__dataclass_fields__ and name in checks.names():
            value = self.limits.pop(name)
            if value is not None:
                setattr(self, name, value)


def _options_class():
    """EvaluationOptions, with one ``float | None`` field per registered check (derived, never listed here)."""
    fields_ = [("percentile", float, field(default=measures.DEFAULT_PERCENTILE))]
    fields_ += [(c.name, "float | None", field(default=None)) for c in checks.CHECKS]
    fields_ += [("snapshots", bool, field(default=True)), ("scene_outputs", bool, field(default=False)),
                ("jacobian_histogram_bins", int, field(default=60)),
                ("nsd_tolerances", tuple, field(default=(2.0,))),  # mm; NSD is reported at each (surface.py)
                ("heatmaps", int, field(default=3)),  # distance heat-maps in the report: the lowest-Dice segments
                ("outline_distance_colour", bool, field(default=False)),  # fixed outline after, by signed distance
                ("threshold_cleanup", object, field(default=None)),
                ("same_modality", bool, field(default=False)),
                ("profile", object, field(default=None)),  # tolerance profile: built-in name, file or Profile
                ("limits", dict, field(default_factory=dict))]
    return make_dataclass("EvaluationOptions", fields_, namespace={
        "__doc__": _OPTIONS_DOC, "__module__": __name__, "check_limits": _check_limits,
        "__post_init__": _options_post_init})


EvaluationOptions = _options_class()


@dataclass
class EvaluationResult:
    report: dict
    output_dir: Path | None = None
    nodes: dict = field(default_factory=dict)  # scene outputs by role (when options.scene_outputs)
    snapshot_files: dict = field(default_factory=dict)
    notices: list = field(default_factory=list)  # warnings the CLI also prints on stderr (in report warnings too)

    @property
    def verdict(self) -> str:
        return self.report["verdict"]

    @property
    def failed_checks(self) -> list:
        return [c for c in self.report["checks"] if checks.status(c) == "fail"]

    @property
    def review_checks(self) -> list:
        return [c for c in self.report["checks"] if checks.status(c) == "review"]

    @property
    def exit_code(self) -> int:
        """0 pass / no checks, 1 a check failed, 4 none failed but some need review."""
        return checks.EXIT_CODES.get(self.verdict, 1 if self.failed_checks else 0)


class _Progress:
    STAGES = ["load", "align", "segments", "landmarks", "deformation", "similarity", "snapshots", "report"]

    def __init__(self, callback, cancel):
        self.callback = callback
        self.cancel = cancel

    def check(self) -> None:
        """Stop here (InterruptedError) when Cancel was pressed: called between the steps of every stage."""
        if self.cancel is not None and self.cancel():
            raise InterruptedError("evaluation cancelled")

    def within(self, stage: str, fraction: float) -> None:
        """Progress inside a stage (slab fractions); checks Cancel too."""
        self.check()
        if self.callback is not None:
            i = self.STAGES.index(stage) if stage in self.STAGES else 0
            self.callback(f"{stage}: {100 * fraction:.0f}%", (i + min(max(fraction, 0.0), 1.0)) / len(self.STAGES))

    def __call__(self, stage: str, detail: str = "") -> None:
        self.check()
        if self.callback is not None:
            i = self.STAGES.index(stage) if stage in self.STAGES else 0
            self.callback(f"{stage}{': ' + detail if detail else ''}", i / len(self.STAGES))


# ---------------------------------------------------------------------------------------------------
# Loading inputs (paths or nodes)
# ---------------------------------------------------------------------------------------------------
def _is_node(value) -> bool:
    return value is not None and hasattr(value, "GetID") and hasattr(value, "IsA")


def _describe_source(value) -> str:
    return f"node '{value.GetName()}'" if _is_node(value) else os.fspath(value)


def _load_image(value, option: str):
    from . import io

    if _is_node(value):
        if not value.IsA("vtkMRMLScalarVolumeNode"):
            raise BadInputError(option, f"node '{value.GetName()}' is not a scalar volume")
        return io.check_scalar_3d(io.volume_to_image(value), f"node '{value.GetName()}'")
    _check_path(value, option)
    return io.read_image(value)


def _parent_transform_warnings(inputs) -> list:
    """Input nodes are read in their own (local) coordinates, as they would be saved to a file, so that images,
    segmentations and landmarks are always in one frame; a parent transform (e.g. the registration applied for
    display) is therefore not applied. Say so in the report."""
    out = []
    for f in fields(EvaluationInputs):
        value = getattr(inputs, f.name)
        if f.name != "transform" and _is_node(value) and hasattr(value, "GetParentTransformNode") and value.GetParentTransformNode():
            out.append(f"{f.name.replace('_', ' ')} node '{value.GetName()}' is under transform "
                       f"'{value.GetParentTransformNode().GetName()}': its own (untransformed) coordinates were "
                       "used; give the registration as the transform input instead")
    return out


def _check_path(value, option: str) -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise BadInputError(option, f"expected a file path or a node, got {type(value).__name__}")
    if not Path(value).exists():
        raise BadInputError(os.fspath(value), f"{option.lstrip('-').replace('-', ' ')} file not found")


def _load_labels(ctx, value, option: str):
    """(metrics.LabelSource, named) of a labelmap / .seg.nrrd file or a segmentation / labelmap node."""
    from . import io
    from .metrics import labelmap_source, read_label_source

    if _is_node(value):
        source = _describe_source(value)
        if value.IsA("vtkMRMLSegmentationNode"):
            image = io.segmentation_to_labelmap_image(ctx, value)
            segmentation = value.GetSegmentation()
            names = {}
            for sid in segmentation.GetSegmentIDs():
                seg = segmentation.GetSegment(sid)
                names[int(seg.GetLabelValue())] = seg.GetName()
            return labelmap_source(image, source, names), True
        if value.IsA("vtkMRMLLabelMapVolumeNode") or value.IsA("vtkMRMLScalarVolumeNode"):
            return labelmap_source(io.volume_to_image(value), source), False
        raise BadInputError(option, f"node '{value.GetName()}' is not a segmentation or labelmap")
    _check_path(value, option)
    return read_label_source(value)


def _apply_label_tables(tables, *sources_named, warnings=None):
    """Name the segments of labelmap sources from ``--labels`` tables (one for both or fixed, moving); returns
    whether each source is now named. A segmentation file keeps its own names (warned)."""
    from .io import read_label_table

    read = [read_label_table(t) for t in tables]
    out = []
    for (src, named), table, path in zip(sources_named, [read[0], read[-1]], [tables[0], tables[-1]]):
        if named:
            warnings.append(f"--labels {os.fspath(path)}: {src.source} names its own segments; the table is not "
                            "used for it")
            out.append(True)
            continue
        for seg in src.segments:
            seg.name = table.get(seg.label, seg.name)
        missing = sorted(seg.label for seg in src.segments if seg.label not in table)
        if missing:
            shown = ", ".join(str(v) for v in missing[:5]) + (" ..." if len(missing) > 5 else "")
            warnings.append(f"--labels {os.fspath(path)}: no name for label(s) {shown} of {src.source}")
        out.append(True)
    return tuple(out)


def _resampled_source(ctx, src, reference, transform_node):
    """The label source's layers resampled (nearest neighbour) onto ``reference`` through the transform."""
    from .metrics import LabelSource
    from .resample import resample_image

    layers = [resample_image(ctx, layer, reference, transform_node, "nearest") for layer in src.layers]
    return LabelSource(src.source, layers, list(src.segments))


def _union_of(src):
    """0/1 SimpleITK mask of every segment of a label source (on its grid)."""
    import SimpleITK as sitk

    from .segment_kernels import union_of_labels

    out_arr = np.zeros(sitk.GetArrayViewFromImage(src.layers[0]).shape, np.uint8)
    for layer in sorted({seg.layer for seg in src.segments}):
        labels = [seg.label for seg in src.segments if seg.layer == layer]
        arr = sitk.GetArrayViewFromImage(src.layers[layer])
        if min(labels) < 0 or max(labels) > 1 << 20:  # unusual label values: one comparison per label
            for value in labels:
                out_arr[arr == value] = 1
        else:
            union_of_labels(arr, labels, out_arr)  # one pass per layer
    out = sitk.GetImageFromArray(out_arr)
    out.CopyInformation(src.layers[0])
    return out


def _same_grid(a, b, tol: float = 1e-3) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * 10)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def _physical_bounds(image) -> np.ndarray:
    """(2, 3) min/max LPS corners of the voxel-centre box."""
    size = np.array(image.GetSize()) - 1
    corners = np.array([[i, j, k] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])], float)
    d = np.array(image.GetDirection()).reshape(3, 3)
    pts = corners * np.array(image.GetSpacing()) @ d.T + np.array(image.GetOrigin())
    return np.stack([pts.min(0), pts.max(0)])


def _overlaps(a, b) -> bool:
    ba, bb = _physical_bounds(a), _physical_bounds(b)
    half = np.max(np.concatenate([a.GetSpacing(), b.GetSpacing()]))  # voxel half-widths
    return bool(np.all(ba[0] <= bb[1] + half) and np.all(bb[0] <= ba[1] + half))


def validate_inputs(inputs: EvaluationInputs, options: EvaluationOptions) -> None:
    """Cheap checks before any heavy work: required and partner options, files exist, limits sane."""
    if inputs.fixed is None:
        raise BadInputError("--fixed", "the fixed image is required")
    if inputs.moving is None:
        raise BadInputError("--moving", "the moving image is required")
    if inputs.transform is not None and inputs.elastix_dir is not None:
        raise BadInputError("--transform", "give either --transform or --elastix-dir, not both")
    has_transform = inputs.transform is not None or inputs.elastix_dir is not None
    if not has_transform and inputs.registered is None:
        raise BadInputError("--transform", "a registration result is needed: --transform, --elastix-dir or "
                            "--registered")
    pairs = (("fixed_segmentation", "moving_segmentation"), ("fixed_landmarks", "moving_landmarks"))
    for a, b in pairs:
        va, vb = getattr(inputs, a), getattr(inputs, b)
        if (va is None) != (vb is None):
            given, missing = (a, b) if vb is None else (b, a)
            raise BadInputError("--" + given.replace("_", "-"), f"needs its partner --{missing.replace('_', '-')}")
    if inputs.fixed_landmarks is not None and not has_transform:
        raise BadInputError("--fixed-landmarks", "TRE after registration needs the transform: --transform or "
                            "--elastix-dir (a registered image alone cannot move landmarks)")
    if inputs.moving_segmentation is not None and not has_transform:
        raise BadInputError("--moving-segmentation", "mapping the moving segmentation after registration needs "
                            "--transform or --elastix-dir")
    if inputs.labels is not None:
        tables = list(inputs.labels)
        if not 1 <= len(tables) <= 2:
            raise BadInputError("--labels", f"given {len(tables)} times; give it once (both labelmaps) or twice "
                                "(fixed, then moving)")
        if inputs.fixed_segmentation is None:
            raise BadInputError("--labels", "names the labels of --fixed-segmentation/--moving-segmentation; "
                                "give those too")
        for t in tables:
            _check_path(t, "--labels")
    if inputs.threshold is not None:
        from .segmentation import parse_threshold_spec

        specs = list(inputs.threshold)
        if not 1 <= len(specs) <= 2:
            raise BadInputError("--threshold", f"given {len(specs)} times; give it once (both images) or twice "
                                "(fixed, then moving)")
        for s in specs:
            parse_threshold_spec(s)
    if not 0.0 <= float(options.percentile) <= 100.0:
        raise BadInputError("--percentile", f"{options.percentile:g} is outside 0-100")
    has_segments = inputs.fixed_segmentation is not None or inputs.threshold is not None
    if options.profile is not None:
        profiles.load(options.profile)  # a broken profile is bad input before any work
    checks.validate_limits(options.check_limits(), {"segments": has_segments, "transform": has_transform,
                                                    "landmarks": inputs.fixed_landmarks is not None})
    for name in ("fixed", "moving", "registered", "fixed_segmentation", "moving_segmentation", "fixed_landmarks",
                 "moving_landmarks", "transform"):
        value = getattr(inputs, name)
        if value is not None and not _is_node(value):
            _check_path(value, "--" + name.replace("_", "-"))
    if inputs.elastix_dir is not None and not _is_node(inputs.elastix_dir):
        p = Path(inputs.elastix_dir)
        if not p.is_dir():
            raise BadInputError(os.fspath(p), "elastix output folder not found" if not p.exists()
                                else "is not a folder; --elastix-dir needs elastix's output folder")


# ---------------------------------------------------------------------------------------------------
# The evaluation
# ---------------------------------------------------------------------------------------------------
def evaluate(ctx, inputs: EvaluationInputs, options: EvaluationOptions | None = None, output_dir=None,
             progress=None, cancel=None) -> EvaluationResult:
    """Evaluate one registration; write the report to ``output_dir`` when given (atomically).

    ``progress(text, fraction)`` is called at each stage; ``cancel()`` returning True stops the run
    (InterruptedError). Input nodes and files are never modified; temporary nodes are removed.
    Raises BadInputError for bad input (one line naming the file/node/option).
    """
    options = options or EvaluationOptions()
    validate_inputs(inputs, options)
    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise BadInputError("--output", f"{os.fspath(output_dir)} is an existing file; a folder is needed")
    if output_dir is not None:  # before any heavy work: a folder that write_report would refuse fails now
        from .report import _check_output_target

        _check_output_target(Path(os.path.abspath(os.fspath(output_dir))))
    from .io import geometry_dict

    step = _Progress(progress, cancel)
    warnings: list[str] = []
    warnings += _parent_transform_warnings(inputs)
    nodes: dict = {}
    with TemporaryNodes(ctx) as tmp:
        step("load", "images")
        fixed = _nonfinite_as_missing(_load_image(inputs.fixed, "--fixed"), inputs.fixed, warnings)
        step.check()
        moving = _nonfinite_as_missing(_load_image(inputs.moving, "--moving"), inputs.moving, warnings)
        moving_geometry = geometry_dict(moving)  # for the report: the voxels go once they are not needed
        step.check()
        registration, elastix_info, _result_image = _load_registration(ctx, inputs, moving, fixed, tmp, warnings)
        step.check()
        notices = _check_registered_images(inputs, elastix_info, fixed, moving)
        # elastix's result image (cubic, maybe rounded to an integer type) is used only when given as --registered:
        # otherwise "after" is built like "before", from the moving data through T (a folder = its parameter file)
        inputs_registered = inputs.registered
        registered = None
        if inputs_registered is not None:
            registered = _nonfinite_as_missing(_load_image(inputs_registered, "--registered"), inputs_registered,
                                               warnings)
            if not _same_grid(registered, fixed):
                raise BadInputError(_describe_source(inputs_registered),
                                    f"registered image grid {list(registered.GetSize())} differs from the fixed "
                                    f"image's {list(fixed.GetSize())}; it must be on the fixed grid")
        step.check()
        label_pair = _load_label_pair(ctx, inputs, fixed, moving, warnings) if inputs.fixed_segmentation is not None else None
        step.check()
        fixed_union = _union_on(ctx, label_pair[0], fixed) if label_pair is not None else None  # Jacobian region
        thresholds = _threshold_masks(inputs, options, fixed, moving) if inputs.threshold is not None else None

        step("align")
        from .resample import Warp, warp_in_world

        # The registration is sampled once on the fixed grid, slab by slab, and every consumer (warped image and
        # labelmaps, moving-domain mask, Jacobian and displacement statistics) takes its slab in the same pass.
        # similarity before registration first: the moving image in world space is then no longer held
        similarity_before = _similarity_before(fixed, moving)
        step.check()
        transform_node, after_source, after_mask, deformation = None, None, None, None
        threshold_after, jacobian = None, None
        if registration is not None:
            from .deformation import DeformationStatistics, JacobianInRegion, mask_array
            from .ndv import Learn2RegSDlogJ, NonDiffeomorphicVolume
            from .similarity import InsideMoving
            from .transforms import stream

            # linear or not, the moving data go through T in the same kernels as "before" went through x
            consumers = {}
            if registered is None:  # its pass also gives the moving domain (the same continuous indices)
                consumers["registered"] = Warp(moving, fixed, "linear", inside=True)
            else:
                consumers["inside"] = InsideMoving(moving, fixed)
            if label_pair is not None:
                for n, layer in enumerate(label_pair[1].layers):
                    consumers[f"layer{n}"] = Warp(layer, fixed, "nearest")
            if thresholds is not None:  # the moving threshold mask through T, like the labelmaps
                consumers["threshold"] = Warp(thresholds["moving_mask"], fixed, "nearest")
            domain = consumers.get("inside") or consumers["registered"]
            mask = mask_array(fixed_union, fixed) if fixed_union is not None else None
            consumers["deformation"] = DeformationStatistics(fixed, mask, options.jacobian_histogram_bins,
                                                             keep_jacobian=options.scene_outputs)
            if options.snapshots and output_dir is not None:  # the Jacobian picture: one byte per voxel
                from .rendering import JacobianPicture

                consumers["jacobian_picture"] = JacobianPicture(fixed)
            domain_of = (lambda slab: domain.out[slab.k0:slab.k1]) if "inside" in consumers else (
                lambda slab: domain.inside[slab.k0:slab.k1])
            consumers["jacobian_moving_domain"] = JacobianInRegion(fixed, domain_of)
            fixed_region = mask if mask is not None else (
                mask_array(thresholds["fixed_mask"], fixed) if thresholds is not None else None)
            if fixed_region is not None:
                consumers["jacobian_fixed_mask"] = JacobianInRegion(fixed, fixed_region)
            # the non-diffeomorphic volume (Liu et al. 2024) and Learn2Reg's SDlogJ take the same slabs (ndv.py)
            consumers["ndv"] = NonDiffeomorphicVolume(fixed, mask)
            consumers["sdlogj_learn2reg"] = Learn2RegSDlogJ(fixed, mask)
            # nothing after the pass needs the moving voxels: the warp frees them when it is done
            moving = None
            results = dict(zip(consumers, stream(registration, fixed, list(consumers.values()), need_jacobian=True,
                                                 progress=lambda f: step.within("align", f), halo=True)))
            if "registered" in results:
                registered = results["registered"]
            after_mask = domain.inside if "registered" in results else results["inside"]
            threshold_after = results.get("threshold")
            if label_pair is not None:
                from .metrics import LabelSource

                m_src = label_pair[1]
                after_source = LabelSource(m_src.source, [results[f"layer{n}"] for n in range(len(m_src.layers))],
                                           list(m_src.segments))
            deformation = {"region": "whole image" if mask is None else "fixed segmentation",
                           **results["deformation"]}
            deformation["jacobian"].update(results["sdlogj_learn2reg"])
            deformation["jacobian"].update(results["ndv"])
            deformation["jacobian"]["region"] = deformation["region"]
            deformation["jacobian_by_region"] = _jacobian_by_region(results, label_pair is not None)
            jacobian = results.get("jacobian_picture")
            if options.scene_outputs:
                from .deformation import jacobian_volume_node

                nodes["jacobian"] = jacobian_volume_node(ctx, consumers["deformation"].jacobian, fixed,
                                                         "Jacobian determinant")
            del consumers, results, domain, domain_of
            mask = fixed_region = None  # (the fixed union stays; its boolean copy is not needed any more)
            # built after the pass: a displacement field's node shares its memory
            transform_node = registration.node(ctx)
        if registered is None:  # no registration given: "after" is the moving image in world space, as before
            registered, after_mask = warp_in_world(moving, fixed)
        moving = None  # everything after the align stage works on the fixed grid (152 MB at CT size)

        step("segments")
        # the run's limits (profile + flags): a profile may set each segment's NSD tolerance (checks.Parameter)
        limits = profiles.resolve(profiles.load(options.profile) if options.profile is not None else None,
                                  profiles.data_terms(fixed), options.check_limits())
        segments, seg_masks = _segments(ctx, inputs, options, fixed, None, registered, transform_node, warnings,
                                        label_pair, fixed_union, after_source, thresholds, threshold_after,
                                        nsd_tolerance_of=checks.nsd_tolerance_of(limits), check=step.check)

        landmarks = None
        if inputs.fixed_landmarks is not None:
            step("landmarks")
            landmarks = _landmarks(inputs, transform_node)
            if landmarks.unmatched_warning():
                notices.append(landmarks.unmatched_warning())
        transform_info = _describe_transform(inputs, transform_node)

        step("similarity")
        similarity = _similarity(fixed, similarity_before, registered, after_mask)
        after_mask = None

        report = {
            "tool": software_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "case_id": inputs.case_id,
            "inputs": _describe_inputs(inputs, fixed, moving_geometry, registered if inputs_registered else None,
                                       transform_info, landmarks),
            "elastix": elastix_info,
            "options": {"percentile": float(options.percentile),
                        "nsd_tolerances_mm": [float(t) for t in options.nsd_tolerances],
                        **{name: options.check_limits().get(name) for name in checks.names()},
                        "threshold_cleanup": _cleanup_dict(options) if inputs.threshold else None,
                        "same_modality": bool(options.same_modality)},
            "segments": segments["entries"] if segments else [],
            "segments_source": segments["source"] if segments else None,
            "landmarks": landmarks.as_dict() if landmarks is not None else None,
            "deformation": deformation,
            "similarity": similarity,
            "definitions": measures.definitions(options.percentile),
            "warnings": warnings + notices,
        }
        report["checks"] = checks.run_checks(report, _resolved_limits(inputs, options, report, limits))
        report["warnings"].extend(dice_hiding_warnings(report["segments"], options.min_dice))
        report["verdict"] = checks.verdict(report["checks"])

        snapshot_files: dict = {}
        if options.snapshots and output_dir is not None:
            step("snapshots")
            snapshot_files, snap_entries = _snapshots(ctx, fixed, registered, seg_masks, report, warnings, jacobian,
                                                      heatmaps=options.heatmaps,
                                                      outline_distances=options.outline_distance_colour,
                                                      check=step.check)
            report["snapshots"] = snap_entries
        else:
            report["snapshots"] = []

        try:
            if options.scene_outputs:
                nodes.update(_scene_outputs(ctx, report, landmarks, nodes.get("jacobian"), seg_masks))

            out = None
            if output_dir is not None:
                step("report")
                from .report import write_report

                out = write_report(report, output_dir, snapshot_files)
        finally:  # also when writing fails or the run is cancelled: no snapshot folder left in the temp dir
            _cleanup_snapshot_temp(snapshot_files)
        return EvaluationResult(report=report, output_dir=out, nodes=nodes, snapshot_files=snapshot_files,
                                notices=notices)


def _nonfinite_as_missing(image, source, warnings):
    """NaN/±inf voxels of an intensity image are missing data: counted in the warnings, left out of similarity
    and thresholds. ±inf becomes NaN first (a resampler would clamp it to the largest float, a huge fake value)."""
    import SimpleITK as sitk

    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return image
    arr = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(arr)
    bad = int(finite.size - np.count_nonzero(finite))
    if not bad:
        return image
    warnings.append(f"{_describe_source(source)}: {bad} voxel(s) are NaN or infinite; they are treated as missing "
                    "data (left out of similarity metrics and thresholds)")
    if not np.isinf(arr).any():
        return image
    out = sitk.GetImageFromArray(np.where(np.isinf(arr), np.nan, arr).astype(arr.dtype))
    out.CopyInformation(image)
    return out


def _load_registration(ctx, inputs, moving, fixed, tmp, warnings):
    """(transforms.Registration or None, elastix provenance or None, elastix result image path or None).

    The registration is read for computation from its source (elastix parameters, ITK B-spline, displacement
    field); a Slicer transform node is made only when asked for (:meth:`transforms.Registration.node`)."""
    from .transforms import load_registration

    if inputs.elastix_dir is not None:
        from .elastix import find_elastix_result

        result = find_elastix_result(inputs.elastix_dir, moving_image=moving)
        if result.transform_parameters is None:
            raise BadInputError(os.fspath(inputs.elastix_dir), "no TransformParameters.N.txt in the elastix output "
                                "folder")
        warnings.extend(result.warnings)
        registration = load_registration(ctx, result.transform_parameters, moving_image=moving, fixed_image=fixed,
                                         name="elastix transform", tmp=tmp)
        return registration, result.provenance(), result.final_result_image
    if inputs.transform is None:
        return None, None, None
    if _is_node(inputs.transform) and not inputs.transform.IsA("vtkMRMLTransformNode"):
        raise BadInputError("--transform", f"node '{inputs.transform.GetName()}' is not a transform")
    return load_registration(ctx, inputs.transform, moving_image=moving, fixed_image=fixed,
                             name="registration transform", tmp=tmp), None, None


def _check_registered_images(inputs, elastix_info, fixed, moving) -> list:
    """Swapped/wrong images against the elastix parameter file's fixed grid and log (:mod:`.elastix_inputs`)."""
    from . import io
    from .elastix_inputs import check_registered_images

    if elastix_info is not None:
        tp, log_f, log_m = elastix_info.get("transform_parameters"), elastix_info.get("fixed_image"), \
            elastix_info.get("moving_image")
    elif isinstance(inputs.transform, (str, os.PathLike)) and io.file_extension(inputs.transform) == ".txt" \
            and io.is_elastix_parameter_file(inputs.transform):
        tp, log_f, log_m = inputs.transform, None, None
    else:
        return []
    return check_registered_images(tp, fixed, moving, _describe_source(inputs.fixed), _describe_source(inputs.moving),
                                   log_f, log_m)


# -- segments ------------------------------------------------------------------------------------------
def _load_label_pair(ctx, inputs, fixed, moving, warnings):
    """(fixed LabelSource, moving LabelSource, match by "name"|"label") of the given segmentations."""
    f_src, f_named = _load_labels(ctx, inputs.fixed_segmentation, "--fixed-segmentation")
    m_src, m_named = _load_labels(ctx, inputs.moving_segmentation, "--moving-segmentation")
    if inputs.labels:
        f_named, m_named = _apply_label_tables(inputs.labels, (f_src, f_named), (m_src, m_named), warnings=warnings)
    if not _overlaps(f_src.geometry, fixed):
        raise BadInputError(f_src.source, "fixed segmentation does not overlap the fixed image")
    if not _overlaps(m_src.geometry, moving):
        raise BadInputError(m_src.source, "moving segmentation does not overlap the moving image")
    return f_src, m_src, "name" if f_named and m_named else "label"


def _union_on(ctx, src, reference):
    """0/1 mask of every segment of ``src`` on ``reference``'s grid: pasted when ``src`` lies on its voxel lattice
    (a crop of it, or a part covering the segments), else resampled nearest neighbour."""
    import SimpleITK as sitk

    from .metrics import _lattice_position
    from .resample import resample_image

    union = _union_of(src)
    if _same_grid(union, reference):
        return union
    position = _lattice_position(union, reference)
    if position is None:
        return resample_image(ctx, union, reference, None, "nearest")
    out = np.zeros(reference.GetSize()[::-1], np.uint8)
    arr = sitk.GetArrayViewFromImage(union)
    lo = np.maximum(position, 0)
    hi = np.minimum(position + np.array(arr.shape), out.shape)
    if np.all(hi > lo):
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = arr[lo[0] - position[0]:hi[0] - position[0],
                                                          lo[1] - position[1]:hi[1] - position[1],
                                                          lo[2] - position[2]:hi[2] - position[2]]
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image


JACOBIAN_REGIONS = {
    "moving_domain": "fixed image voxels that map into the moving image",
    "fixed_mask": "inside the fixed mask",
}


def _jacobian_by_region(results, labelmaps: bool) -> dict:
    """Both named Jacobian regions from the streamed pass: the fixed voxels whose T(x) lies in the moving image,
    and the fixed mask (union of the fixed labelmap segments, else the fixed threshold mask; null without)."""
    out = {"moving_domain": dict(results["jacobian_moving_domain"], region=JACOBIAN_REGIONS["moving_domain"]),
           "fixed_mask": None}
    if "jacobian_fixed_mask" in results:
        which = "fixed segmentation (all segments)" if labelmaps else "fixed threshold mask"
        out["fixed_mask"] = dict(results["jacobian_fixed_mask"], region=f"{JACOBIAN_REGIONS['fixed_mask']}: {which}")
    return out


def _threshold_masks(inputs, options, fixed, moving) -> dict:
    """Each image thresholded and cleaned on its own grid (``--threshold``, :class:`segmentation.Cleanup`)."""
    from .segmentation import cleanup_from_dict, parse_threshold_spec, threshold_image

    specs = [parse_threshold_spec(s) for s in inputs.threshold]
    f_spec, m_spec = specs[0], specs[-1]
    cleanup = cleanup_from_dict(options.threshold_cleanup)
    f_mask, f_info = threshold_image(fixed, f_spec.lower, f_spec.upper, f_spec.method, cleanup, "fixed image")
    m_mask, m_info = threshold_image(moving, m_spec.lower, m_spec.upper, m_spec.method, cleanup, "moving image")
    return {"fixed_mask": f_mask, "fixed_info": f_info, "moving_mask": m_mask, "moving_info": m_info,
            "moving_spec": m_spec, "cleanup": cleanup}


def _segments(ctx, inputs, options, fixed, moving, registered, transform_node, warnings, label_pair=None,
              fixed_union=None, after_source=None, thresholds=None, threshold_after=None, nsd_tolerance_of=None,
              check=lambda: None):
    """Compare segments before and after: ({"source", "entries"} or None, display masks on the fixed grid).

    Comparison grid: the fixed image's. Before: the moving segments as loaded, resampled (nearest neighbour,
    world space) onto it; after: resampled through the resampling transform (``after_source`` when the streamed
    pass already warped them). Segments are matched by name when both inputs name them (.seg.nrrd,
    segmentation nodes), else by label value.
    """
    from .metrics import compare_sources, on_lattice
    from .resample import resample_image

    entries, masks, sources = [], {}, []
    if label_pair is not None:
        f_src, m_src, by = label_pair
        # nearest neighbour onto the part of the fixed grid it covers (the voxels of a resampling onto the grid)
        before = on_lattice(m_src, fixed) or _resampled_source(ctx, m_src, fixed, None)
        after = after_source if after_source is not None else _resampled_source(ctx, m_src, fixed, transform_node)
        kw = {"percentile": options.percentile, "by": by, "lattice": fixed, "nsd_tolerances": options.nsd_tolerances,
              "nsd_tolerance_of": nsd_tolerance_of}
        compared_before = compare_sources(f_src, before, **kw)
        check()
        entries += _pair_entries(compared_before, compare_sources(f_src, after, **kw))
        check()
        if fixed_union is None:
            fixed_union = _union_on(ctx, f_src, fixed)
        masks.update(fixed_labels=fixed_union, moving_before_labels=_union_on(ctx, before, fixed),
                     moving_after_labels=_union_of(after), fixed_union=fixed_union,
                     label_sources=(f_src, before, after, by))
        sources.append("labelmaps")
    if inputs.threshold is not None:
        from .segmentation import clean_mask, threshold_image

        if thresholds is None:
            thresholds = _threshold_masks(inputs, options, fixed, moving)
        f_mask, f_info, m_mask, m_info = (thresholds[k] for k in ("fixed_mask", "fixed_info", "moving_mask",
                                                                  "moving_info"))
        m_spec, cleanup = thresholds["moving_spec"], thresholds["cleanup"]
        if threshold_after is not None:  # warped in the streamed pass
            a_mask = threshold_after
            after_from = "moving threshold mask through the registration (nearest neighbour)"
        elif transform_node is not None:  # after = the moving mask through T, exactly as the labelmaps
            a_mask = resample_image(ctx, m_mask, fixed, transform_node, "nearest")
            after_from = "moving threshold mask through the registration (nearest neighbour)"
        elif m_spec.method == "otsu" and m_info.get("lower") is not None:
            # only --registered: the moving image's Otsu level (its own units) is reused on the registered image
            a_mask = clean_mask(_strictly_above(registered, m_info["lower"]), cleanup)
            after_from = "threshold of the --registered image (the moving image's Otsu level)"
        else:
            a_mask, _ = threshold_image(registered, m_spec.lower, m_spec.upper, "range", cleanup, "registered image")
            after_from = "threshold of the --registered image"
        before_mask = resample_image(ctx, m_mask, fixed, None, "nearest")
        used = [e["label"] for e in entries if isinstance(e.get("label"), int)]
        label = 1 + max(used or [0])
        ref = _mask_source(f_mask, "fixed threshold")
        kw = {"percentile": options.percentile, "lattice": fixed, "nsd_tolerances": options.nsd_tolerances,
              "nsd_tolerance_of": nsd_tolerance_of}
        before_src = _mask_source(before_mask, "moving threshold")
        after_src = _mask_source(a_mask, "registered threshold")
        b = compare_sources(ref, before_src, pairs=[(label, "threshold", ref.segments[0], before_src.segments[0])],
                            **kw)
        a = compare_sources(ref, after_src, pairs=[(label, "threshold", ref.segments[0], after_src.segments[0])],
                            **kw)
        for entry in _pair_entries(b, a):
            entry["threshold"] = {"fixed": {k: v for k, v in f_info.items() if k != "cleanup"},
                                  "moving": {k: v for k, v in m_info.items() if k != "cleanup"},
                                  "cleanup": cleanup.as_dict(), "after_from": after_from}
            entries.append(entry)
        masks.setdefault("fixed_labels", f_mask)
        masks.setdefault("moving_before_labels", before_mask)
        masks.setdefault("moving_after_labels", a_mask)
        masks.setdefault("threshold_fixed", f_mask)
        sources.append("threshold")
    if not sources:
        return None, masks
    return {"source": "+".join(sources), "entries": entries}, masks


def _cleanup_dict(options) -> dict:
    from .segmentation import cleanup_from_dict

    return cleanup_from_dict(options.threshold_cleanup).as_dict()


def _strictly_above(image, t):
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(image)
    mask = sitk.GetImageFromArray((np.isfinite(arr) & (arr > t)).astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def _as_label(mask, label: int):
    import SimpleITK as sitk

    arr = (sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint16) * label
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(mask)
    return out


def _mask_source(mask, source: str):
    """LabelSource of a 0/1 mask image: one segment "threshold" of value 1 (the mask itself, no copy; any other
    mask is made 0/1 first)."""
    import SimpleITK as sitk

    from .metrics import LabelSource, Segment

    arr = sitk.GetArrayViewFromImage(mask)
    if arr.dtype != np.uint8 or (arr.size and int(arr.max()) > 1):
        mask = _as_label(mask, 1)
    return LabelSource(source, [mask], [Segment("threshold", 1, 0)])


def _pair_entries(res_before: list, res_after: list) -> list:
    after = {(r["label"], r.get("name")): r for r in res_after}
    return [{"name": b.get("name"), "label": b["label"], "before": b, "after": after.get((b["label"], b.get("name")))}
            for b in res_before]


# -- landmarks, deformation, similarity -----------------------------------------------------------------
def _landmarks(inputs, transform_node):
    from . import io
    from .landmarks import compute_tre

    def load(value, option):
        if _is_node(value):
            if not value.IsA("vtkMRMLMarkupsNode"):
                raise BadInputError(option, f"node '{value.GetName()}' is not a markups node")
            if value.GetNumberOfControlPoints() == 0:
                raise BadInputError(f"{option} (node '{value.GetName()}')", "no landmarks (empty set)")
            return io.landmarks_from_node(value, world=False)  # local frame, like every input node
        return io.read_landmarks(value)

    return compute_tre(load(inputs.fixed_landmarks, "--fixed-landmarks"),
                       load(inputs.moving_landmarks, "--moving-landmarks"), transform_node)


def _similarity_before(fixed, moving) -> dict:
    """Similarity of the fixed image and the moving image resampled in world space (no registration), over the
    fixed voxels whose point lies inside the moving image (see :func:`_similarity`). Resampled by the kernel that
    resamples it through T (:class:`resample.Warp`, slab by slab), so before and after differ only by T."""
    from .resample import warp_in_world
    from .similarity import similarity

    image, inside = warp_in_world(moving, fixed)
    return similarity(fixed, image, mask=inside)


def _similarity(fixed, before, registered, after_mask) -> dict:
    """Intensity similarity of fixed vs moving before (``before``: :func:`_similarity_before`) and after
    registration.

    Region: the whole fixed image, restricted at each stage to the voxels whose sample point lies inside the
    moving image (so the zero padding outside the moving field of view is not compared with tissue):
    ``after_mask``, made by the streamed pass (the warp of the moving image, or :class:`similarity.InsideMoving`).
    """
    from .similarity import similarity

    after = similarity(fixed, registered, mask=after_mask)
    return {"before": before, "after": after, "bins": before.get("bins"),
            "region": "fixed image voxels that sample inside the moving image"}


# -- checks --------------------------------------------------------------------------------------------
# -- snapshots -----------------------------------------------------------------------------------------
def _snapshots(ctx, fixed, registered, masks, report, warnings, jacobian=None, heatmaps: int = 0,
               outline_distances: bool = False, check=lambda: None):
    """PNG snapshots in a temporary folder: ({report-relative name: path}, report entries); with ``heatmaps``,
    also the distance heat maps of that many segments with the lowest Dice after registration; with
    ``outline_distances``, the fixed outline after registration coloured by its signed distance to the registered
    segment (heatmap.OutlineDistances). ``check()`` runs after each picture (Cancel)."""
    import shutil
    import tempfile

    from . import rendering

    ok, reason = rendering.rendering_available()
    if not ok:
        warnings.append(f"snapshots skipped: {reason}")
        return {}, []
    folder = Path(tempfile.mkdtemp(prefix="rq-snapshots-"))
    files, entries = {"_tempdir": folder}, []

    def add(path, title, caption):
        name = f"snapshots/{Path(path).name}"
        files[name] = Path(path)
        entries.append({"file": name, "title": title, "caption": caption})
        check()

    legend = "blue = fixed, orange = moving"
    try:
        with rendering.snapshot_session(ctx):  # each image's window and each mask's extent computed once
            _render_snapshot_set(ctx, rendering, fixed, registered, masks, report, warnings, jacobian, heatmaps,
                                 folder, add, legend, outline_distances, check)
    except (BadInputError, InterruptedError):  # bad input, or Cancel: not a rendering failure
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except Exception as exc:  # rendering must never lose the numbers
        warnings.append(f"snapshots failed: {type(exc).__name__}: {exc}")
        shutil.rmtree(folder, ignore_errors=True)
        return {}, []
    finally:  # the renderer's slice node, composite node and slice model are temporary nodes too
        rendering.close_renderer(ctx)
    return files, entries


def _render_snapshot_set(ctx, rendering, fixed, registered, masks, report, warnings, jacobian, heatmaps, folder, add,
                         legend, outline_distances=False, check=lambda: None) -> None:
    """The snapshots of :func:`_snapshots`, each added with ``add(path, title, caption)``."""
    distances = None
    if outline_distances and "label_sources" in masks:
        from .heatmap import OutlineDistances

        f_src, _before, after, by = masks["label_sources"]
        distances = OutlineDistances(f_src, after, masks["fixed_union"], by)
        legend += (f"; after registration the fixed outline is coloured by its signed distance to the registered "
                   f"segment (red: the registered segment extends beyond it, blue: falls short; "
                   f"±{distances.value_range[1]:.1f} mm)")
    if "fixed_labels" in masks:
        out = rendering.render_before_after(ctx, fixed, masks["fixed_labels"], masks["moving_before_labels"],
                                            masks["moving_after_labels"], folder, singles=False,
                                            outline_distances=distances)
        for path in out["side_by_side"]:
            view = Path(path).stem.replace("before_after_", "")
            add(path, f"{view}: before | after registration", f"outlines: {legend}")
    worst = _worst_segment(report, masks)
    if worst is not None:
        name, dice, f_mask, b_mask, a_mask = worst
        out = rendering.render_before_after(ctx, fixed, f_mask, b_mask, a_mask, folder / "worst",
                                            views=("axial", "coronal"), montage=False, labels=(
                                                f"fixed {name}", f"moving {name}"), singles=False,
                                            outline_distances=distances)
        for path in out["side_by_side"]:
            view = Path(path).stem.replace("before_after_", "")
            target = folder / f"worst_{Path(path).name}"
            Path(path).rename(target)
            add(target, f"{view} through '{name}', the structure with the lowest Dice after registration "
                f"({dice:.3f}): before | after", f"outlines: {legend}")
    board = rendering.render_checkerboard(ctx, fixed, registered, folder,
                                          overlays=[(masks["fixed_labels"], rendering.FIXED_COLOR, "fixed")]
                                          if "fixed_labels" in masks else ())
    for path in board:
        add(path, "checkerboard of fixed and registered images", "edges should continue across squares")
    if jacobian is not None:
        if not isinstance(jacobian, rendering.JacobianPicture):
            jacobian = rendering.JacobianPicture.from_array(jacobian, fixed)
        folds = jacobian.folded > 0
        center = None if folds or "fixed_labels" not in masks else rendering.mask_centroid(ctx, masks["fixed_labels"])
        where = "through the largest folding region" if folds else (
            "through the smallest J (nothing folds)" if center is None else
            "through the fixed segmentation's centre (nothing folds)")
        for path in rendering.render_jacobian(ctx, fixed, jacobian, folder, center_ras=center):
            view = Path(path).stem.replace("jacobian_", "")
            add(path, f"{view}: Jacobian determinant {where}",
                "blue = compression (J = 0.5), white = J = 1, red = expansion (J = 2); yellow outline = "
                "folding (J ≤ 0)")
    for path, title, caption in _heatmap_pictures(report, masks, folder, heatmaps, warnings, check):
        add(path, title, caption)
    # the fixed and the registered image on the same slice (the review page flickers between them)
    outline = [(masks["fixed_labels"], rendering.FIXED_COLOR, "fixed")] if "fixed_labels" in masks else []
    for image, prefix, title in ((fixed, "fixed_", "fixed image"), (registered, "registered_", "registered image")):
        for path in rendering.render_snapshots(ctx, image, outline, folder, views=("axial",), montage=False,
                                               prefix=prefix, title=title):
            add(path, f"axial: {title}", "same slice as the other one of the pair; blue = fixed outline")


def _heatmap_names(report, count: int) -> list:
    """Names of the ``count`` labelmap segments with the lowest Dice after registration."""
    scored = sorted((e["after"]["dice"], str(e["name"])) for e in report.get("segments") or []
                    if "threshold" not in e and (e.get("after") or {}).get("dice") is not None)
    return [name for _dice, name in scored[:max(0, int(count))]]


def _heatmap_pictures(report, masks, folder, count: int, warnings, check=lambda: None) -> list:
    """[(png path, title, caption)] of distance heat maps (heatmap.py), skipped with a warning when the
    offscreen renderer is unavailable."""
    import re

    from . import heatmap

    if not count or "label_sources" not in masks:
        return []
    f_src, _before, after, by = masks["label_sources"]
    names = _heatmap_names(report, count)
    out = []
    painter = heatmap.Painter()  # one offscreen window for all of them
    try:
        for name, poly, values in heatmap.segment_heatmaps(f_src, after, masks["fixed_union"], by, names=names):
            if poly is None:
                continue
            value_range = heatmap.legend_range(values, masks["fixed_union"].GetSpacing())
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "segment"
            path, reason = painter.render(poly, value_range, Path(folder) / f"heatmap_{safe}.png")
            if path is None:
                warnings.append(f"distance heat maps skipped: {reason}")
                break
            out.append((path, f"'{name}': fixed surface coloured by its signed distance to the registered segment",
                        f"red: the registered segment extends beyond the fixed surface, blue: it falls short; "
                        f"colour range ±{value_range[1]:.1f} mm"))
            check()
    finally:
        painter.close()
    return out


def _worst_segment(report, masks):
    """(name, Dice after, fixed, moving-before, moving-after overlay) of the labelmap segment with the lowest Dice
    after registration (:class:`rendering.LabelMask` of each label source), when there are at least two segments
    (with one, the main snapshots show it)."""
    if "label_sources" not in masks:
        return None
    f_src, before, after, by = masks["label_sources"]
    scored = [(e["after"]["dice"], e["name"], e["label"]) for e in report.get("segments") or []
              if "threshold" not in e and (e.get("after") or {}).get("dice") is not None]
    if len(scored) < 2:
        return None
    dice, name, label = min(scored)

    def mask(src, want_name, want_label):
        from .rendering import LabelMask

        for seg in src.segments:
            if (seg.name == want_name) if by == "name" else (seg.label == want_label):
                stat = src.stats(seg.layer).get(seg.label)  # (lo, hi, count): the label's box, no scan
                return LabelMask(src.layers[seg.layer], seg.label, box=(stat[0], stat[1]) if stat else None)
        return None

    parts = [mask(src, name, label) for src in (f_src, before, after)]
    if any(p is None for p in parts):
        return None
    return (name, dice, *parts)


def _cleanup_snapshot_temp(snapshot_files: dict) -> None:
    import shutil

    folder = snapshot_files.pop("_tempdir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _scene_outputs(ctx, report, landmarks, jacobian=None, masks=None) -> dict:
    """Result nodes for the Slicer panel: metrics table, TRE table and error vectors, the folding voxels of the
    Jacobian volume as a segment, and one distance heat-map model per segment (``heatmap:<segment name>``, hidden
    until the panel shows them)."""
    from . import io

    nodes = {}
    if jacobian is not None:
        from .deformation import folding_segmentation_node

        nodes["folding"] = folding_segmentation_node(ctx, jacobian)
    from .report import metrics_rows

    nodes["metrics_table"] = io.rows_to_table_node(ctx, metrics_rows(report), "Registration quality metrics")
    if landmarks is not None:
        from .landmarks import error_vectors_node, tre_to_table_node

        nodes["tre_table"] = tre_to_table_node(ctx, landmarks)
        nodes["tre_vectors"] = error_vectors_node(ctx, landmarks)
    if masks and "label_sources" in masks:
        from . import heatmap

        f_src, _before, after, by = masks["label_sources"]
        spacing = masks["fixed_union"].GetSpacing()
        for name, poly, values in heatmap.segment_heatmaps(f_src, after, masks["fixed_union"], by):
            if poly is not None:
                nodes[f"heatmap:{name}"] = heatmap.heatmap_model_node(
                    ctx, poly, f"heat map: {name}", heatmap.legend_range(values, spacing), visible=False)
    return nodes


# ---------------------------------------------------------------------------------------------------
# Report pieces
# ---------------------------------------------------------------------------------------------------
def _describe_transform(inputs, transform_node) -> dict | None:
    """The report's ``inputs.transform`` entry of the registration's node."""
    transform = None
    if transform_node is not None:
        source = inputs.transform if inputs.transform is not None else inputs.elastix_dir
        linear = bool(transform_node.IsTransformToWorldLinear())
        kinds = {"vtkMRMLLinearTransformNode": "linear", "vtkMRMLBSplineTransformNode": "B-spline",
                 "vtkMRMLGridTransformNode": "displacement field"}
        kind = kinds.get(transform_node.GetClassName(), "linear" if linear else "composite (non-linear)")
        chain = transform_node.GetAttribute("RegistrationQuality.ElastixChain")
        transform = {"path": _describe_source(source), "kind": f"elastix: {chain}" if chain else kind,
                     "linear": linear, "mrml_class": transform_node.GetClassName()}
        if chain:
            transform["elastix_chain"] = chain
    return transform


def _describe_inputs(inputs, fixed, moving, registered, transform, landmarks) -> dict:
    from . import io

    def entry(value, image=None):
        if value is None:
            return None
        d = {"path": _describe_source(value)}
        if image is not None:  # an image, or its geometry_dict
            d["geometry"] = image if isinstance(image, dict) else io.geometry_dict(image)
        return d

    out = {
        "fixed": entry(inputs.fixed, fixed),
        "moving": entry(inputs.moving, moving),
        "transform": transform,
        "registered": entry(inputs.registered, registered) if inputs.registered is not None else None,
        "fixed_segmentation": entry(inputs.fixed_segmentation),
        "moving_segmentation": entry(inputs.moving_segmentation),
        "labels": [_describe_source(t) for t in inputs.labels] if inputs.labels else None,
        "fixed_landmarks": _landmark_entry(entry(inputs.fixed_landmarks), landmarks, "fixed_only"),
        "moving_landmarks": _landmark_entry(entry(inputs.moving_landmarks), landmarks, "moving_only"),
        "threshold": [str(s) for s in inputs.threshold] if inputs.threshold else None,
    }
    return out


def _landmark_entry(item, landmarks, only_key):
    """The input entry of a landmark set with its ``count`` (matched + on this side only)."""
    if item is not None and landmarks is not None:
        item["count"] = len(landmarks.labels) + len(landmarks.unmatched[only_key])
    return item


def software_versions() -> dict:
    versions = {"name": "RegistrationQuality", "version": __version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version

        for dist, key in (("slicer-core", "slicer_core"), ("vtk", "vtk"), ("SimpleITK", "simpleitk"),
                          ("numpy", "numpy")):
            try:
                versions[key] = version(dist)
            except Exception:
                versions[key] = None
    except ImportError:  # pragma: no cover
        pass
    return versions


def _resolved_limits(inputs, options, report, resolved):
    """The run's limits (``resolved``: the tolerance profile's, data-dependent terms computed from the fixed
    image, with the command-line limits replacing theirs); a profile check whose inputs are absent is skipped
    with a warning. Sets report["profile"]."""
    profile = profiles.load(options.profile) if options.profile is not None else None
    flags = options.check_limits()
    data = resolved.data
    if profile is not None:
        have = {"segments": inputs.fixed_segmentation is not None or inputs.threshold is not None,
                "landmarks": report.get("landmarks") is not None, "transform": report.get("deformation") is not None}
        for name in resolved.names():
            need = checks.get(name).needs
            if name not in flags and not have[need]:
                resolved.default.pop(name, None)
                resolved.segments.pop(name, None)
                report["warnings"].append(f"profile {profile.name}: {name} not checked (needs {checks.NEEDS_TEXT[need]})")
        report["profile"] = {**profile.summary(), "data": {f"{k}_mm": v for k, v in data.items()}}
    else:
        report["profile"] = None
    return resolved


# The command-line runners moved to :mod:`.commands`; these names stay importable from here (the Slicer module,
# scripts and user code written against ``evaluate.summary_lines`` / ``evaluate.batch_main`` keep working).
_MOVED_TO_COMMANDS = ("inputs_from_args", "summary_lines", "run_evaluate_cli", "run_demo_cli", "batch_main",
                      "demo_cases", "DEMO_LIMITS")


def __getattr__(name):  # PEP 562: resolved on first use, so importing evaluate does not import the CLI
    if name in _MOVED_TO_COMMANDS:
        from . import commands

        return getattr(commands, name)
    if name == "sample_case_folder":
        from .samplecase import sample_case_folder

        return sample_case_folder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
