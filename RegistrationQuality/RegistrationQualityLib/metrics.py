"""Segment comparison: Dice, Jaccard, volumes, Hausdorff (max, any percentile, directed) and ASSD.

Pinned definitions (docs/metrics.md has the long form; every metric below carries its own):

* A segment is a set of voxels. Reference ``A``, compared ``B``, both on one *comparison grid* (the reference's
  voxel lattice). ``|X|`` is a voxel count, ``v`` the comparison grid's voxel volume.
* **Boundary voxels** ``∂X``: voxels of ``X`` with at least one 6-connected neighbour outside ``X``; the image
  edge counts as outside (a segment touching the border has a boundary there).
* **Distance** ``d(p, ∂Y)``: Euclidean distance in mm between voxel *centres*, from ``p`` to the nearest voxel of
  ``∂Y`` (exact, with the grid spacing, searched from the boundary voxels: segment_kernels.nearest_distances;
  direction cosines do not change distances between centres of one grid).
* Directed distances ``D(A→B) = {d(p, ∂B) : p ∈ ∂A}`` and ``D(B→A)``. Hausdorff max = max of both directed
  maxima; HD\\ *p* = max of both directed *p*-th percentiles (numpy's default linear interpolation); ASSD = mean
  of the two directed sets pooled together. This is MONAI's ``compute_hausdorff_distance`` /
  ``compute_average_surface_distance(symmetric=True)`` with ``spacing``.
* Volumes (cc) are counted on each input's own grid; Dice, Jaccard and false-positive / false-negative volumes on
  the comparison grid.
* An empty side makes the distances null with a reason in ``status``; Dice is 0 when exactly one side is empty
  and null (not 1.0) when both are.

Public API: :func:`compare_masks` (one boolean pair on one grid), :func:`compare_labelmaps` (SimpleITK labelmaps,
every label), :func:`compare_segments` (MRML segmentation / labelmap nodes, parent transforms honoured, result
table), :func:`compare_files` (``registration-quality compare``, run by ``commands.run_compare_cli``). Which
numbers a pair yields (key, title, unit, definition, function) is the segment part of the measure registry
(:mod:`.measures`).

Speed: one pass per input finds every label's bounding box and voxel count (segment_kernels.label_stats); each
pair is then read as runs along i within the union of its two boxes plus a one-voxel margin, straight from the
labelmaps: counts, overlap, boundary voxels and the shifted-self Dice come from the runs, and the distances are
searched from the boundary voxels (exact, no distance map of the box). No whole-volume copy is made per label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import measures, surface
from .errors import BadInputError
from .measures import (  # noqa: F401 - the segment measures' functions, importable from here as before
    dice,
    hausdorff,
    hausdorff_percentile,
    jaccard,
    mean_surface_distance,
)

DEFAULT_PERCENTILE = measures.DEFAULT_PERCENTILE

# Digits kept in results: distances to 1e-6 mm (as before, when they came from float32 maps), volumes are voxel counts.
_MM_DIGITS = 6
_CC_DIGITS = 6


def _sitk():
    from .io import _sitk as io_sitk

    return io_sitk()


# ---------------------------------------------------------------------------------------------------
# One pair measured: counts and directed distance samples
# ---------------------------------------------------------------------------------------------------
@dataclass
class PairMeasurement:
    """Raw measurements of one segment pair, from which every segment measure of :mod:`.measures` is
    computed.

    Counts are on the comparison grid (voxel volume ``voxel_cc``); ``reference_cc`` / ``compared_cc`` are the
    volumes on each input's own grid. ``to_compared`` = distances (mm) from each reference boundary voxel to
    the compared boundary (``D(A→B)``); ``to_reference`` = ``D(B→A)``; ``None`` when a side is empty. Both are in
    the C order of their boundary voxels; ``compared_inside_reference[n]`` tells whether the compared boundary voxel
    of ``to_reference[n]`` lies in the reference segment (the sign of the signed distances, see surface.py).
    """

    n_reference: int
    n_compared: int
    n_both: int
    voxel_cc: float
    reference_cc: float
    compared_cc: float
    to_compared: np.ndarray | None = None
    to_reference: np.ndarray | None = None
    compared_inside_reference: np.ndarray | None = None
    percentile: float = DEFAULT_PERCENTILE
    nsd_tolerances: tuple = surface.DEFAULT_NSD_TOLERANCES_MM
    status: str = "ok"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def has_distances(self) -> bool:
        return self.to_compared is not None and self.to_reference is not None

    def directed(self, direction: str, statistic: str) -> float | None:
        """``statistic`` ("max", "percentile", "mean") of the directed set ``direction``."""
        if not self.has_distances:
            return None
        key = (direction, statistic)
        if key not in self._cache:
            d = self.to_compared if direction == "reference_to_compared" else self.to_reference
            if statistic == "max":
                value = float(d.max())
            elif statistic == "percentile":
                value = float(np.percentile(d, self.percentile))  # linear interpolation (numpy default)
            else:
                value = float(d.mean())
            self._cache[key] = value
        return self._cache[key]


def _round(unit: str, value):
    if value is None:
        return None
    value = float(value)
    if unit == "mm":
        return round(value, _MM_DIGITS)
    if unit == "cc":
        return round(value, _CC_DIGITS)
    return value


def result_dict(m: PairMeasurement, label=None, name=None) -> dict:
    """The JSON record of one pair: label, name, every segment measure of the registry (:mod:`.measures`,
    nested by dotted field), status."""
    out: dict = {"label": label, "name": name}
    for measure in measures.of("segment"):
        if measure.compute is not None:  # NSD, signed distances: computed by surface.py below
            measures.set_field(out, measure.field, _round(measure.unit, measure.compute(m)))
    out.update(surface.nsd_record(m.to_compared, m.to_reference, m.nsd_tolerances, m.n_reference, m.n_compared))
    out["signed_distance"] = surface.signed_distance_summary(
        surface.signed_distances(m.to_reference, m.compared_inside_reference),
        None if m.status == "ok" else m.status)
    out["status"] = m.status
    return out


def result_row(result: dict, percentile: float) -> dict:
    """A flat table row (column titles with units) from a :func:`result_dict` record."""
    row = {"Label": result.get("label"), "Segment": result.get("name")}
    for extra in ("reference_segment", "compared_segment"):
        if extra in result:
            row[extra.replace("_", " ").capitalize()] = result[extra]
    for measure in measures.of("segment"):
        row[measure.column_title(percentile)] = measure.value_in(result)
    for key in sorted((k for k in result if k.startswith("nsd_")), key=lambda k: float(k[4:-2].replace("_", "."))):
        row[f"NSD {key[4:-2].replace('_', '.')} mm"] = result[key]
    signed = result.get("signed_distance") or {}
    for key, title in (("mean_mm", "Signed distance mean (mm)"), ("max_outward_mm", "Largest outward (mm)"),
                       ("max_inward_mm", "Largest inward (mm)")):
        if key in signed:
            row[title] = signed[key]
    for key, value in (result.get("shifted_self_dice") or {}).items():
        row[f"Dice of reference shifted {key[:-2].replace('_', '.')} mm"] = value
    row["Status"] = result.get("status")
    return row


# ---------------------------------------------------------------------------------------------------
# Boundaries and distances on one grid
# ---------------------------------------------------------------------------------------------------
def boundary_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` (k, j, i booleans) with a 6-connected neighbour outside it; the array edge is outside."""
    from . import segment_kernels as sk

    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    edges = sk.boundary_voxels(sk.runs(mask), mask.shape)
    out[edges[:, 0], edges[:, 1], edges[:, 2]] = True
    return out


