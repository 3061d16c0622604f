"""The measure registry: one entry per number the tool reports, and everything said about it.

Each :class:`Measure` holds its key (the ``metric`` name in ``metrics.csv``), where it lives in ``report.json``
(``applies_to`` section + ``field`` path inside a stage record), its title and short title (``{p}`` = the
Hausdorff percentile), unit, display digits, which direction is better, its pinned definition and reference,
and the function that computes it. Everything else is derived from here, never restated: the report page's
tables and units (:mod:`.report`), ``metrics.csv`` units, the panel's results table (:mod:`.panel`), the cohort
summary columns (:mod:`.cohort`) and which of them the review page lists as a case's key figures (``review``),
table-node column units and descriptions, and the checks (:mod:`.checks`).

Adding a measure = one entry in :data:`MEASURES` (or :func:`register`) + its function + its test:

* ``segment``: ``compute(m)`` receives the pair's :class:`~.metrics.PairMeasurement` (voxel counts, directed
  boundary distances in mm); evaluated for every segment, before and after registration.
* ``landmarks``: ``compute(distances)`` receives the finite TRE values (mm, 1-D float array, at least one
  value) of one stage; ``empty`` is the value when there is no landmark.
* ``deformation``: ``compute(sample)`` receives a :class:`DeformationSample` (the region's Jacobian values and
  displacement magnitudes, the grid spacing) once per run.
* ``similarity``: the built-in statistics only (one chunked pass in :func:`~.similarity.similarity`); a new
  similarity measure is added there, with its registry entry naming it in ``computed_by``.

Built-in deformation and similarity statistics are computed together in one pass by the function named in
``computed_by`` (chunked moments, joint histogram: one pass over a CT-sized grid, not one per number); their
``compute`` is None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEFAULT_PERCENTILE = 95.0
APPLIES_TO = ("segment", "landmarks", "deformation", "similarity")
# report.json section of each kind of measure
SECTIONS = {"segment": "segments", "landmarks": "landmarks", "deformation": "deformation",
            "similarity": "similarity"}


@dataclass(frozen=True)
class Measure:
    """One reported number (see the module docstring)."""

    key: str  # unique; the ``metric`` of metrics.csv
    applies_to: str  # segment | landmarks | deformation | similarity
    field: str  # dotted path inside a stage record (segment entry's before/after, landmarks' before/after, ...)
    title: str  # long title ({p} = Hausdorff percentile)
    short: str  # column header ({p} = Hausdorff percentile)
    unit: str  # mm, cc, %, voxels, intensity, ... ("" = a ratio)
    digits: int | None  # decimals shown; None = free format (intensities of unknown scale)
    better: str | None  # "higher", "lower" or None (neither: a count, a volume)
    definition: str
    reference: str = ""
    compute: Callable | None = None  # see the module docstring; None = computed by ``computed_by``
    computed_by: str = ""  # the library function that computes it (with others, in one pass)
    shown: bool = False  # in the report page's main tables, the panel's results table and the definitions
    empty: object = None  # landmarks: the value when there is no landmark (count: 0)
    cohort: tuple = ()  # cohort summary columns: (column name, stage); segment measures take the worst segment
    review: tuple = ()  # of those columns, the ones the cohort review page shows among a case's key figures
    panel: bool | None = None  # in the Slicer panel's compact results table (None: when ``shown``)
    # a family of fields (NSD at each tolerance): report -> [(field, short title)]; the panel shows each, the
    # cohort summary the first
    expand: Callable | None = None
    # the same before and after (a property of the fixed segment or a setting of the run): shown once
    stage_free: bool = False
    # the cohort cell of a segment measure, over the segments: "min", "max" or "abs" (largest magnitude, sign
    # kept); "" = the worst by ``better`` (lowest when higher is better, else highest)
    worst: str = ""
    panel_scale: float = 1.0  # the panel shows value × scale in ``panel_unit`` (fractions as percent)
    panel_unit: str | None = None
    panel_digits: int | None = None

    def __post_init__(self):
        if self.applies_to not in APPLIES_TO:
            raise ValueError(f"measure {self.key}: applies_to {self.applies_to!r} is not one of {APPLIES_TO}")
        if self.better not in ("higher", "lower", None):
            raise ValueError(f"measure {self.key}: better {self.better!r} is not higher / lower / None")
        if self.compute is None and not self.computed_by:
            raise ValueError(f"measure {self.key}: give its compute function (or the function computing it)")
        if not set(self.review) <= {column for column, _stage in self.cohort}:
            raise ValueError(f"measure {self.key}: review columns {self.review} are not among its cohort columns")

    def worst_of(self, values):
        """The cohort cell of a segment measure over its segments' values (see ``worst``)."""
        rule = self.worst or ("min" if self.better == "higher" else "max")
        if rule == "abs":
            return max(values, key=abs)
        return min(values) if rule == "min" else max(values)

    @property
    def worst_word(self) -> str:
        """How :meth:`worst_of` picks, in words (cohort plot titles)."""
        rule = self.worst or ("min" if self.better == "higher" else "max")
        return {"min": "Lowest", "max": "Largest", "abs": "Largest magnitude of"}[rule]

    @property
    def in_panel(self) -> bool:
        return self.shown if self.panel is None else self.panel

    @property
    def section(self) -> str:
        return SECTIONS[self.applies_to]

    @property
    def stages(self) -> tuple:
        return ("-",) if self.applies_to == "deformation" else ("before", "after")

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.better is None else self.better == "higher"

    def title_for(self, percentile=DEFAULT_PERCENTILE) -> str:
        return self.title.format(p=_p(percentile))

    def short_for(self, percentile=DEFAULT_PERCENTILE) -> str:
        return self.short.format(p=_p(percentile))

    def definition_for(self, percentile=DEFAULT_PERCENTILE) -> str:
        text = self.definition.format(p=_p(percentile))
        return f"{text}. Reference: {self.reference}" if self.reference else text

    def column_title(self, percentile=DEFAULT_PERCENTILE) -> str:
        """Table header with unit, e.g. ``HD95 (mm)``."""
        unit = f" ({self.unit})" if self.unit and self.unit not in ("voxels",) else ""
        return self.short_for(percentile) + unit

    def value_in(self, record):
        """This measure's value in a stage record (dict), None when absent."""
        value = record
        for part in self.field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value


