"""Surface figures of one segment pair beyond Dice and Hausdorff: NSD, signed distances, Dice under a shift.

Every figure here reuses the boundary voxels and the boundary distances of :mod:`metrics` (one
implementation): ``∂A``/``∂B`` are the 6-connected boundary voxels of the reference ``A`` and the compared
``B`` on the comparison grid, ``D(A→B) = {d(a, ∂B) : a ∈ ∂A}`` and ``D(B→A)`` the exact Euclidean distances
(mm) between voxel centres (docs/metrics.md).

* **Normalised surface Dice** at tolerance τ (Nikolov et al., J Med Internet Res 23(7):e26151, 2021, counted
  on boundary voxels instead of surfels)::

      NSD_τ = (|{a ∈ ∂A : d(a, ∂B) ≤ τ}| + |{b ∈ ∂B : d(b, ∂A) ≤ τ}|) / (|∂A| + |∂B|)

  0 when exactly one side is empty, null when both are (like Dice). A distance equal to τ is within (compared
  with a 1e-6 relative slack for rounding).
* **Signed surface distance** of each compared boundary voxel ``b ∈ ∂B``: ``s(b) = d(b, ∂A)``, negative when
  ``b`` lies inside the reference segment ``A`` (0 on ``∂A``). Positive = the compared (registered) segment
  sticks out of the reference there; negative = it falls short (lies inside). Summaries: mean, 5th/95th
  percentiles (numpy linear interpolation), the largest outward excursion ``max(max s, 0)`` and the largest
  inward one ``max(max −s, 0)`` (both as positive mm), and a histogram.
* **Dice under a shift** ("how much a Dice can hide"): the Dice of ``A`` with itself translated by ``δ`` mm
  along ±x, ±y, ±z (physical axes), the worst of the six. The translated indicator is trilinearly
  interpolated (the partial-volume overlap: exact for whole-voxel shifts), so
  ``Dice(A, A+t) = Σ_{p∈A} Ã(p − t) / |A|`` (a translation keeps the volume).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_NSD_TOLERANCES_MM = (2.0,)
# The field of a segment's before/after record holding the NSD at the segment's own tolerance (set by a tolerance
# profile, min_nsd ``tolerance_mm``): {"tolerance_mm": τ, "value": NSD_τ}; absent when no profile sets one.
NSD_AT_TOLERANCE = "nsd_at_tolerance"

# The result keys added to metrics.result_dict, with their one-line definitions ({t}: a tolerance, {d}: a shift).
DEFINITIONS = {
    "nsd_{t}mm": "normalised surface Dice at tolerance t mm: boundary voxels of either segment within t mm of the "
                 "other's boundary / all boundary voxels; 0 if one side is empty, null if both are",
    "signed_distance.mean_mm": "mean signed distance of the compared boundary voxels to the reference boundary "
                               "(negative inside the reference)",
    "signed_distance.p5_mm": "5th percentile of the signed distances",
    "signed_distance.p95_mm": "95th percentile of the signed distances",
    "signed_distance.max_outward_mm": "largest outward excursion: max(max signed distance, 0)",
    "signed_distance.max_inward_mm": "largest inward excursion: max(−min signed distance, 0)",
    "signed_distance.voxels": "compared boundary voxels",
    "signed_distance.histogram": "histogram of the signed distances (edges_mm, counts)",
    "shifted_self_dice.{d}mm": "Dice of the reference segment with itself shifted by d mm, worst of ±x, ±y, ±z",
}
SHIFTS_MM = (1.0, 2.0)
HISTOGRAM_MAX_BINS = 40


def tolerance_key(tolerance_mm: float) -> str:
    """JSON key of NSD at ``tolerance_mm``: ``nsd_2mm``, ``nsd_1_5mm``."""
    return "nsd_" + f"{float(tolerance_mm):g}".replace(".", "_") + "mm"


def shift_key(shift_mm: float) -> str:
    return f"{float(shift_mm):g}".replace(".", "_") + "mm"


def check_tolerances(tolerances) -> tuple:
    """Sorted unique positive finite tolerances (mm) or BadInputError naming ``--nsd-tolerance``."""
    from .errors import BadInputError

    values = []
    for t in tolerances if tolerances is not None else DEFAULT_NSD_TOLERANCES_MM:
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise BadInputError("--nsd-tolerance", f"'{t}' is not a number") from None
        if not (math.isfinite(v) and v > 0):
            raise BadInputError("--nsd-tolerance", f"{t} mm: a tolerance must be a positive number of mm")
        values.append(v)
    if not values:
        raise BadInputError("--nsd-tolerance", "no tolerance given")
    return tuple(sorted(set(values)))


def normalized_surface_dice(to_compared, to_reference, tolerance_mm: float, n_reference: int = 1,
                            n_compared: int = 1) -> float | None:
    """NSD_τ from the directed boundary distances ``D(A→B)``, ``D(B→A)`` (None: that side is empty)."""
    if to_compared is None or to_reference is None:
        return None if (n_reference == 0 and n_compared == 0) else 0.0
    total = to_compared.size + to_reference.size
    if total == 0:
        return None
    t = float(tolerance_mm) * (1.0 + 1e-6)  # rounding: a distance of exactly τ counts as within
    return (int(np.count_nonzero(to_compared <= t)) + int(np.count_nonzero(to_reference <= t))) / total


def nsd_record(to_compared, to_reference, tolerances, n_reference: int, n_compared: int) -> dict:
    """``{"nsd_2mm": value, ...}`` for every tolerance."""
    return {tolerance_key(t): normalized_surface_dice(to_compared, to_reference, t, n_reference, n_compared)
            for t in tolerances}


def segment_nsd(m, name, tolerance_of) -> dict:
    """``{"nsd_at_tolerance": {"tolerance_mm": τ, "value": NSD_τ}}`` for a pair ``m`` (PairMeasurement) whose
    segment ``name`` has its own tolerance (``tolerance_of(name)``: mm or None); ``{}`` otherwise."""
    tolerance = tolerance_of(name) if tolerance_of is not None else None
    if tolerance is None:
        return {}
    value = normalized_surface_dice(m.to_compared, m.to_reference, tolerance, m.n_reference, m.n_compared)
    return {NSD_AT_TOLERANCE: {"tolerance_mm": float(tolerance), "value": value}}


def signed_distances(to_reference, compared_inside_reference) -> np.ndarray | None:
    """``s(b)`` for every compared boundary voxel: ``d(b, ∂A)``, negative inside the reference segment."""
    if to_reference is None or compared_inside_reference is None:
        return None
    return np.where(compared_inside_reference, -to_reference, to_reference)


def _histogram_step(span: float, max_bins: int) -> float:
    raw = max(span, 1e-9) / max_bins
    exponent = math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = factor * 10.0 ** exponent
        if step >= raw * (1 - 1e-12):
            return step
    return 10.0 ** (exponent + 1)


def signed_histogram(signed: np.ndarray, max_bins: int = HISTOGRAM_MAX_BINS) -> dict:
    """Histogram of signed distances: bins of a 1-2-2.5-5 step centred on its multiples (so one bin is centred
    on 0 and holds the voxels on the reference boundary), at most ``max_bins``; a distance on an edge counts in
    the upper bin."""
    lo, hi = float(signed.min()), float(signed.max())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    step = _histogram_step(hi - lo, max_bins - 1)
    while True:
        first = math.floor(lo / step + 0.5)
        last = math.floor(hi / step + 0.5)
        if last - first + 1 <= max_bins:
            break
        step = _histogram_step(step * max_bins * 1.0001, max_bins - 1)
    edges = (np.arange(first, last + 2) - 0.5) * step
    # a distance exactly on an edge (e.g. 9.0 mm = 5 voxels of 1.8 mm) belongs to the upper bin (numpy's rule):
    # rounded to 1e-9 mm first so that its last-bit float error cannot put −9.000000000000002 below the edge
    counts, _ = np.histogram(np.round(signed, 9), bins=edges)
    return {"edges_mm": [round(float(e), 9) for e in edges], "counts": [int(c) for c in counts]}


SIGNED_KEYS = ("mean_mm", "p5_mm", "p95_mm", "max_outward_mm", "max_inward_mm", "voxels")


def signed_distance_summary(signed, status: str | None = None) -> dict:
    """Mean, 5th/95th percentiles, largest outward / inward excursion (positive mm), count and histogram."""
    if signed is None or signed.size == 0:
        out = dict.fromkeys(SIGNED_KEYS)
        out["voxels"] = 0
        out["histogram"] = None
        out["reason"] = status or "a segment is empty: signed distances undefined"
        return out
    p5, p95 = np.percentile(signed, [5.0, 95.0])
    return {
        "mean_mm": round(float(signed.mean(dtype=np.float64)), 6),
        "p5_mm": round(float(p5), 6),
        "p95_mm": round(float(p95), 6),
        "max_outward_mm": round(max(float(signed.max()), 0.0), 6),
        "max_inward_mm": round(max(-float(signed.min()), 0.0), 6),
        "voxels": int(signed.size),
        "histogram": signed_histogram(signed),
    }


# ---------------------------------------------------------------------------------------------------
# Dice under a shift
# ---------------------------------------------------------------------------------------------------
def _shifted_dice_of_runs(mask_runs, shape, n: int, shift_kji, overlaps=None) -> float | None:
    """``overlaps``: a dict caching |{p ∈ A : p + o ∈ A}| by integer offset o (shifts share corners)."""
    from . import segment_kernels as sk

    if n == 0:
        return None
    shift = np.asarray(shift_kji, dtype=float)
    base = np.floor(shift)
    frac = shift - base
    total = 0.0
    for corner in np.ndindex(2, 2, 2):
        w = 1.0
        for d in range(3):
            w *= frac[d] if corner[d] else 1.0 - frac[d]
        if w <= 1e-12:
            continue
        offset = tuple(int(v) for v in base + np.array(corner))
        if overlaps is None or offset not in overlaps:
            count = sk.overlap(mask_runs, mask_runs, shape, offset)
            if overlaps is None:
                total += w * count
                continue
            overlaps[offset] = count
        total += w * overlaps[offset]
    return total / n


def shifted_dice(mask: np.ndarray, shift_kji) -> float | None:
    """Dice of ``mask`` with itself translated by ``shift_kji`` voxels (float, trilinear partial volume).

    Each whole-voxel overlap ``|{p ∈ A : p + o ∈ A}|`` is counted on the mask's runs along i
    (segment_kernels.overlap); outside the array is outside the mask."""
    from . import segment_kernels as sk

    mask = np.asarray(mask, dtype=bool)
    runs = sk.runs(mask)
    return _shifted_dice_of_runs(runs, mask.shape, sk.mask_count(runs), shift_kji)


def worst_shifted_dice(mask: np.ndarray, spacing, direction=None, shifts_mm=SHIFTS_MM) -> dict:
    """``{"1mm": worst Dice over ±x, ±y, ±z, "2mm": ...}`` of a boolean (k, j, i) mask.

    ``spacing`` (x, y, z) mm and ``direction`` (row-major 3×3 cosines, SimpleITK order; identity when None)
    of its grid: a physical shift ``t`` is ``(D·S)^-1 t`` voxels (oblique grids shift along several axes).
    """
    from . import segment_kernels as sk

    mask = np.asarray(mask, dtype=bool)
    return worst_shifted_dice_of_runs(sk.runs(mask), mask.shape, spacing, direction, shifts_mm)


def worst_shifted_dice_of_runs(mask_runs, shape, spacing, direction=None, shifts_mm=SHIFTS_MM) -> dict:
    """:func:`worst_shifted_dice` of a mask given by its runs along i (segment_kernels.runs) and its shape."""
    from . import segment_kernels as sk

    n = sk.mask_count(mask_runs)
    overlaps: dict = {}
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    to_index = np.linalg.inv(d @ np.diag(np.asarray(spacing, dtype=float)))  # physical (x, y, z) -> (i, j, k)
    out = {}
    for delta in shifts_mm:
        values = []
        for axis in range(3):
            for sign in (1.0, -1.0):
                t = np.zeros(3)
                t[axis] = sign * float(delta)
                ijk = to_index @ t
                value = _shifted_dice_of_runs(mask_runs, shape, n, ijk[::-1], overlaps)
                if value is not None:
                    values.append(value)
        out[shift_key(delta)] = round(min(values), 9) if values else None
    return out


def dice_hiding_warnings(entries, min_dice: float | None, shift_mm: float = 2.0) -> list:
    """Warnings for segments whose Dice check passes although a ``shift_mm`` error would pass it too."""
    if min_dice is None:
        return []
    key = shift_key(shift_mm)
    out = []
    for entry in entries or []:
        after = entry.get("after") or {}
        dice = after.get("dice")
        shifted = (after.get("shifted_self_dice") or {}).get(key)
        if dice is None or shifted is None or dice < min_dice or shifted < min_dice:
            continue
        out.append(f"segment {entry.get('name')}: the Dice check (>= {min_dice:g}) cannot detect a {shift_mm:g} mm "
                   f"error: this segment shifted by {shift_mm:g} mm keeps Dice {shifted:.3f}; judge it by a more "
                   "sensitive measure (NSD, HD95, TRE or a smaller structure)")
    return out