def distance_to_set(target: np.ndarray, spacing, at: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm, float64) from every voxel centre where ``at`` is true to the nearest ``target`` voxel.

    ``target``/``at``: boolean (k, j, i) arrays of one grid, ``spacing`` (x, y, z) mm. Exact: ITK's signed Maurer
    distance transform on ``target`` with image spacing, squared distances (every target voxel is on the contour
    of the target set when the target is a boundary set, so its distance is 0). A whole map of the array: the
    heat map's (heatmap.py); the segment comparison measures its distances from the boundary voxels
    (:func:`directed_surface_distances`).
    """
    sitk = _sitk()
    img = sitk.GetImageFromArray(np.asarray(target, dtype=np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing))
    dmap = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=True, useImageSpacing=True,
                                        backgroundValue=0.0)
    squared = sitk.GetArrayViewFromImage(dmap)[at].astype(np.float64)
    # float32 round-off around 0: the smallest true non-zero squared distance is min(spacing)^2
    squared[np.abs(squared) < 1e-6 * min(spacing) ** 2] = 0.0
    return np.sqrt(np.abs(squared))


@dataclass
class _Pair:
    """Runs, counts and boundary voxels of two boolean masks on one grid (segment_kernels)."""

    shape: tuple
    a_runs: tuple
    b_runs: tuple
    n_a: int
    n_b: int
    n_both: int
    a_edge: np.ndarray | None = None
    b_edge: np.ndarray | None = None


def _pair(a: np.ndarray, b: np.ndarray) -> _Pair:
    from . import segment_kernels as sk

    return _pair_of_runs(sk.runs(a), sk.runs(b), a.shape)


def _pair_of_runs(a_runs, b_runs, shape) -> _Pair:
    from . import segment_kernels as sk

    n_a, n_b = sk.mask_count(a_runs), sk.mask_count(b_runs)
    pair = _Pair(tuple(shape), a_runs, b_runs, n_a, n_b, sk.overlap(a_runs, b_runs, shape) if n_a and n_b else 0)
    if n_a and n_b:
        pair.a_edge = sk.boundary_voxels(a_runs, shape)
        pair.b_edge = sk.boundary_voxels(b_runs, shape)
    return pair


def _directed(pair: _Pair, spacing):
    from . import segment_kernels as sk

    return (sk.nearest_distances(pair.b_edge, pair.a_edge, spacing, pair.shape),
            sk.nearest_distances(pair.a_edge, pair.b_edge, spacing, pair.shape))


def directed_surface_distances(reference_mask: np.ndarray, compared_mask: np.ndarray, spacing):
    """(D(A→B), D(B→A)) in mm for two non-empty boolean masks on one grid (see the module docstring).

    Exact distances between boundary voxel centres, searched from the boundary voxels outwards
    (:func:`segment_kernels.nearest_distances`): no distance map of the grid is made."""
    return _directed(_pair(np.asarray(reference_mask, dtype=bool), np.asarray(compared_mask, dtype=bool)), spacing)


def _measure(a: np.ndarray, b: np.ndarray, spacing, voxel_cc, reference_cc, compared_cc, percentile, status_hint=None):
    """(PairMeasurement, runs of ``a``) of two boolean crops (the crop edge counts as outside: each crop has a
    one-voxel empty margin or is at the grid edge)."""
    return _measure_pair(_pair(a, b), spacing, voxel_cc, reference_cc, compared_cc, percentile, status_hint)


def _measure_pair(pair: _Pair, spacing, voxel_cc, reference_cc, compared_cc, percentile, status_hint=None):
    from . import segment_kernels as sk

    n_a, n_b = pair.n_a, pair.n_b
    m = PairMeasurement(n_a, n_b, pair.n_both, voxel_cc, reference_cc, compared_cc, percentile=percentile)
    if n_a and n_b:
        m.to_compared, m.to_reference = _directed(pair, spacing)
        m.compared_inside_reference = sk.in_mask(pair.a_runs, pair.shape, pair.b_edge)
    elif n_a or n_b:
        side = "compared" if n_a else "reference"
        m.status = status_hint or f"{side} segment is empty: distances undefined"
    else:
        m.status = status_hint or "both segments are empty: overlap and distances undefined"
    return m, pair.a_runs


def compare_masks(reference_mask, compared_mask, spacing=(1.0, 1.0, 1.0), percentile: float = DEFAULT_PERCENTILE,
                  label=None, name=None, nsd_tolerances=None) -> dict:
    """Compare two boolean (k, j, i) masks on one grid with voxel ``spacing`` (x, y, z) mm -> result dict.

    The array edge counts as outside. Volumes are counted on this grid. ``nsd_tolerances``: mm (default 2).
    """
    percentile = check_percentile(percentile)
    tolerances = surface.check_tolerances(nsd_tolerances)
    a = np.asarray(reference_mask, dtype=bool)
    b = np.asarray(compared_mask, dtype=bool)
    if a.shape != b.shape or a.ndim != 3:
        raise BadInputError("masks", f"need two 3D masks of one shape, got {a.shape} and {b.shape}")
    voxel_cc = float(np.prod(spacing)) / 1000.0
    lo, hi = _union_box([_mask_box(a), _mask_box(b)])
    if lo is None:
        m, _runs = _measure(a[:0, :0, :0], b[:0, :0, :0], spacing, voxel_cc, 0.0, 0.0, percentile)
    else:
        lo = np.maximum(np.array(lo) - 1, 0)
        hi = np.minimum(np.array(hi) + 1, a.shape)
        sl = tuple(slice(int(s), int(e)) for s, e in zip(lo, hi))
        a_crop = np.pad(a[sl], 1)  # the pad stands for the outside (also beyond the array edge)
        b_crop = np.pad(b[sl], 1)
        m, _runs = _measure(a_crop, b_crop, spacing, voxel_cc, np.count_nonzero(a) * voxel_cc,
                            np.count_nonzero(b) * voxel_cc, percentile)
    m.nsd_tolerances = tolerances
    out = result_dict(m, label, name)
    out["shifted_self_dice"] = surface.worst_shifted_dice(a, spacing)
    return out


def _mask_box(mask):
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        proj = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(proj[0]))
        hi.append(int(proj[-1]) + 1)
    return tuple(lo), tuple(hi)


def _union_box(boxes):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None, None
    lo = tuple(min(b[0][d] for b in boxes) for d in range(3))
    hi = tuple(max(b[1][d] for b in boxes) for d in range(3))
    return lo, hi


def check_percentile(percentile) -> float:
    try:
        p = float(percentile)
    except (TypeError, ValueError):
        raise BadInputError("percentile", f"'{percentile}' is not a number") from None
    if not 0.0 <= p <= 100.0:
        raise BadInputError("percentile", f"{p:g} is outside 0-100")
    return p


# ---------------------------------------------------------------------------------------------------
# Labelled inputs: layers of integer labels on one grid, segments = (name, label value, layer)
# ---------------------------------------------------------------------------------------------------
@dataclass
class Segment:
    name: str
    label: int
    layer: int = 0


@dataclass
class LabelSource:
    """Segments of one input: integer SimpleITK ``layers`` (one geometry) and ``segments`` in them."""

    source: str
    layers: list
    segments: list
    _stats: dict = field(default_factory=dict, repr=False)

    @property
    def geometry(self):
        return self.layers[0]

    def stats(self, layer: int) -> dict:
        """{label: (lo, hi, count)} of a layer on the input's own grid (one pass, cached)."""
        if layer not in self._stats:
            self._stats[layer] = _layer_stats(self.layers[layer])
        return self._stats[layer]