def _p(percentile) -> str:
    try:
        return f"{float(percentile):g}"
    except (TypeError, ValueError):
        return "p"


def set_field(record: dict, field: str, value) -> None:
    """Put ``value`` at the dotted ``field`` path of ``record`` (nested dicts created)."""
    parts = field.split(".")
    node = record
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------------------
# Segment measures: functions of one pair's PairMeasurement (metrics.py); one small documented unit each
# ---------------------------------------------------------------------------------------------------
def dice(m) -> float | None:
    """Dice = 2|A∩B| / (|A|+|B|) on the comparison grid; 0 if one side is empty, None if both are.

    Reference: Dice LR, Ecology 26(3):297-302, 1945.
    """
    total = m.n_reference + m.n_compared
    return None if total == 0 else 2.0 * m.n_both / total


def jaccard(m) -> float | None:
    """Jaccard = |A∩B| / |A∪B| (= Dice / (2 − Dice)); 0 if one side is empty, None if both are.

    Reference: Jaccard P, New Phytologist 11(2):37-50, 1912.
    """
    union = m.n_reference + m.n_compared - m.n_both
    return None if union == 0 else m.n_both / union


def hausdorff(m) -> float | None:
    """HD = max(max D(A→B), max D(B→A)) in mm. Reference: Huttenlocher et al., IEEE PAMI 15(9), 1993."""
    if not m.has_distances:
        return None
    return max(m.directed("reference_to_compared", "max"), m.directed("compared_to_reference", "max"))


def hausdorff_percentile(m) -> float | None:
    """HDp = max(P_p(D(A→B)), P_p(D(B→A))) in mm, P_p = numpy percentile (linear interpolation).

    Equals MONAI ``compute_hausdorff_distance(percentile=p, directed=False)``; differs from plastimatch /
    SlicerRT "95% Hausdorff" (mean of the two directed percentiles).
    """
    if not m.has_distances:
        return None
    return max(m.directed("reference_to_compared", "percentile"), m.directed("compared_to_reference", "percentile"))


def mean_surface_distance(m) -> float | None:
    """ASSD = mean of D(A→B) ∪ D(B→A) pooled, in mm (MONAI ``compute_average_surface_distance(symmetric=True)``).

    Reference: Heimann et al., IEEE TMI 28(8):1251-1265, 2009 (average symmetric surface distance).
    """
    if not m.has_distances:
        return None
    n1, n2 = m.to_compared.size, m.to_reference.size
    return (float(m.to_compared.sum(dtype=np.float64)) + float(m.to_reference.sum(dtype=np.float64))) / (n1 + n2)


def _directed(direction: str, statistic: str) -> Callable:
    return lambda m: m.directed(direction, statistic)


_R2C, _C2R = "reference_to_compared", "compared_to_reference"
_DIRECTED_WORDS = {_R2C: ("Reference→compared", "reference", "compared"),
                   _C2R: ("Compared→reference", "compared", "reference")}
_STAT_WORDS = {"max": ("max", "max over {a} boundary voxels of the distance to the {b} boundary"),
               "percentile": ("{p}%", "{p}th percentile of the {a}→{b} boundary distances"),
               "mean": ("mean", "mean of the {a}→{b} boundary distances")}


def _directed_measures() -> list:
    out = []
    for direction, (arrow, a, b) in _DIRECTED_WORDS.items():
        for statistic, (word, text) in _STAT_WORDS.items():
            out.append(Measure(
                f"directed.{direction}.{statistic}_mm", "segment", f"directed.{direction}.{statistic}_mm",
                f"{arrow} {word} boundary distance", f"{arrow} {word}", "mm", 2, "lower",
                text.format(a=a, b=b, p="{p}"), compute=_directed(direction, statistic)))
    return out


WORST_FRACTION = 0.3


