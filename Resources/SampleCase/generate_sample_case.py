#!/usr/bin/env python3
"""Generate RegistrationQuality's sample case (reproducible, seeded).

A head-like phantom is defined analytically in the MOVING space (a CT-perfusion-like CBF map on an oblique
grid). A known *resampling* transform ``T`` maps fixed points to moving points (rigid + smooth deformation):

    T(x) = c_m + R (x - c_f) + sum_k a_k exp(-|x - p_k|^2 / (2 s_k^2))

The fixed MRI-DWI-like image (int16, 1.8 x 1.8 x 5 mm) is the anatomy at ``T(x)`` for its voxel centres
(averaged over sub-samples: thick-slice partial volume) with a DWI-like contrast and Rician noise. Labelmaps: ``fixed = labels(T(x))`` and ``moving = labels(y)`` at voxel centres. Landmarks: named
anatomical points in the fixed space; the moving landmarks are ``T(fixed)`` exactly.

Then elastix (``elastix -f FIXED -m MOVING``: its TransformParameters map fixed points to moving points) is
run twice: a good registration (rigid then B-spline) and a deliberately imperfect one (an under-iterated,
coarse rigid). Absolute paths are rewritten (InitialTransformParametersFileName relative to the
file's folder) and machine information is removed from the logs. Landmark TREs of both results are measured
with transformix and written to ``case.json`` and ``README.md``.

Usage (from anywhere; needs numpy, SimpleITK, and elastix/transformix 5.x on PATH for the registrations)::

    python generate_sample_case.py [--output DIR] [--skip-elastix] [--threads N]

CI never runs this script; ``Testing/test_sample_case.py`` checks its committed outputs (and re-derives the
labelmaps with :func:`phantom_labels` to prove the files come from this code).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SEED = 20261125
HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------------
# Geometry (LPS, mm)
# ---------------------------------------------------------------------------------------------------
LABEL_NAMES = {1: "brain", 2: "ventricles", 3: "lesion", 4: "skull"}

# tissue classes of the phantom
AIR, SCALP, SKULL, GREY, WHITE, VENTRICLE, LESION, SULCUS = range(8)
CLASS_TO_LABEL = np.array([0, 0, 4, 1, 1, 2, 3, 1], dtype=np.uint8)  # sulcal CSF counts as brain

HEAD_SEMI_AXES = np.array([72.0, 90.0, 74.0])  # L-R, A-P, S-I half lengths of the scalp ellipsoid
SCALP_INNER, SKULL_INNER, CORTEX_INNER = 0.955, 0.89, 0.78  # fractions of the head ellipsoid
VENTRICLES = [  # centre (local LPS), semi-axes, rotation about S-I (degrees)
    ((-11.0, 5.0, 12.0), (7.0, 24.0, 11.0), -10.0),
    ((11.0, 5.0, 12.0), (7.0, 24.0, 11.0), 10.0),
]
DEEP_GREY = [  # thalami and lentiform nuclei: centre (local LPS), semi-axes, rotation about S-I (degrees)
    ((-12.0, 22.0, -2.0), (8.0, 12.0, 8.0), 20.0),
    ((12.0, 22.0, -2.0), (8.0, 12.0, 8.0), -20.0),
    ((-24.0, -2.0, 0.0), (6.0, 14.0, 9.0), -15.0),
    ((24.0, -2.0, 0.0), (6.0, 14.0, 9.0), 15.0),
    ((0.0, 18.0, -40.0), (11.0, 12.0, 26.0), 0.0),  # brainstem (pons, midbrain)
]
FOURTH_VENTRICLE = ((0.0, 27.0, -38.0), (4.0, 3.0, 7.0), 0.0)
LESION_SHAPE = ((-32.0, -18.0, 22.0), (13.0, 10.0, 11.0))  # right frontal white matter (LPS: x < 0 is right)

# moving (CT-perfusion-like) space: the phantom's centre and the oblique grid (gantry tilt)
MOVING_CENTRE = np.array([2.0, -8.0, 15.0])
MOVING_SIZE = (100, 100, 44)
MOVING_SPACING = (2.2, 2.2, 4.0)
MOVING_GRID_OFFSET = np.array([0.0, 0.0, 0.0])  # grid centre relative to the phantom centre


def rotation(axis, degrees) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis`` (right-handed, degrees)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    t = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


MOVING_DIRECTION = rotation((1, 0, 0), 18.0) @ rotation((0, 0, 1), 5.0)

# fixed (MRI-DWI-like) space: axial, thick slices
FIXED_CENTRE = np.array([-5.0, 12.0, -30.0])  # where the phantom centre lands (before deformation)
FIXED_SIZE = (128, 128, 34)
FIXED_SPACING = (1.8, 1.8, 5.0)
FIXED_DIRECTION = np.eye(3)
FIXED_GRID_OFFSET = np.array([0.0, 0.0, 0.0])

# the true resampling transform fixed -> moving
TRUE_ROTATION_DEG = {"L-R": 6.0, "A-P": -4.0, "S-I": 9.0}
TRUE_R = rotation((0, 0, 1), TRUE_ROTATION_DEG["S-I"]) @ rotation((0, 1, 0), TRUE_ROTATION_DEG["A-P"]) @ rotation(
    (1, 0, 0), TRUE_ROTATION_DEG["L-R"])
# Gaussian displacement bumps, defined in the fixed space relative to FIXED_CENTRE: (centre, amplitude, sigma)
BUMPS = [
    ((-30.0, -20.0, 20.0), (4.5, -5.0, 1.0), 30.0),
    ((35.0, 30.0, 10.0), (-3.5, 4.0, -1.5), 35.0),
    ((0.0, 10.0, -35.0), (3.0, 2.0, 1.5), 32.0),
]

# Landmarks: anatomical points given in the phantom's local coordinates (moving space minus MOVING_CENTRE).
# The fixed landmark is T^-1 of it (solved to 1e-10 mm), the moving landmark is then T(fixed) exactly.
LANDMARKS = [
    ("lesion-centre", (-32.0, -18.0, 22.0)),
    ("lesion-anterior-edge", (-32.0, -28.0, 22.0)),
    ("lesion-superior-edge", (-32.0, -18.0, 33.0)),
    ("ventricle-R-frontal-horn", (-13.0, -17.5, 12.0)),
    ("ventricle-L-frontal-horn", (13.0, -17.5, 12.0)),
    ("ventricle-R-occipital-horn", (-9.0, 28.5, 12.0)),
    ("ventricle-L-occipital-horn", (9.0, 28.5, 12.0)),
    ("ventricle-R-roof", (-11.0, 5.0, 23.0)),
    ("septum-centre", (0.0, 5.0, 12.0)),
    ("skull-frontal", (0.0, -83.0, 10.0)),
    ("skull-occipital", (0.0, 83.0, 10.0)),
    ("skull-R-temporal", (-66.5, 0.0, 0.0)),
    ("skull-L-temporal", (66.5, 0.0, 0.0)),
    ("skull-vertex-R", (-25.0, 0.0, 64.0)),
    ("cortex-L-parietal", (35.0, 40.0, 40.0)),
    ("brainstem-anterior-edge", (0.0, 6.5, -38.0)),
    ("fourth-ventricle", (0.0, 27.0, -38.0)),
]


def grid(size, spacing, direction, centre):
    """(origin, direction) of a grid of ``size`` voxels whose centre is at ``centre``."""
    half = (np.asarray(size, float) - 1) / 2 * np.asarray(spacing, float)
    origin = np.asarray(centre, float) - direction @ half
    return origin, direction


def grid_points(size, spacing, origin, direction, offsets=((0.0, 0.0, 0.0),), k_slice=None):
    """Physical points (N, 3) of voxel centres (+ index-space offsets), (k, j, i) order, optionally one slice."""
    i = np.arange(size[0], dtype=float)
    j = np.arange(size[1], dtype=float)
    k = np.arange(size[2], dtype=float) if k_slice is None else np.array([float(k_slice)])
    kk, jj, ii = np.meshgrid(k, j, i, indexing="ij")
    idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    m = direction @ np.diag(spacing)
    out = []
    for off in offsets:
        out.append((idx + np.asarray(off)) @ m.T + origin)
    return np.stack(out)  # (n_offsets, N, 3)


def true_transform(x: np.ndarray) -> np.ndarray:
    """T: fixed points (N, 3) -> moving points (N, 3), LPS mm (the resampling transform)."""
    x = np.asarray(x, dtype=float)
    y = MOVING_CENTRE + (x - FIXED_CENTRE) @ TRUE_R.T
    return y + bump_displacement(x)


def bump_displacement(x: np.ndarray) -> np.ndarray:
    d = np.zeros_like(x, dtype=float)
    for centre, amplitude, sigma in BUMPS:
        r2 = np.sum((x - (FIXED_CENTRE + np.asarray(centre))) ** 2, axis=-1)
        d += np.exp(-r2 / (2 * sigma**2))[..., None] * np.asarray(amplitude)
    return d


def inverse_true_transform(y: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """x with T(x) = y (fixed-point iteration: the deformation is a contraction, |grad d| < 0.1)."""
    y = np.asarray(y, dtype=float)
    x = FIXED_CENTRE + (y - MOVING_CENTRE) @ TRUE_R
    for _ in range(200):
        x_new = FIXED_CENTRE + (y - MOVING_CENTRE - bump_displacement(x)) @ TRUE_R
        if np.max(np.abs(x_new - x)) < tol:
            return x_new
        x = x_new
    raise RuntimeError("inverse of the true transform did not converge")


# ---------------------------------------------------------------------------------------------------
# The phantom (moving space)
# ---------------------------------------------------------------------------------------------------
def _ellipsoid_radius(q, centre, semi_axes, rot_deg=0.0):
    p = q - np.asarray(centre)
    if rot_deg:
        p = p @ rotation((0, 0, 1), rot_deg)  # rows: R^T p
    return np.sqrt(np.sum((p / np.asarray(semi_axes)) ** 2, axis=-1))


def phantom(y: np.ndarray):
    """Tissue class and lesion radius at moving-space points y (..., 3).

    Returns (classes uint8, lesion_radius float): the lesion radius is 1 on the lesion surface (for the
    perfusion penumbra).
    """
    q = np.asarray(y, dtype=float) - MOVING_CENTRE
    r = np.sqrt(np.sum((q / HEAD_SEMI_AXES) ** 2, axis=-1))
    cls = np.full(r.shape, AIR, dtype=np.uint8)
    cls[r <= 1.0] = SCALP
    cls[r <= SCALP_INNER] = SKULL
    brain = r <= SKULL_INNER
    # gyri-like wavy grey/white boundary
    wave = 0.06 * np.sin(q[..., 0] / 7.0) * np.sin(q[..., 1] / 9.0) * np.sin(q[..., 2] / 8.0 + 0.5)
    cls[brain] = GREY
    # sulci: thin CSF sheets through the cortex
    sulci = np.abs(np.sin(q[..., 0] / 6.0 + 0.3) * np.sin(q[..., 1] / 5.5) + 0.5 * np.sin(q[..., 2] / 5.0)) < 0.08
    cls[brain & sulci & (r > CORTEX_INNER + wave + 0.03)] = SULCUS
    cls[brain & (r <= CORTEX_INNER + wave)] = WHITE
    for centre, axes, rot in DEEP_GREY:
        cls[brain & (_ellipsoid_radius(q, centre, axes, rot) <= 1.0)] = GREY
    for centre, axes, rot in [*VENTRICLES, FOURTH_VENTRICLE]:
        cls[brain & (_ellipsoid_radius(q, centre, axes, rot) <= 1.0)] = VENTRICLE
    r_les = _ellipsoid_radius(q, *LESION_SHAPE)
    cls[brain & (r_les <= 1.0)] = LESION
    return cls, r_les


def phantom_labels(points: np.ndarray) -> np.ndarray:
    """Label values (0 background, 1 brain, 2 ventricles, 3 lesion, 4 skull) at moving-space points."""
    return CLASS_TO_LABEL[phantom(points)[0]]


def dwi_intensity(y: np.ndarray) -> np.ndarray:
    """Noise-free DWI-like (b=1000 trace) signal: lesion bright (restricted diffusion), CSF dark."""
    cls, _ = phantom(y)
    lut = np.array([0.0, 120.0, 15.0, 340.0, 250.0, 60.0, 780.0, 60.0])
    return lut[cls]


def cbf_intensity(y: np.ndarray) -> np.ndarray:
    """Noise-free CBF-like perfusion (ml/100 g/min): grey 55, white 22, low core, penumbra, no bone/CSF flow."""
    cls, r_les = phantom(y)
    lut = np.array([0.0, 8.0, 0.0, 55.0, 22.0, 0.0, 4.0, 0.0])
    value = lut[cls]
    penumbra = np.clip((r_les - 1.0) / 0.4, 0.0, 1.0)  # flow recovers over ~0.4 lesion radii
    tissue = (cls == GREY) | (cls == WHITE)
    value[tissue] *= 0.45 + 0.55 * penumbra[tissue]
    return value


# ---------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------
def moving_grid():
    origin, direction = grid(MOVING_SIZE, MOVING_SPACING, MOVING_DIRECTION, MOVING_CENTRE + MOVING_GRID_OFFSET)
    return MOVING_SIZE, MOVING_SPACING, origin, direction


def fixed_grid():
    origin, direction = grid(FIXED_SIZE, FIXED_SPACING, FIXED_DIRECTION, FIXED_CENTRE + FIXED_GRID_OFFSET)
    return FIXED_SIZE, FIXED_SPACING, origin, direction


def _sub_offsets(n_in_plane, n_slice):
    a = (np.arange(n_in_plane) + 0.5) / n_in_plane - 0.5
    c = (np.arange(n_slice) + 0.5) / n_slice - 0.5
    return [(x, y, z) for z in c for y in a for x in a]


def sample_slices(geometry, func, offsets, mapping=None):
    """Average of ``func(mapping(points))`` over sub-voxel offsets, slice by slice -> (k, j, i) array."""
    size, spacing, origin, direction = geometry
    out = np.zeros((size[2], size[1], size[0]), dtype=float)
    for k in range(size[2]):
        pts = grid_points(size, spacing, origin, direction, offsets, k_slice=k)
        if mapping is not None:
            pts = mapping(pts.reshape(-1, 3)).reshape(pts.shape)
        out[k] = func(pts).mean(axis=0).reshape(size[1], size[0])
    return out


def fixed_labels_array():
    """Fixed labelmap: labels(T(x)) at the fixed voxel centres, (k, j, i) uint8."""
    geometry = fixed_grid()
    return sample_slices(geometry, phantom_labels, [(0.0, 0.0, 0.0)], true_transform).astype(np.uint8)


def moving_labels_array():
    """Moving labelmap: labels(y) at the moving voxel centres, (k, j, i) uint8."""
    return sample_slices(moving_grid(), phantom_labels, [(0.0, 0.0, 0.0)]).astype(np.uint8)


def to_image(array_kji, geometry):
    import SimpleITK as sitk

    size, spacing, origin, direction = geometry
    img = sitk.GetImageFromArray(array_kji)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    return img


def write(img, path):
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), True, 9)


def make_images(out: Path, rng):
    fixed_geometry, moving_geometry = fixed_grid(), moving_grid()
    print("fixed DWI-like image ...", flush=True)
    dwi = sample_slices(fixed_geometry, dwi_intensity, _sub_offsets(2, 5), true_transform)
    # Rician noise (magnitude of complex Gaussian noise). No bias field: a 10 % S-I intensity ramp made
    # elastix's B-spline stage shift the featureless interior by 2-3 mm along the slices (mean TRE 1.75 mm
    # instead of 1.0 mm), which would make the "good" registration a poor example.
    sigma = 12.0
    dwi = np.sqrt((dwi + rng.normal(0, sigma, dwi.shape)) ** 2 + rng.normal(0, sigma, dwi.shape) ** 2)
    write(to_image(np.round(dwi).astype(np.int16), fixed_geometry), out / "fixed_dwi.nrrd")

    print("moving CBF-like map ...", flush=True)
    cbf = sample_slices(moving_geometry, cbf_intensity, _sub_offsets(2, 3))
    cbf = np.clip(cbf + rng.normal(0, 2.5, cbf.shape) * (cbf > 0.5), 0.0, None)
    cbf = np.round(cbf * 16.0) / 16.0  # quantised to 1/16: exact in float32, compresses well
    write(to_image(cbf.astype(np.float32), moving_geometry), out / "moving_cbf.nrrd")

    print("labelmaps and segmentations ...", flush=True)
    for side, labels, geometry in (("fixed", fixed_labels_array(), fixed_geometry),
                                   ("moving", moving_labels_array(), moving_geometry)):
        write(to_image(labels, geometry), out / f"{side}_labels.nrrd")
        write_segmentation(to_image(labels, geometry), out / f"{side}_segmentation.seg.nrrd", f"{side} segmentation")


SEGMENT_COLORS = {1: (0.87, 0.73, 0.60), 2: (0.35, 0.60, 0.90), 3: (0.90, 0.25, 0.25), 4: (0.95, 0.95, 0.80)}


def write_segmentation(labels_image, path: Path, name: str):
    """The labelmap as a Slicer segmentation file (.seg.nrrd) with named, coloured segments (slicer-core)."""
    import slicer

    from RegistrationQualityLib import io
    from RegistrationQualityLib.context import Context

    ctx = Context.headless()
    # segment IDs are random ("S_" + 16 characters): seed their generator so that the files are reproducible
    slicer.vtkSegmentation.GetSegmentIDRandomSequenceInstance().SetSeed(SEED % 2**31)
    seg = io.labelmap_image_to_segmentation(ctx, labels_image, name, segment_names=LABEL_NAMES)
    segmentation = seg.GetSegmentation()
    for segment_id in list(segmentation.GetSegmentIDs()):
        segment = segmentation.GetSegment(segment_id)
        segment.SetColor(*SEGMENT_COLORS[segment.GetLabelValue()])
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
    io.save_node(seg, path)


def inside_grid(points, geometry, margin_voxels=1.0):
    size, spacing, origin, direction = geometry
    idx = (np.asarray(points) - origin) @ np.linalg.inv(direction @ np.diag(spacing)).T
    return np.all((idx >= margin_voxels) & (idx <= np.asarray(size) - 1 - margin_voxels), axis=1)


def make_landmarks(out: Path):
    labels = [name for name, _ in LANDMARKS]
    anatomical = np.array([p for _, p in LANDMARKS]) + MOVING_CENTRE
    fixed = inverse_true_transform(anatomical)
    moving = true_transform(fixed)  # exactly T(fixed), by definition
    assert np.max(np.abs(moving - anatomical)) < 1e-6
    ok_f = inside_grid(fixed, fixed_grid())
    ok_m = inside_grid(moving, moving_grid())
    if not (ok_f.all() and ok_m.all()):
        bad = [lab for lab, a, b in zip(labels, ok_f, ok_m) if not (a and b)]
        raise SystemExit(f"landmarks outside a field of view: {bad}")
    write_landmarks(out / "fixed_landmarks", labels, fixed, "fixed (MRI-DWI-like) image")
    write_landmarks(out / "moving_landmarks", labels, moving, "moving (CT-perfusion-like) map")
    return labels, fixed, moving


def write_landmarks(stem: Path, labels, lps, description):
    control_points = [
        {"id": str(i + 1), "label": label, "description": "", "associatedNodeID": "",
         "position": [round(float(v), 6) for v in p], "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
         "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}
        for i, (label, p) in enumerate(zip(labels, lps))
    ]
    doc = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                   "Schema/markups-schema-v1.0.3.json#",
        "markups": [{
            "type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": True,
            "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(labels),
            "description": f"RegistrationQuality sample case: landmarks on the {description}",
            "controlPoints": control_points, "measurements": [],
        }],
    }
    stem.with_suffix(".mrk.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    lines = ["label,x,y,z"] + [f"{label},{p[0]:.6f},{p[1]:.6f},{p[2]:.6f}" for label, p in zip(labels, lps)]
    stem.with_suffix(".csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_truth_field(out: Path):
    """The true transform as an ITK displacement field (u(x) = T(x) - x) on a 6 mm grid over the fixed FOV."""
    import SimpleITK as sitk

    size, spacing, origin, direction = fixed_grid()
    extent = (np.asarray(size) - 1) * np.asarray(spacing)
    step = 6.0
    n = tuple(int(math.ceil(e / step)) + 3 for e in extent)  # one cell of margin on each side
    f_origin = origin - direction @ np.full(3, step)
    geometry = (n, (step, step, step), f_origin, direction)
    pts = grid_points(n, (step, step, step), f_origin, direction)[0]
    u = (true_transform(pts) - pts).astype(np.float32).reshape(n[2], n[1], n[0], 3)
    img = sitk.GetImageFromArray(u, isVector=True)
    img.SetSpacing((step, step, step))
    img.SetOrigin(tuple(float(v) for v in f_origin))
    img.SetDirection(tuple(float(v) for v in direction.ravel()))
    write(img, out / "ground_truth" / "true_displacement_fixed_to_moving.nrrd")
    return geometry


# ---------------------------------------------------------------------------------------------------
# elastix
# ---------------------------------------------------------------------------------------------------
COMMON = """// RegistrationQuality sample case ({what}); written by generate_sample_case.py
(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(FixedImageDimension 3)
(MovingImageDimension 3)
(UseDirectionCosines "true")
(Registration "MultiResolutionRegistration")
(Interpolator "BSplineInterpolator")
(BSplineInterpolationOrder 1)
(ResampleInterpolator "FinalBSplineInterpolator")
(FinalBSplineInterpolationOrder 3)
(Resampler "DefaultResampler")
(FixedImagePyramid "FixedSmoothingImagePyramid")
(MovingImagePyramid "MovingSmoothingImagePyramid")
(Optimizer "AdaptiveStochasticGradientDescent")
(Metric "AdvancedMattesMutualInformation")
(NumberOfHistogramBins 32)
(ImageSampler "RandomCoordinate")
(NewSamplesEveryIteration "true")
(HowToCombineTransforms "Compose")
(ErodeMask "false")
(DefaultPixelValue 0)
(ResultImagePixelType "float")
(ResultImageFormat "nrrd")
(CompressResultImage "true")
(WriteTransformParametersEachIteration "false")
(WriteTransformParametersEachResolution "false")
(ShowExactMetricValue "false")
(RandomSeed {seed})
"""

GOOD_RIGID = COMMON + """
(WriteResultImage "false")  // only the final (B-spline) result image is kept
(Transform "EulerTransform")
(AutomaticScalesEstimation "true")
(AutomaticTransformInitialization "true")
(AutomaticTransformInitializationMethod "CenterOfGravity")
(NumberOfResolutions 3)
(ImagePyramidSchedule 4 4 1  2 2 1  1 1 1)
(MaximumNumberOfIterations 400)
(NumberOfSpatialSamples 4000)
"""

GOOD_BSPLINE = COMMON + """
(WriteResultImage "true")
(Transform "BSplineTransform")
(FinalGridSpacingInPhysicalUnits 24)
(GridSpacingSchedule 4 2 1)
(NumberOfResolutions 3)
(ImagePyramidSchedule 4 4 1  2 2 1  1 1 1)
(MaximumNumberOfIterations 600)
(NumberOfSpatialSamples 8000)
"""

IMPERFECT_RIGID = COMMON + """
// deliberately imperfect: rigid only, one coarse level, stopped after a few iterations
(WriteResultImage "true")
(Transform "EulerTransform")
(AutomaticScalesEstimation "true")
(AutomaticTransformInitialization "true")
(AutomaticTransformInitializationMethod "CenterOfGravity")
(NumberOfResolutions 1)
(ImagePyramidSchedule 4 4 1)
(MaximumNumberOfIterations 12)
(NumberOfSpatialSamples 1000)
"""

REGISTRATIONS = {
    "good": ("rigid then B-spline (converged)", [("parameters.rigid.txt", GOOD_RIGID),
                                                  ("parameters.bspline.txt", GOOD_BSPLINE)]),
    "imperfect": ("rigid only (centre-of-gravity start), one coarse level, stopped after 12 iterations", [
        ("parameters.rigid.txt", IMPERFECT_RIGID)]),
}

MACHINE_LINE = re.compile(r"^(which (elastix|transformix):|(elastix|transformix) runs at:|\s+Linux |\s+with \d+ MB memory"
                          r"|\s+Windows |\s+Mac OS)")


def run_elastix(out: Path, threads: int):
    exe = shutil.which("elastix")
    if not exe:
        raise SystemExit("elastix not found on PATH (use --skip-elastix to write only the images)")
    for name, (what, params) in REGISTRATIONS.items():
        folder = out / "registrations" / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        args = ["elastix", "-f", "fixed_dwi.nrrd", "-m", "moving_cbf.nrrd", "-out", f"registrations/{name}",
                "-threads", str(threads)]
        for file_name, text in params:
            (folder / file_name).write_text(text.format(what=f"{name}: {what}", seed=SEED), encoding="utf-8")
            args += ["-p", f"registrations/{name}/{file_name}"]
        print(" ".join(args), flush=True)
        # relative paths: run from the case folder so that nothing absolute lands in the outputs
        subprocess.run(args, cwd=out, check=True, stdout=subprocess.DEVNULL)
        clean_elastix_folder(folder)


def clean_elastix_folder(folder: Path):
    """Relative InitialTransformParametersFileName; no machine-specific paths or host names in logs."""
    for tp in sorted(folder.glob("TransformParameters.*.txt")):
        text = tp.read_text(encoding="utf-8")

        def relative(match):
            value = match.group(1)
            if value == "NoInitialTransform":
                return match.group(0)
            return f'(InitialTransformParametersFileName "{Path(value).name}")'

        tp.write_text(re.sub(r'\(InitialTransformParametersFileName "([^"]*)"\)', relative, text), encoding="utf-8")
    for log in folder.glob("*.log"):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [("[machine information removed]" if MACHINE_LINE.match(line) else line) for line in lines]
        text = "\n".join(kept) + "\n"
        for secret in {str(folder.resolve().parent.parent), str(Path.home()), os.getcwd()}:
            text = text.replace(secret, ".")
        log.write_text(text, encoding="utf-8")


def transformix_points(parameter_file: Path, lps_points: np.ndarray, work: Path) -> np.ndarray:
    """Transform LPS points with transformix (run in the parameter file's folder); returns (N, 3)."""
    work.mkdir(parents=True, exist_ok=True)
    pts = work / "points.txt"
    pts.write_text(f"point\n{len(lps_points)}\n" + "".join(f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in lps_points))
    subprocess.run(["transformix", "-def", str(pts.resolve()), "-tp", parameter_file.name, "-out", str(work.resolve())],
                   cwd=parameter_file.parent, check=True, stdout=subprocess.DEVNULL)
    rows = (work / "outputpoints.txt").read_text().splitlines()
    return np.array([[float(v) for v in re.search(r"OutputPoint = \[([^\]]*)\]", r).group(1).split()] for r in rows])


def measure(out: Path, labels, fixed, moving):
    import tempfile

    result = {"identity": tre_stats(labels, fixed, moving)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, params) in REGISTRATIONS.items():
            final = out / "registrations" / name / f"TransformParameters.{len(params) - 1}.txt"
            mapped = transformix_points(final, fixed, Path(tmp) / name)
            result[name] = tre_stats(labels, mapped, moving)
    return result


def tre_stats(labels, mapped, moving):
    d = np.linalg.norm(np.asarray(mapped) - np.asarray(moving), axis=1)
    return {"mean": round(float(d.mean()), 3), "median": round(float(np.median(d)), 3),
            "max": round(float(d.max()), 3), "per_landmark": {lab: round(float(v), 3) for lab, v in zip(labels, d)}}


def deformation_stats():
    """Max spectral norm of grad d and range of det(I + grad d) over the fixed voxel centres (central differences)."""
    size, spacing, origin, direction = fixed_grid()
    pts = grid_points(size, spacing, origin, direction)[0]
    h = 1e-3
    jac = np.stack([(bump_displacement(pts + h * e) - bump_displacement(pts - h * e)) / (2 * h) for e in np.eye(3)],
                   axis=-1)
    det = np.linalg.det(np.eye(3) + jac)
    return {"max_gradient_norm": round(float(np.linalg.norm(jac, ord=2, axis=(1, 2)).max()), 4),
            "jacobian_min": round(float(det.min()), 4), "jacobian_max": round(float(det.max()), 4)}


def geometry_json(geometry):
    size, spacing, origin, direction = geometry
    return {"size": list(size), "spacing_mm": list(spacing), "origin_lps_mm": [round(float(v), 6) for v in origin],
            "direction": [round(float(v), 9) for v in np.asarray(direction).ravel()]}


def write_manifest(out: Path, tre, field_geometry):
    regs = {}
    for name, (what, params) in REGISTRATIONS.items():
        n = len(params) - 1
        regs[name] = {
            "description": what,
            "elastix_dir": f"registrations/{name}",
            "transform": f"registrations/{name}/TransformParameters.{n}.txt",
            "result": f"registrations/{name}/result.{n}.nrrd",
            "parameter_files": [f"registrations/{name}/{p}" for p, _ in params],
        }
    manifest = {
        "name": "RegistrationQuality sample case",
        "description": "Head-like phantom: MRI-DWI-like fixed image and CT-perfusion-like (CBF) moving map related by "
                       "a known rigid + smooth deformation; labelmaps, named landmarks, a good and an imperfect "
                       "elastix registration.",
        "fixed": "fixed_dwi.nrrd",
        "moving": "moving_cbf.nrrd",
        "fixed_labels": "fixed_labels.nrrd",
        "moving_labels": "moving_labels.nrrd",
        "fixed_segmentation": "fixed_segmentation.seg.nrrd",
        "moving_segmentation": "moving_segmentation.seg.nrrd",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "fixed_landmarks": "fixed_landmarks.mrk.json",
        "moving_landmarks": "moving_landmarks.mrk.json",
        "fixed_landmarks_csv": "fixed_landmarks.csv",
        "moving_landmarks_csv": "moving_landmarks.csv",
        "registrations": regs,
        "ground_truth": {
            "convention": "resampling transform T: fixed LPS point -> moving LPS point (elastix/ITK/Slicer "
                          "FromParent)",
            "formula": "T(x) = c_m + R (x - c_f) + sum_k a_k exp(-|x - (c_f + p_k)|^2 / (2 s_k^2))",
            "c_f_lps_mm": FIXED_CENTRE.tolist(),
            "c_m_lps_mm": MOVING_CENTRE.tolist(),
            "R": [[round(float(v), 12) for v in row] for row in TRUE_R],
            "rotation_deg": TRUE_ROTATION_DEG,
            "rotation_order": "R = Rz(S-I) Ry(A-P) Rx(L-R)",
            "bumps": [{"p_mm": list(c), "a_mm": list(a), "s_mm": s} for c, a, s in BUMPS],
            "displacement_field": "ground_truth/true_displacement_fixed_to_moving.nrrd",
            "displacement_field_geometry": geometry_json(field_geometry),
            "expected_tre_of_truth_mm": 0.0,
            "deformation": deformation_stats(),
        },
        "geometry": {"fixed": geometry_json(fixed_grid()), "moving": geometry_json(moving_grid())},
        "measured_tre_mm": tre,
        "generator": {"script": "generate_sample_case.py", "seed": SEED, "elastix": elastix_version()},
    }
    (out / "case.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_readme(out, manifest)
    return manifest


README_TEMPLATE = """# RegistrationQuality sample case

A head-like phantom seen by two modalities, related by a **known** transform, with two real elastix registrations:
a good one and a visibly imperfect one. It is what `registration-quality demo` (and `bash scripts/demo.sh`)
evaluates, and what the Slicer module registers with the Sample Data module.

Everything here is written by [`generate_sample_case.py`](generate_sample_case.py) (seed {seed}; numpy,
SimpleITK, elastix {elastix}). `case.json` lists the files by role and holds the ground truth and the measured
TREs below in machine-readable form. Coordinates are LPS (mm).

## Files

| File | What |
| --- | --- |
| `fixed_dwi.nrrd` | fixed image, MRI-DWI-like (b=1000 trace: lesion bright, CSF dark), int16, {fixed_size} voxels of {fixed_spacing} mm, axial; thick-slice partial volume (each voxel averages 2 x 2 x 5 sub-samples), Rician noise (sigma 12) |
| `moving_cbf.nrrd` | moving image, CT-perfusion-like CBF map (ml/100 g/min: grey 55, white 22, lesion core 4 with a penumbra, no flow in bone and CSF), float32, {moving_size} voxels of {moving_spacing} mm, oblique grid (18 deg gantry tilt, 5 deg in-plane), another field of view |
| `fixed_labels.nrrd`, `moving_labels.nrrd` | labelmaps (uint8) on each image's grid: {labels} |
| `fixed_segmentation.seg.nrrd`, `moving_segmentation.seg.nrrd` | the same labelmaps as Slicer segmentations with named, coloured segments |
| `fixed_landmarks.mrk.json`, `moving_landmarks.mrk.json` | {n_landmarks} named landmarks (Slicer markups, `coordinateSystem: LPS`), matched by label |
| `fixed_landmarks.csv`, `moving_landmarks.csv` | the same as CSV `label,x,y,z` (LPS) |
| `ground_truth/true_displacement_fixed_to_moving.nrrd` | the true transform as an ITK displacement field (u(x) = T(x) - x, 6 mm grid over the fixed field of view plus one cell) |
| `registrations/good/` | elastix output: rigid (`parameters.rigid.txt`) then B-spline (`parameters.bspline.txt`); final transform `TransformParameters.1.txt` (chain: its `InitialTransformParametersFileName` is `TransformParameters.0.txt`, relative to the folder), `result.1.nrrd` (moving resampled on the fixed grid, float), `elastix.log`, `IterationInfo.*` |
| `registrations/imperfect/` | elastix output: {imperfect} (`parameters.rigid.txt`); `TransformParameters.0.txt`, `result.0.nrrd`, `elastix.log`, `IterationInfo.*` |

elastix was run as `elastix -f fixed_dwi.nrrd -m moving_cbf.nrrd -p ... -out registrations/NAME` from this
folder: its TransformParameters map **fixed points to moving points** (the resampling transform). Absolute
paths were rewritten (chains relative to their folder) and machine information was removed from the logs.
To run transformix on the good chain, run it from `registrations/good/` (or give the chain's files absolute paths).

## Ground truth

The anatomy is defined analytically in the moving space (ellipsoids: scalp, skull, cortex with sulci, white
matter, deep grey nuclei, brainstem, lateral and fourth ventricles, a right frontal lesion). The true resampling
transform fixed -> moving is

    T(x) = c_m + R (x - c_f) + sum_k a_k exp(-|x - (c_f + p_k)|^2 / (2 s_k^2))

with c_f = {c_f} mm, c_m = {c_m} mm, R = Rz({rz} deg) Ry({ry} deg) Rx({rx} deg) (S-I, A-P, L-R axes) and three
Gaussian displacement bumps (p_k relative to c_f, amplitude a_k, width s_k, mm):

{bumps}

The deformation is smooth and invertible: over the fixed field of view the spectral norm of grad d is at most
{grad:.3f} and the Jacobian determinant det(I + grad d) lies in [{det_min:.3f}, {det_max:.3f}]. The fixed image is
the anatomy at T(x) for its voxel centres; the fixed labelmap is labels(T(x)); the moving image and labelmap
sample the anatomy directly. Landmarks are anatomical points (lesion centre and edges, ventricle horns, septum,
skull, cortex, brainstem, fourth ventricle) whose fixed position is T^-1 of the anatomical point; the moving
landmark is T(fixed) exactly. **TRE of the true transform: 0** (through the committed displacement field:
< 0.1 mm, the error of linearly interpolating the 6 mm field).

## Measured target registration error (transformix, {n_landmarks} landmarks, mm)

| Registration | mean | median | max |
| --- | --- | --- | --- |
{tre_rows}

Per landmark:

| Landmark | none | good | imperfect |
| --- | --- | --- | --- |
{tre_landmarks}

`Testing/test_sample_case.py` re-measures these with transformix and checks they equal the table (and that the
good registration's mean TRE is below the fixed in-plane spacing and the imperfect one's above the slice thickness).
"""


def write_readme(out: Path, manifest: dict) -> None:
    truth = manifest["ground_truth"]
    tre = manifest["measured_tre_mm"] or {}
    fixed_g, moving_g = manifest["geometry"]["fixed"], manifest["geometry"]["moving"]

    def fmt(values):
        return " x ".join(f"{v:g}" for v in values)

    def vec(values):
        return "(" + ", ".join(f"{v:g}" for v in values) + ")"

    bumps = "\n".join(f"- p = {vec(b['p_mm'])}, a = {vec(b['a_mm'])}, s = {b['s_mm']:g}" for b in truth["bumps"])
    names = {"identity": "none (identity)", "good": "good", "imperfect": "imperfect"}
    tre_rows = "\n".join(f"| {names[k]} | {v['mean']:.2f} | {v['median']:.2f} | {v['max']:.2f} |" for k, v in tre.items())
    labels = list(tre.get("good", {}).get("per_landmark", {}))
    tre_landmarks = "\n".join(
        f"| {lab} | " + " | ".join(f"{tre[k]['per_landmark'][lab]:.2f}" for k in ("identity", "good", "imperfect")) + " |"
        for lab in labels)
    text = README_TEMPLATE.format(
        seed=manifest["generator"]["seed"], elastix=manifest["generator"]["elastix"],
        fixed_size=fmt(fixed_g["size"]), fixed_spacing=fmt(fixed_g["spacing_mm"]),
        moving_size=fmt(moving_g["size"]), moving_spacing=fmt(moving_g["spacing_mm"]),
        labels=", ".join(f"{k} {v}" for k, v in manifest["labels"].items()),
        n_landmarks=len(LANDMARKS), imperfect=manifest["registrations"]["imperfect"]["description"],
        c_f=vec(truth["c_f_lps_mm"]), c_m=vec(truth["c_m_lps_mm"]),
        grad=truth["deformation"]["max_gradient_norm"], det_min=truth["deformation"]["jacobian_min"],
        det_max=truth["deformation"]["jacobian_max"],
        rz=TRUE_ROTATION_DEG["S-I"], ry=TRUE_ROTATION_DEG["A-P"], rx=TRUE_ROTATION_DEG["L-R"], bumps=bumps,
        tre_rows=tre_rows or "| (not measured: generated with --skip-elastix) | | | |",
        tre_landmarks=tre_landmarks)
    (out / "README.md").write_text(text, encoding="utf-8")


def elastix_version():
    try:
        text = subprocess.run(["elastix", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r"version:\s*(\S+)", text)
    return m.group(1) if m else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(HERE), help="case folder (default: this script's folder)")
    parser.add_argument("--skip-elastix", action="store_true", help="write images, labels, landmarks only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--readme-only", action="store_true", help="rewrite README.md from the existing case.json")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if args.readme_only:
        write_readme(out, json.loads((out / "case.json").read_text(encoding="utf-8")))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    make_images(out, rng)
    labels, fixed, moving = make_landmarks(out)
    field_geometry = make_truth_field(out)
    tre = None
    if not args.skip_elastix:
        run_elastix(out, args.threads)
        tre = measure(out, labels, fixed, moving)
        for name, stats in tre.items():
            print(f"TRE {name:10s} mean {stats['mean']:.2f} mm  max {stats['max']:.2f} mm")
    write_manifest(out, tre, field_geometry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
