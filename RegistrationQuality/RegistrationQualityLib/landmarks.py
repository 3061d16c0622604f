"""Landmark target registration error (TRE): matched by label, before and after registration.

Convention (pinned; see ``docs/landmarks.md``)
----------------------------------------------
``T`` is the registration's *resampling* transform, fixed -> moving: a transform node's ``FromParent``
(precisely its full ``FromWorld``, which is ``FromParent`` when the node has no parent transform). This is
what elastix/ITK transform files hold, so no inversion is involved. For a landmark pair ``(f, m)`` with the
same label (RAS, mm)::

    before = |f - m|                 (no registration)
    after  = |T(f) - m|              (DIR-Lab / Learn2Reg convention: fixed landmark mapped into moving space)
    error vector = T(f) - m          (RAS, mm)
    fixed-space variant (optional) = |f - T^-1(m)|, T^-1 = Slicer's inverse (``ToWorld``; iterative for grids)

References: Castillo et al., "A framework for evaluation of deformable image registration spatial accuracy
using large landmark point sets", Phys. Med. Biol. 54 (2009) 1849 (DIR-Lab); Hering et al., "Learn2Reg",
IEEE TMI 42 (2023) 697 (TRE of the fixed landmarks warped by the displacement field against the moving ones).

Summaries use the population standard deviation (ddof = 0, as ``numpy.std`` and the Learn2Reg evaluation) and
the linearly interpolated 95th percentile (``numpy.percentile`` default, Hyndman & Fan type 7).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from . import measures
from .errors import BadInputError
from .io import Landmarks, check_unique_labels, landmarks_from_node, parse_coordinate
from .measures import WORST_FRACTION, worst_count  # noqa: F401 - defined with the TRE measures

__all__ = [
    "TREResult",
    "compute_tre",
    "error_vectors_node",
    "mapped_landmarks_node",
    "parse_elastix_points",
    "read_elastix_points",
    "summarize_distances",
    "transform_domain_flags",
    "tre_color_node",
    "tre_to_table_node",
]

_LPS_FLIP = np.array([-1.0, -1.0, 1.0])

# ---------------------------------------------------------------------------------------------------
# elastix / transformix point files
# ---------------------------------------------------------------------------------------------------
_OUTPUT_LINE = re.compile(r"^\s*Point\s+(\d+)\s*;", re.IGNORECASE)
_FIELD = r"{name}\s*=\s*\[([^\]]*)\]"


def parse_elastix_points(text: str, source: str, image=None, field_name: str = "OutputPoint") -> Landmarks:
    """Landmarks (RAS) from an elastix/transformix point file's text.

    Two formats are recognised:

    * elastix/transformix *input* point files: first token ``point`` or ``index``, then the number of points,
      then 3 coordinates per point (whitespace separated, as elastix reads them). ``point`` coordinates are
      physical LPS mm. ``index`` coordinates are voxel indices of ``image`` (a SimpleITK image or anything with
      ``TransformIndexToPhysicalPoint``); like elastix, each index is rounded to the nearest integer first. An
      ``index`` file without ``image`` is a :class:`BadInputError`. Labels are the 1-based point number as a
      string (``"1"``, ``"2"``, ...).
    * transformix ``outputpoints.txt``: lines ``Point <n> ; InputIndex = [..] ; InputPoint = [..] ; ...
      ; OutputPoint = [..] ...``. The ``OutputPoint`` (physical LPS) is read, or ``field_name`` (e.g.
      ``"InputPoint"``). Labels are ``n + 1`` as a string, so they match the labels of the input point file
      transformix was given.
    """
    if _OUTPUT_LINE.match(text.lstrip().splitlines()[0] if text.strip() else ""):
        return _parse_transformix_output(text, source, field_name)
    tokens = text.split()
    if not tokens:
        raise BadInputError(source, "empty point file")
    kind = tokens[0].lower()
    if kind not in ("point", "index"):
        raise BadInputError(
            source, f"first word is '{tokens[0][:20]}'; an elastix point file starts with point or index"
        )
    if len(tokens) < 2:
        raise BadInputError(source, "no point count after the first line")
    try:
        count = int(tokens[1])
    except ValueError:
        raise BadInputError(source, f"point count '{tokens[1][:20]}' is not an integer") from None
    if count <= 0:
        raise BadInputError(source, "no landmarks in the file (count 0)")
    numbers = tokens[2:]
    if len(numbers) != 3 * count:
        if count and len(numbers) == 2 * count:
            raise BadInputError(source, f"{count} points of 2 coordinates; 3D landmarks are needed")
        raise BadInputError(source, f"declares {count} points but holds {len(numbers)} numbers (3 per point expected)")
    values = [parse_coordinate(tok, source, f"point {n // 3 + 1}") for n, tok in enumerate(numbers)]
    coords = np.array(values, dtype=float).reshape(count, 3)
    if kind == "index":
        if image is None:
            raise BadInputError(
                source, "an 'index' point file holds voxel indices; the image they refer to is needed "
                "(use read_elastix_points(path, image=...) or a 'point' file in physical LPS mm)"
            )
        lps = []
        for ijk in coords:
            rounded = [int(math.floor(v + 0.5)) for v in ijk]  # elastix rounds indices (itk::Math::Round)
            lps.append(image.TransformIndexToPhysicalPoint(rounded))
        coords = np.array(lps, dtype=float)
    labels = [str(i + 1) for i in range(count)]
    return Landmarks(labels, coords * _LPS_FLIP + 0.0, source=source)


def _parse_transformix_output(text: str, source: str, field_name: str) -> Landmarks:
    pattern = re.compile(_FIELD.format(name=re.escape(field_name)))
    labels, points = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head = _OUTPUT_LINE.match(line)
        if head is None:
            raise BadInputError(source, f"line {lineno}: not a transformix output point line ('Point <n> ; ...')")
        found = pattern.search(line)
        if found is None:
            raise BadInputError(source, f"line {lineno}: no '{field_name} = [ ... ]'")
        cells = found.group(1).split()
        if len(cells) != 3:
            raise BadInputError(source, f"line {lineno}: {field_name} has {len(cells)} coordinates; 3D is needed")
        xyz = [parse_coordinate(c, source, f"line {lineno}") for c in cells]
        labels.append(str(int(head.group(1)) + 1))
        points.append(xyz)
    if not labels:
        raise BadInputError(source, "no landmarks in the file")
    dups = sorted({lab for lab in labels if labels.count(lab) > 1}, key=labels.index)
    if dups:
        raise BadInputError(source, f"duplicate point number(s) {', '.join(str(int(d) - 1) for d in dups[:5])}")
    return Landmarks(labels, np.array(points, dtype=float) * _LPS_FLIP + 0.0, source=source)


def read_elastix_points(path, image=None, field_name: str = "OutputPoint") -> Landmarks:
    """Read an elastix/transformix point file; ``image`` (SimpleITK image) resolves ``index`` files."""
    from .io import check_file

    p = check_file(path, "landmark file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(str(path), "not a text file (cannot decode as UTF-8)") from None
    return parse_elastix_points(text, str(path), image=image, field_name=field_name)


# ---------------------------------------------------------------------------------------------------
# Transforms: mapping points, domain of grid / B-spline components
# ---------------------------------------------------------------------------------------------------
def _world_transforms(transform_node):
    """(T, T^-1) as vtkGeneralTransforms: the node's FromWorld (resampling) and ToWorld transforms."""
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    forward, inverse = vtkGeneralTransform(), vtkGeneralTransform()
    transform_node.GetTransformFromWorld(forward)
    transform_node.GetTransformToWorld(inverse)
    return forward, inverse