def worst_count(n: int, fraction: float = WORST_FRACTION) -> int:
    """How many landmarks "the worst 30 %" are: ``ceil(0.3·n)`` (at least 1 when n > 0). 0.3·n is rounded up so
    a single bad landmark of three is in it. (Learn2Reg's own "30" aggregate is ``np.quantile(per-case values,
    0.3)`` over the cases of a task, MDL-UzL/L2R evaluation/L2RTest/evaluation.py, a different statistic.)"""
    return 0 if n <= 0 else max(1, math.ceil(fraction * n - 1e-9))


def _nsd_fields(report: dict) -> list:
    """NSD's fields in a report: one per tolerance of the run (options.nsd_tolerances_mm, default 2 mm)."""
    tolerances = (report.get("options") or {}).get("nsd_tolerances_mm") or [2.0]
    return [("nsd_" + f"{float(t):g}".replace(".", "_") + "mm", f"NSD {float(t):g} mm") for t in tolerances]


def _tre_statistic(function: Callable) -> Callable:
    return lambda v: float(function(v))


# ---------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------
_HD_DEFINITION = ("HD{p}: max of the two directed {p}th percentiles of the boundary-to-nearest-boundary "
                  "Euclidean distances between voxel centres (numpy linear interpolation); equals MONAI "
                  "compute_hausdorff_distance(percentile=…) with spacing. SlicerRT/plastimatch's '95% Hausdorff' is "
                  "the mean of the two directed percentiles instead")