def labelmap_source(image, source: str = "labelmap", names: dict | None = None, labels=None) -> LabelSource:
    """Every non-zero label of an integer labelmap is a segment (name = ``names[label]`` or the value)."""
    from .io import as_integer_labelmap, check_scalar_3d

    check_scalar_3d(image, source, "a 3D labelmap")
    image = as_integer_labelmap(image, source)
    src = LabelSource(source, crop_to_foreground([image]), [])
    wanted = sorted(src.stats(0)) if labels is None else [int(v) for v in labels]
    names = names or {}
    src.segments = [Segment(str(names.get(v, v)), int(v), 0) for v in wanted]
    return src


def _foreground_box(arr):
    """(lo, hi) exclusive (k, j, i) box of the non-zero voxels of a (k, j, i) array, or None; three cheap
    projections (each pass touches the data once, ~10 ms per 100 M voxels)."""
    if arr.size == 0:
        return None
    flat = arr.reshape(arr.shape[0], -1)
    ks = np.flatnonzero(flat.any(axis=1))
    if ks.size == 0:
        return None
    k0, k1 = int(ks[0]), int(ks[-1]) + 1
    sub = arr[k0:k1]
    js = np.flatnonzero(sub.any(axis=(0, 2)))
    j0, j1 = int(js[0]), int(js[-1]) + 1
    is_ = np.flatnonzero(sub[:, j0:j1].any(axis=(0, 1)))
    return (k0, j0, int(is_[0])), (k1, j1, int(is_[-1]) + 1)


def crop_to_foreground(layers):
    """The layers (integer images of one grid) cropped to the union box of their non-zero voxels.

    Only zero voxels are removed, so boundaries (image edge = outside) and positions are unchanged; the crop
    stays on the same voxel lattice. All-empty layers become one zero voxel at the original origin.
    """
    sitk = _sitk()
    arrays = [sitk.GetArrayViewFromImage(img) for img in layers]
    lo, hi = _union_box([_foreground_box(a) for a in arrays])
    if lo is None:
        lo, hi = (0, 0, 0), (1, 1, 1)
    if tuple(hi) == arrays[0].shape and tuple(lo) == (0, 0, 0):
        return list(layers)
    out = []
    origin = layers[0].TransformIndexToPhysicalPoint([int(v) for v in lo[::-1]])
    for img, arr in zip(layers, arrays):
        crop = sitk.GetImageFromArray(np.ascontiguousarray(arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]))
        crop.SetOrigin(origin)
        crop.SetSpacing(img.GetSpacing())
        crop.SetDirection(img.GetDirection())
        out.append(crop)
    return out