def _map_points(transform, ras: np.ndarray) -> np.ndarray:
    """Points (RAS, N×3) through a vtkAbstractTransform, in double precision."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import VTK_DOUBLE, vtkPoints

    pts = np.ascontiguousarray(np.asarray(ras, dtype=float).reshape(-1, 3))
    if transform is None or len(pts) == 0:
        return pts.copy()
    source, target = vtkPoints(), vtkPoints()
    source.SetData(numpy_to_vtk(pts, deep=1))
    target.SetDataType(VTK_DOUBLE)
    transform.TransformPoints(source, target)
    return np.array(vtk_to_numpy(target.GetData()), dtype=float).reshape(-1, 3)


def _components(transform) -> list:
    """The transform's flat list of components, in the order they are applied to a point."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    coll = vtkCollection()
    slicer.vtkMRMLTransformNode.FlattenGeneralTransform(coll, transform)
    out = []
    for i in range(coll.GetNumberOfItems()):
        t = coll.GetItemAsObject(i)
        t.Update()  # an inverse made by GetInverse() sets its InverseFlag only on Update
        out.append(t)
    return out


def _support_index_range(component):
    """(grid image, direction 3x3, kind) for grid / B-spline components, else None."""
    if component.IsA("vtkBSplineTransform"):
        data, kind = component.GetCoefficientData(), "bspline"
    elif component.IsA("vtkGridTransform"):
        data, kind = component.GetDisplacementGrid(), "grid"
    else:
        return None
    if data is None:
        return None
    direction = np.eye(3)
    if hasattr(component, "GetGridDirectionMatrix") and component.GetGridDirectionMatrix() is not None:
        m = component.GetGridDirectionMatrix()
        direction = np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
    return data, direction, kind