MEASURES: list = [
    # -- segments (per segment, before and after) --------------------------------------------------
    Measure("dice", "segment", "dice", "Dice", "Dice", "", 3, "higher",
            "Dice = 2|A∩B| / (|A|+|B|) over voxels of the common (fixed) grid; 0 when exactly one side is empty, "
            "null when both are", "Dice LR, Ecology 26(3):297-302, 1945", compute=dice, shown=True,
            cohort=(("min_dice_before", "before"), ("min_dice_after", "after")), review=("min_dice_after",)),
    Measure("jaccard", "segment", "jaccard", "Jaccard", "Jaccard", "", 3, "higher",
            "Jaccard = |A∩B| / |A∪B| (= Dice / (2 − Dice)); 0 when exactly one side is empty, null when both are",
            "Jaccard P, New Phytologist 11(2):37-50, 1912", compute=jaccard),
    Measure("hausdorff_percentile_mm", "segment", "hausdorff_percentile_mm", "HD{p} ({p}th percentile Hausdorff)",
            "HD{p}", "mm", 2, "lower", _HD_DEFINITION, "Huttenlocher DP et al., IEEE PAMI 15(9):850-863, 1993",
            compute=hausdorff_percentile, shown=True, cohort=(("max_hausdorff_percentile_after_mm", "after"),), review=("max_hausdorff_percentile_after_mm",)),
    Measure("hausdorff_mm", "segment", "hausdorff_mm", "Maximum Hausdorff", "HD max", "mm", 2, "lower",
            "max of the two directed maxima of boundary-to-nearest-boundary Euclidean distances between voxel "
            "centres (mm)", "Huttenlocher DP et al., IEEE PAMI 15(9):850-863, 1993", compute=hausdorff, shown=True),
    Measure("mean_surface_distance_mm", "segment", "mean_surface_distance_mm", "Mean surface distance (ASSD)",
            "Mean surface dist.", "mm", 2, "lower",
            "ASSD: mean of both directed boundary distance sets pooled together (MONAI "
            "compute_average_surface_distance(symmetric=True)); TG-132's mean distance to agreement (MDA)",
            "Heimann T et al., IEEE TMI 28(8):1251-1265, 2009", compute=mean_surface_distance, shown=True),
    Measure("nsd_2mm", "segment", "nsd_2mm", "Normalised surface Dice at 2 mm", "NSD 2 mm", "", 3, "higher",
            "boundary voxels of either segment within 2 mm of the other's boundary / all boundary voxels; 0 if one "
            "side is empty, null if both are (one nsd_<τ>mm key per --nsd-tolerance; 2 mm is the default)",
            "Nikolov S et al., J Med Internet Res 23(7):e26151, 2021", computed_by="surface.nsd_record", shown=False,
            panel=True, expand=_nsd_fields, cohort=(("min_nsd_before", "before"), ("min_nsd_after", "after")), review=("min_nsd_after",)),
    Measure("nsd_segment", "segment", "nsd_at_tolerance.value", "Normalised surface Dice at the segment's tolerance",
            "NSD at segment τ", "", 3, "higher",
            "NSD (as nsd_<τ>mm) at the tolerance τ the tolerance profile sets for this segment (min_nsd "
            "tolerance_mm, per segment or default; nsd_at_tolerance.tolerance_mm); absent when no profile sets one. "
            "The min_nsd check compares this value when present",
            "Nikolov S et al., J Med Internet Res 23(7):e26151, 2021 (organ-specific tolerances)",
            computed_by="surface.segment_nsd", panel=True,
            cohort=(("min_nsd_segment_tolerance_before", "before"), ("min_nsd_segment_tolerance_after", "after"))),
    Measure("nsd_segment_tolerance_mm", "segment", "nsd_at_tolerance.tolerance_mm",
            "NSD tolerance of the segment (tolerance profile)", "NSD τ of segment", "mm", 2, None,
            "the tolerance τ at which nsd_segment is computed: the profile's min_nsd tolerance_mm for this segment",
            computed_by="surface.segment_nsd", panel=True, stage_free=True),
    Measure("signed_distance_mean_mm", "segment", "signed_distance.mean_mm", "Signed distance mean",
            "Signed distance mean", "mm", 2, None, "mean signed distance of the compared boundary voxels to the "
            "reference boundary (negative inside the reference)", computed_by="surface.signed_distance_summary",
            panel=True, worst="abs", cohort=(("worst_signed_distance_mean_after_mm", "after"),)),
    Measure("signed_distance_p5_mm", "segment", "signed_distance.p5_mm", "Signed distance 5th percentile",
            "Signed distance p5", "mm", 2, None, "5th percentile of the signed distances (numpy linear "
            "interpolation): how far the registered boundary falls short, inside the reference",
            computed_by="surface.signed_distance_summary", panel=True, worst="min",
            cohort=(("min_signed_distance_p5_after_mm", "after"),)),
    Measure("signed_distance_p95_mm", "segment", "signed_distance.p95_mm", "Signed distance 95th percentile",
            "Signed distance p95", "mm", 2, None, "95th percentile of the signed distances (numpy linear "
            "interpolation): how far the registered boundary sticks out", computed_by="surface.signed_distance_summary",
            panel=True, cohort=(("max_signed_distance_p95_after_mm", "after"),)),
    Measure("signed_distance_max_outward_mm", "segment", "signed_distance.max_outward_mm",
            "Largest outward excursion", "Largest outward", "mm", 2, "lower",
            "max(max signed distance, 0): how far the registered segment sticks out of the reference at most",
            computed_by="surface.signed_distance_summary", panel=True,
            cohort=(("max_outward_after_mm", "after"),)),
    Measure("signed_distance_max_inward_mm", "segment", "signed_distance.max_inward_mm",
            "Largest inward excursion", "Largest inward", "mm", 2, "lower",
            "max(−min signed distance, 0): how far the registered boundary lies inside the reference at most",
            computed_by="surface.signed_distance_summary", panel=True,
            cohort=(("max_inward_after_mm", "after"),)),
    Measure("signed_distance_voxels", "segment", "signed_distance.voxels", "Boundary voxels of the signed distances",
            "Signed distance voxels", "voxels", 0, None, "compared (registered) boundary voxels the signed distances "
            "are taken over", computed_by="surface.signed_distance_summary"),
    Measure("shifted_self_dice_1mm", "segment", "shifted_self_dice.1mm", "Dice of itself shifted 1 mm",
            "Dice of itself shifted 1 mm", "", 3, None, "Dice of the fixed segment with itself shifted by 1 mm (worst "
            "of ±x, ±y, ±z, trilinear partial volume): a Dice check above it cannot see an error of that size",
            computed_by="surface.worst_shifted_dice", panel=True, stage_free=True,
            cohort=(("max_shifted_self_dice_1mm", "after"),)),
    Measure("shifted_self_dice_2mm", "segment", "shifted_self_dice.2mm", "Dice of itself shifted 2 mm",
            "Dice of itself shifted 2 mm", "", 3, None, "Dice of the fixed segment with itself shifted by 2 mm (worst "
            "of ±x, ±y, ±z): a Dice check above it cannot see an error of that size",
            computed_by="surface.worst_shifted_dice", panel=True, stage_free=True,
            cohort=(("max_shifted_self_dice_2mm", "after"),)),
    *_directed_measures(),
    Measure("reference_volume_cc", "segment", "reference_volume_cc", "Reference volume", "Reference volume", "cc",
            3, None, "reference voxel count × voxel volume, on its own grid", compute=lambda m: m.reference_cc),
    Measure("compared_volume_cc", "segment", "compared_volume_cc", "Compared volume", "Compared volume", "cc", 3,
            None, "compared voxel count × voxel volume, on its own grid", compute=lambda m: m.compared_cc),
    Measure("volume_difference_cc", "segment", "volume_difference_cc", "Volume difference", "Volume difference",
            "cc", 3, None, "compared volume − reference volume", compute=lambda m: m.compared_cc - m.reference_cc),
    Measure("false_positive_cc", "segment", "false_positive_cc", "False positive volume", "False positive", "cc", 3,
            "lower", "|B \\ A| × voxel volume, comparison grid",
            compute=lambda m: (m.n_compared - m.n_both) * m.voxel_cc),
    Measure("false_negative_cc", "segment", "false_negative_cc", "False negative volume", "False negative", "cc", 3,
            "lower", "|A \\ B| × voxel volume, comparison grid",
            compute=lambda m: (m.n_reference - m.n_both) * m.voxel_cc),
    # -- landmarks (all matched landmarks, before and after) -----------------------------------------
    Measure("tre_mean_mm", "landmarks", "mean_mm", "mean TRE", "Mean TRE", "mm", 2, "lower",
            "mean over matched landmarks of the target registration error", compute=_tre_statistic(np.mean),
            shown=True, cohort=(("mean_tre_before_mm", "before"), ("mean_tre_after_mm", "after")), review=("mean_tre_after_mm",)),
    Measure("tre_std_mm", "landmarks", "std_mm", "TRE standard deviation", "TRE std", "mm", 2, None,
            "population standard deviation (ddof 0) of the TRE over matched landmarks",
            compute=_tre_statistic(np.std)),
    Measure("tre_median_mm", "landmarks", "median_mm", "median TRE", "Median TRE", "mm", 2, "lower",
            "median of the TRE over matched landmarks", compute=_tre_statistic(np.median)),
    Measure("tre_p95_mm", "landmarks", "p95_mm", "95th percentile TRE", "TRE p95", "mm", 2, "lower",
            "95th percentile of the TRE over matched landmarks (numpy linear interpolation)",
            compute=lambda v: float(np.percentile(v, 95))),
    Measure("tre_max_mm", "landmarks", "max_mm", "maximum TRE (worst single landmark)", "Max TRE", "mm", 2, "lower",
            "largest TRE of any matched landmark", compute=_tre_statistic(np.max), shown=True,
            cohort=(("max_tre_after_mm", "after"),), review=("max_tre_after_mm",)),
    Measure("tre_worst30_mean_mm", "landmarks", "worst30_mean_mm", "mean of the worst 30 % TRE", "TRE worst 30 % mean",
            "mm", 2, "lower", "mean of the ceil(0.3·n) largest TREs (at least one landmark)",
            compute=lambda v: float(np.mean(np.sort(v)[-worst_count(v.size):])), shown=True,
            cohort=(("tre_worst30_before_mm", "before"), ("tre_worst30_after_mm", "after")), review=("tre_worst30_after_mm",)),
    Measure("tre_improved_fraction", "landmarks", "improved_fraction", "Fraction of landmarks whose error decreased",
            "Landmarks improved", "", 2, "higher", "share of matched landmarks whose TRE after is below their TRE "
            "before (after stage only)", computed_by="landmarks.improved_fraction", shown=True, panel_scale=100.0,
            panel_unit="%", panel_digits=0,
            cohort=(("tre_improved_fraction", "after"),)),
    Measure("tre_count", "landmarks", "count", "Matched landmarks", "Landmarks", "", 0, None,
            "number of landmark pairs matched by label with finite TRE", compute=lambda v: int(v.size), empty=0),
    # -- deformation (the transform on the fixed grid, one value per run) -----------------------------
    Measure("jacobian_min", "deformation", "jacobian.min", "Minimum Jacobian determinant", "J min", "", 3, None,
            "smallest J = det(I + ∂u/∂x) over the region", computed_by="deformation.jacobian_statistics",
            shown=True),
    Measure("jacobian_max", "deformation", "jacobian.max", "Maximum Jacobian determinant", "J max", "", 3, None,
            "largest J over the region", computed_by="deformation.jacobian_statistics", shown=True),
    Measure("jacobian_mean", "deformation", "jacobian.mean", "Mean Jacobian determinant", "J mean", "", 3, None,
            "mean J over the region (1 = volume preserved on average)", computed_by="deformation.jacobian_statistics",
            shown=True, panel=False),
    Measure("jacobian_std", "deformation", "jacobian.std", "Jacobian standard deviation", "J std", "", 3, "lower",
            "population standard deviation of J over the region", computed_by="deformation.jacobian_statistics",
            shown=True, panel=False),
    Measure("jacobian_folding_percent", "deformation", "jacobian.folding_percent", "Folding (J ≤ 0)", "Folding",
            "%", 3, "lower", "100 × voxels with J ≤ 0 / voxels of the region (the transform folds space there)",
            "Christensen GE, Johnson HJ, IEEE TMI 20(7):568-582, 2001", computed_by="deformation.jacobian_statistics",
            shown=True, cohort=(("folding_percent", "-"),), review=("folding_percent",)),
    Measure("jacobian_ndv_percent", "deformation", "jacobian.ndv_percent",
            "Non-diffeomorphic volume (NDV, 10 stencils)", "Non-diffeomorphic volume", "%", 3, "lower",
            "Σ over voxels and the 8 one-sided + 2 star finite-difference stencils of −½·min(J_s, 0)/6, % of the "
            "region", "Liu Y et al., Int J Comput Vis 132:3678-3688, 2024", computed_by="ndv.NonDiffeomorphicVolume", shown=True,
            cohort=(("ndv_percent", "-"),), review=("ndv_percent",)),
    Measure("jacobian_ndv_cc", "deformation", "jacobian.ndv_cc", "NDV", "NDV volume", "cc", 3, "lower",
            "non-diffeomorphic volume in cc", "Liu Y et al., Int J Comput Vis 132:3678-3688, 2024", computed_by="ndv.NonDiffeomorphicVolume",
            shown=True, panel=True, cohort=(("ndv_cc", "-"),)),
    Measure("jacobian_ndv_voxels", "deformation", "jacobian.ndv_voxels", "NDV in voxels", "NDV voxels", "voxels", 3,
            "lower", "non-diffeomorphic volume in voxel units", "Liu Y et al., Int J Comput Vis 132:3678-3688, 2024",
            computed_by="ndv.NonDiffeomorphicVolume", shown=True, panel=True, cohort=(("ndv_voxels", "-"),)),
    Measure("jacobian_folding_voxels", "deformation", "jacobian.folding_voxels", "Folding voxels (J ≤ 0)",
            "Folding voxels", "voxels", 0, "lower", "number of voxels with J ≤ 0",
            computed_by="deformation.jacobian_statistics"),
    Measure("jacobian_folding_volume_cc", "deformation", "jacobian.folding_volume_cc", "Folding volume (J ≤ 0)",
            "Folding volume", "cc", 3, "lower", "folding voxels × voxel volume",
            computed_by="deformation.jacobian_statistics", shown=True, panel=False),
    Measure("jacobian_sdlogj", "deformation", "jacobian.sdlogj", "SD of log J", "SD log J", "", 3, "lower",
            "standard deviation of log J over the voxels with J > 0 (J ≤ 0 excluded and counted, no clipping)",
            "Leow AD et al., IEEE TMI 26(6):822-832, 2007 (log-Jacobian)",
            computed_by="deformation.jacobian_statistics", shown=True, panel=False, cohort=(("sdlogj", "-"),), review=("sdlogj",)),
    Measure("jacobian_sdlogj_learn2reg", "deformation", "jacobian.sdlogj_learn2reg",
            "SDlogJ, Learn2Reg convention (log(J + 3))", "SDlogJ (Learn2Reg)", "", 3, "lower",
            "std(log(clip(J + 3, 1e-9, 1e9))) over the region minus a 2-voxel border (Learn2Reg's evaluation)",
            computed_by="ndv.Learn2RegSDlogJ", shown=True, cohort=(("sdlogj_learn2reg", "-"),)),
    Measure("jacobian_sdlogj_learn2reg_voxels", "deformation", "jacobian.sdlogj_learn2reg_voxels",
            "Voxels in Learn2Reg SDlogJ", "SDlogJ (Learn2Reg) voxels", "voxels", 0, None,
            "voxels of the region minus its 2-voxel border (those the Learn2Reg SDlogJ is computed over)",
            computed_by="ndv.Learn2RegSDlogJ"),
    Measure("jacobian_sdlogj_voxels", "deformation", "jacobian.sdlogj_voxels", "Voxels in SD of log J",
            "SD log J voxels", "voxels", 0, None, "voxels with J > 0 (those SD of log J is computed over)",
            computed_by="deformation.jacobian_statistics"),
    Measure("jacobian_sdlogj_excluded_voxels", "deformation", "jacobian.sdlogj_excluded_voxels",
            "Voxels excluded from SD of log J", "Excluded voxels", "voxels", 0, None,
            "voxels with J ≤ 0 (= folding voxels)",
            computed_by="deformation.jacobian_statistics"),
    Measure("jacobian_nonfinite_voxels", "deformation", "jacobian.nonfinite_voxels", "Non-finite Jacobian voxels",
            "Non-finite J", "voxels", 0, "lower", "voxels where J is NaN or infinite (the transform is undefined "
            "there); left out of every other number", computed_by="deformation.jacobian_statistics"),
    Measure("jacobian_voxels", "deformation", "jacobian.voxels", "Voxels of the region", "Voxels", "voxels", 0,
            None, "voxels with finite J in the region", computed_by="deformation.jacobian_statistics"),
    Measure("displacement_mean_mm", "deformation", "displacement_mm.mean", "Mean displacement", "Mean |u|", "mm",
            2, None, "mean |u| over the region, u = T(x) − x", computed_by="deformation.displacement_statistics",
            shown=True, panel=False),
    Measure("displacement_p95_mm", "deformation", "displacement_mm.p95", "95th percentile displacement",
            "|u| p95", "mm", 2, None, "95th percentile of |u| over the region (numpy linear interpolation)",
            computed_by="deformation.displacement_statistics", shown=True, panel=False),
    Measure("displacement_max_mm", "deformation", "displacement_mm.max", "Maximum displacement", "Max |u|", "mm", 2,
            None, "largest |u| over the region", computed_by="deformation.displacement_statistics", shown=True, panel=False),
    Measure("displacement_voxels", "deformation", "displacement_mm.voxels", "Voxels of the displacement region",
            "Voxels", "voxels", 0, None, "voxels with finite |u| in the region",
            computed_by="deformation.displacement_statistics"),
    # -- similarity (fixed vs moving intensities, before and after) ------------------------------------
    Measure("ncc", "similarity", "ncc", "Normalised cross-correlation", "NCC", "", 3, "higher",
            "NCC = Pearson correlation of fixed and moving intensities over the region",
            computed_by="similarity.similarity", shown=True, cohort=(("ncc_before", "before"), ("ncc_after", "after")), review=("ncc_after",)),
    Measure("nmi", "similarity", "nmi", "Normalised mutual information", "NMI", "", 3, "higher",
            "NMI = (H(A)+H(B)) / H(A,B) from the joint histogram (bins as reported)",
            "Studholme C et al., Pattern Recognition 32(1):71-86, 1999", computed_by="similarity.similarity",
            shown=True),
    Measure("mi", "similarity", "mi", "Mutual information", "MI", "nats", 3, "higher",
            "MI = H(A)+H(B)−H(A,B) from the joint histogram, natural logarithm", computed_by="similarity.similarity"),
    Measure("mse", "similarity", "mse", "Mean squared error", "MSE", "intensity²", None, "lower",
            "mean of (fixed − moving)² over the region", computed_by="similarity.similarity", shown=True, panel=False),
    Measure("mae", "similarity", "mae", "Mean absolute error", "MAE", "intensity", None, "lower",
            "mean of |fixed − moving| over the region", computed_by="similarity.similarity", shown=True, panel=False),
    Measure("voxels", "similarity", "voxels", "Voxels compared", "Voxels", "voxels", 0, None,
            "voxels of the region with finite intensities in both images", computed_by="similarity.similarity"),
    Measure("nonfinite_voxels", "similarity", "nonfinite_voxels", "Non-finite voxels", "Non-finite", "voxels", 0,
            None, "voxels of the region left out because an intensity is NaN or infinite",
            computed_by="similarity.similarity"),
    Measure("outside_moving_voxels", "similarity", "outside_moving_voxels", "Voxels outside the moving image",
            "Outside moving", "voxels", 0, None, "fixed voxels whose sample point lies outside the moving image "
            "(left out of the region; the Python console's similarity_before_after)",
            computed_by="similarity.similarity_before_after"),
    Measure("bins", "similarity", "bins", "Histogram bins", "Bins", "", 0, None,
            "bins per image of the joint histogram (NMI, MI)", computed_by="similarity.similarity"),
]

