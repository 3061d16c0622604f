"""Tolerance profiles: named sets of check limits with a pass limit, an optional review limit and their sources.

A profile is a JSON file (always) or a TOML file (Python 3.11+'s ``tomllib``, or the ``tomli`` package when it is
installed on 3.9/3.10). ``--profile NAME`` picks a built-in profile (``profiles/*.json`` next to this module;
``registration-quality profiles`` lists them), ``--profile FILE`` reads a file. The file is validated strictly:
an unknown key, check, limit expression or segment selector is bad input (exit 2) naming the file and the entry.

Schema (JSON shown; TOML has the same tables)::

    {"profile": "my-site", "title": "...", "source": "where the numbers come from", "notes": "...",
     "checks": {
        "min_dice": {"pass": 0.9, "review": 0.8, "source": "...",
                     "segments": {"Brainstem": {"pass": 0.85}, "Parotid*": {"pass": 0.8, "review": 0.7}}},
        "max_tre": {"pass": "max_voxel", "review": "2*max_voxel", "source": "..."}}}

``checks`` keys are check names of the check registry (:mod:`.checks`: ``min_dice``, ``max_hausdorff``,
``max_hausdorff_max``, ``max_mean_distance``, ``max_tre``, ``max_tre_point``, ``max_folding``, ...). ``pass``: the
limit a value must meet to pass; ``review`` (optional): a looser limit; a value between the two needs review
(yellow), beyond ``review`` (or beyond ``pass`` without a review limit) it fails; a value that could not be
computed fails. A limit is a non-negative number or a data-dependent expression: ``max_voxel`` (the largest voxel
dimension of the fixed image, mm) or ``K*max_voxel``; it is computed from the fixed image and shown with the
result. ``segments``: limits for segments by name (exact, or a glob with ``*`` / ``?`` / ``[...]``; an exact name
wins over a glob, then the first glob in file order); a per-segment check without a ``pass`` of its own checks
only the segments its selectors name.

A check may declare measurement parameters (:class:`.checks.Parameter`) that a profile sets beside its limits,
as a default and per segment: ``min_nsd`` has ``tolerance_mm``, the tolerance τ at which each segment's NSD is
computed and checked::

    "min_nsd": {"pass": 0.9, "review": 0.8, "tolerance_mm": 3.0,
                "segments": {"*arotid*": {"tolerance_mm": 2.0}, "Spinal*ord": {"tolerance_mm": 1.0, "pass": 0.8}}}

A segment rule that sets only parameters keeps the check's limits. A parameter is a positive number or
``K*max_voxel``; a segment without a rule setting it gets the check's default (no default: the run's own
``--nsd-tolerance`` values, as without a profile). A limit given on the command line replaces the profile's limits
but not its parameters: ``--min-nsd 0.7`` with a profile setting tolerances checks each segment's NSD at its
profile tolerance against 0.7.

Verdicts: pass (every check passed), review (none failed, at least one needs review), fail, no checks. A limit
given on the command line (``--min-dice 0.7``) replaces the profile's limits of that check (no review band).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import checks
from .errors import BadInputError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
TOP_KEYS = ("profile", "title", "source", "notes", "checks")
CHECK_KEYS = ("pass", "review", "source", "segments")  # + the check's parameters (checks.Parameter)
SEGMENT_KEYS = ("pass", "review", "source")
# data-dependent limit terms: name -> what it is (computed from the inputs by :func:`data_terms`)
TERMS = {"max_voxel": "largest voxel dimension of the fixed image (mm)"}
_EXPRESSION = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([a-z_]+)\s*$")


@dataclass(frozen=True)
class LimitValue:
    """A limit as written: a number, or ``factor × term`` (term in :data:`TERMS`)."""

    number: float | None = None
    factor: float = 1.0
    term: str | None = None

    def resolve(self, data: dict) -> tuple:
        """(value, basis text) with the data terms of this run (``data``: {term: value})."""
        if self.term is None:
            return self.number, ""
        base = data.get(self.term)
        if base is None:
            return None, f"{self.text()}: {TERMS[self.term]} unknown"
        value = self.factor * float(base)
        return value, f"{self.text()} = {value:g} ({TERMS[self.term]}: {float(base):g})"

    def text(self) -> str:
        if self.term is None:
            return f"{self.number:g}"
        return self.term if self.factor == 1.0 else f"{self.factor:g}*{self.term}"


@dataclass(frozen=True)
class Band:
    """Pass and review limits (review None: none) and their source."""

    pass_: LimitValue | None
    review: LimitValue | None = None
    source: str = ""


@dataclass(frozen=True)
class ProfileCheck:
    name: str
    band: Band
    segments: tuple = ()  # ((selector, Band), ...)
    parameters: tuple = ()  # ((parameter name, LimitValue), ...): the check's defaults
    segment_parameters: tuple = ()  # ((selector, ((parameter name, LimitValue), ...)), ...)


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    source: str
    notes: str = ""
    checks: tuple = ()  # ProfileCheck, ...
    file: str = ""

    def summary(self) -> dict:
        """report.json ``profile``: name, title, source, notes, file."""
        return {"name": self.name, "title": self.title, "source": self.source, "notes": self.notes,
                "file": self.file}


@dataclass(frozen=True)
class Limit:
    """A resolved limit for one subject: the check runner's input (see :func:`checks.run_checks`)."""

    pass_: float
    review: float | None = None
    source: str = ""
    basis: str = ""
    profile: str = ""