def _outside_support(component, points: np.ndarray) -> np.ndarray:
    """True where ``points`` (RAS, at the component's input) lie outside its grid's domain.

    Grid (displacement field): continuous grid index ``u`` must satisfy ``0 <= u <= n - 1`` on every axis (ITK
    gives zero displacement outside, Slicer keeps the edge value). Cubic B-spline: ``1 <= u < n - 2`` (all
    4×4×4 coefficients present: ITK's valid region, i.e. the ITK ``BSplineTransform`` domain; elastix returns the
    point unchanged outside, Slicer keeps a fading displacement).
    """
    info = _support_index_range(component)
    if info is None:
        return np.zeros(len(points), dtype=bool)
    data, direction, kind = info
    spacing = np.array(data.GetSpacing(), dtype=float)
    first = np.array(data.GetExtent()[::2], dtype=float)
    dims = np.array(data.GetDimensions(), dtype=float)
    origin = np.array(data.GetOrigin(), dtype=float) + direction @ (spacing * first)
    u = np.linalg.solve(direction @ np.diag(spacing), (np.asarray(points, dtype=float) - origin).T).T
    if kind == "bspline":
        bad = (u < 1.0) | (u >= dims - 2.0)
    else:
        bad = (u < 0.0) | (u > dims - 1.0)
    return np.any(bad, axis=1)


def transform_domain_flags(transform, ras: np.ndarray) -> np.ndarray:
    """True for points (RAS, N×3) that ``transform`` (a vtkAbstractTransform) maps outside a component's domain.

    Each grid / B-spline component is checked at the point it receives (its output for an inverted component,
    since its grid lies in its forward input space). Linear and other components have no bounded domain.
    """
    pts = np.array(ras, dtype=float).reshape(-1, 3)
    outside = np.zeros(len(pts), dtype=bool)
    if transform is None or len(pts) == 0:
        return outside
    for comp in _components(transform):
        mapped = _map_points(comp, pts)
        inverted = bool(comp.GetInverseFlag()) if hasattr(comp, "GetInverseFlag") else False
        outside |= _outside_support(comp, mapped if inverted else pts)
        pts = mapped
    return outside


# ---------------------------------------------------------------------------------------------------
# TRE
# ---------------------------------------------------------------------------------------------------
def summarize_distances(values) -> dict:
    """Every landmark measure of the registry (:mod:`.measures`: mean, std (population, ddof=0), median, p95
    (linear interpolation), max, the mean of the worst 30 % (:func:`worst_count` largest errors) and count, in mm)
    over the finite values.

    Empty input gives ``None`` values and count 0 (never a fake zero error).
    """
    return measures.landmark_statistics(values)