# Concepts every definition relies on (report.json "definitions" also lists each shown measure by its key).
CONCEPTS = {
    "boundary": "boundary voxels: voxels of the segment with a 6-connected neighbour outside it (image edge counts "
                "as outside)",
    "tre": "TRE (target registration error): before = |f − m|; after = |T(f) − m|, T = resampling transform "
           "fixed→moving, landmarks matched by label (DIR-Lab / Learn2Reg convention); std is the population std",
    "jacobian": "J = det of T's spatial Jacobian at each fixed voxel: analytic for parametric transforms (linear, "
                "elastix/ITK B-spline chains, as transformix -jac); for displacement fields det(I + ∂u/∂x), "
                "u = T(x) − x, physical central differences (one-sided at the border); folding = J ≤ 0; SDlogJ = std "
                "of log J over voxels with J > 0",
    "similarity": "NCC = Pearson correlation of intensities; NMI = (H(A)+H(B))/H(A,B) (Studholme), histogram bins as "
                  "reported; MSE/MAE of intensities; before = moving as loaded resampled to the fixed grid, after = "
                  "registered",
    "nsd": "NSD at τ mm (nsd_<τ>mm): boundary voxels of either segment within τ mm of the other's boundary / all "
           "boundary voxels (Nikolov et al. 2021, voxel counts = MONAI's default; surface-distance weighs surfel "
           "areas instead); nsd_at_tolerance: the NSD at the tolerance a tolerance profile sets for the segment "
           "(min_nsd tolerance_mm), with that tolerance",
    "signed_distance": "signed distance of each registered-segment boundary voxel to the fixed boundary, negative "
                       "inside the fixed segment: mean, p5, p95, largest outward / inward excursion",
    "shifted_self_dice": "Dice of the fixed segment with itself shifted by 1 or 2 mm (worst of ±x, ±y, ±z): a Dice "
                         "check above it cannot see an error of that size",
    "ndv": "non-diffeomorphic volume (Liu et al., IJCV 2024): Σ over voxels and the 8 one-sided + 2 star "
           "finite-difference stencils of −½·min(J_s, 0)/6, in voxels, % of the region and cc",
    "sdlogj_learn2reg": "Learn2Reg's SDlogJ: std(log(clip(J + 3, 1e-9, 1e9))) over the region minus a 2-voxel border",
    "tre_worst30": "mean of the worst 30 % (ceil(0.3 n)) landmark errors; improved_fraction = share of landmarks whose "
                   "error decreased",
    "before_after": "before: the moving data as loaded, in world space, resampled (nearest neighbour for labels and "
                    "threshold masks, each image thresholded on its own grid) onto the fixed grid; after: the same data "
                    "through the registration's resampling transform (intensities: the --registered image when given; "
                    "elastix's result image is not used otherwise)",
}


