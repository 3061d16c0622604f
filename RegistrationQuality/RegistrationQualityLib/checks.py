"""The check registry: every pass/fail gate, what it gates, and the one runner.

A :class:`Check` names the measure it gates (:mod:`.measures`), the statistic it takes over the subjects (each
segment, the landmarks' summary, the deformation region), the comparison, the inputs it needs and its CLI flag.
Derived from here: the CLI flags and their help (:func:`add_arguments`), the limits' validation
(:func:`validate_limits`), the runner (:func:`run_checks`), report.json ``checks``, the report page's checks
table and the panel's check column (matched by check name and subject, never by text).

The four original flags keep the meaning they always had: ``--min-dice`` (Dice of every segment),
``--max-hausdorff`` (HD\\ :sub:`p`, the p-th percentile Hausdorff of every segment, p = ``--percentile``),
``--max-tre`` (mean TRE), ``--max-folding`` (percent of voxels with J ≤ 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from . import measures
from .errors import BadInputError
from .surface import NSD_AT_TOLERANCE

# what each kind of input a check needs is called in messages
NEEDS_TEXT = {
    "segments": "segmentations (--fixed-segmentation/--moving-segmentation or --threshold)",
    "landmarks": "landmarks (--fixed-landmarks/--moving-landmarks)",
    "transform": "a transform (--transform or --elastix-dir)",
}
COMPARISON_SYMBOLS = {">=": "≥", "<=": "≤"}


@dataclass(frozen=True)
class Parameter:
    """A measurement parameter of a check that a tolerance profile may set, per segment and as a default
    (:mod:`.profiles`): ``name`` (the profile key), ``title``, ``unit``. A value is a positive number or a
    data-dependent expression (``max_voxel``, ``K*max_voxel``), like a limit."""

    name: str
    title: str
    unit: str = ""


@dataclass(frozen=True)
class Check:
    """One gate: ``name`` (report.json check name and EvaluationOptions field), ``flag`` (CLI), ``measure``
    (registry key), ``statistic`` ("each" = every subject: each segment; "summary" = the one value of the
    section), ``comparison`` (">=": value must reach the limit, "<=": must not exceed it), ``needs`` (segments /
    landmarks / transform), ``title`` (what it gates, {p} = percentile), ``subject`` / ``subject_of(report)``
    (report.json subject of a summary check), ``metavar``."""

    name: str
    flag: str
    measure: str
    statistic: str
    comparison: str
    needs: str
    title: str
    subject: str = ""
    metavar: str = "X"
    stage: str = "after"
    subject_of: Callable | None = None  # report -> the subject text of a summary check (else ``subject``)
    # per-segment checks measured several ways (NSD at each tolerance): (entry, report) -> [(subject, value,
    # field of the stage record checked)]
    values_of: Callable | None = None
    parameters: tuple = ()  # Parameter, ...: what a tolerance profile may set for this check (NSD's tolerance)

    def __post_init__(self):
        if self.comparison not in COMPARISON_SYMBOLS:
            raise ValueError(f"check {self.name}: comparison {self.comparison!r} is not >= or <=")
        if self.statistic not in ("each", "summary"):
            raise ValueError(f"check {self.name}: statistic {self.statistic!r} is not each / summary")
        if self.needs not in NEEDS_TEXT:
            raise ValueError(f"check {self.name}: needs {self.needs!r} is not one of {sorted(NEEDS_TEXT)}")

    @property
    def measure_spec(self) -> measures.Measure:
        return measures.get(self.measure)

    @property
    def symbol(self) -> str:
        return COMPARISON_SYMBOLS[self.comparison]

    @property
    def unit(self) -> str:
        return self.measure_spec.unit

    def title_for(self, percentile=measures.DEFAULT_PERCENTILE) -> str:
        return self.title.format(p=measures._p(percentile))

    def help_text(self, percentile_flag: str = "--percentile") -> str:
        """The CLI help: what is gated, in words, with the comparison (argparse-escaped)."""
        unit = f" {self.unit}" if self.unit else ""
        where = "of every segment" if self.statistic == "each" else ""
        what = self.title.format(p="p")
        if "{p}" in self.title:
            what += f" (p = {percentile_flag}, default {measures._p(measures.DEFAULT_PERCENTILE)})"
        text = f"check: {what} {where} after registration {self.symbol} {self.metavar}{unit}".replace("  ", " ")
        return text.replace("%", "%%")

    def passes(self, value, limit) -> bool:
        """A missing value never passes."""
        if value is None or not math.isfinite(value):
            return False
        return value >= limit if self.comparison == ">=" else value <= limit


def _landmark_subject(what: str) -> Callable:
    """The subject of a landmark check: "mean TRE after", with "(k of n landmarks)" when some were unmatched."""
    def subject(report: dict) -> str:
        lm = report.get("landmarks") or {}
        unmatched = lm.get("unmatched") or {}
        n_unmatched = len(unmatched.get("fixed_only") or []) + len(unmatched.get("moving_only") or [])
        matched = len(lm.get("points") or [])
        return what + (f" ({matched} of {matched + n_unmatched} landmarks)" if n_unmatched else "")
    return subject


def _nsd_values(entry: dict, report: dict) -> list:
    """min_nsd: the NSD at the segment's own tolerance when the tolerance profile sets one (``nsd_at_tolerance``
    of the segment, surface.py), else one value per NSD tolerance of the run (options.nsd_tolerances_mm)."""
    after = entry.get("after") or {}
    own = after.get(NSD_AT_TOLERANCE)
    if isinstance(own, dict) and own.get("tolerance_mm") is not None:
        return [(f"{entry.get('name')} (NSD {float(own['tolerance_mm']):g} mm)", own.get("value"),
                 f"{NSD_AT_TOLERANCE}.value")]
    tolerances = (report.get("options") or {}).get("nsd_tolerances_mm") or [2.0]
    keys = ["nsd_" + f"{float(t):g}".replace(".", "_") + "mm" for t in tolerances]
    return [(f"{entry.get('name')} (NSD {float(t):g} mm)", after.get(key), key) for t, key in zip(tolerances, keys)]


def _ndv_subject(report: dict) -> str:
    jac = (report.get("deformation") or {}).get("jacobian") or {}
    return f"non-diffeomorphic volume, {jac.get('region') or 'whole image'}"


def _jacobian_subject(report: dict) -> str:
    jac = (report.get("deformation") or {}).get("jacobian") or {}
    return f"Jacobian, {jac.get('region') or 'whole image'}"


CHECKS: list = [
    Check("min_dice", "--min-dice", "dice", "each", ">=", "segments", "Dice"),
    Check("max_hausdorff", "--max-hausdorff", "hausdorff_percentile_mm", "each", "<=", "segments",
          "HD{p} ({p}th percentile Hausdorff)", metavar="MM"),
    Check("max_hausdorff_max", "--max-hausdorff-max", "hausdorff_mm", "each", "<=", "segments",
          "maximum Hausdorff", metavar="MM"),
    Check("max_mean_distance", "--max-mean-distance", "mean_surface_distance_mm", "each", "<=", "segments",
          "mean surface distance (MDA)", metavar="MM"),
    Check("min_nsd", "--min-nsd", "nsd_2mm", "each", ">=", "segments",
          "normalised surface Dice (at each --nsd-tolerance, or at the segment's tolerance of a --profile)",
          values_of=_nsd_values,
          parameters=(Parameter("tolerance_mm", "NSD tolerance τ at which the segment's NSD is computed and checked",
                                "mm"),)),
    Check("max_tre", "--max-tre", "tre_mean_mm", "summary", "<=", "landmarks", "mean TRE", metavar="MM",
          subject_of=_landmark_subject("mean TRE after")),
    Check("max_tre_point", "--max-tre-point", "tre_max_mm", "summary", "<=", "landmarks",
          "maximum TRE (worst single landmark)", metavar="MM", subject_of=_landmark_subject("max TRE after")),
    Check("max_folding", "--max-folding", "jacobian_folding_percent", "summary", "<=", "transform",
          "folding (J ≤ 0) percent", metavar="PCT", stage="-", subject_of=_jacobian_subject),
    Check("max_ndv", "--max-ndv", "jacobian_ndv_percent", "summary", "<=", "transform",
          "non-diffeomorphic volume (Liu et al. 2024, 10 stencils) percent", metavar="PCT", stage="-",
          subject_of=_ndv_subject),
]


def nsd_tolerance_of(limits) -> Callable | None:
    """segment name -> the NSD tolerance τ (mm) the run's tolerance profile sets for it (min_nsd's
    ``tolerance_mm``, per segment or default), or None; None when no profile sets one."""
    parameter = getattr(limits, "parameter", None)
    if parameter is None or not limits.has_parameter("min_nsd", "tolerance_mm"):
        return None
    return lambda segment: parameter("min_nsd", "tolerance_mm", segment)


def register(check: Check) -> Check:
    if any(c.name == check.name or c.flag == check.flag for c in CHECKS):
        raise ValueError(f"check {check.name!r} / {check.flag} is already registered")
    measures.get(check.measure)  # the measure must exist
    CHECKS.append(check)
    return check


def unregister(name: str) -> None:
    CHECKS[:] = [c for c in CHECKS if c.name != name]


def get(name: str) -> Check:
    for c in CHECKS:
        if c.name == name:
            return c
    raise KeyError(f"no check {name!r} (known: {', '.join(c.name for c in CHECKS)})")


def names() -> list:
    return [c.name for c in CHECKS]


def by_flag() -> dict:
    return {c.flag: c for c in CHECKS}


# ---------------------------------------------------------------------------------------------------
# CLI and validation
# ---------------------------------------------------------------------------------------------------
def add_arguments(parser, number_type) -> None:
    """One ``--flag VALUE`` per check (``number_type``: argparse type checking a non-negative number)."""
    for c in CHECKS:
        parser.add_argument(c.flag, dest=c.name, type=number_type, metavar=c.metavar, help=c.help_text())


def limits_from_args(args) -> dict:
    """{check name: limit} of the parsed check flags that were given."""
    return {c.name: getattr(args, c.name) for c in CHECKS if getattr(args, c.name, None) is not None}


def validate_limits(limits: dict, available: dict) -> None:
    """Every limit a finite non-negative number of a known check whose inputs are there; BadInputError naming
    the flag otherwise. ``available``: {"segments": bool, "landmarks": bool, "transform": bool}."""
    for name, limit in limits.items():
        if limit is None:
            continue
        try:
            check = get(name)
        except KeyError:
            raise BadInputError(name, f"is not a check (known: {', '.join(names())})") from None
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
            raise BadInputError(check.flag, f"{limit} is not a valid limit")
        if not available.get(check.needs):
            raise BadInputError(check.flag, f"needs {NEEDS_TEXT[check.needs]}")


# ---------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plain:
    """A bare limit (a number given as a flag or option): pass only, no review band."""

    pass_: float
    review: float | None = None
    source: str = ""
    basis: str = ""
    profile: str = ""


class _PlainLimits:
    """{check name: number} seen as resolved limits (every subject gets the same limit)."""

    def __init__(self, limits: dict):
        self.limits = {k: _Plain(float(v)) for k, v in limits.items() if v is not None}

    def for_subject(self, name, segment=None):
        return self.limits.get(name)

    def names(self) -> list:
        return [c.name for c in CHECKS if c.name in self.limits]


def status_of(check: Check, value, limit) -> str:
    """pass (meets the pass limit), review (misses it but meets the review limit), fail (otherwise, and always
    when the value could not be computed)."""
    if check.passes(value, limit.pass_):
        return "pass"
    if limit.review is not None and check.passes(value, limit.review):
        return "review"
    return "fail"


def _record(check: Check, subject, value, limit, segment=None, field=None) -> dict:
    status = status_of(check, value, limit)
    record = {"name": check.name, "subject": subject, "passed": status == "pass",
              "value": None if value is None else float(value), "limit": float(limit.pass_),
              "comparison": check.comparison, "measure": check.measure, "unit": check.unit, "status": status,
              "review_limit": None if limit.review is None else float(limit.review)}
    if segment is not None:  # per-segment checks: the segment and the field of its record that was compared
        record["segment"] = segment
        record["field"] = field
    if limit.source:
        record["source"] = limit.source
    if limit.basis:
        record["basis"] = limit.basis
    return record


def run_checks(report: dict, limits) -> list:
    """The requested checks on a report; one record per subject.

    ``limits``: {check name: limit or None} (numbers: pass limits, no review band) or the resolved limits of a
    tolerance profile (:func:`.profiles.resolve`: pass and review limits, per segment). A value that could not be
    computed fails its check. A per-segment check with no segment to check (e.g. labelmaps without labels) fails
    with subject "no segment to check"; summary checks whose section is absent are not run (validation refuses
    them when their inputs are missing).
    """
    resolved = limits if hasattr(limits, "for_subject") else _PlainLimits(limits)
    requested = set(resolved.names())
    out = []
    for check in CHECKS:
        if check.name not in requested:
            continue
        measure = check.measure_spec
        if measure.applies_to == "segment":
            entries = report.get("segments") or []
            default = resolved.for_subject(check.name)
            if not entries and default is not None:
                out.append(_record(check, "no segment to check", None, default))
            for entry in entries:
                limit = resolved.for_subject(check.name, entry.get("name"))
                if limit is None:  # a profile's per-segment rule may name only some segments
                    continue
                if check.values_of is not None:
                    out.extend(_record(check, subject, value, limit, entry.get("name"), field)
                               for subject, value, field in check.values_of(entry, report))
                else:
                    out.append(_record(check, entry.get("name"), measure.value_in(entry.get(check.stage) or {}),
                                       limit, entry.get("name"), measure.field))
            continue
        section = report.get(measure.section)
        limit = resolved.for_subject(check.name)
        if not section or limit is None:
            continue
        record = section if check.stage == "-" else (section.get(check.stage) or {})
        subject = check.subject_of(report) if check.subject_of else (check.subject or check.title_for())
        out.append(_record(check, subject, measure.value_in(record), limit))
    return out


def status(record: dict) -> str:
    """A check record's state (records written before review bands existed have only ``passed``)."""
    return record.get("status") or ("pass" if record.get("passed") else "fail")


def verdict(checks_run: list) -> str:
    """fail (any check failed), review (none failed, some need review), pass, or no checks."""
    if not checks_run:
        return "no checks"
    states = {status(c) for c in checks_run}
    return "fail" if "fail" in states else "review" if "review" in states else "pass"


EXIT_CODES = {"pass": 0, "no checks": 0, "fail": 1, "review": 4}


def find(checks_run: list, name: str, subject=None, field=None) -> dict | None:
    """The check record of check ``name`` (and ``subject`` for per-segment checks: the record's subject or its
    segment; ``field``: only the record that compared that field of the segment's record, e.g. ``nsd_1mm``) in
    report.json ``checks``."""
    for c in checks_run or []:
        if c.get("name") != name:
            continue
        if subject is not None and str(subject) not in (str(c.get("subject")), str(c.get("segment"))):
            continue
        if field is not None and c.get("field") not in (None, field):
            continue
        return c
    return None