def _layer_stats(image) -> dict:
    """{label value: ((k0, j0, i0), (k1, j1, i1) exclusive, voxel count)} of every non-zero label, one pass."""
    from . import segment_kernels as sk

    sitk = _sitk()
    fast = sk.label_stats(sitk.GetArrayViewFromImage(image))
    if fast is not None:
        return fast
    f = sitk.LabelShapeStatisticsImageFilter()  # negative or very large label values
    f.SetBackgroundValue(0)
    f.ComputePerimeterOff()
    f.ComputeFeretDiameterOff()
    f.ComputeOrientedBoundingBoxOff()
    f.Execute(image)
    out = {}
    for value in f.GetLabels():
        x, y, z, sx, sy, sz = f.GetBoundingBox(value)
        out[int(value)] = ((z, y, x), (z + sz, y + sy, x + sx), int(f.GetNumberOfPixels(value)))
    return out


def _voxel_cc(image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


@dataclass
class _Aligned:
    """One input's layers on the comparison lattice: arrays indexed at (lattice index − offset)."""

    arrays: list
    offset: np.ndarray  # (k, j, i) lattice index of array voxel [0, 0, 0]
    stats: list  # per layer: {value: (lo, hi, count)} in lattice indices
    keep: list = field(default_factory=list)  # images owning the array buffers


def _lattice_position(image, lattice):
    """(k, j, i) integer lattice index of ``image``'s first voxel if it lies on ``lattice``'s voxel lattice, else None."""
    s_i, s_l = np.array(image.GetSpacing()), np.array(lattice.GetSpacing())
    d_i = np.array(image.GetDirection()).reshape(3, 3)
    d_l = np.array(lattice.GetDirection()).reshape(3, 3)
    if not (np.allclose(s_i, s_l, rtol=1e-6, atol=0) and np.allclose(d_i, d_l, atol=1e-6)):
        return None
    idx = lattice.TransformPhysicalPointToContinuousIndex(image.GetOrigin())
    rounded = np.round(idx)
    if np.max(np.abs(np.array(idx) - rounded)) > 1e-3:
        return None
    return rounded.astype(int)[::-1]


def _align(src: LabelSource, lattice, messages=None, within_lattice: bool = False) -> _Aligned:
    """Bring ``src``'s layers onto ``lattice`` (exactly when on the same voxel lattice, else nearest neighbour);
    ``within_lattice``: resampled voxels outside the lattice image's extent are left out (as a resampling onto the
    lattice image would)."""
    sitk = _sitk()
    stats = [src.stats(i) for i in range(len(src.layers))]
    position = _lattice_position(src.geometry, lattice)
    if position is not None:
        arrays = [sitk.GetArrayViewFromImage(img) for img in src.layers]
        shifted = [{v: (tuple(np.add(lo, position)), tuple(np.add(hi, position)), n) for v, (lo, hi, n) in s.items()}
                   for s in stats]
        return _Aligned(arrays, position, shifted, keep=list(src.layers))
    # another grid: resample (nearest neighbour, physical space) onto the lattice region covering the foreground
    boxes = [(lo, hi) for s in stats for (lo, hi, _n) in s.values()]
    lo, hi = _union_box(boxes)
    if lo is None:
        empty = [np.zeros((0, 0, 0), np.uint8) for _ in src.layers]
        return _Aligned(empty, np.zeros(3, int), [{} for _ in src.layers])
    if messages is not None:
        messages.progress(f"resampling {src.source} onto the reference grid (nearest neighbour)")
    img = src.geometry
    corners = []
    for kk in (lo[0] - 0.5, hi[0] - 0.5):
        for jj in (lo[1] - 0.5, hi[1] - 0.5):
            for ii in (lo[2] - 0.5, hi[2] - 0.5):
                p = img.TransformContinuousIndexToPhysicalPoint((ii, jj, kk))
                corners.append(lattice.TransformPhysicalPointToContinuousIndex(p))
    corners = np.array(corners)  # (i, j, k) continuous lattice indices
    start = np.floor(corners.min(axis=0)).astype(int) - 1
    stop = np.ceil(corners.max(axis=0)).astype(int) + 2
    if within_lattice:
        start = np.maximum(start, 0)
        stop = np.minimum(stop, np.array(lattice.GetSize()))
        if np.any(stop <= start):
            empty = [np.zeros((0, 0, 0), np.uint8) for _ in src.layers]
            return _Aligned(empty, np.zeros(3, int), [{} for _ in src.layers])
    size = [int(v) for v in stop - start]
    origin = lattice.TransformContinuousIndexToPhysicalPoint([float(v) for v in start])
    resampled = []
    for layer in src.layers:
        resampled.append(sitk.Resample(layer, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin,
                                       lattice.GetSpacing(), lattice.GetDirection(), 0, layer.GetPixelID()))
    offset = start[::-1].copy()
    arrays = [sitk.GetArrayViewFromImage(r) for r in resampled]
    shifted = [{v: (tuple(np.add(lo_, offset)), tuple(np.add(hi_, offset)), n)
                for v, (lo_, hi_, n) in _layer_stats(r).items()} for r in resampled]
    return _Aligned(arrays, offset, shifted, keep=resampled)


def _crop(aligned: _Aligned, layer: int, value: int, lo, hi) -> np.ndarray:
    """Boolean mask of ``value`` in the lattice box [lo, hi) (zeros where the input has no voxels): the heat map's
    crop (heatmap.py)."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    out = np.zeros(tuple(hi - lo), dtype=bool)
    arr = aligned.arrays[layer]
    a_lo = np.maximum(lo, aligned.offset)
    a_hi = np.minimum(hi, aligned.offset + np.array(arr.shape))
    if np.any(a_hi <= a_lo):
        return out
    dst = tuple(slice(int(s - o), int(e - o)) for s, e, o in zip(a_lo, a_hi, lo))
    src = tuple(slice(int(s - o), int(e - o)) for s, e, o in zip(a_lo, a_hi, aligned.offset))
    np.equal(arr[src], value, out=out[dst])
    return out


def on_lattice(src: LabelSource, lattice, messages=None) -> LabelSource:
    """``src`` with its layers on ``lattice``'s voxel lattice: itself when already there (any crop of it), else
    resampled nearest neighbour (physical space, identity) onto the part of the lattice image that covers its
    foreground — the same voxels a resampling onto the whole lattice image gives, without the empty rest;
    ``None`` when nothing of it lies within the lattice image (the caller resamples onto the whole image)."""
    if _lattice_position(src.geometry, lattice) is not None:
        return src
    aligned = _align(src, lattice, messages, within_lattice=True)
    if not aligned.keep:  # nothing in any layer, or nothing within the lattice image
        return None
    return LabelSource(src.source, list(aligned.keep), list(src.segments))


def _box_runs(aligned: _Aligned, layer: int, value: int, lo, shape):
    """Runs along i (segment_kernels.runs) of ``value`` in the lattice box at ``lo`` of ``shape`` (nothing where
    the input has no voxels), read straight from the aligned layer."""
    from . import segment_kernels as sk

    return sk.box_runs(aligned.arrays[layer], value, np.asarray(lo) - aligned.offset, shape)


def match_segments(reference: LabelSource, compared: LabelSource, by: str = "label"):
    """Pairs ``(label, name, reference Segment | None, compared Segment | None)``: every segment of either side.

    ``by="label"`` matches label values, ``by="name"`` segment names (order: reference's, then compared-only).
    """
    def key(seg):
        return seg.label if by == "label" else seg.name

    for src in (reference, compared):
        seen = {}
        for seg in src.segments:
            k = key(seg)
            if k in seen:
                raise BadInputError(src.source, f"segments '{seen[k].name}' and '{seg.name}' share the {by} {k!r}; "
                                    f"cannot match segments by {by}")
            seen[k] = seg
    cmp_by_key = {key(s): s for s in compared.segments}
    pairs = []
    for seg in reference.segments:
        other = cmp_by_key.pop(key(seg), None)
        # a plain labelmap names its segments by value: prefer the other side's real name when it has one
        name = other.name if other is not None and seg.name == str(seg.label) else seg.name
        pairs.append((seg.label, name, seg, other))
    for seg in compared.segments:
        if key(seg) in cmp_by_key:
            pairs.append((seg.label, seg.name, None, seg))
    if by == "label":
        pairs.sort(key=lambda p: p[0])
    return pairs


def compare_sources(reference: LabelSource, compared: LabelSource, percentile: float = DEFAULT_PERCENTILE,
                    by: str = "label", lattice=None, messages=None, reference_volumes=None,
                    compared_volumes=None, pairs=None, nsd_tolerances=None, nsd_tolerance_of=None) -> list[dict]:
    """Compare every matched segment pair of two label sources; the comparison grid is ``lattice``'s voxel lattice
    (default: the reference's), extended as needed so that no voxel of either input is lost.

    ``pairs``: explicit ``(label, name, reference Segment | None, compared Segment | None)`` list (default:
    :func:`match_segments` by ``by``). ``reference_volumes`` / ``compared_volumes``: optional {segment name: cc}
    overriding own-grid volumes. ``nsd_tolerances``: NSD tolerances in mm (default 2). ``nsd_tolerance_of``:
    segment name -> its own NSD tolerance (mm) or None (a tolerance profile's; surface.segment_nsd).
    """
    from . import segment_kernels as sk

    percentile = check_percentile(percentile)
    tolerances = surface.check_tolerances(nsd_tolerances)
    lattice = reference.geometry if lattice is None else lattice
    spacing = lattice.GetSpacing()
    voxel_cc = _voxel_cc(lattice)
    if pairs is None:
        pairs = match_segments(reference, compared, by)
    ref = _align(reference, lattice, messages)
    cmp = _align(compared, lattice, messages)
    ref_own = [{v: n for v, (_lo, _hi, n) in reference.stats(i).items()} for i in range(len(reference.layers))]
    cmp_own = [{v: n for v, (_lo, _hi, n) in compared.stats(i).items()} for i in range(len(compared.layers))]
    results = []
    for n, (label, name, rseg, cseg) in enumerate(pairs):
        if messages is not None:
            messages.progress(f"segment {name}", n / max(1, len(pairs)))
        r_stat = ref.stats[rseg.layer].get(rseg.label) if rseg else None
        c_stat = cmp.stats[cseg.layer].get(cseg.label) if cseg else None
        ref_cc = _own_volume(reference, rseg, ref_own, reference_volumes)
        cmp_cc = _own_volume(compared, cseg, cmp_own, compared_volumes)
        hint = None
        if rseg is None:
            hint = f"not in {reference.source}: distances undefined"
        elif cseg is None:
            hint = f"not in {compared.source}: distances undefined"
        elif r_stat is None and ref_cc > 0:
            hint = "reference segment is empty on the comparison grid: distances undefined"
        elif c_stat is None and cmp_cc > 0:
            hint = "compared segment is empty on the comparison grid after resampling: distances undefined"
        lo, hi = _union_box([(s[0], s[1]) for s in (r_stat, c_stat) if s is not None])
        if lo is None:
            empty = np.zeros((0, 0, 0), bool)
            m, a_runs = _measure(empty, empty, spacing, voxel_cc, ref_cc, cmp_cc, percentile, hint)
            shape = empty.shape
        else:
            lo = np.array(lo) - 1
            hi = np.array(hi) + 1
            shape = tuple(int(v) for v in hi - lo)
            a_runs = _box_runs(ref, rseg.layer, rseg.label, lo, shape) if r_stat else sk.empty_runs(shape)
            b_runs = _box_runs(cmp, cseg.layer, cseg.label, lo, shape) if c_stat else sk.empty_runs(shape)
            m, a_runs = _measure_pair(_pair_of_runs(a_runs, b_runs, shape), spacing, voxel_cc, ref_cc, cmp_cc,
                                      percentile, hint)
        m.nsd_tolerances = tolerances
        results.append(result_dict(m, label, name))
        results[-1].update(surface.segment_nsd(m, name, nsd_tolerance_of))
        results[-1]["shifted_self_dice"] = surface.worst_shifted_dice_of_runs(a_runs, shape, spacing,
                                                                              lattice.GetDirection())
    return results


def _own_volume(src: LabelSource, seg, own: list, overrides) -> float:
    if seg is None:
        return 0.0
    if overrides and seg.name in overrides:
        return float(overrides[seg.name])
    return own[seg.layer].get(seg.label, 0) * _voxel_cc(src.geometry)


def compare_labelmaps(reference_image, compared_image, percentile: float = DEFAULT_PERCENTILE, labels=None,
                      names: dict | None = None, messages=None, nsd_tolerances=None) -> list[dict]:
    """Compare two integer labelmaps (SimpleITK images, LPS) label by label -> list of result dicts.

    Every non-zero label of either image is reported (``labels`` restricts to these values); ``names`` maps label
    values to segment names. The compared image, when on another grid, is resampled (nearest neighbour, physical
    space) onto the reference's voxel lattice; volumes are counted on each image's own grid.
    """
    ref = labelmap_source(reference_image, "reference", names, labels)
    cmp = labelmap_source(compared_image, "compared", names, labels)
    return compare_sources(ref, cmp, percentile, by="label", messages=messages, nsd_tolerances=nsd_tolerances)


# ---------------------------------------------------------------------------------------------------
# MRML: segmentation nodes and labelmap volume nodes, parent transforms honoured
# ---------------------------------------------------------------------------------------------------
def _vtk4(m) -> np.ndarray:
    from .io import vtk_to_matrix

    return vtk_to_matrix(m)


def _oriented_to_image(oi):
    """SimpleITK image (LPS) of a vtkOrientedImageData: its voxels and geometry (extent start included)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from .io import geometry_from_ijk_to_ras

    sitk = _sitk()
    ext = oi.GetExtent()
    dims = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    scalars = oi.GetPointData().GetScalars()
    m = vtkMatrix4x4()
    oi.GetImageToWorldMatrix(m)
    ijk_to_ras = _vtk4(m)
    ijk_to_ras[:, 3] = ijk_to_ras @ np.array([ext[0], ext[2], ext[4], 1.0])
    if min(dims) <= 0 or scalars is None:
        arr = np.zeros((1, 1, 1), np.uint8)
    else:
        arr = np.array(vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0]), copy=True)
    image = sitk.GetImageFromArray(arr)
    origin, spacing, direction = geometry_from_ijk_to_ras(ijk_to_ras)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def _common_geometry(images):
    """The images brought onto one grid: the first image's lattice over the union of their extents (pasted when
    on the same lattice, nearest-neighbour resampled otherwise)."""
    sitk = _sitk()
    base = images[0]
    if all(img.GetSize() == base.GetSize() and _lattice_position(img, base) is not None
           and not _lattice_position(img, base).any() for img in images):
        return list(images)
    corners = []
    for img in images:
        size = img.GetSize()
        for c in np.ndindex(2, 2, 2):
            idx = [(-0.5 if c[d] == 0 else size[d] - 0.5) for d in range(3)]
            corners.append(base.TransformPhysicalPointToContinuousIndex(img.TransformContinuousIndexToPhysicalPoint(idx)))
    corners = np.array(corners)
    start = np.floor(corners.min(axis=0) + 0.5 - 1e-6).astype(int)
    stop = np.ceil(corners.max(axis=0) - 0.5 + 1e-6).astype(int) + 1
    size = [int(v) for v in stop - start]
    origin = base.TransformContinuousIndexToPhysicalPoint([float(v) for v in start])
    out = []
    for img in images:
        pos = _lattice_position(img, base)
        if pos is not None:
            arr = np.zeros(size[::-1], sitk.GetArrayViewFromImage(img).dtype)
            o = pos - start[::-1]
            sz = np.array(img.GetSize()[::-1])
            arr[o[0]:o[0] + sz[0], o[1]:o[1] + sz[1], o[2]:o[2] + sz[2]] = sitk.GetArrayViewFromImage(img)
            new = sitk.GetImageFromArray(arr)
            new.SetOrigin(origin)
            new.SetSpacing(base.GetSpacing())
            new.SetDirection(base.GetDirection())
        else:
            new = sitk.Resample(img, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin, base.GetSpacing(),
                                base.GetDirection(), 0, img.GetPixelID())
        out.append(new)
    return out


def _node_label_source(node, segment_ids=None) -> tuple[LabelSource, list]:
    """LabelSource of a segmentation or labelmap volume node in the node's own frame, and the segments in the
    requested order (``segment_ids``: segment IDs, or label values for labelmap nodes; default all)."""
    from .io import as_integer_labelmap, volume_to_image

    name = f"node '{node.GetName()}'"
    if node.IsA("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        ids = list(segment_ids) if segment_ids is not None else [segmentation.GetNthSegmentID(i)
                                                                for i in range(segmentation.GetNumberOfSegments())]
        if not segmentation.ContainsRepresentation("Binary labelmap"):
            import slicer  # vtkSegmentation; the conversion runs on a copy: the input node is not modified

            copy = slicer.vtkSegmentation()
            copy.DeepCopy(segmentation)
            if not copy.CreateRepresentation("Binary labelmap"):
                raise BadInputError(name, "could not create the binary labelmap representation of the segments")
            segmentation = copy
        layers, layer_of, segments = [], {}, []
        for sid in ids:
            segment = segmentation.GetSegment(str(sid))
            if segment is None:
                raise BadInputError(name, f"has no segment with ID '{sid}'")
            layer_index = segmentation.GetLayerIndex(str(sid), "Binary labelmap") if hasattr(
                segmentation, "GetLayerIndex") else len(layer_of)
            if layer_index not in layer_of:
                rep = segment.GetRepresentation("Binary labelmap")
                if rep is None:
                    raise BadInputError(name, f"segment '{segment.GetName()}' has no binary labelmap")
                layer_of[layer_index] = len(layers)
                layers.append(as_integer_labelmap(_oriented_to_image(rep), name))
            segments.append(Segment(segment.GetName(), int(segment.GetLabelValue() or 1), layer_of[layer_index]))
        if not layers:
            raise BadInputError(name, "has no segments")
        layers = crop_to_foreground(_common_geometry(layers))
        return LabelSource(name, layers, segments), list(zip(ids, segments))
    if node.IsA("vtkMRMLLabelMapVolumeNode") or node.IsA("vtkMRMLScalarVolumeNode"):
        image = as_integer_labelmap(volume_to_image(node), name)
        src = labelmap_source(image, name)
        if segment_ids is not None:
            try:
                wanted = [int(v) for v in segment_ids]
            except (TypeError, ValueError):
                raise BadInputError(name, f"segment IDs of a labelmap are label values, not {list(segment_ids)}") \
                    from None
            src.segments = [Segment(str(v), v, 0) for v in wanted]
        return src, [(str(s.label), s) for s in src.segments]
    raise BadInputError(name, f"is a {node.GetClassName()}; a segmentation or labelmap volume node is needed")


def _world_matrix(transform_node):
    """RAS 4×4 node-to-world matrix of a linear transform chain (identity without transform)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    if transform_node is None:
        return np.eye(4)
    m = vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(m)
    return _vtk4(m)


def _with_ijk_to_ras(image, ijk_to_ras):
    from .io import geometry_from_ijk_to_ras

    sitk = _sitk()
    out = sitk.Image(image)
    origin, spacing, direction = geometry_from_ijk_to_ras(ijk_to_ras)
    out.SetOrigin(origin)
    out.SetSpacing(spacing)
    out.SetDirection(direction)
    return out


def _orthogonal(ijk_to_ras) -> bool:
    a = np.asarray(ijk_to_ras)[:3, :3]
    g = a.T @ a
    return bool(np.allclose(g - np.diag(np.diag(g)), 0, atol=1e-6 * float(np.max(np.diag(g)))))


def _to_world(ctx, src: LabelSource, transform_node, lattice=None) -> LabelSource:
    """``src`` (in its node's frame) in world coordinates through ``transform_node`` (the node's parent).

    Linear transforms that keep the grid orthogonal move the grid (no resampling; volumes exact). Others
    (non-linear, shear) resample the layers nearest-neighbour onto ``lattice`` (default: the source's own grid),
    over a region covering the transformed segments.
    """
    from .io import image_ijk_to_ras

    if transform_node is None:
        return src
    if transform_node.IsTransformToWorldLinear():
        m = _world_matrix(transform_node)
        moved = [m @ image_ijk_to_ras(img) for img in src.layers]
        if all(_orthogonal(x) for x in moved):
            return LabelSource(src.source, [_with_ijk_to_ras(img, x) for img, x in zip(src.layers, moved)],
                               src.segments)
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    from .resample import resample_image

    sitk = _sitk()
    to_world = vtkGeneralTransform()
    transform_node.GetTransformToWorld(to_world)
    lattice = src.geometry if lattice is None else lattice
    corners = []
    for layer in range(len(src.layers)):
        for lo, hi, _n in src.stats(layer).values():
            for c in np.ndindex(2, 2, 2):
                kji = [(lo[d] - 0.5) if c[d] == 0 else (hi[d] - 0.5) for d in range(3)]
                p = src.layers[layer].TransformContinuousIndexToPhysicalPoint(kji[::-1])
                ras = to_world.TransformPoint(-p[0], -p[1], p[2])
                corners.append(lattice.TransformPhysicalPointToContinuousIndex((-ras[0], -ras[1], ras[2])))
    if not corners:
        return src
    corners = np.array(corners)
    margin = 2 + np.ceil(0.1 * (corners.max(axis=0) - corners.min(axis=0))).astype(int)
    start = np.floor(corners.min(axis=0)).astype(int) - margin
    stop = np.ceil(corners.max(axis=0)).astype(int) + margin + 1
    grid = sitk.Image([int(v) for v in stop - start], sitk.sitkUInt8)
    grid.SetOrigin(lattice.TransformContinuousIndexToPhysicalPoint([float(v) for v in start]))
    grid.SetSpacing(lattice.GetSpacing())
    grid.SetDirection(lattice.GetDirection())
    layers = [resample_image(ctx, img, grid, transform_node=transform_node, interpolation="nearest")
              for img in src.layers]
    return LabelSource(src.source, layers, src.segments)


def compare_segments(ctx, reference_node, compared_node, reference_segment_ids=None, compared_segment_ids=None,
                     reference_volume=None, percentile: float = DEFAULT_PERCENTILE, table_node=None,
                     table_name: str = "Segment comparison"):
    """Compare segments of two segmentation / labelmap volume nodes in world space -> (results, table node).

    * Pairs: ``reference_segment_ids[i]`` with ``compared_segment_ids[i]`` when both are given (segment IDs;
      label values for labelmap nodes); otherwise every segment of either node, matched by name when both are
      segmentation nodes, else by label value.
    * Comparison grid: the reference's voxel lattice (its segments' binary labelmap geometry, or the labelmap's
      grid), or ``reference_volume``'s when given; extended as needed so that no voxel is lost.
    * Parent transforms of either node are honoured: linear ones move the grid exactly (no resampling, volumes
      exact); non-linear ones resample the segments nearest-neighbour onto the comparison lattice (volumes then
      counted after warping).
    * Results: list of dicts (JSON shape of the CLI, plus ``reference_segment`` / ``compared_segment`` names and
      IDs) and a vtkMRMLTableNode (one row per pair, units in column names; ``table_node`` is filled when given).
      Input nodes are not modified.
    """
    from .io import rows_to_table_node

    percentile = check_percentile(percentile)
    if reference_node is None or compared_node is None:
        raise BadInputError("compare_segments", "a reference and a compared node are needed")
    ref_local, ref_ids = _node_label_source(reference_node, reference_segment_ids)
    cmp_local, cmp_ids = _node_label_source(compared_node, compared_segment_ids)
    lattice = None
    if reference_volume is not None:
        from .io import image_ijk_to_ras, volume_to_image

        parent = reference_volume.GetParentTransformNode()
        if parent is not None and not parent.IsTransformToWorldLinear():
            raise BadInputError(reference_volume, "reference volume has a non-linear parent transform; harden it "
                                "or choose another grid")
        vol = volume_to_image(reference_volume)
        m = _world_matrix(parent) @ image_ijk_to_ras(vol)
        if not _orthogonal(m):
            raise BadInputError(reference_volume, "reference volume grid is sheared by its parent transform")
        lattice = _with_ijk_to_ras(vol, m)
    reference = _to_world(ctx, ref_local, reference_node.GetParentTransformNode(), lattice)
    compared = _to_world(ctx, cmp_local, compared_node.GetParentTransformNode(), lattice or reference.geometry)
    if reference_segment_ids is not None and compared_segment_ids is not None:
        if len(ref_ids) != len(cmp_ids):
            raise BadInputError("compare_segments", f"{len(ref_ids)} reference and {len(cmp_ids)} compared segment "
                                "IDs: give one compared segment per reference segment")
        pairs = [(r.label, r.name, r, c) for (_i, r), (_j, c) in zip(ref_ids, cmp_ids)]
        ids = [(i, j) for (i, _r), (j, _c) in zip(ref_ids, cmp_ids)]
    else:
        by = "name" if reference_node.IsA("vtkMRMLSegmentationNode") and compared_node.IsA(
            "vtkMRMLSegmentationNode") else "label"
        pairs = match_segments(reference, compared, by)
        ref_id_of = {id(s): i for i, s in ref_ids}
        cmp_id_of = {id(s): i for i, s in cmp_ids}
        ids = [(ref_id_of.get(id(r)), cmp_id_of.get(id(c))) for _l, _n, r, c in pairs]
    results = compare_sources(reference, compared, percentile, lattice=lattice, pairs=pairs)
    for result, (_l, _n, r, c), (rid, cid) in zip(results, pairs, ids):
        result["reference_segment"] = r.name if r else None
        result["compared_segment"] = c.name if c else None
        result["reference_segment_id"] = rid
        result["compared_segment_id"] = cid
    rows = [result_row(r, percentile) for r in results]
    table = rows_to_table_node(ctx, rows, table_name, node=table_node,
                               column_properties=measures.column_properties("segment", percentile))
    return results, table


# ---------------------------------------------------------------------------------------------------
# Files and the CLI
# ---------------------------------------------------------------------------------------------------
SEGMENTATION_EXTENSIONS = (".seg.nrrd", ".seg.nhdr")


def read_segmentation_file(path) -> LabelSource:
    """Segments of a Slicer ``.seg.nrrd`` read directly with SimpleITK (layers = the file's label layers).

    Uses the ``SegmentN_Name`` / ``SegmentN_LabelValue`` / ``SegmentN_Layer`` header fields Slicer writes; the
    voxel positions come from the NRRD space origin/directions (Slicer may crop the file to the segments' extent;
    physical positions are unchanged). Files without segment fields: every non-zero label is a segment.
    """
    from .io import _itk_reason, _name, read_image_information

    sitk = _sitk()
    name = _name(path)
    reader = read_image_information(path)
    dim = reader.GetDimension()
    if dim != 3:
        raise BadInputError(name, f"{dim}D image; a 3D segmentation is needed")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise BadInputError(name, _itk_reason(exc, data=True) or "could not read the voxel data") from None
    keys = set(reader.GetMetaDataKeys())
    n_layers = image.GetNumberOfComponentsPerPixel()
    if n_layers == 1:
        layers = [image]
    else:
        layers = [sitk.VectorIndexSelectionCast(image, i) for i in range(n_layers)]
    from .io import as_integer_labelmap

    layers = crop_to_foreground([as_integer_labelmap(layer, name) for layer in layers])
    segments = []
    i = 0
    while f"Segment{i}_ID" in keys or f"Segment{i}_Name" in keys:
        def meta(field_name, default, i=i):
            key = f"Segment{i}_{field_name}"
            return reader.GetMetaData(key) if key in keys else default

        seg_name = meta("Name", meta("ID", f"Segment_{i}"))
        try:
            label = int(meta("LabelValue", "1"))
            layer = int(meta("Layer", "0"))
        except ValueError:
            raise BadInputError(name, f"segment '{seg_name}': Segment{i}_LabelValue '{meta('LabelValue', '1')}' / "
                                f"Segment{i}_Layer '{meta('Layer', '0')}' must be integers") from None
        if not 0 <= layer < n_layers:
            raise BadInputError(name, f"segment '{seg_name}' is in layer {layer}, the file has {n_layers}")
        segments.append(Segment(seg_name, label, layer))
        i += 1
    src = LabelSource(name, layers, segments)
    if not segments:  # a plain labelmap saved with a .seg.nrrd name
        for layer_index in range(len(layers)):
            segments += [Segment(str(v), v, layer_index) for v in sorted(src.stats(layer_index))]
    return src


def read_label_source(path) -> tuple[LabelSource, bool]:
    """(segments of a labelmap file or .seg.nrrd, whether it is a segmentation file with named segments)."""
    from .io import _name, file_extension, read_labelmap

    if file_extension(path) in SEGMENTATION_EXTENSIONS:
        return read_segmentation_file(path), True
    return labelmap_source(read_labelmap(path), _name(path)), False


def compare_files(reference_path, compared_path, percentile: float = DEFAULT_PERCENTILE, messages=None,
                  nsd_tolerances=None) -> dict:
    """``{"percentile", "reference", "compared", "matched_by", "segments": [...]}`` for two files.

    Segments are matched by name when both files are ``.seg.nrrd``, else by label value.
    """
    percentile = check_percentile(percentile)
    if messages is not None:
        messages.progress("reading inputs")
    ref, ref_named = read_label_source(reference_path)
    cmp, cmp_named = read_label_source(compared_path)
    by = "name" if (ref_named and cmp_named) else "label"
    segments = compare_sources(ref, cmp, percentile, by=by, messages=messages, nsd_tolerances=nsd_tolerances)
    return {"percentile": percentile, "reference": ref.source, "compared": cmp.source, "matched_by": by,
            "segments": segments}