def register(measure: Measure) -> Measure:
    """Add a measure to the registry (its key must be new); returns it."""
    if any(m.key == measure.key for m in MEASURES):
        raise ValueError(f"measure {measure.key!r} is already registered")
    MEASURES.append(measure)
    return measure


def unregister(key: str) -> None:
    MEASURES[:] = [m for m in MEASURES if m.key != key]


def get(key: str) -> Measure:
    for m in MEASURES:
        if m.key == key:
            return m
    raise KeyError(f"no measure {key!r} (known: {', '.join(m.key for m in MEASURES)})")


def of(applies_to: str, shown: bool | None = None) -> list:
    """The measures of one kind, in registry order (``shown``: only those shown / not shown)."""
    return [m for m in MEASURES if m.applies_to == applies_to and (shown is None or m.shown == shown)]


def find(applies_to: str, field: str) -> Measure | None:
    """The measure of a kind stored at ``field`` (a report key path), or None."""
    for m in MEASURES:
        if m.applies_to == applies_to and m.field == field:
            return m
    return None


def definitions(percentile=DEFAULT_PERCENTILE) -> dict:
    """report.json ``definitions``: each shown segment measure by its key, then the concepts, then the other
    shown measures by key (pinned text with its reference)."""
    out = {m.key: m.definition_for(percentile) for m in of("segment", shown=True)}
    jaccard_measure = find("segment", "jaccard")
    if jaccard_measure is not None:
        out["jaccard"] = jaccard_measure.definition_for(percentile)
    out.update(CONCEPTS)
    for m in MEASURES:
        if m.shown and m.applies_to != "segment":
            out.setdefault(m.key, m.definition_for(percentile))
    return out