@dataclass
class ResolvedLimits:
    """{check name: Limit or {segment selector: Limit}} of one run, plus the data terms used."""

    default: dict = field(default_factory=dict)  # check name -> Limit
    segments: dict = field(default_factory=dict)  # check name -> ((selector, Limit), ...)
    data: dict = field(default_factory=dict)
    # check name -> {parameter name: value}; and per segment: check name -> ((selector, {name: value}), ...)
    parameters: dict = field(default_factory=dict)
    segment_parameters: dict = field(default_factory=dict)

    def for_subject(self, check_name: str, segment=None) -> Limit | None:
        if segment is not None:
            limit = _match(self.segments.get(check_name) or (), segment)
            if limit is not None:
                return limit
        return self.default.get(check_name)

    def has_parameter(self, check_name: str, name: str) -> bool:
        """Whether the profile sets parameter ``name`` of a check, as a default or for some segment."""
        return name in (self.parameters.get(check_name) or {}) or any(
            name in values for _sel, values in self.segment_parameters.get(check_name) or ())

    def parameter(self, check_name: str, name: str, segment=None):
        """The value of a check's parameter for a segment: its segment rule's (exact name, then the first
        matching glob among the rules setting it), else the check's default, else None."""
        if segment is not None:
            rules = tuple((sel, values[name]) for sel, values in self.segment_parameters.get(check_name) or ()
                          if name in values)
            value = _match(rules, segment)
            if value is not None:
                return value
        return (self.parameters.get(check_name) or {}).get(name)

    def names(self) -> list:
        return [c.name for c in checks.CHECKS if c.name in self.default or c.name in self.segments]


# ---------------------------------------------------------------------------------------------------
# Reading and validating
# ---------------------------------------------------------------------------------------------------
def builtin_names() -> list:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load(spec) -> Profile:
    """A built-in profile by name or a profile file (``.json`` / ``.toml``); BadInputError naming the problem."""
    if isinstance(spec, Profile):
        return spec
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if not path.is_file():
        if text in builtin_names():
            path = PROFILE_DIR / f"{text}.json"
        else:
            raise BadInputError("--profile", f"'{text}' is neither a built-in profile ({', '.join(builtin_names())}) "
                                "nor a profile file")
    return parse(_read(path), os.fspath(path))


