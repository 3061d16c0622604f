"""elastix results in Slicer: TransformParameters files, output folders, SlicerElastix scene nodes.

Conventions
-----------
An elastix ``TransformParameters.N.txt`` holds the *resampling* transform: it maps fixed-image points to
moving-image points, in LPS (what ``transformix -def`` prints). :func:`load_transform_parameters` gives a
transform node whose **FromParent** transform maps fixed -> moving points in RAS, so that for a fixed point
``p`` (LPS) ``FromParent(ras(p)) == ras(transformix(p))``; ``ToParent`` maps moving -> fixed (applying the
node to the moving volume aligns it with the fixed one).

Transform models (elastix manual, section 2.6 and appendix; ITK/elastix transform classes). With centre
``c`` (``CenterOfRotationPoint``) and translation ``t``, every linear model is ``T(x) = A (x - c) + c + t``:

- ``TranslationTransform``: ``A = I``, parameters ``t``.
- ``EulerTransform``: ``(θx, θy, θz, t)``; ``A = Rz Ry Rx`` when ``ComputeZYX`` is true, else ``A = Rz Rx Ry``
  (ITK Euler3DTransform; ``Rx = [[1,0,0],[0,cos,-sin],[0,sin,cos]]`` etc.).
- ``SimilarityTransform``: ``(versor vx, vy, vz, t, s)``; ``A = s R(v)`` with the unit quaternion
  ``(vx, vy, vz, sqrt(1 - |v|²))`` (ITK Similarity3DTransform).
- ``AffineTransform``: ``(a11 a12 a13 a21 ... a33, t)``, ``A`` row by row.
- ``AffineDTITransform``: ``(angles φ, shears g, scales s, t)``;
  ``A = Rx Ry Rz Gx Gy Gz S`` with elastix's own rotation sign convention (``Rx = [[1,0,0],[0,c,s],[0,-s,c]]``,
  ``Gx`` has ``gx`` at (0,2), ``Gy`` ``gy`` at (1,0), ``Gz`` ``gz`` at (2,1)) (elastix itkAffineDTI3DTransform).
- ``BSplineTransform`` / ``RecursiveBSplineTransform`` (order 3): ``T(x) = x + Σ_k c_k β³(u - k)`` with
  ``u = (D S)⁻¹ (x - O)`` the continuous grid index (``GridOrigin`` O, ``GridSpacing`` S, ``GridDirection`` D,
  control points ``GridIndex .. GridIndex + GridSize - 1``); parameters are all x coefficients (x index
  fastest), then all y, then all z. Outside the grid's valid region (``u - GridIndex`` not in
  ``[1, GridSize - 2)`` on some axis) elastix returns ``T(x) = x``: :func:`points_outside_domain` flags
  those points, because Slicer's B-spline evaluates there (coefficients beyond the grid count as zero).
  elastix writes ``Direction`` and ``GridDirection`` column by column (ITK's matrix transposed).

``UseDirectionCosines "false"``: see :func:`read_transform_chain` (needs the moving image's frame).

Chains: ``InitialTransformParametersFileName`` (elastix <= 5.0) or ``InitialTransformParameterFileName``
(elastix >= 5.1) names the transform applied *first*; ``HowToCombineTransforms "Compose"`` gives
``T(x) = T_current(T_initial(x))``. A relative name is looked up against the parameter file's folder, then as
written (elastix writes it relative to its working folder), then by its file name alone in the parameter
file's folder (a moved output folder). ``NoInitialTransform`` ends the chain; an ITK transform file
(.tfm/.h5/.txt/.mat, fixed -> moving LPS like elastix's) may be an initial transform, and so may a parameter
file of ``(Transform "File")`` / ``(Transform "ExternalTransform")`` with ``TransformFileName``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInputError

FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS for 3-vectors
FLIP4 = np.diag([-1.0, -1.0, 1.0, 1.0])

INITIAL_KEYS = ("InitialTransformParametersFileName", "InitialTransformParameterFileName")
LINEAR_TYPES = ("TranslationTransform", "EulerTransform", "SimilarityTransform", "AffineTransform",
                "AffineDTITransform")
BSPLINE_TYPES = ("BSplineTransform", "RecursiveBSplineTransform")
EXTERNAL_TYPES = ("File", "ExternalTransform")
ITK_TRANSFORM_EXTENSIONS = (".tfm", ".h5", ".hdf5", ".mat", ".txt")
NODE_SOURCE_ATTRIBUTE = "RegistrationQuality.ElastixFile"
NODE_CHAIN_ATTRIBUTE = "RegistrationQuality.ElastixChain"
NODE_MOVING_FRAME_ATTRIBUTE = "RegistrationQuality.ElastixMovingFrame"  # UseDirectionCosines false only
MAX_CHAIN = 64


# ---------------------------------------------------------------------------------------------------
# Parameter-file parsing
# ---------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r'"[^"\n]*"?|//[^\n]*|\(|\)|[^\s()"]+')


class ParameterFile:
    """The entries of one elastix parameter file: key -> list of string values (quotes removed)."""

    def __init__(self, path, entries: dict):
        self.path = Path(path)
        self.entries = entries

    @property
    def name(self) -> str:
        return os.fspath(self.path)

    def has(self, key: str) -> bool:
        return key in self.entries

    def error(self, key: str, problem: str) -> BadInputError:
        return BadInputError(self.name, f"({key}) {problem}")

    def strings(self, key: str, default=None) -> list:
        if key not in self.entries:
            if default is None:
                raise self.error(key, "missing")
            return list(default)
        return list(self.entries[key])

    def string(self, key: str, default: str | None = None) -> str:
        values = self.strings(key, None if default is None else [default])
        if not values:
            raise self.error(key, "has no value")
        return values[0]

    def numbers(self, key: str, count: int | None = None, default=None) -> np.ndarray:
        if key not in self.entries and default is not None:
            return np.asarray(default, dtype=float)
        values = self.strings(key)
        try:
            out = np.array(values, dtype=float)
        except ValueError:
            out = None
        if out is None or not np.all(np.isfinite(out)):
            for i, text in enumerate(values):
                try:
                    value = float(text)
                except ValueError:
                    raise self.error(key, f"value {i + 1} '{text}' is not a number") from None
                if not math.isfinite(value):
                    raise self.error(key, f"value {i + 1} '{text}' is not finite")
        if count is not None and len(out) != count:
            raise self.error(key, f"has {len(out)} values, {count} expected")
        return out

    def integers(self, key: str, count: int | None = None, default=None) -> np.ndarray:
        values = self.numbers(key, count, default)
        if not np.all(values == np.round(values)):
            raise self.error(key, "values must be whole numbers")
        return values.astype(int)

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.entries:
            return default
        value = self.string(key).strip().lower()
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise self.error(key, f"'{value}' is neither true nor false")


def parse_parameter_text(text: str, source) -> dict:
    """Entries ``key -> [values]`` of elastix parameter-file text (``(Key v1 v2 ...)``, ``//`` comments)."""
    entries: dict = {}
    current = None
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token.startswith("//"):
            continue
        if token == "(":
            if current is not None:
                raise BadInputError(os.fspath(source), f"unbalanced '(' near ({current[0] if current else ''}")
            current = []
        elif token == ")":
            if current is None:
                raise BadInputError(os.fspath(source), "unbalanced ')'")
            if current:
                key = current[0]
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise BadInputError(os.fspath(source), f"'{key}' is not a parameter name")
                entries[key] = current[1:]
            current = None
        elif current is not None:
            if token.startswith('"'):
                if len(token) < 2 or not token.endswith('"'):
                    raise BadInputError(os.fspath(source), f"unterminated string {token[:40]}")
                token = token[1:-1]
            current.append(token)
        else:
            raise BadInputError(os.fspath(source),
                                f"not an elastix parameter file: text outside parentheses ('{token[:40]}')")
    if current is not None:
        raise BadInputError(os.fspath(source), "unbalanced '(' at the end of the file")
    return entries


def read_parameter_file(path) -> ParameterFile:
    """Parse an elastix parameter file (BadInputError naming the file for unreadable or malformed text)."""
    from .io import check_file

    p = check_file(path, "elastix parameter file")
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadInputError(os.fspath(path), "not a text file (cannot decode as UTF-8)") from None
    entries = parse_parameter_text(text, path)
    if "Transform" not in entries:
        raise BadInputError(os.fspath(path), "(Transform) missing: not an elastix TransformParameters file")
    return ParameterFile(path, entries)


# ---------------------------------------------------------------------------------------------------
# Transform components (LPS, fixed -> moving), in the order they are applied
# ---------------------------------------------------------------------------------------------------
@dataclass
class LinearComponent:
    """``T(x) = matrix[:3,:3] x + matrix[:3,3]`` in LPS."""

    matrix: np.ndarray
    source: str
    kind: str


@dataclass
class BSplineComponent:
    """Cubic B-spline displacement on a control-point grid (LPS); ``coefficients`` shape (3, nz, ny, nx)."""

    size: np.ndarray  # control points along x, y, z
    origin: np.ndarray  # physical position of the first stored control point (GridIndex applied)
    spacing: np.ndarray
    direction: np.ndarray  # 3x3
    coefficients: np.ndarray
    source: str
    kind: str = "BSplineTransform"

    def continuous_index(self, lps_points: np.ndarray) -> np.ndarray:
        m = self.direction @ np.diag(self.spacing)
        return np.linalg.solve(m, (np.asarray(lps_points, float) - self.origin).T).T

    def inside(self, lps_points: np.ndarray) -> np.ndarray:
        """elastix's valid region for order 3: 1 <= u < size - 2 on every axis."""
        u = self.continuous_index(lps_points)
        return np.all((u >= 1.0) & (u < self.size - 2.0), axis=1)

    def transform_points(self, lps_points: np.ndarray) -> np.ndarray:
        """Evaluate like elastix (identity outside the valid region); used to cross-check, not for speed."""
        pts = np.asarray(lps_points, float).reshape(-1, 3)
        out = pts.copy()
        u = self.continuous_index(pts)
        ok = np.all((u >= 1.0) & (u < self.size - 2.0), axis=1)
        for n in np.nonzero(ok)[0]:
            start = np.floor(u[n]).astype(int) - 1
            w = [_cubic_weights(u[n][d] - start[d]) for d in range(3)]
            block = self.coefficients[:, start[2]:start[2] + 4, start[1]:start[1] + 4, start[0]:start[0] + 4]
            out[n] += np.einsum("ckji,k,j,i->c", block, w[2], w[1], w[0])
        return out


def _cubic_weights(t: float) -> np.ndarray:
    """Cubic B-spline weights for the 4 control points at offsets 0..3 from ``start``; ``t = u - start``."""
    f = t - 1.0  # fractional position in [0, 1)
    return np.array([(1 - f) ** 3 / 6.0, (3 * f**3 - 6 * f**2 + 4) / 6.0, (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6.0,
                     f**3 / 6.0])


@dataclass
class ExternalComponent:
    """An ITK transform file (fixed -> moving, LPS) in the chain."""

    path: str
    source: str
    kind: str = "ITK transform file"


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _versor_matrix(v) -> np.ndarray:
    x, y, z = (float(a) for a in v)
    norm = math.sqrt(x * x + y * y + z * z)
    if norm >= 1.0:  # ITK's VersorRigid3D rule: scale the axis just inside the unit ball
        scale = (1.0 - 1e-10) / norm
        x, y, z = x * scale, y * scale, z * scale
        norm = 1.0 - 1e-10
    w = math.sqrt(max(0.0, 1.0 - norm * norm))
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _affine_dti_matrix(p) -> np.ndarray:
    cx, sx = math.cos(p[0]), math.sin(p[0])
    cy, sy = math.cos(p[1]), math.sin(p[1])
    cz, sz = math.cos(p[2]), math.sin(p[2])
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    gx = np.eye(3)
    gx[0, 2] = p[3]
    gy = np.eye(3)
    gy[1, 0] = p[4]
    gz = np.eye(3)
    gz[2, 1] = p[5]
    return rx @ ry @ rz @ gx @ gy @ gz @ np.diag(p[6:9])


EXPECTED_PARAMETERS = {"TranslationTransform": 3, "EulerTransform": 6, "SimilarityTransform": 7,
                       "AffineTransform": 12, "AffineDTITransform": 12}


def _check_dimension(pf: ParameterFile) -> None:
    for key in ("FixedImageDimension", "MovingImageDimension"):
        if pf.has(key):
            dim = pf.integers(key, 1)[0]
            if dim != 3:
                raise pf.error(key, f"is {dim}: a {dim}D transform cannot map the 3D images")


def _parameters(pf: ParameterFile, expected: int) -> np.ndarray:
    if pf.boolean("UseBinaryFormatForTransformationParameters", False):
        raise pf.error("UseBinaryFormatForTransformationParameters",
                       "is true: binary parameter files are not supported; rerun elastix without it")
    params = pf.numbers("TransformParameters")
    if pf.has("NumberOfParameters"):
        declared = pf.integers("NumberOfParameters", 1)[0]
        if declared != len(params):
            raise pf.error("TransformParameters", f"has {len(params)} values but (NumberOfParameters {declared})")
    if len(params) != expected:
        raise pf.error("TransformParameters", f"has {len(params)} values; {pf.string('Transform')} in 3D needs "
                       f"{expected}")
    return params


def _linear_component(pf: ParameterFile, kind: str) -> LinearComponent:
    p = _parameters(pf, EXPECTED_PARAMETERS[kind])
    if kind == "TranslationTransform":
        a, t, c = np.eye(3), p[:3], np.zeros(3)
    else:
        c = pf.numbers("CenterOfRotationPoint", 3)
        if kind == "EulerTransform":
            zyx = pf.boolean("ComputeZYX", False)
            a = _rz(p[2]) @ _ry(p[1]) @ _rx(p[0]) if zyx else _rz(p[2]) @ _rx(p[0]) @ _ry(p[1])
            t = p[3:6]
        elif kind == "SimilarityTransform":
            a, t = p[6] * _versor_matrix(p[:3]), p[3:6]
        elif kind == "AffineTransform":
            a, t = p[:9].reshape(3, 3), p[9:12]
        else:  # AffineDTITransform
            a, t = _affine_dti_matrix(p), p[9:12]
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = t + c - a @ c
    return LinearComponent(m, pf.name, kind)


def _bspline_component(pf: ParameterFile, kind: str) -> BSplineComponent:
    order = pf.integers("BSplineTransformSplineOrder", 1, default=[3])[0]
    if order != 3:
        raise pf.error("BSplineTransformSplineOrder", f"is {order}; only cubic (3) B-splines are supported")
    if pf.boolean("UseCyclicTransform", False):
        raise pf.error("UseCyclicTransform", "is true; cyclic B-spline transforms are not supported")
    size = pf.integers("GridSize", 3)
    if np.any(size < 4):
        raise pf.error("GridSize", f"{size.tolist()}: at least 4 control points per axis are needed")
    index = pf.integers("GridIndex", 3, default=[0, 0, 0])
    spacing = pf.numbers("GridSpacing", 3)
    if np.any(spacing <= 0):
        raise pf.error("GridSpacing", "values must be positive")
    origin = pf.numbers("GridOrigin", 3)
    # elastix writes direction matrices column by column (ITK's matrix transposed)
    direction = pf.numbers("GridDirection", 9, default=np.eye(3).ravel()).reshape(3, 3).T
    if abs(np.linalg.det(direction)) < 1e-6:
        raise pf.error("GridDirection", "is singular")
    n = int(np.prod(size))
    p = _parameters(pf, 3 * n)
    coefficients = p.reshape(3, size[2], size[1], size[0])
    origin = origin + direction @ (spacing * index)
    return BSplineComponent(size, origin, spacing, direction, coefficients, pf.name, kind)


def _resolve_reference(pf: ParameterFile, key: str, value: str) -> Path:
    """Find a file named in a parameter file: beside the file, as written, then by name beside the file."""
    written = Path(value)
    folder = pf.path.parent
    candidates = [written] if written.is_absolute() else [folder / written, written]
    candidates.append(folder / written.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise pf.error(key, f"file '{value}' not found (looked beside the parameter file and as written)")


def _is_itk_transform_file(path: Path) -> bool:
    from .io import file_extension, is_elastix_parameter_file

    ext = file_extension(path)
    if ext not in ITK_TRANSFORM_EXTENSIONS:
        return False
    return not (ext == ".txt" and is_elastix_parameter_file(path))


def read_transform_chain(path, moving_image=None) -> list:
    """The components of an elastix transform (following initial transforms), in the order applied.

    Returns a list of :class:`LinearComponent`, :class:`BSplineComponent` and :class:`ExternalComponent`;
    ``chain[0]`` is applied first to a fixed-image point. Raises BadInputError naming the file and key.

    ``UseDirectionCosines "false"``: elastix registered the images as if their direction matrices were the
    identity, so the file maps *pseudo* points ``o + S·index``. The physical mapping is then
    ``W_m ∘ T ∘ W_f⁻¹`` with ``W(p) = o + D (p - o)`` for the fixed image (``Origin``/``Direction`` of the file)
    and the moving image; ``moving_image`` (a path, SimpleITK image or volume node) gives the moving origin and
    direction, and is required in that case. (``transformix -def`` applies ``T`` to the given points as they
    are; ``transformix -in`` resamples with the physical mapping above.)
    """
    from .io import check_file

    check_file(path, "elastix parameter file")
    chain_rev: list = []  # last applied first
    seen: list = []
    top = None  # (first elastix parameter file, its UseDirectionCosines)
    current = Path(path)
    while True:
        key_resolved = current.resolve()
        if key_resolved in seen:
            names = " -> ".join(p.name for p in seen + [key_resolved])
            raise BadInputError(os.fspath(path), f"initial-transform chain has a cycle ({names})")
        seen.append(key_resolved)
        if len(seen) > MAX_CHAIN:
            raise BadInputError(os.fspath(path), f"initial-transform chain longer than {MAX_CHAIN} files")
        top_level_text = len(seen) == 1 and current.suffix.lower() == ".txt"  # the file given: elastix's format
        if not top_level_text and _is_itk_transform_file(current):
            chain_rev.append(ExternalComponent(os.fspath(current), os.fspath(current)))
            break
        pf = read_parameter_file(current)
        kind = pf.string("Transform")
        if kind in EXTERNAL_TYPES:
            target = _resolve_reference(pf, "TransformFileName", pf.string("TransformFileName"))
            chain_rev.append(ExternalComponent(os.fspath(target), pf.name))
        else:
            _check_dimension(pf)
            if kind in LINEAR_TYPES:
                chain_rev.append(_linear_component(pf, kind))
            elif kind in BSPLINE_TYPES:
                chain_rev.append(_bspline_component(pf, kind))
            else:
                known = ", ".join(LINEAR_TYPES + BSPLINE_TYPES)
                raise pf.error("Transform", f"'{kind}' is not supported (supported: {known})")
            use_cosines = pf.boolean("UseDirectionCosines", True)
            if top is None:
                top = (pf, use_cosines)
            elif use_cosines != top[1]:
                raise pf.error("UseDirectionCosines", f"is {str(use_cosines).lower()} but "
                               f"{top[0].name} has {str(top[1]).lower()}; a chain must use one setting")
        keys = [k for k in INITIAL_KEYS if pf.has(k)]
        if not keys:
            break
        key = keys[0]
        initial = pf.string(key, "NoInitialTransform")
        if initial in ("NoInitialTransform", ""):
            break
        how = pf.string("HowToCombineTransforms", "Compose")
        if how != "Compose":
            raise pf.error("HowToCombineTransforms", f"'{how}' is not supported; only \"Compose\" is")
        current = _resolve_reference(pf, key, initial)
    chain = list(reversed(chain_rev))
    if top is not None and not top[1]:
        pf = top[0]
        if moving_image is None:
            raise pf.error("UseDirectionCosines", "is false: the physical mapping depends on the moving image's "
                           "direction cosines; give the moving image")
        fixed_origin = pf.numbers("Origin", 3)
        fixed_direction = pf.numbers("Direction", 9, default=np.eye(3).ravel()).reshape(3, 3).T
        moving_origin, moving_direction = _origin_direction(moving_image)
        chain = ([LinearComponent(np.linalg.inv(_frame(fixed_origin, fixed_direction)), pf.name, "fixed frame")]
                 + chain + [LinearComponent(_frame(moving_origin, moving_direction), pf.name, "moving frame")])
    return chain


def _frame(origin, direction) -> np.ndarray:
    """``W(p) = o + D (p - o)``: elastix's direction-free image frame -> physical space (LPS)."""
    m = np.eye(4)
    m[:3, :3] = direction
    m[:3, 3] = origin - direction @ origin
    return m


def _origin_direction(image) -> tuple[np.ndarray, np.ndarray]:
    """(origin, direction 3x3) in LPS of a SimpleITK image, an image file or a volume node."""
    if isinstance(image, (str, os.PathLike)):
        from .io import read_image_information

        image = read_image_information(image)
    if hasattr(image, "GetIJKToRASMatrix"):
        from .io import geometry_from_ijk_to_ras, node_ijk_to_ras

        origin, _, direction = geometry_from_ijk_to_ras(node_ijk_to_ras(image))
    else:
        origin, direction = image.GetOrigin(), image.GetDirection()
    if len(origin) != 3:
        raise BadInputError("moving image", f"{len(origin)}D; a 3D image is needed")
    return np.array(origin, float), np.array(direction, float).reshape(3, 3)


def _merge_linear(chain: list) -> list:
    out: list = []
    for comp in chain:
        if isinstance(comp, LinearComponent) and out and isinstance(out[-1], LinearComponent):
            prev = out[-1]
            out[-1] = LinearComponent(comp.matrix @ prev.matrix, prev.source + " + " + comp.source, "composed linear")
        else:
            out.append(comp)
    return out


def describe_chain(chain: list) -> str:
    """One line: the component types in the order applied, e.g. ``EulerTransform -> BSplineTransform``."""
    return " -> ".join(c.kind for c in chain)


# ---------------------------------------------------------------------------------------------------
# VTK / MRML
# ---------------------------------------------------------------------------------------------------
def _vtk_matrix(m):
    from .io import matrix_to_vtk

    return matrix_to_vtk(m)


def _bspline_to_vtk(comp: BSplineComponent):
    """A vtkOrientedBSplineTransform (RAS) equal to the component inside its valid region."""
    import slicer
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    img = vtkImageData()
    nx, ny, nz = (int(v) for v in comp.size)
    img.SetExtent(0, nx - 1, 0, ny - 1, 0, nz - 1)
    img.SetSpacing(*(float(s) for s in comp.spacing))
    img.SetOrigin(*(float(v) for v in FLIP @ comp.origin))
    coeffs = np.stack([-comp.coefficients[0], -comp.coefficients[1], comp.coefficients[2]], axis=-1)  # LPS->RAS
    arr = numpy_to_vtk(np.ascontiguousarray(coeffs.reshape(-1, 3)), deep=1)
    img.GetPointData().SetScalars(arr)
    direction = np.eye(4)
    direction[:3, :3] = FLIP @ comp.direction
    t = slicer.vtkOrientedBSplineTransform()
    t.SetBorderModeToZero()  # as Slicer does for ITK B-spline files
    t.SetGridDirectionMatrix(_vtk_matrix(direction))
    t.SetCoefficientData(img)
    return t


def _external_to_vtk(ctx, comp: ExternalComponent):
    """Load an ITK transform file through Slicer's transforms logic; returns a copy of its FromParent."""
    from .context import TemporaryNodes

    with TemporaryNodes(ctx) as tmp:
        node = ctx.logic("Transforms").AddTransform(comp.path, ctx.scene)
        if node is None:
            raise BadInputError(comp.source, f"initial transform '{comp.path}' is not a readable ITK transform file")
        tmp.add(node)
        source = node.GetTransformFromParent()
        if source is None:
            raise BadInputError(comp.source, f"initial transform '{comp.path}' holds no transform")
        return _copy_transform(source)


def _copy_transform(source):
    """A copy of a vtk transform that shares nothing with the node it came from (removing the node resets it)."""
    import slicer
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform, vtkLinearTransform, vtkTransform

    if isinstance(source, vtkLinearTransform):
        source.Update()
        m = vtkMatrix4x4()
        m.DeepCopy(source.GetMatrix())
        t = vtkTransform()
        t.SetMatrix(m)
        return t
    if isinstance(source, vtkGeneralTransform):
        pieces = _flatten(source)
        t = vtkGeneralTransform()
        t.PostMultiply()
        for piece in pieces:
            t.Concatenate(_copy_transform(piece))
        return t
    if isinstance(source, (slicer.vtkOrientedBSplineTransform, slicer.vtkOrientedGridTransform)):
        inverted = bool(source.GetInverseFlag())
        forward = source.GetInverse() if inverted else source
        copy = forward.MakeTransform()
        copy.DeepCopy(forward)
        if isinstance(forward, slicer.vtkOrientedBSplineTransform):
            data = vtkImageData()
            data.DeepCopy(forward.GetCoefficientData())
            copy.SetCoefficientData(data)
        else:
            data = vtkImageData()
            data.DeepCopy(forward.GetDisplacementGrid())
            copy.SetDisplacementGridData(data)
        direction = vtkMatrix4x4()
        if forward.GetGridDirectionMatrix() is not None:
            direction.DeepCopy(forward.GetGridDirectionMatrix())
        copy.SetGridDirectionMatrix(direction)
        if inverted:
            copy.Inverse()
        return copy
    copy = source.MakeTransform()
    copy.DeepCopy(source)
    return copy


def load_transform_parameters(ctx, path, name: str | None = None, moving_image=None):
    """Load an elastix TransformParameters file (and its initial transforms) as a transform node.

    The node's FromParent maps fixed -> moving points (RAS) as transformix does in LPS. Linear chains give a
    vtkMRMLLinearTransformNode, a lone B-spline a vtkMRMLBSplineTransformNode, anything else a
    vtkMRMLTransformNode holding a composite (vtkGeneralTransform, applied first to last). The node carries
    the attributes ``RegistrationQuality.ElastixFile`` (the file) and ``RegistrationQuality.ElastixChain``.
    ``moving_image`` (path, SimpleITK image or volume node) is needed only for ``UseDirectionCosines "false"``
    files (see :func:`read_transform_chain`).
    """
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    from .io import node_name_from_path

    chain = read_transform_chain(path, moving_image)
    parts = _merge_linear(chain)
    name = name or node_name_from_path(path)
    vtk_parts = []
    for comp in parts:
        if isinstance(comp, LinearComponent):
            vtk_parts.append(("linear", FLIP4 @ comp.matrix @ FLIP4))
        elif isinstance(comp, BSplineComponent):
            vtk_parts.append(("bspline", _bspline_to_vtk(comp)))
        else:
            vtk_parts.append(("other", _external_to_vtk(ctx, comp)))
    if len(vtk_parts) == 1 and vtk_parts[0][0] == "linear":
        node = ctx.add_node("vtkMRMLLinearTransformNode", name)
        node.SetMatrixTransformFromParent(_vtk_matrix(vtk_parts[0][1]))
    elif len(vtk_parts) == 1 and vtk_parts[0][0] == "bspline":
        node = ctx.add_node("vtkMRMLBSplineTransformNode", name)
        node.SetAndObserveTransformFromParent(vtk_parts[0][1])
    else:
        from vtkmodules.vtkCommonTransforms import vtkTransform

        general = vtkGeneralTransform()
        general.PostMultiply()  # each concatenated transform is applied after the previous ones
        for kind, t in vtk_parts:
            if kind == "linear":
                lt = vtkTransform()
                lt.SetMatrix(_vtk_matrix(t))
                general.Concatenate(lt)
            else:
                general.Concatenate(t)
        node = ctx.add_node("vtkMRMLTransformNode", name)
        node.SetAndObserveTransformFromParent(general)
    node.SetAttribute(NODE_SOURCE_ATTRIBUTE, os.fspath(Path(path).resolve()))
    node.SetAttribute(NODE_CHAIN_ATTRIBUTE, describe_chain(chain))
    if moving_image is not None and chain and chain[-1].kind == "moving frame":
        origin, direction = _origin_direction(moving_image)
        node.SetAttribute(NODE_MOVING_FRAME_ATTRIBUTE, " ".join(repr(float(v)) for v in
                                                                 list(origin) + list(direction.ravel())))
    return node


def _node_moving_frame(node):
    text = node.GetAttribute(NODE_MOVING_FRAME_ATTRIBUTE)
    if not text:
        return None
    values = [float(v) for v in text.split()]
    return _Frame(values[:3], values[3:])


class _Frame:
    """Origin and direction only, standing in for a moving image (see :func:`_origin_direction`)."""

    def __init__(self, origin, direction):
        self._origin, self._direction = tuple(origin), tuple(direction)

    def GetOrigin(self):  # SimpleITK's spelling
        return self._origin

    def GetDirection(self):
        return self._direction


# ---------------------------------------------------------------------------------------------------
# SimpleITK equivalent (fast, multithreaded resampling)
# ---------------------------------------------------------------------------------------------------
def _sitk():
    import SimpleITK as sitk  # warnings are silenced by the headless entry points only (context.py)

    return sitk


def chain_to_sitk(chain: list):
    """A SimpleITK transform (fixed -> moving, LPS) equal to the chain; elastix semantics outside B-spline
    grids (identity there) come with ITK's BSplineTransform."""
    sitk = _sitk()
    transforms = []
    for comp in _merge_linear(chain):
        if isinstance(comp, LinearComponent):
            t = sitk.AffineTransform(3)
            t.SetMatrix(tuple(comp.matrix[:3, :3].ravel().tolist()))
            t.SetTranslation(tuple(comp.matrix[:3, 3].tolist()))
            transforms.append(t)
        elif isinstance(comp, BSplineComponent):
            images = []
            for d in range(3):
                img = sitk.GetImageFromArray(np.ascontiguousarray(comp.coefficients[d]))
                img.SetOrigin(tuple(comp.origin.tolist()))
                img.SetSpacing(tuple(comp.spacing.tolist()))
                img.SetDirection(tuple(comp.direction.ravel().tolist()))
                images.append(img)
            transforms.append(sitk.BSplineTransform(images, 3))
        else:
            try:
                transforms.append(sitk.ReadTransform(comp.path))
            except RuntimeError:
                raise BadInputError(comp.source, f"initial transform '{comp.path}' is not a readable ITK "
                                    "transform file") from None
    if len(transforms) == 1:
        return transforms[0]
    composite = sitk.CompositeTransform(3)
    for t in reversed(transforms):  # ITK applies the transform added last first
        composite.AddTransform(t)
    return composite


def to_sitk_transform(source, moving_image=None):
    """SimpleITK transform mapping fixed -> moving points (LPS), from an elastix file path or a transform node.

    - elastix parameter file: built directly from the file (exact, incl. initial transforms);
    - ITK transform file: ``sitk.ReadTransform``;
    - transform node: a node from :func:`load_transform_parameters` is rebuilt from its file; any other node's
      FromParent is written by Slicer's transform storage node (ITK convention) and read back.

    ``moving_image``: only for ``UseDirectionCosines "false"`` files (see :func:`read_transform_chain`).
    """
    sitk = _sitk()
    if isinstance(source, (str, os.PathLike)):
        from .io import check_file, is_elastix_parameter_file

        check_file(source, "transform file")
        if is_elastix_parameter_file(source):
            return chain_to_sitk(read_transform_chain(source, moving_image))
        try:
            return sitk.ReadTransform(os.fspath(source))
        except RuntimeError:
            raise BadInputError(os.fspath(source), "not a readable ITK transform file") from None
    node = source
    if node is None:
        return sitk.Transform(3, sitk.sitkIdentity)
    path = node.GetAttribute(NODE_SOURCE_ATTRIBUTE)
    if path and Path(path).is_file():
        return chain_to_sitk(read_transform_chain(path, moving_image or _node_moving_frame(node)))
    if node.IsA("vtkMRMLLinearTransformNode") or node.IsTransformToWorldLinear() and node.GetParentTransformNode() \
            is None:
        from vtkmodules.vtkCommonMath import vtkMatrix4x4

        m = vtkMatrix4x4()
        node.GetMatrixTransformFromParent(m)
        from .io import vtk_to_matrix

        ras = vtk_to_matrix(m)
        lps = FLIP4 @ ras @ FLIP4
        t = sitk.AffineTransform(3)
        t.SetMatrix(tuple(lps[:3, :3].ravel().tolist()))
        t.SetTranslation(tuple(lps[:3, 3].tolist()))
        return t
    import slicer

    with tempfile.TemporaryDirectory(prefix="rq-transform-") as folder:
        file = os.path.join(folder, "transform.h5")
        storage = slicer.vtkMRMLTransformStorageNode()
        storage.SetFileName(file)
        if not storage.WriteData(node):
            raise BadInputError(node, "could not convert the transform to ITK")
        return sitk.ReadTransform(file)


# ---------------------------------------------------------------------------------------------------
# Point mapping
# ---------------------------------------------------------------------------------------------------
def _as_points(ras_points) -> np.ndarray:
    pts = np.asarray(ras_points, dtype=float)
    if pts.ndim == 1:
        pts = pts.reshape(1, -1)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise BadInputError("points", f"shape {list(np.shape(ras_points))}; N x 3 coordinates are needed")
    return pts


def _apply_vtk(transform, pts: np.ndarray) -> np.ndarray:
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkPoints

    if transform is None or len(pts) == 0:
        return pts.copy()
    src = vtkPoints()
    src.SetDataTypeToDouble()
    src.SetData(numpy_to_vtk(np.ascontiguousarray(pts), deep=1))
    dst = vtkPoints()
    dst.SetDataTypeToDouble()
    transform.TransformPoints(src, dst)
    return vtk_to_numpy(dst.GetData()).astype(float).reshape(-1, 3).copy()


def map_points_fixed_to_moving(transform_node, ras_points) -> np.ndarray:
    """Fixed -> moving (RAS, N x 3) through the node's FromParent (the resampling transform; no inversion).

    ``transform_node`` None means identity. The node's own parent transforms are not included.
    """
    pts = _as_points(ras_points)
    if transform_node is None:
        return pts.copy()
    return _apply_vtk(transform_node.GetTransformFromParent(), pts)


def map_points_moving_to_fixed(transform_node, ras_points) -> tuple[np.ndarray, np.ndarray]:
    """Moving -> fixed (RAS) through the node's ToParent (Slicer's inverse, iterative for B-splines).

    Returns ``(points, residual_mm)`` where ``residual_mm[i] = |FromParent(points[i]) - ras_points[i]|`` measures
    how well the inverse was found (large residuals: outside the transform's domain or a folding transform).
    """
    pts = _as_points(ras_points)
    if transform_node is None:
        return pts.copy(), np.zeros(len(pts))
    fixed = _apply_vtk(transform_node.GetTransformToParent(), pts)
    back = _apply_vtk(transform_node.GetTransformFromParent(), fixed)
    return fixed, np.linalg.norm(back - pts, axis=1)


def _flatten(transform) -> list:
    """(vtk transform, inverted) pieces in the order they are applied to a point."""
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    if isinstance(transform, vtkGeneralTransform):
        transform.Update()  # a node's general transform fills its concatenation lazily
        n = transform.GetNumberOfConcatenatedTransforms()
        pieces = []
        for i in range(n):
            pieces.extend(_flatten(transform.GetConcatenatedTransform(i)))
        if n == 0 and transform.GetInput() is not None:
            pieces.extend(_flatten(transform.GetInput()))
        return pieces
    return [transform]


def points_outside_domain(transform_node, ras_points) -> np.ndarray:
    """Boolean per fixed point (RAS): True where a B-spline or displacement grid of the node's FromParent
    chain cannot evaluate it as ITK/elastix does.

    B-spline (order 3): the continuous grid index must satisfy ``1 <= u < size - 2`` on every axis (elastix
    returns the point unchanged outside; Slicer keeps a fading displacement). Displacement grid: ``0 <= u <=
    size - 1`` (ITK gives zero displacement outside; Slicer keeps the edge value). Linear parts have no limit.
    """
    import slicer

    pts = _as_points(ras_points)
    outside = np.zeros(len(pts), dtype=bool)
    if transform_node is None:
        return outside
    current = pts.copy()
    for piece in _flatten(transform_node.GetTransformFromParent()):
        inverted = bool(piece.GetInverseFlag()) if hasattr(piece, "GetInverseFlag") else False
        grid = None
        if isinstance(piece, slicer.vtkOrientedBSplineTransform) and not inverted:
            grid, lo, hi_margin, strict = piece.GetCoefficientData(), 1.0, 2.0, True
        elif isinstance(piece, slicer.vtkOrientedGridTransform) and not inverted:
            grid, lo, hi_margin, strict = piece.GetDisplacementGrid(), 0.0, 1.0, False
        if grid is not None:
            u = _grid_continuous_index(piece, grid, current)
            size = np.array(grid.GetDimensions(), dtype=float)
            hi = size - hi_margin
            eps = 0.0 if strict else 1e-6  # grid voxel centres (index 0 and size-1) are inside, despite rounding
            bad = (u < lo - eps) | ((u >= hi) if strict else (u > hi + eps))
            outside |= np.any(bad, axis=1)
        current = _apply_vtk(piece, current)
    return outside


def _grid_continuous_index(piece, grid, ras: np.ndarray) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    direction = piece.GetGridDirectionMatrix()
    if direction is not None:
        m.DeepCopy(direction)
    d = np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
    extent = grid.GetExtent()
    origin = np.array(grid.GetOrigin()) + d @ (np.array(grid.GetSpacing()) * np.array(extent[::2]))
    return np.linalg.solve(d @ np.diag(grid.GetSpacing()), (ras - origin).T).T


# ---------------------------------------------------------------------------------------------------
# elastix output folders
# ---------------------------------------------------------------------------------------------------
@dataclass
class ParameterFileRun:
    """What elastix.log and IterationInfo files say about one parameter file (one registration stage)."""

    index: int
    transform: str | None = None
    metric: str | None = None
    optimizer: str | None = None
    final_metric: float | None = None
    resolutions: list = field(default_factory=list)  # dicts: resolution, iterations, final_metric, stop
    seconds: float | None = None


@dataclass
class ElastixResult:
    """An elastix output folder: final transform, result images, provenance, warnings."""

    folder: str
    transform_parameters: str | None  # the final TransformParameters.N.txt
    transform_files: list  # all TransformParameters.*.txt in stage order
    result_images: dict  # stage index (or -1 for transformix 'result') -> path
    final_result_image: str | None
    elastix_version: str | None = None
    fixed_image: str | None = None
    moving_image: str | None = None
    runs: list = field(default_factory=list)  # ParameterFileRun per stage
    total_seconds: float | None = None
    result_pixel_type: str | None = None
    moving_pixel_type: str | None = None
    warnings: list = field(default_factory=list)

    def provenance(self) -> dict:
        """Plain-JSON summary for reports."""
        return {
            "elastix_version": self.elastix_version,
            "fixed_image": self.fixed_image,
            "moving_image": self.moving_image,
            "transform_parameters": self.transform_parameters,
            "result_image": self.final_result_image,
            "total_seconds": self.total_seconds,
            "stages": [
                {"index": r.index, "transform": r.transform, "metric": r.metric, "optimizer": r.optimizer,
                 "final_metric": r.final_metric, "seconds": r.seconds, "resolutions": r.resolutions}
                for r in self.runs
            ],
            "warnings": list(self.warnings),
        }


_TP_NAME = re.compile(r"^TransformParameters\.(\d+)\.txt$")
_RESULT_NAME = re.compile(r"^result(?:\.(\d+))?\.(mhd|mha|nii|nii\.gz|nrrd|nhdr|hdr|vtk|tif|tiff)$", re.I)
_ITER_NAME = re.compile(r"^IterationInfo\.(\d+)\.R(\d+)(?:\.txt)?$")
_INTEGER_PIXEL_TYPES = ("char", "unsigned char", "short", "unsigned short", "int", "unsigned int", "long",
                        "unsigned long", "8-bit", "16-bit", "32-bit", "64-bit")


def find_elastix_result(folder, moving_image=None) -> ElastixResult:
    """Inspect an elastix (or SlicerElastix temporary) output folder.

    Finds the final ``TransformParameters.N.txt`` (highest N), ``result.N.*`` images (and transformix's
    ``result.*``), and parses ``elastix.log`` and ``IterationInfo.N.Rk.txt`` for provenance. ``moving_image``
    (a path or SimpleITK image) tells the moving pixel type when the log's ``-m`` file cannot be found.
    Warns when the result image is of an integer type while the moving image is float (elastix's default
    ``ResultImagePixelType "short"`` truncates the values).
    """
    root = Path(folder)
    if not root.exists():
        raise BadInputError(os.fspath(folder), "elastix output folder not found")
    if not root.is_dir():
        raise BadInputError(os.fspath(folder), "is a file; an elastix output folder is needed")
    folders = [root] + [root / sub for sub in ("result-transform", "result-resample") if (root / sub).is_dir()]
    tps: dict = {}
    results: dict = {}
    iteration_files: dict = {}
    log = None
    for f in folders:
        for entry in sorted(f.iterdir()):
            m = _TP_NAME.match(entry.name)
            if m:
                tps[int(m.group(1))] = entry
                continue
            m = _RESULT_NAME.match(entry.name)
            if m:
                stage = int(m.group(1)) if m.group(1) is not None else -1
                if stage not in results or entry.suffix.lower() in (".mha", ".mhd", ".nrrd", ".nii"):
                    results[stage] = entry
                continue
            m = _ITER_NAME.match(entry.name)
            if m:
                iteration_files[(int(m.group(1)), int(m.group(2)))] = entry
            elif entry.name == "elastix.log" and log is None:
                log = entry
    if not tps and not results:
        raise BadInputError(os.fspath(folder), "no TransformParameters.N.txt or result.N image: not an elastix "
                            "output folder")
    order = sorted(tps)
    final_tp = os.fspath(tps[order[-1]]) if order else None
    stages = sorted(k for k in results if k >= 0)
    final_image = results[-1] if -1 in results else (results[stages[-1]] if stages else None)
    res = ElastixResult(
        folder=os.fspath(root), transform_parameters=final_tp, transform_files=[os.fspath(tps[k]) for k in order],
        result_images={k: os.fspath(v) for k, v in results.items()},
        final_result_image=os.fspath(final_image) if final_image else None,
    )
    runs: dict = {}
    if log is not None:
        _parse_elastix_log(log.read_text(encoding="utf-8", errors="replace"), res, runs)
    for (stage, resolution), path in sorted(iteration_files.items()):
        run = runs.setdefault(stage, ParameterFileRun(stage))
        info = _parse_iteration_info(path)
        info["resolution"] = resolution
        existing = [r for r in run.resolutions if r.get("resolution") == resolution]
        if existing:
            existing[0].update({k: v for k, v in info.items() if v is not None})
        else:
            run.resolutions.append(info)
    for stage, path in tps.items():
        run = runs.setdefault(stage, ParameterFileRun(stage))
        try:
            pf = read_parameter_file(path)
            run.transform = run.transform or pf.string("Transform")
            if stage == order[-1]:
                res.result_pixel_type = pf.string("ResultImagePixelType", "") or None
        except BadInputError as exc:
            res.warnings.append(str(exc))
    for run in runs.values():
        run.resolutions.sort(key=lambda r: r.get("resolution", 0))
    res.runs = [runs[k] for k in sorted(runs)]
    _check_pixel_types(res, root, moving_image)
    return res


def load_elastix_folder(ctx, folder, moving_image=None, name: str | None = None):
    """``(transform node, ElastixResult)`` for an elastix output folder (the CLI's ``--elastix-dir``).

    The node comes from the final TransformParameters file (see :func:`load_transform_parameters`);
    ``moving_image`` serves both the pixel-type warning and ``UseDirectionCosines "false"`` files.
    """
    result = find_elastix_result(folder, moving_image=moving_image)
    if result.transform_parameters is None:
        raise BadInputError(os.fspath(folder), "no TransformParameters.N.txt in the elastix output folder")
    node = load_transform_parameters(ctx, result.transform_parameters, name=name, moving_image=moving_image)
    return node, result


def _parse_elastix_log(text: str, res: ElastixResult, runs: dict) -> None:
    m = re.search(r"ELASTIX version:\s*(\S+)", text)
    res.elastix_version = m.group(1) if m else None
    m = re.search(r"^-f\s+(\S.*?)\s*$", text, re.M)
    res.fixed_image = m.group(1) if m else None
    m = re.search(r"^-m\s+(\S.*?)\s*$", text, re.M)
    res.moving_image = m.group(1) if m else None
    m = re.search(r"Total time elapsed:\s*([\d.eE+-]+)\s*s", text)
    res.total_seconds = float(m.group(1)) if m else None
    blocks = re.split(r"^Running elastix with parameter file (\d+): \"[^\"]*\"\.\s*$", text, flags=re.M)
    # blocks: [preamble, idx0, body0, idx1, body1, ...]
    for i in range(1, len(blocks) - 1, 2):
        stage = int(blocks[i])
        body = blocks[i + 1]
        run = runs.setdefault(stage, ParameterFileRun(stage))
        for attr, key in (("transform", "Transform"), ("metric", "Metric"), ("optimizer", "Optimizer")):
            mm = re.search(r'^\(' + key + r'\s+"([^"]+)"', body, re.M)
            if mm:
                setattr(run, attr, mm.group(1))
        mm = re.search(r"Final metric value\s*=\s*(\S+)", body)
        run.final_metric = _float_or_none(mm.group(1)) if mm else None
        mm = re.search(r"Time used for running elastix with this parameter file:\s*([\d.eE+-]+)\s*s", body)
        run.seconds = float(mm.group(1)) if mm else None
        for rm in re.finditer(r"Time spent in resolution (\d+) \(ITK initialization and iterating\):\s*"
                              r"([\d.eE+-]+)\s*s\.\s*\nStopping condition:\s*(.*)", body):
            run.resolutions.append({"resolution": int(rm.group(1)), "seconds": float(rm.group(2)),
                                    "stop": rm.group(3).strip()})


def _parse_iteration_info(path: Path) -> dict:
    iterations, last_metric = 0, None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {"iterations": None, "final_metric": None}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) >= 2 and cells[0].isdigit():
            iterations += 1
            last_metric = _float_or_none(cells[1])
    return {"iterations": iterations, "final_metric": last_metric}


def _float_or_none(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _check_pixel_types(res: ElastixResult, root: Path, moving_image) -> None:
    sitk = _sitk()
    if res.final_result_image:
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(res.final_result_image)
            reader.ReadImageInformation()
            res.result_pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
        except RuntimeError:
            res.warnings.append(f"{res.final_result_image}: result image header is not readable")
    moving_type = None
    if moving_image is not None and not isinstance(moving_image, (str, os.PathLike)):
        moving_type = moving_image.GetPixelIDTypeAsString()
    else:
        candidates = [Path(moving_image)] if moving_image is not None else []
        if res.moving_image:
            written = Path(res.moving_image)
            candidates += [written] if written.is_absolute() else [root / written, written, root.parent / written]
        for candidate in candidates:
            if candidate.is_file():
                try:
                    reader = sitk.ImageFileReader()
                    reader.SetFileName(os.fspath(candidate))
                    reader.ReadImageInformation()
                    moving_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
                    break
                except RuntimeError:
                    continue
    res.moving_pixel_type = moving_type
    result_type = (res.result_pixel_type or "").lower()
    if not result_type or "float" in result_type or "double" in result_type:
        return
    if not any(word in result_type for word in _INTEGER_PIXEL_TYPES):
        return
    name = res.final_result_image or "result image"
    if moving_type is not None and ("float" in moving_type.lower() or "double" in moving_type.lower()):
        res.warnings.append(f"{name}: result image is {res.result_pixel_type} but the moving image is "
                            f"{moving_type}: values were rounded/clipped (set (ResultImagePixelType \"float\")); "
                            "evaluate uses it only when given as --registered")
    elif moving_type is None:
        res.warnings.append(f"{name}: result image is {res.result_pixel_type} and the moving image was not found; "
                            "if the moving image is float its values were rounded/clipped; evaluate uses it only "
                            "when given as --registered")


# ---------------------------------------------------------------------------------------------------
# SlicerElastix results in the scene
# ---------------------------------------------------------------------------------------------------
# SlicerElastix (lassoan/SlicerElastix, Elastix.py) keeps its inputs/outputs as node references of a
# vtkMRMLScriptedModuleNode with attribute ModuleName=Elastix, and links a displacement-field output transform
# to the volumes with vtkMRMLTransformNode's moving/fixed registration reference roles.
SLICER_ELASTIX_MODULE = "Elastix"
SLICER_ELASTIX_REFS = {"fixed": "FixedVolume", "moving": "MovingVolume", "output_volume": "OutputVolume",
                       "output_transform": "OutputTransform", "initial_transform": "InitialTransform"}


@dataclass
class SlicerElastixResult:
    moving_node: object
    fixed_node: object = None
    output_volume: object = None
    output_transform: object = None
    initial_transform: object = None
    parameter_node: object = None
    source: str = ""  # how it was found


def find_slicer_elastix_result(ctx, moving_node):
    """The registration result SlicerElastix left in the scene for ``moving_node``, or None.

    Looks (newest first) at SlicerElastix parameter nodes whose MovingVolume is ``moving_node``; then at
    transform nodes whose moving-registration reference points to it (the roles SlicerElastix sets on its
    output transforms). A result needs an output volume or an output transform.
    """
    import slicer

    if moving_node is None:
        raise BadInputError("moving volume", "no node given")
    scene = ctx.scene
    moving_id = moving_node.GetID()
    nodes = scene.GetNodesByClass("vtkMRMLScriptedModuleNode")
    candidates = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    for pnode in reversed(candidates):
        if pnode.GetAttribute("ModuleName") != SLICER_ELASTIX_MODULE:
            continue
        if pnode.GetNodeReferenceID(SLICER_ELASTIX_REFS["moving"]) != moving_id:
            continue
        found = {k: pnode.GetNodeReference(ref) for k, ref in SLICER_ELASTIX_REFS.items()}
        if found["output_volume"] is None and found["output_transform"] is None:
            continue
        return SlicerElastixResult(moving_node=moving_node, fixed_node=found["fixed"],
                                   output_volume=found["output_volume"], output_transform=found["output_transform"],
                                   initial_transform=found["initial_transform"], parameter_node=pnode,
                                   source=f"SlicerElastix parameter node '{pnode.GetName()}'")
    moving_role = slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole()
    fixed_role = slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole()
    transforms = scene.GetNodesByClass("vtkMRMLTransformNode")
    for i in reversed(range(transforms.GetNumberOfItems())):
        t = transforms.GetItemAsObject(i)
        ids = [t.GetNthNodeReferenceID(moving_role, k) for k in range(t.GetNumberOfNodeReferences(moving_role))]
        if moving_id in ids:
            return SlicerElastixResult(moving_node=moving_node, fixed_node=t.GetNodeReference(fixed_role),
                                       output_transform=t,
                                       source=f"transform '{t.GetName()}' references the moving volume")
    return None