def segment_values(m) -> dict:
    """Every segment measure of one pair (``m``: PairMeasurement), nested by field path."""
    out: dict = {}
    for measure in of("segment"):
        if measure.compute is None:
            continue
        value = measure.compute(m)
        set_field(out, measure.field, None if value is None else float(value))
    return out


def landmark_statistics(distances) -> dict:
    """Every landmark measure of one stage from its TRE values (mm); no value: each measure's ``empty``."""
    v = np.asarray([x for x in distances if x is not None and np.isfinite(x)], dtype=float)
    out: dict = {}
    for measure in of("landmarks"):
        if measure.compute is not None:  # improved_fraction needs both stages: landmarks.improved_fraction
            set_field(out, measure.field, measure.empty if v.size == 0 else measure.compute(v))
    return out


@dataclass
class DeformationSample:
    """What a deformation measure's ``compute`` receives (the registration is streamed slab by slab, so the
    region's values, not the maps): ``jacobian`` (J of every voxel of the region, 1-D float32, non-finite
    included), ``displacement`` (|u| in mm of the same voxels), ``spacing`` (x, y, z mm of the fixed grid)."""

    jacobian: np.ndarray
    displacement: np.ndarray
    spacing: tuple


def apply_extra(applies_to: str, record: dict, sample) -> dict:
    """Add the measures of a kind that have their own ``compute`` and are not in ``record`` yet (measures added
    to the registry beside the one-pass built-ins) to ``record``; returns it."""
    for measure in of(applies_to):
        if measure.compute is None or measure.value_in(record) is not None:
            continue
        value = measure.compute(sample)
        set_field(record, measure.field, None if value is None else value)
    return record