def _read(path: Path) -> dict:
    where = os.fspath(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise BadInputError(where, f"cannot read the profile ({err.strerror or err})") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib as toml  # Python 3.11+
        except ImportError:
            try:
                import tomli as toml  # the backport, when installed
            except ImportError:
                raise BadInputError(where, "TOML profiles need Python 3.11+ or the tomli package; write the "
                                    "profile as JSON") from None
        try:
            data = toml.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise BadInputError(where, f"not valid TOML ({err})") from None
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise BadInputError(where, f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise BadInputError(where, "a profile is an object with 'checks'")
    return data


def _text(where: str, path: str, value, required: bool = False) -> str:
    if value is None:
        if required:
            raise BadInputError(where, f"{path}: missing (a profile names its source)")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadInputError(where, f"{path}: {value!r} is not a text")
    return value


def _limit(where: str, path: str, value) -> LimitValue | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInputError(where, f"{path}: {value!r} is not a limit (a number or 'K*max_voxel')")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise BadInputError(where, f"{path}: {value!r} is not a valid limit (finite, not negative)")
        return LimitValue(number=float(value))
    if isinstance(value, str):
        m = _EXPRESSION.match(value)
        if m and m.group(2) in TERMS:
            return LimitValue(factor=float(m.group(1)) if m.group(1) else 1.0, term=m.group(2))
        raise BadInputError(where, f"{path}: '{value}' is not a limit (a number, or K*term with term one of "
                            f"{', '.join(TERMS)})")
    raise BadInputError(where, f"{path}: {value!r} is not a limit (a number or 'K*max_voxel')")


def _band(where: str, path: str, entry: dict, check: checks.Check, keys, default_source: str,
          inherit: Band | None = None) -> Band:
    """The limits of an entry; ``inherit``: the check's band, kept by a segment rule that sets only parameters."""
    if not isinstance(entry, dict):
        raise BadInputError(where, f"{path}: must be an object with 'pass' (and 'review', 'source')")
    keys = tuple(keys) + tuple(p.name for p in check.parameters)
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise BadInputError(where, f"{path}: unknown key '{unknown[0]}' (known: {', '.join(keys)})")
    if (inherit is not None and inherit.pass_ is not None and "pass" not in entry and "review" not in entry
            and any(p.name in entry for p in check.parameters)):
        return Band(inherit.pass_, inherit.review, _text(where, f"{path}.source", entry.get("source"))
                    or default_source)
    band = Band(_limit(where, f"{path}.pass", entry.get("pass")), _limit(where, f"{path}.review", entry.get("review")),
                _text(where, f"{path}.source", entry.get("source")) or default_source)
    if band.review is not None and band.pass_ is None:
        raise BadInputError(where, f"{path}: 'review' needs a 'pass' limit")
    if band.review is not None and band.pass_.term == band.review.term and band.pass_.term is None:
        looser = band.review.number <= band.pass_.number if check.comparison == ">=" else \
            band.review.number >= band.pass_.number
        if not looser:
            word = "below" if check.comparison == ">=" else "above"
            raise BadInputError(where, f"{path}: review limit {band.review.text()} must be {word} or at the pass "
                                f"limit {band.pass_.text()} ({check.name} passes when {check.symbol} the limit)")
    return band


def _is_glob(selector: str) -> bool:
    return any(ch in selector for ch in "*?[")


def _match(rules, segment):
    """The value of the rule (selector, value) naming ``segment``: an exact name, else the first glob."""
    name = str(segment)
    for selector, value in rules:
        if selector == name:
            return value
    for selector, value in rules:
        if _is_glob(selector) and fnmatch.fnmatchcase(name, selector):
            return value
    return None


def _parameters(where: str, path: str, entry: dict, check: checks.Check) -> tuple:
    """((name, LimitValue), ...) of the check's parameters an entry sets (positive numbers or K*term)."""
    out = []
    for p in check.parameters:
        if p.name not in entry:
            continue
        value = _limit(where, f"{path}.{p.name}", entry[p.name])
        if value is None or (value.term is None and value.number <= 0) or value.factor <= 0:
            raise BadInputError(where, f"{path}.{p.name}: {entry[p.name]!r} is not a valid {p.title} (a positive "
                                f"number{' of ' + p.unit if p.unit else ''}, or K*max_voxel)")
        out.append((p.name, value))
    return tuple(out)


def _selector(where: str, path: str, selector) -> str:
    if not isinstance(selector, str) or not selector.strip():
        raise BadInputError(where, f"{path}: segment selector {selector!r} must be a segment name or a glob")
    depth = 0
    for ch in selector:
        depth += ch == "["
        depth -= ch == "]"
        if depth not in (0, 1):
            break
    if depth != 0 or selector.count("[") != selector.count("]"):
        raise BadInputError(where, f"{path}: segment selector '{selector}' has an unbalanced '[' ... ']'")
    return selector


def parse(data: dict, where: str = "profile") -> Profile:
    """A :class:`Profile` from its parsed JSON/TOML; every problem is a BadInputError naming ``where``."""
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise BadInputError(where, f"unknown key '{unknown[0]}' (known: {', '.join(TOP_KEYS)})")
    name = _text(where, "profile", data.get("profile")) or Path(where).stem
    source = _text(where, "source", data.get("source"), required=True)
    entries = data.get("checks")
    if not isinstance(entries, dict) or not entries:
        raise BadInputError(where, "checks: must be an object naming at least one check")
    parsed = []
    for check_name, entry in entries.items():
        if check_name not in checks.names():
            raise BadInputError(where, f"checks.{check_name}: unknown check (known: {', '.join(checks.names())})")
        check = checks.get(check_name)
        path = f"checks.{check_name}"
        band = _band(where, path, entry, check, CHECK_KEYS, source)
        rules, rule_parameters = [], []
        segments = entry.get("segments")
        if segments is not None:
            if check.statistic != "each":
                raise BadInputError(where, f"{path}.segments: {check_name} is not a per-segment check")
            if not isinstance(segments, dict) or not segments:
                raise BadInputError(where, f"{path}.segments: must be an object of segment selectors")
            for selector, seg_entry in segments.items():
                sel = _selector(where, f"{path}.segments", selector)
                seg_band = _band(where, f"{path}.segments.{sel}", seg_entry, check, SEGMENT_KEYS, band.source,
                                 inherit=band)
                if seg_band.pass_ is None:
                    raise BadInputError(where, f"{path}.segments.{sel}: 'pass' is missing")
                rules.append((sel, seg_band))
                values = _parameters(where, f"{path}.segments.{sel}", seg_entry, check)
                if values:
                    rule_parameters.append((sel, values))
        if band.pass_ is None and not rules:
            raise BadInputError(where, f"{path}: 'pass' is missing")
        parsed.append(ProfileCheck(check_name, band, tuple(rules), _parameters(where, path, entry, check),
                                   tuple(rule_parameters)))
    return Profile(name=name, title=_text(where, "title", data.get("title")) or name, source=source,
                   notes=_text(where, "notes", data.get("notes")), checks=tuple(parsed), file=where)


# ---------------------------------------------------------------------------------------------------
# Resolving for one run
# ---------------------------------------------------------------------------------------------------
def data_terms(fixed_image) -> dict:
    """The data-dependent terms of a run, from the fixed image (SimpleITK): ``max_voxel`` (mm)."""
    return {"max_voxel": float(max(fixed_image.GetSpacing()))}


def _resolve_band(band: Band, data: dict, profile_name: str) -> Limit | None:
    pass_value, pass_basis = band.pass_.resolve(data)
    if pass_value is None:
        return None
    review_value, review_basis = band.review.resolve(data) if band.review is not None else (None, "")
    basis = "; ".join(b for b in (pass_basis, f"review {review_basis}" if review_basis else "") if b)
    return Limit(pass_value, review_value, band.source, basis, profile_name)


def resolve(profile: Profile | None, data: dict, flags: dict) -> ResolvedLimits:
    """The limits of one run: the profile's (data terms computed), then each command-line limit (``flags``:
    {check name: number}) replacing that check's profile limits (no review band, source "command line")."""
    out = ResolvedLimits(data=dict(data))
    if profile is not None:
        for pc in profile.checks:
            if pc.band.pass_ is not None:
                limit = _resolve_band(pc.band, data, profile.name)
                if limit is not None:
                    out.default[pc.name] = limit
            if pc.segments:
                out.segments[pc.name] = tuple((sel, lim) for sel, lim in
                                              ((sel, _resolve_band(b, data, profile.name)) for sel, b in pc.segments)
                                              if lim is not None)
            if pc.parameters:
                out.parameters[pc.name] = _resolve_values(pc.parameters, data)
            if pc.segment_parameters:
                out.segment_parameters[pc.name] = tuple((sel, _resolve_values(values, data))
                                                        for sel, values in pc.segment_parameters)
    for name, value in flags.items():  # a flag replaces the limits, never the parameters (NSD tolerances)
        if value is None:
            continue
        out.default[name] = Limit(float(value), None, "command line", "", "")
        out.segments.pop(name, None)
    return out


def _resolve_values(values, data: dict) -> dict:
    """{parameter name: value} of ((name, LimitValue), ...) with this run's data terms (unknown terms left out)."""
    out = {}
    for name, value in values:
        number, _basis = value.resolve(data)
        if number is not None:
            out[name] = float(number)
    return out


def describe(profile: Profile) -> list:
    """Text lines describing a profile (``registration-quality profiles``)."""
    lines = [f"{profile.name}: {profile.title}", f"  source: {profile.source}"]
    if profile.notes:
        lines.append(f"  notes: {profile.notes}")
    for pc in profile.checks:
        check = checks.get(pc.name)
        unit = f" {check.unit}" if check.unit else ""

        def band_text(b: Band, check=check, unit=unit) -> str:
            text = f"pass {check.symbol} {b.pass_.text()}{unit}" if b.pass_ else "per segment only"
            if b.review is not None:
                text += f", review {check.symbol} {b.review.text()}{unit}"
            return text

        params = {sel: values for sel, values in pc.segment_parameters}

        def param_text(values, check=check) -> str:
            units = {p.name: p.unit for p in check.parameters}
            return "".join(f", {name} {v.text()}{' ' + units[name] if units.get(name) and v.term is None else ''}"
                           for name, v in values)

        lines.append(f"  {pc.name} ({check.title_for()}): {band_text(pc.band)}{param_text(pc.parameters)}"
                     + (f"  [{pc.band.source}]" if pc.band.source != profile.source else ""))
        for sel, b in pc.segments:
            lines.append(f"    segment {sel}: {band_text(b)}{param_text(params.get(sel, ()))}"
                         + (f"  [{b.source}]" if b.source != pc.band.source else ""))
    return lines