def improved_fraction(before, after) -> float | None:
    """Fraction of landmarks whose error decreased (after < before); None without landmarks."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    ok = np.isfinite(b) & np.isfinite(a)
    return None if not ok.any() else float(np.count_nonzero(a[ok] < b[ok]) / np.count_nonzero(ok))


@dataclass
class TREResult:
    """Matched landmark pairs and their errors (all RAS, mm). Row ``i`` of every array is ``labels[i]``."""

    labels: list
    fixed_ras: np.ndarray  # f
    moving_ras: np.ndarray  # m
    fixed_mapped_ras: np.ndarray  # T(f): fixed landmark mapped into moving space
    outside_domain: np.ndarray  # bool per point
    moving_mapped_ras: np.ndarray | None = None  # T^-1(m): moving landmark mapped into fixed space (display)
    inverse_residual_mm: np.ndarray | None = None  # |T(T^-1(m)) - m|: how well Slicer's inverse converged
    fixed_space_variant: bool = False
    unmatched: dict = field(default_factory=lambda: {"fixed_only": [], "moving_only": []})  # labels per side
    skipped: list = field(default_factory=list)  # [{"label", "side"}]: markups points without a position
    transform_name: str | None = None
    fixed_source: str = ""
    moving_source: str = ""

    @property
    def before_mm(self) -> np.ndarray:
        return np.linalg.norm(self.fixed_ras - self.moving_ras, axis=1)

    @property
    def error_vectors_ras(self) -> np.ndarray:
        """T(f) - m per point (RAS mm)."""
        return self.fixed_mapped_ras - self.moving_ras

    @property
    def after_mm(self) -> np.ndarray:
        return np.linalg.norm(self.error_vectors_ras, axis=1)

    @property
    def fixed_space_mm(self) -> np.ndarray | None:
        """|f - T^-1(m)| per point, or None when the inverse was not computed."""
        if self.moving_mapped_ras is None:
            return None
        return np.linalg.norm(self.fixed_ras - self.moving_mapped_ras, axis=1)

    def summary(self, which: str = "after") -> dict:
        values = {"before": self.before_mm, "after": self.after_mm, "fixed_space": self.fixed_space_mm}[which]
        return summarize_distances([] if values is None else values)

    def unmatched_warning(self) -> str | None:
        """One line naming the labels used on neither side (at most five per side), or None."""
        parts = []
        for key, side in (("fixed_only", "fixed"), ("moving_only", "moving")):
            labels = self.unmatched[key]
            if labels:
                shown = ", ".join(labels[:5]) + (" ..." if len(labels) > 5 else "")
                parts.append(f"{len(labels)} only in the {side} landmarks ({shown})")
        if not parts:
            return None
        return (f"landmarks: {len(self.labels)} matched by label, " + "; ".join(parts) +
                ": those are left out of TRE")

    def as_dict(self) -> dict:
        """Plain JSON: ``{"points": [...], "before": {...}, "after": {...}, "unmatched": {"fixed_only", "moving_only"},
        ...}``."""
        before, after, vec = self.before_mm, self.after_mm, self.error_vectors_ras
        fixed_space = self.fixed_space_mm if self.fixed_space_variant else None
        points = []
        for i, label in enumerate(self.labels):
            row = {
                "label": label,
                "before_mm": float(before[i]),
                "after_mm": float(after[i]),
                "error_vector_ras_mm": [float(v) for v in vec[i]],
                "outside_domain": bool(self.outside_domain[i]),
                "fixed_ras_mm": [float(v) for v in self.fixed_ras[i]],
                "moving_ras_mm": [float(v) for v in self.moving_ras[i]],
                "fixed_mapped_ras_mm": [float(v) for v in self.fixed_mapped_ras[i]],
            }
            if fixed_space is not None:
                row["fixed_space_after_mm"] = None if not np.isfinite(fixed_space[i]) else float(fixed_space[i])
                if self.inverse_residual_mm is not None:
                    row["inverse_residual_mm"] = float(self.inverse_residual_mm[i])
            points.append(row)
        out = {
            "convention": "after = |T(f) - m|, T = resampling transform fixed->moving (FromParent); "
                          "before = |f - m|; std is the population std",
            "transform": self.transform_name,
            "points": points,
            "before": self.summary("before"),
            "after": dict(self.summary("after"), improved_fraction=improved_fraction(before, after)),
            "unmatched": {"fixed_only": list(self.unmatched["fixed_only"]),
                          "moving_only": list(self.unmatched["moving_only"])},
            "skipped": [dict(u) for u in self.skipped],
            "outside_domain_count": int(np.count_nonzero(self.outside_domain)),
        }
        if self.fixed_space_variant:
            residual = self.inverse_residual_mm
            out["fixed_space_after"] = dict(
                self.summary("fixed_space"), definition="|f - T^-1(m)|, T^-1 = Slicer's inverse (ToParent)",
                max_inverse_residual_mm=None if residual is None or not len(residual) else float(np.max(residual)),
            )
        return out


def _as_landmarks(value, side: str, coordinate_system: str | None = None) -> Landmarks:
    import os

    if isinstance(value, Landmarks):
        lm = value
    elif isinstance(value, (str, os.PathLike)):
        from .io import read_landmarks

        lm = read_landmarks(value, coordinate_system=coordinate_system)
    elif value is not None and hasattr(value, "GetNumberOfControlPoints"):
        if value.GetNumberOfControlPoints() == 0:
            raise BadInputError(f"{side} landmarks (node '{value.GetName()}')", "no landmarks (empty set)")
        lm = landmarks_from_node(value)
    else:
        raise BadInputError(f"{side} landmarks", "expected a landmark file, io.Landmarks or a markups node")
    name = f"{side} landmarks" + (f" ({lm.source})" if lm.source else "")
    if len(lm.labels) == 0:
        raise BadInputError(name, "no landmarks (empty set)")
    ras = np.asarray(lm.ras, dtype=float).reshape(-1, 3)
    if ras.shape[0] != len(lm.labels):
        raise BadInputError(name, f"{len(lm.labels)} labels but {ras.shape[0]} points")
    if not np.all(np.isfinite(ras)):
        raise BadInputError(name, "non-finite coordinates")
    labels = [str(label).strip() for label in lm.labels]
    check_unique_labels(labels, name)
    return Landmarks(labels, ras, source=lm.source, skipped=list(lm.skipped))


def compute_tre(fixed, moving, transform_node=None, fixed_space_variant: bool = False,
                coordinate_system: str | None = None) -> TREResult:
    """Target registration error of ``transform_node`` for landmarks matched by label.

    ``fixed`` / ``moving``: :class:`io.Landmarks`, markups nodes (world RAS through their parent transforms) or
    landmark file paths (read by :func:`io.read_landmarks`; ``coordinate_system`` "LPS"/"RAS" applies to CSV).
    ``transform_node``: the registration's resampling transform (fixed -> moving, the node's ``FromParent``;
    any transform node: linear, grid, B-spline, composite). ``None`` means identity (after == before).

    ``after = |T(f) - m|``, ``before = |f - m|`` (module docstring). Points are matched by label (exact string
    after stripping spaces), never by order; labels present on one side only are listed in ``unmatched``.
    With ``fixed_space_variant`` the result also reports ``|f - T^-1(m)|`` through Slicer's inverse, labelled
    as such. Raises :class:`BadInputError` for empty sets, duplicate labels, no common label, a non-transform
    node, or a transform that gives non-finite positions.
    """
    f_lm = _as_landmarks(fixed, "fixed", coordinate_system)
    m_lm = _as_landmarks(moving, "moving", coordinate_system)
    m_index = {label: i for i, label in enumerate(m_lm.labels)}
    f_set = set(f_lm.labels)
    common = [label for label in f_lm.labels if label in m_index]
    unmatched = {"fixed_only": [label for label in f_lm.labels if label not in m_index],
                 "moving_only": [label for label in m_lm.labels if label not in f_set]}
    skipped = [{"label": str(label), "side": side} for side, lm in (("fixed", f_lm), ("moving", m_lm))
               for label in lm.skipped]
    if not common:
        def _few(labels):
            return ", ".join(labels[:5]) + (" ..." if len(labels) > 5 else "")

        def _side(name, lm):  # the file (or node) when known: the user must see which files disagree
            return f"{name} {lm.source} ({_few(lm.labels)})" if lm.source else f"{name} ({_few(lm.labels)})"

        raise BadInputError(
            "landmarks", f"no label in common between {_side('fixed', f_lm)} and {_side('moving', m_lm)}"
        )
    f_index = {label: i for i, label in enumerate(f_lm.labels)}
    f = f_lm.ras[[f_index[label] for label in common]]
    m = m_lm.ras[[m_index[label] for label in common]]

    transform_name, residual = None, None
    if transform_node is None:
        mapped, moving_mapped, outside = f.copy(), m.copy(), np.zeros(len(common), dtype=bool)
    else:
        if not (hasattr(transform_node, "IsA") and transform_node.IsA("vtkMRMLTransformNode")):
            raise BadInputError("transform", "not a transform node")
        transform_name = transform_node.GetName()
        forward, inverse = _world_transforms(transform_node)
        mapped = _map_points(forward, f)
        bad = [common[i] for i in np.flatnonzero(~np.all(np.isfinite(mapped), axis=1))]
        if bad:
            raise BadInputError(transform_node, f"maps fixed landmark(s) {', '.join(bad[:5])} to non-finite positions")
        outside = transform_domain_flags(forward, f)
        moving_mapped = _map_points(inverse, m)
        residual = np.linalg.norm(_map_points(forward, moving_mapped) - m, axis=1)
    return TREResult(
        labels=common, fixed_ras=f, moving_ras=m, fixed_mapped_ras=mapped, outside_domain=outside,
        moving_mapped_ras=moving_mapped, inverse_residual_mm=residual, fixed_space_variant=fixed_space_variant,
        unmatched=unmatched, skipped=skipped, transform_name=transform_name, fixed_source=f_lm.source,
        moving_source=m_lm.source,
    )


# ---------------------------------------------------------------------------------------------------
# Scene outputs
# ---------------------------------------------------------------------------------------------------
SUMMARY_STATS = ("mean", "std", "median", "p95", "max", "count")


def tre_rows(result: TREResult) -> list[dict]:
    """Flat rows: one per landmark (``kind`` = "landmark") then one per summary statistic (``kind`` = "summary")."""
    rows = []
    before, after, vec = result.before_mm, result.after_mm, result.error_vectors_ras
    fixed_space = result.fixed_space_mm if result.fixed_space_variant else None
    for i, label in enumerate(result.labels):
        row = {"kind": "landmark", "label": label, "before_mm": float(before[i]), "after_mm": float(after[i]),
               "error_R_mm": float(vec[i, 0]), "error_A_mm": float(vec[i, 1]), "error_S_mm": float(vec[i, 2]),
               "outside_domain": "yes" if result.outside_domain[i] else "no"}
        if fixed_space is not None:
            row["fixed_space_after_mm"] = float(fixed_space[i])
            if result.inverse_residual_mm is not None:
                row["inverse_residual_mm"] = float(result.inverse_residual_mm[i])
        rows.append(row)
    sums = {k: result.summary(k) for k in ("before", "after")}
    if fixed_space is not None:
        sums["fixed_space"] = result.summary("fixed_space")
    for stat in SUMMARY_STATS:
        key = "count" if stat == "count" else f"{stat}_mm"
        row = {"kind": "summary", "label": stat, "before_mm": sums["before"][key], "after_mm": sums["after"][key],
               "error_R_mm": None, "error_A_mm": None, "error_S_mm": None, "outside_domain": ""}
        if fixed_space is not None:
            row["fixed_space_after_mm"] = sums["fixed_space"][key]
        rows.append(row)
    return rows


def tre_to_table_node(ctx, result: TREResult, name: str = "Landmark TRE", node=None):
    """A table node: one row per landmark, then summary rows (mean, std, median, p95, max, count)."""
    from .io import rows_to_table_node

    table = rows_to_table_node(ctx, tre_rows(result), name=name, node=node)
    table.SetAttribute("RegistrationQuality.TREConvention", "after=|T(f)-m|, T=FromParent (fixed->moving)")
    return table


def mapped_landmarks_node(ctx, moving, transform_node=None, name: str = "moving landmarks in fixed space"):
    """Markups fiducials of the moving landmarks mapped into fixed space (``T^-1(m)``), for display.

    ``moving``: a :class:`TREResult` (its matched moving landmarks, already mapped), or landmarks / a markups
    node plus ``transform_node`` (all its points mapped through Slicer's inverse, ``ToWorld``). Positions are
    stored hardened (no parent transform), labels kept, node locked. Inputs are not modified.
    """
    from .io import landmarks_to_node

    if isinstance(moving, TREResult):
        labels = list(moving.labels)
        points = moving.moving_mapped_ras if moving.moving_mapped_ras is not None else moving.moving_ras
    else:
        lm = _as_landmarks(moving, "moving")
        labels = lm.labels
        points = lm.ras if transform_node is None else _map_points(_world_transforms(transform_node)[1], lm.ras)
    return landmarks_to_node(ctx, Landmarks(labels, np.asarray(points, dtype=float)), name)


TRE_COLOR_NODE_NAME = "RegistrationQuality TRE"


def tre_color_node(ctx):
    """The colour table used for error vectors: blue (0 mm) -> cyan -> green -> yellow -> red (max), 256 entries.

    Built here (not taken from Slicer's colour files) so that it is the same in the application and headless;
    reused when the scene already has it.
    """
    import colorsys

    scene = ctx.scene
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
        if node.GetName() == TRE_COLOR_NODE_NAME:
            return node
    node = ctx.add_node("vtkMRMLColorTableNode", TRE_COLOR_NODE_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    node.SetNamesInitialised(True)
    for i in range(256):
        r, g, b = colorsys.hsv_to_rgb((1.0 - i / 255.0) * 240.0 / 360.0, 1.0, 1.0)
        node.SetColor(i, f"{i}", r, g, b, 1.0)
    node.SetAttribute("Category", "RegistrationQuality")
    return node


def error_vectors_node(ctx, result: TREResult, name: str = "TRE error vectors", space: str = "fixed",
                       tube_radius_mm: float = 0.0):
    """A model node with one line segment per landmark, coloured by its TRE (``after_mm``).

    ``space="fixed"``: from the fixed landmark ``f`` to the mapped moving landmark ``T^-1(m)`` (drawn over the
    fixed image). ``space="moving"``: from ``T(f)`` to ``m`` (exactly the error vector, over the moving image).
    Point scalar ``TRE_mm`` holds each segment's ``after_mm`` at both ends; the display colours by it
    (:func:`tre_color_node`: blue at 0 mm to red at the largest TRE). ``tube_radius_mm > 0`` turns the lines
    into tubes, whose cross-sections then also show in slice views.
    """
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkFiltersCore import vtkTubeFilter

    if space == "fixed":
        if result.moving_mapped_ras is None:
            raise BadInputError("error vectors", "moving landmarks were not mapped into fixed space")
        start, end = result.fixed_ras, result.moving_mapped_ras
    elif space == "moving":
        start, end = result.fixed_mapped_ras, result.moving_ras
    else:
        raise BadInputError("error vectors", f"space '{space}' is neither fixed nor moving")
    n = len(result.labels)
    coords = np.empty((2 * n, 3), dtype=float)
    coords[0::2], coords[1::2] = start, end
    points = vtkPoints()
    points.SetData(numpy_to_vtk(coords, deep=1))
    lines = vtkCellArray()
    for i in range(n):
        lines.InsertNextCell(2)
        lines.InsertCellPoint(2 * i)
        lines.InsertCellPoint(2 * i + 1)
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    tre = np.repeat(result.after_mm, 2)
    scalars = numpy_to_vtk(tre.astype(np.float64), deep=1)
    scalars.SetName("TRE_mm")
    poly.GetPointData().AddArray(scalars)
    poly.GetPointData().SetActiveScalars("TRE_mm")
    if tube_radius_mm and tube_radius_mm > 0:
        tube = vtkTubeFilter()
        tube.SetInputData(poly)
        tube.SetRadius(float(tube_radius_mm))
        tube.SetNumberOfSides(12)
        tube.CappingOn()
        tube.Update()
        poly = vtkPolyData()
        poly.DeepCopy(tube.GetOutput())
    model = ctx.add_node("vtkMRMLModelNode", name)
    model.SetAndObservePolyData(poly)
    model.CreateDefaultDisplayNodes()
    display = model.GetDisplayNode()
    display.SetActiveScalarName("TRE_mm")
    display.SetActiveAttributeLocation(0)  # vtkAssignAttribute.POINT_DATA
    display.SetAndObserveColorNodeID(tre_color_node(ctx).GetID())
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    display.SetScalarRange(0.0, float(max(result.after_mm.max(), 1e-6)))
    display.SetScalarVisibility(True)
    display.SetLineWidth(3.0)
    display.SetVisibility2D(True)
    display.SetSliceIntersectionThickness(3)
    model.SetAttribute("RegistrationQuality.ErrorVectorSpace", space)
    return model