def cohort_columns() -> list:
    """[(column, measure, stage)] of the cohort summary, in registry order."""
    return [(column, m, stage) for m in MEASURES for column, stage in m.cohort]


def cohort_value(measure: Measure, stage: str, report: dict):
    """A cohort summary cell: the measure's value of a report at ``stage``; for segment measures the worst
    segment's (lowest when higher is better, else highest); None when not computed."""
    section = report.get(measure.section)
    if measure.applies_to == "segment":
        if measure.expand is not None:  # a family (NSD per tolerance): the first field
            fields = measure.expand(report)
            measure = Measure(measure.key, measure.applies_to, fields[0][0] if fields else measure.field,
                              measure.title, measure.short, measure.unit, measure.digits, measure.better,
                              measure.definition, computed_by=measure.computed_by or "family", worst=measure.worst)
        values = [measure.value_in(s.get(stage) or {}) for s in section or []]
        values = [float(v) for v in values if v is not None]
        if not values:
            return None
        return measure.worst_of(values)
    if not isinstance(section, dict):
        return None
    return measure.value_in(section if stage == "-" else (section.get(stage) or {}))


def column_properties(applies_to: str, percentile=DEFAULT_PERCENTILE) -> dict:
    """Table-node column properties of a kind's measures, by column title (:meth:`Measure.column_title`):
    {"unit", "description" (definition and reference), "long_name" (title)}."""
    return {m.column_title(percentile): {"unit": m.unit, "description": m.definition_for(percentile),
                                         "long_name": m.title_for(percentile)} for m in of(applies_to)}


def unit_of(section: str, metric: str) -> str | None:
    """The unit of a metrics.csv row (section, metric key), or None when no measure has that key."""
    applies = {v: k for k, v in SECTIONS.items()}.get(section)
    for m in MEASURES:
        # segment rows are named by the report.json field (signed_distance.mean_mm), the others by key
        if (m.key == metric or (m.applies_to == "segment" and m.field == metric)) and (
                applies is None or m.applies_to == applies):
            return m.unit
    return None
