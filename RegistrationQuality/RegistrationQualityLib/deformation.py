"""Deformation sanity: displacement field, Jacobian determinant, folding, SDlogJ, inverse consistency.

Conventions
-----------
* The transform node holds the *resampling* transform T: fixed-image points -> moving-image points (Slicer's
  FromParent; with parent transform nodes, the whole world -> node chain). This is what elastix/ITK files hold.
* The displacement at a reference-grid voxel centre x is ``u(x) = T(x) - x``, in LPS millimetres (as in ITK
  displacement-field files), as a numpy array of shape (k, j, i, 3) (SimpleITK array order), float32.
* Jacobian determinant ``J(x) = det(I + ∂u/∂x)`` = det of the spatial Jacobian of T (the value transformix
  ``-jac`` reports). J > 1: the fixed-image neighbourhood maps to a larger moving-image region (local expansion
  of T); J < 1: contraction; J <= 0: T folds (is not locally invertible).
* Derivatives are *physical*: central differences in index space (one-sided at the border, zero along an axis
  of size 1) are converted with the grid's spacing and direction cosines::

      x = O + D·S·ijk   =>   ∂u/∂x = (∂u/∂ijk) · (D·S)^-1

  (so an oblique, anisotropic grid gives the same J as an axis-aligned one; SimpleITK's
  DisplacementFieldJacobianDeterminantFilter ignores D, see docs/deformation.md).
* Statistics are over a mask on the reference grid, or the whole grid when no mask is given (never an automatic
  body mask). SDlogJ (Leow et al. 2007; Kabus et al.) = standard deviation of log(J) over voxels with J > 0; the
  voxels with J <= 0 are excluded and counted, never clipped.

Large grids are processed in slabs of k-slices so that only the (k, j, i, 3) float32 field and the float32 J map
are held in full (CT size 512×512×300: 0.9 GB + 0.3 GB).
"""

from __future__ import annotations

import math

import numpy as np

from . import measures
from .errors import BadInputError, require
from .io import LPS_TO_RAS, _sitk, color_table_node, image_ijk_to_ras, node_ijk_to_ras

LPS4 = np.diag([-1.0, -1.0, 1.0, 1.0])
RAS_FLIP = np.array([-1.0, -1.0, 1.0])

# Points evaluated per VTK call (bounds the temporary float64 point arrays to ~100 MB).
SLAB_VOXELS = 1 << 22

JACOBIAN_COLOR_NODE_NAME = "RegistrationQuality Jacobian (diverging, centre 1)"
JACOBIAN_DISPLAY_RANGE = (0.0, 2.0)


# ---------------------------------------------------------------------------------------------------
# Reference grids
# ---------------------------------------------------------------------------------------------------
class Grid:
    """Geometry of a reference grid: ``size`` (i, j, k), ``ijk_to_lps`` 4×4, ``spacing`` (i, j, k) in mm."""

    def __init__(self, size, ijk_to_lps):
        self.size = tuple(int(s) for s in size)
        self.ijk_to_lps = np.asarray(ijk_to_lps, dtype=float)
        self.spacing = np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0)

    @property
    def shape(self) -> tuple:
        """numpy (k, j, i) shape."""
        return self.size[::-1]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.ijk_to_lps[:3, :3])))

    def points_lps(self, k0: int, k1: int) -> np.ndarray:
        """LPS positions (float64, shape (k1-k0, nj, ni, 3)) of the voxel centres of slices k0..k1-1."""
        ni, nj, _ = self.size
        m = self.ijk_to_lps
        kk = np.arange(k0, k1, dtype=float)[:, None, None, None]
        jj = np.arange(nj, dtype=float)[None, :, None, None]
        ii = np.arange(ni, dtype=float)[None, None, :, None]
        return m[:3, 3] + ii * m[:3, 0] + jj * m[:3, 1] + kk * m[:3, 2]


def reference_grid(reference) -> Grid:
    """:class:`Grid` of a SimpleITK image, a volume node (its local IJK->RAS; parent transform ignored) or a Grid."""
    if isinstance(reference, Grid):
        return reference
    if reference is None:
        raise BadInputError("reference image", "no reference grid given")
    if hasattr(reference, "GetIJKToRASMatrix"):
        require(reference.GetImageData() is not None, reference, "volume has no image data (no grid)")
        dims = reference.GetImageData().GetDimensions()
        return Grid(dims, LPS4 @ node_ijk_to_ras(reference))
    require(reference.GetDimension() == 3, "reference image", f"{reference.GetDimension()}D image; a 3D grid is needed")
    return Grid(reference.GetSize(), LPS4 @ image_ijk_to_ras(reference))


def _slabs(grid: Grid, slab_voxels: int = SLAB_VOXELS):
    ni, nj, nk = grid.size
    step = max(1, int(slab_voxels) // max(1, ni * nj))
    for k0 in range(0, nk, step):
        yield k0, min(nk, k0 + step)


# ---------------------------------------------------------------------------------------------------
# Evaluating transforms on a grid
# ---------------------------------------------------------------------------------------------------
def _world_to_node(transform_node):
    """vtkGeneralTransform of world -> node (the resampling transform fixed -> moving, RAS)."""
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    t = vtkGeneralTransform()
    transform_node.GetTransformFromWorld(t)
    return t


def _linear_lps(transform_node) -> np.ndarray:
    from .resample import linear_from_world_lps

    return linear_from_world_lps(transform_node)


def _map_points_lps(vtk_transform, points_lps: np.ndarray) -> np.ndarray:
    """Apply a RAS vtkAbstractTransform to an (..., 3) array of LPS points; returns LPS (float64)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkPoints

    shape = points_lps.shape
    ras = np.ascontiguousarray((points_lps * RAS_FLIP).reshape(-1, 3), dtype=np.float64)
    src = vtkPoints()
    src.SetData(numpy_to_vtk(ras, deep=0))
    dst = vtkPoints()
    dst.SetDataTypeToDouble()
    vtk_transform.TransformPoints(src, dst)
    out = vtk_to_numpy(dst.GetData()).reshape(shape) * RAS_FLIP
    del src  # `ras` must outlive the shallow VTK array
    return out


def _grid_on_reference(transform_node, grid: Grid):
    """The node's displacement grid (LPS vectors, (k,j,i,3)) when it *is* the reference grid, else None.

    Fast path for the common case of a displacement-field file defined on the fixed grid: the field's own
    values are T(x) - x at its grid points, no interpolation needed.
    """
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if transform_node.GetParentTransformNode() is not None:
        return None
    t = transform_node.GetTransformFromParent()
    if not isinstance(t, slicer.vtkOrientedGridTransform) or transform_node.IsAbstractTransformComputedFromInverse(t):
        return None
    t.Update()
    if t.GetInverseFlag():
        return None
    data = t.GetDisplacementGrid()
    if data is None or tuple(data.GetDimensions()) != grid.size or tuple(data.GetExtent()[::2]) != (0, 0, 0):
        return None
    d = t.GetGridDirectionMatrix()
    direction = np.eye(3) if d is None else np.array([[d.GetElement(r, c) for c in range(3)] for r in range(3)])
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = direction @ np.diag(data.GetSpacing())
    ijk_to_ras[:3, 3] = data.GetOrigin()  # grid point ijk at origin + direction·(spacing·ijk), RAS
    ref = LPS4 @ grid.ijk_to_lps
    scale = float(np.abs(ref).max()) or 1.0
    if not np.allclose(ijk_to_ras, ref, rtol=0, atol=1e-6 * scale):
        return None
    vectors = vtk_to_numpy(data.GetPointData().GetScalars()).reshape(grid.shape + (3,))
    u = vectors.astype(np.float32) * np.float32(t.GetDisplacementScale()) + np.float32(t.GetDisplacementShift())
    u *= RAS_FLIP.astype(np.float32)
    return u


def displacement_field(ctx, transform_node, reference_image, dtype=np.float32, slab_voxels: int = SLAB_VOXELS,
                       progress=None) -> np.ndarray:
    """Displacement ``u(x) = T(x) - x`` (LPS mm) at the reference grid's voxel centres, shape (k, j, i, 3).

    ``T`` is the node's world -> node transform (FromParent for a node without parents): the resampling
    transform fixed -> moving. Any transform Slicer holds works (linear, grid, B-spline, composite, inverses);
    ``None`` is the identity. ``reference_image``: SimpleITK image, volume node or :class:`Grid`.
    ``progress(fraction)`` is called after each slab when given. ``ctx`` is accepted for API uniformity.

    Linear transforms are evaluated in closed form; a grid transform defined exactly on the reference grid is
    read directly; anything else goes through VTK's ``TransformPoints`` slab by slab (~0.1 µs per point for
    a grid transform, ~0.25 µs for a B-spline, single-threaded).
    """
    del ctx
    grid = reference_grid(reference_image)
    out = np.empty(grid.shape + (3,), dtype=dtype)
    if transform_node is None:
        out[...] = 0
        return out
    if transform_node.IsTransformToWorldLinear():
        a = _linear_lps(transform_node) - np.eye(4)  # u = (A - I) x + t
        b = a[:3, :3] @ grid.ijk_to_lps[:3, :3]
        c = a[:3, :3] @ grid.ijk_to_lps[:3, 3] + a[:3, 3]
        ni, nj, _ = grid.size
        row = c + np.arange(ni, dtype=float)[:, None] * b[:, 0]  # (i, 3)
        plane = row[None, :, :] + np.arange(nj, dtype=float)[:, None, None] * b[:, 1]  # (j, i, 3)
        for k in range(grid.size[2]):
            np.add(plane, k * b[:, 2], out=out[k], casting="unsafe")
        return out
    direct = _grid_on_reference(transform_node, grid)
    if direct is not None:
        return direct.astype(dtype, copy=False)
    t = _world_to_node(transform_node)
    nk = grid.size[2]
    for k0, k1 in _slabs(grid, slab_voxels):
        x = grid.points_lps(k0, k1)
        out[k0:k1] = _map_points_lps(t, x) - x
        if progress is not None:
            progress(k1 / nk)
    return out


def displacement_field_from_image(field_image, reference_image=None) -> np.ndarray:
    """(k, j, i, 3) float32 LPS displacement of an ITK displacement-field image (e.g. read with SimpleITK).

    The fast route for a deformation-field file defined on the reference grid (no MRML node, no
    interpolation): the file's vectors are ``T(x) - x`` at its voxel centres. ``reference_image`` (optional):
    the grid the field must lie on; BadInputError when it does not (load it as a transform node instead).
    """
    sitk = _sitk()
    require(field_image.GetDimension() == 3 and field_image.GetNumberOfComponentsPerPixel() == 3,
            "displacement field", "a 3D image with 3 components per voxel is needed")
    if reference_image is not None:
        grid = reference_grid(reference_image)
        scale = max(1.0, float(np.abs(grid.ijk_to_lps).max()))
        same = tuple(field_image.GetSize()) == grid.size and np.allclose(
            LPS4 @ image_ijk_to_ras(field_image), grid.ijk_to_lps, rtol=0, atol=1e-6 * scale)
        require(same, "displacement field", "not on the reference grid (size, spacing, origin or direction "
                "differ); load it as a transform to resample it")
    return np.asarray(sitk.GetArrayViewFromImage(field_image), dtype=np.float32).copy()


def displacement_volume_node(ctx, transform_node, reference_image, name: str = "Displacement field",
                             displacement: np.ndarray | None = None):
    """Vector volume node (3 float32 components, **LPS** mm) of ``u(x) = T(x) - x`` on the reference grid.

    The vectors are LPS like an ITK displacement-field file, so saving the node as .nrrd/.nii gives a file that
    loads back as the same resampling transform. Attribute ``RegistrationQuality.VectorCoordinateSystem`` = LPS.
    ``displacement``: an already computed :func:`displacement_field` array (skips the evaluation).
    """
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    from .io import matrix_to_vtk

    grid = reference_grid(reference_image)
    if displacement is None:
        displacement = displacement_field(ctx, transform_node, grid)
    require(displacement.shape == grid.shape + (3,), "displacement", f"shape {displacement.shape} does not match "
            f"the reference grid {grid.shape + (3,)}")
    img = vtkImageData()
    img.SetDimensions(*grid.size)
    img.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(displacement, np.float32).reshape(-1, 3), deep=1))
    node = ctx.add_node("vtkMRMLVectorVolumeNode", name)
    node.SetIJKToRASMatrix(matrix_to_vtk(LPS4 @ grid.ijk_to_lps))
    node.SetAndObserveImageData(img)
    node.SetAttribute("RegistrationQuality.VectorCoordinateSystem", "LPS")
    node.CreateDefaultDisplayNodes()
    return node


# ---------------------------------------------------------------------------------------------------
# Jacobian determinant
# ---------------------------------------------------------------------------------------------------
def _derivative_in_slice(c: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """∂c/∂(index along ``axis``) of a 3D array: central differences, one-sided at both ends, 0 if size 1."""
    n = c.shape[axis]
    if n < 2:
        out[...] = 0
        return out

    def sl(start, stop):
        idx = [slice(None)] * 3
        idx[axis] = slice(start, stop)
        return tuple(idx)

    inner = out[sl(1, n - 1)]
    np.subtract(c[sl(2, n)], c[sl(0, n - 2)], out=inner)
    inner *= 0.5
    np.subtract(c[sl(1, 2)], c[sl(0, 1)], out=out[sl(0, 1)])
    np.subtract(c[sl(n - 1, n)], c[sl(n - 2, n - 1)], out=out[sl(n - 1, n)])
    return out


def jacobian_determinant(displacement: np.ndarray, reference_image) -> np.ndarray:
    """Jacobian determinant ``J = det(I + ∂u/∂x)`` (float32, shape (k, j, i)) of a displacement field.

    ``displacement``: (k, j, i, 3) LPS mm on the grid of ``reference_image`` (SimpleITK image, volume node or
    :class:`Grid`). With ``G = ∂u/∂ijk`` (index-space central differences, one-sided at the border) and
    ``A = D·S`` (direction × spacing): ``∂u/∂x = G·A^-1``, so ``J = det(I + G·A^-1) = det(A + G) / det(A)``
    — physical derivatives for any spacing and direction cosines. Computed in float64 by the same compiled kernel
    as evaluate's streamed pass (:func:`kernels.fd_jacobian_slab`).
    """
    from .kernels import fd_jacobian_slab

    grid = reference_grid(reference_image)
    u = np.asarray(displacement)
    require(u.ndim == 4 and u.shape[3] == 3, "displacement", f"shape {u.shape}; (k, j, i, 3) is needed")
    require(u.shape[:3] == grid.shape, "displacement", f"shape {u.shape[:3]} does not match the reference grid "
            f"{grid.shape}")
    a = np.ascontiguousarray(grid.ijk_to_lps[:3, :3])
    out = np.empty(grid.shape, dtype=np.float32)
    nk = grid.size[2]
    fd_jacobian_slab(np.ascontiguousarray(u, dtype=np.float32), 0, nk, nk, 0, a, float(np.linalg.det(a)), out)
    return out


def jacobian_color_node(ctx):
    """The diverging colour table (blue < 1 < red, white at 1) for Jacobian maps; created once per scene.

    255 entries over the display range 0..2 (window 2, level 1): the middle entry (white) holds J = 1;
    J <= 0 (folding) shows in the darkest blue, J >= 2 in the darkest red.
    """
    n = 255
    mid = (n - 1) / 2
    blue, red = np.array([0.02, 0.19, 0.58]), np.array([0.70, 0.01, 0.15])
    colors = []
    for i in range(n):
        t = (i - mid) / mid  # -1 .. 1
        end = red if t > 0 else blue
        rgb = (1 - abs(t)) * np.ones(3) + abs(t) * end
        colors.append((f"{JACOBIAN_DISPLAY_RANGE[0] + 2 * i / (n - 1):.3f}", rgb.tolist()))
    return color_table_node(ctx, JACOBIAN_COLOR_NODE_NAME, colors)


def jacobian_volume_node(ctx, jacobian: np.ndarray, reference_image, name: str = "Jacobian determinant"):
    """Scalar volume node (float32) of a Jacobian map, displayed with :func:`jacobian_color_node`, window 0..2."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    from .io import matrix_to_vtk

    grid = reference_grid(reference_image)
    require(jacobian.shape == grid.shape, "jacobian", f"shape {jacobian.shape} does not match the grid {grid.shape}")
    img = vtkImageData()
    img.SetDimensions(*grid.size)
    img.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(jacobian, np.float32).ravel(), deep=1))
    node = ctx.add_node("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(matrix_to_vtk(LPS4 @ grid.ijk_to_lps))
    node.SetAndObserveImageData(img)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(jacobian_color_node(ctx).GetID())
    display.SetAutoWindowLevel(0)
    display.SetWindowLevelMinMax(*JACOBIAN_DISPLAY_RANGE)
    return node


FOLDING_SEGMENT_COLOR = "#F0E442"  # Okabe & Ito yellow, as the report's Jacobian snapshot


def folding_segmentation_node(ctx, jacobian_node, name: str = "Folding (J <= 0)"):
    """Segmentation node with one segment "folding (J <= 0)": the voxels of a Jacobian volume node (as made by
    :func:`jacobian_volume_node`) with J <= 0, outlined in :data:`FOLDING_SEGMENT_COLOR`; an empty segment when
    nothing folds. Attribute ``RegistrationQuality.FoldingVoxels`` holds the count. The Jacobian node is not
    modified."""
    from .io import labelmap_image_to_segmentation, volume_to_image
    from .segmentation import show_outlines

    sitk = _sitk()
    jac = volume_to_image(jacobian_node)
    arr = sitk.GetArrayViewFromImage(jac)
    folded = (np.isfinite(arr) & (arr <= 0)).astype(np.uint8)
    mask = sitk.GetImageFromArray(folded)
    mask.CopyInformation(jac)
    segment = "folding (J <= 0)"
    seg = labelmap_image_to_segmentation(ctx, mask, name, {1: segment})
    if seg.GetSegmentation().GetNumberOfSegments() == 0:
        seg.GetSegmentation().AddEmptySegment(segment, segment)
    seg.SetAttribute("RegistrationQuality.FoldingVoxels", str(int(folded.sum())))
    show_outlines(ctx, seg, FOLDING_SEGMENT_COLOR)
    return seg


# ---------------------------------------------------------------------------------------------------
# Masks and statistics
# ---------------------------------------------------------------------------------------------------
def mask_array(mask, reference_image=None, labels=None) -> np.ndarray | None:
    """Boolean (k, j, i) mask on the reference grid from a numpy array, a SimpleITK labelmap or a volume node.

    A SimpleITK mask on another grid is resampled (nearest neighbour, world space) onto the reference grid;
    ``labels``: the label values that count (default: every non-zero voxel). ``None`` -> ``None`` (whole image).
    """
    if mask is None:
        return None
    sitk = _sitk()
    if hasattr(mask, "GetImageData"):  # a labelmap/scalar volume node (its own geometry; parent transform ignored)
        from .io import volume_to_image

        mask = volume_to_image(mask)
    if isinstance(mask, sitk.Image):
        if reference_image is not None:
            grid = reference_grid(reference_image)
            same = tuple(mask.GetSize()) == grid.size and np.allclose(
                LPS4 @ image_ijk_to_ras(mask), grid.ijk_to_lps, rtol=0, atol=1e-6 * max(1.0, np.abs(grid.ijk_to_lps).max()))
            if not same:
                ref = sitk.Image(list(grid.size), sitk.sitkUInt8)
                ref.SetOrigin(tuple(grid.ijk_to_lps[:3, 3]))
                ref.SetSpacing(tuple(grid.spacing))
                ref.SetDirection(tuple((grid.ijk_to_lps[:3, :3] / grid.spacing).ravel()))
                mask = sitk.Resample(mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
        arr = sitk.GetArrayViewFromImage(mask)
    else:
        arr = np.asarray(mask)
        if reference_image is not None:
            grid = reference_grid(reference_image)
            require(arr.shape == grid.shape, "mask", f"shape {arr.shape} does not match the reference grid "
                    f"{grid.shape} (k, j, i)")
    if labels is None:
        return arr != 0
    return np.isin(arr, list(labels))


def threshold_mask(image, lower: float | None = None, upper: float | None = None) -> np.ndarray:
    """Boolean (k, j, i) mask of voxels with ``lower <= value <= upper`` (either bound optional)."""
    sitk = _sitk()
    arr = sitk.GetArrayViewFromImage(image)
    m = np.ones(arr.shape, dtype=bool)
    if lower is not None:
        m &= arr >= lower
    if upper is not None:
        m &= arr <= upper
    return m


def _region(values: np.ndarray, mask) -> np.ndarray:
    if mask is None:
        return values.reshape(-1)
    m = np.asarray(mask, dtype=bool)
    require(m.shape == values.shape[:3], "mask", f"shape {m.shape} does not match the field {values.shape[:3]}")
    return values[m]


def _empty(reason: str, keys) -> dict:
    out = dict.fromkeys(keys)
    out["voxels"] = 0
    out["reason"] = reason
    return out


JACOBIAN_KEYS = ("min", "max", "mean", "std", "folding_voxels", "folding_percent", "folding_volume_cc", "sdlogj",
                 "sdlogj_voxels", "sdlogj_excluded_voxels", "nonfinite_voxels")


def jacobian_statistics(jacobian: np.ndarray, mask=None, spacing=(1.0, 1.0, 1.0)) -> dict:
    """Statistics of a Jacobian map over a mask (whole grid when ``mask`` is None).

    * ``min``, ``max``, ``mean``, ``std`` (population, ddof 0) of J over the region;
    * folding: ``folding_voxels`` = #(J <= 0), ``folding_percent`` = 100·folding/voxels,
      ``folding_volume_cc`` = folding_voxels × voxel volume (spacing product, mm³) / 1000;
    * ``sdlogj`` = std(log J) over the voxels with J > 0 (``sdlogj_voxels``); the J <= 0 voxels are excluded and
      counted in ``sdlogj_excluded_voxels`` (no clipping);
    * ``nonfinite_voxels``: NaN/inf J (transform undefined there), left out of every other number.

    An empty region gives nulls and a ``reason``. Computed by :class:`JacobianMoments` (also fed slab by slab).
    """
    acc = JacobianMoments(spacing)
    acc.add(_region(np.asarray(jacobian), mask))
    return acc.result()


LOG_BATCH = 1 << 22  # values whose log J is taken at once (16 MB of float32)


class JacobianMoments:
    """The one implementation of :func:`jacobian_statistics`, accumulated over any number of value batches
    (slabs of a streamed pass) in float64: count, min, max, Chan et al.'s pairwise update of the mean and
    Σ(x − mean)² of J and of log J over J > 0. Memory does not grow with the region."""

    def __init__(self, spacing=(1.0, 1.0, 1.0)):
        self.voxel_mm3 = float(np.prod(np.asarray(spacing, dtype=float)))
        self.nonfinite = 0
        self.lo, self.hi = math.inf, -math.inf
        self.j = [0, 0.0, 0.0]  # count, mean, Σ(x − mean)²
        self.logj = [0, 0.0, 0.0]
        self._logs = None  # log J buffer kept from batch to batch (no page faults)

    def add(self, values: np.ndarray) -> None:
        """Merge a batch: J and log J over J > 0 (numpy's float32 log: vectorised) each by two compiled passes
        (count, sum, min/max; then centred squares), merged into the running state by Chan's update (log J in
        pieces of ``LOG_BATCH`` values, each merged the same way)."""
        flat = np.asarray(values).reshape(-1)
        if flat.size == 0:
            return
        if flat.dtype not in (np.float32, np.float64):
            flat = flat.astype(np.float64)
        n, bad, mean, m2, lo, hi = _batch_moments(flat)
        self.nonfinite += bad
        if n == 0:
            return
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        _chan_merge(self.j, n, mean, m2)
        for start in range(0, flat.size, LOG_BATCH):  # log J in pieces: no float copy of a whole-grid batch
            with np.errstate(divide="ignore", invalid="ignore"):  # J <= 0 -> -inf / NaN: left out as non-finite
                logs = np.log(flat[start:start + LOG_BATCH])
            n_log, _bad, mean_log, m2_log, _lo, _hi = _batch_moments(logs, want_range=False)
            if n_log:
                _chan_merge(self.logj, n_log, mean_log, m2_log)

    def result(self) -> dict:
        n, mean, m2 = self.j
        if n == 0:
            return _empty("empty mask" if self.nonfinite == 0 else "no finite Jacobian value in the mask",
                          JACOBIAN_KEYS)
        n_log, _, m2_log = self.logj
        folding = int(n - n_log)
        return {
            "voxels": int(n),
            "min": self.lo,
            "max": self.hi,
            "mean": mean,
            "std": math.sqrt(m2 / n),
            "folding_voxels": folding,
            "folding_percent": 100.0 * folding / n,
            "folding_volume_cc": folding * self.voxel_mm3 / 1000.0,
            "sdlogj": math.sqrt(m2_log / n_log) if n_log else None,
            "sdlogj_voxels": int(n_log),
            "sdlogj_excluded_voxels": folding,
            "nonfinite_voxels": self.nonfinite,
        }


def _batch_moments(flat: np.ndarray, want_range: bool = True) -> tuple:
    """(finite count, non-finite count, mean, Σ(x − mean)², min, max) of a flat float array (two compiled
    passes, float64 sums; min and max of the finite values by numpy, only with ``want_range``, else ±inf)."""
    from .kernels import moments_pass1, moments_pass2

    if flat.size == 0:
        return 0, 0, 0.0, 0.0, math.inf, -math.inf
    flat = np.ascontiguousarray(flat)
    blocks = max(1, min(64, flat.size // (1 << 16)))
    p1 = moments_pass1(flat, blocks)
    n, bad = int(p1[:, 0].sum()), int(p1[:, 1].sum())
    if n == 0:
        return 0, bad, 0.0, 0.0, math.inf, -math.inf
    mean = float(p1[:, 2].sum()) / n
    m2 = float(moments_pass2(flat, blocks, mean).sum())
    lo, hi = math.inf, -math.inf
    if want_range:
        finite = flat if bad == 0 else flat[np.isfinite(flat)]
        lo, hi = float(finite.min()), float(finite.max())
    return n, bad, mean, m2, lo, hi


def _chan_merge(state: list, nc: int, mc: float, m2c: float) -> None:
    """Merge a batch of ``nc`` values with mean ``mc`` and Σ(x − mc)² = ``m2c`` into ``state`` = [count, mean,
    Σ(x − mean)²] (Chan, Golub & LeVeque 1979)."""
    n, mean, m2 = state
    delta, total = mc - mean, n + nc
    state[0], state[1], state[2] = total, mean + delta * nc / total, m2 + m2c + delta * delta * n * nc / total


def displacement_magnitude(displacement: np.ndarray, slab: int = 16) -> np.ndarray:
    """|u| (float32, shape (k, j, i)) of a (k, j, i, 3) field, computed slab by slab."""
    u = np.asarray(displacement)
    out = np.empty(u.shape[:3], dtype=np.float32)
    for k0 in range(0, u.shape[0], slab):
        s = u[k0:k0 + slab]
        out[k0:k0 + slab] = np.sqrt(np.einsum("...i,...i->...", s, s, dtype=np.float32))
    return out


def _magnitude_statistics(norms: np.ndarray, mask=None, overwrite: bool = False) -> dict:
    """``overwrite``: the caller no longer needs ``norms`` (the percentile may reorder it in place)."""
    values = _region(norms, mask)
    if not np.isfinite(values).all():
        values = values[np.isfinite(values)]
    if values.size == 0:
        return _empty("empty mask", ("mean", "p95", "max"))
    mean, top = float(values.mean(dtype=np.float64)), float(values.max())
    return {"voxels": int(values.size), "mean": mean,
            "p95": float(np.percentile(values, 95, overwrite_input=overwrite)), "max": top}


def displacement_statistics(displacement: np.ndarray, mask=None) -> dict:
    """|u| statistics in mm over the mask (whole grid when None): ``mean``, ``p95``, ``max``, ``voxels``.

    p95: numpy's default (linear interpolation between order statistics).
    """
    return _magnitude_statistics(displacement_magnitude(displacement), mask)


def inverse_consistency(ctx, forward_node, backward_node, reference_image, mask=None,
                        slab_voxels: int = SLAB_VOXELS) -> dict:
    """Inverse-consistency error ``e(x) = |T_b(T_f(x)) - x|`` (mm) over the reference grid / mask.

    ``forward_node``: resampling transform of the registration fixed -> moving; ``backward_node``: the one of the
    reverse registration (moving -> fixed). Returns ``mean``, ``p95``, ``max``, ``voxels``.
    """
    del ctx
    require(forward_node is not None, "forward transform", "no transform node given")
    require(backward_node is not None, "backward transform", "no transform node given")
    grid = reference_grid(reference_image)
    m = mask_array(mask, grid) if mask is not None else None
    tf, tb = _world_to_node(forward_node), _world_to_node(backward_node)
    err = np.empty(grid.shape, dtype=np.float32)
    for k0, k1 in _slabs(grid, slab_voxels):
        x = grid.points_lps(k0, k1)
        y = _map_points_lps(tb, _map_points_lps(tf, x))
        err[k0:k1] = np.linalg.norm(y - x, axis=-1)
    return _magnitude_statistics(err, m)


def _key_values(keys) -> np.ndarray:
    """float32 values of order-preserving keys (the inverse of ``kernels._float32_key``)."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >= np.uint32(0x80000000), keys ^ np.uint32(0x80000000), ~keys).astype(np.uint32)
    return bits.view(np.float32)


def _linear_percentiles(values: np.ndarray, counts: np.ndarray, percents) -> np.ndarray:
    """``np.percentile(values, percents)`` (numpy's default "linear" method, same arithmetic: order statistics
    ``(n − 1)·q`` apart, float32 difference, float64 interpolation) of a flat finite float32 array, from its
    per-block key-bucket counts (``kernels.key_histogram``): only the values in the buckets that hold the
    wanted ranks are gathered and sorted (the array is neither copied nor reordered)."""
    from .kernels import gather_buckets

    n = values.size
    q = np.true_divide(np.asarray(percents, dtype=np.float64), 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev[above], nxt[above] = -1, -1
    below = virtual < 0
    prev[below], nxt[below] = 0, 0
    prev, nxt = prev.astype(np.intp), nxt.astype(np.intp)
    gamma = np.asanyarray(virtual - prev, dtype=virtual.dtype)
    ranks = np.unique(np.concatenate([prev % n, nxt % n]))
    total = counts.sum(axis=0)
    cum = np.cumsum(total)
    buckets = np.searchsorted(cum, ranks, side="right")  # the bucket holding each rank
    wanted = np.zeros(total.size, dtype=bool)
    wanted[buckets] = True
    per_block = counts[:, wanted].sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(per_block)[:-1]]).astype(np.int64)
    held = np.empty(int(per_block.sum()), np.float32)
    gather_buckets(values, counts.shape[0], wanted, offsets, held)
    held.sort()
    held_before = np.cumsum(np.where(wanted, total, 0)) - np.where(wanted, total, 0)  # held values in lower buckets
    stat = {int(r): held[int(r) - int(cum[b] - total[b]) + int(held_before[b])] for r, b in zip(ranks, buckets)}
    a = np.array([stat[int(r) % n] for r in prev], np.float32)
    b = np.array([stat[int(r) % n] for r in nxt], np.float32)
    diff_b_a = b - a  # numpy's _lerp
    result = np.add(a, diff_b_a * gamma)
    np.subtract(b, diff_b_a * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe", dtype=result.dtype)
    return result


def jacobian_histogram(values: np.ndarray, bins: int) -> dict:
    """Histogram of Jacobian values (flat, finite, float32 as the J maps). Range: the 0.5th..99.5th percentiles
    (numpy's linear method) widened to show [0.5, 1.5], and down to the most negative value (at most -2) when
    anything folds; values outside are counted, not binned. The counts, edges and percentiles are
    ``np.histogram``'s and ``np.percentile``'s, computed in three compiled passes that neither copy nor reorder
    the values: bucket counts of the values' order-preserving keys (the percentiles' order statistics are then
    found among the few values of their buckets), and one binning pass with exact comparisons against the
    float32 edges numpy uses."""
    from .kernels import edge_histogram, key_histogram

    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if values.size == 0:
        return {"edges": [], "counts": [], "clipped_below": 0, "clipped_above": 0}
    blocks = max(1, min(16, values.size // (1 << 16)))
    counts, ends = key_histogram(values, blocks)
    p_lo, p_hi = _linear_percentiles(values, counts, [0.5, 99.5])
    lo, hi = min(float(p_lo), 0.5), max(float(p_hi), 1.5)
    vmin = float(_key_values([ends[:, 0].min()])[0])
    if vmin <= 0:
        lo = min(lo, max(vmin, -2.0), -0.05)
    edges = np.histogram_bin_edges(values[:0], bins=bins, range=(lo, hi))  # numpy's edges (float32 here)
    binned = edge_histogram(values, blocks, np.ascontiguousarray(edges, dtype=np.float32)).sum(axis=0)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in binned[:bins]],
            "clipped_below": int(binned[bins]), "clipped_above": int(binned[bins + 1])}


class DeformationStatistics:
    """Consumer of :func:`transforms.stream`: Jacobian determinant and |u| over ``mask`` (whole grid when None).

    Per slab it keeps only the J values inside the mask (float32; for the histogram's exact percentiles), so
    memory grows with the mask, not with a vector field; the J statistics are merged from chunks of them at the
    end (:class:`JacobianMoments`: no region-sized log J array) and |u| is kept only as far as its statistics
    need. ``finish()`` returns ``{"jacobian", "displacement_mm", "jacobian_histogram"}`` (statistics of
    :func:`jacobian_statistics`, :func:`displacement_statistics`, :func:`jacobian_histogram`); with
    ``keep_jacobian`` the whole J map is kept in ``self.jacobian`` (for a scene volume).
    """

    MOMENT_CHUNK = 1 << 23  # J values per JacobianMoments batch at the end

    def __init__(self, fixed_image, mask=None, bins: int = 60, keep_jacobian: bool = False):
        grid = reference_grid(fixed_image)
        self.spacing = grid.spacing
        self.bins = int(bins)
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        n = int(np.prod(grid.shape)) if self.mask is None else int(np.count_nonzero(self.mask))
        self.j_values = np.empty(n, np.float32)
        # measures added to the registry beside these one-pass statistics (measures.apply_extra) see every
        # voxel's |u|; without any, |u| is kept only as far as its statistics need (DisplacementTail)
        self.extras = any(m.compute is not None for m in measures.of("deformation"))
        self.u_values = np.empty(n, np.float32) if self.extras else None
        self.u_tail = None if self.extras else DisplacementTail(n)
        self.filled = 0
        self._mag = None
        self.jacobian = None
        if keep_jacobian:  # over the whole grid the values, in slab order, are the map itself
            self.jacobian = (self.j_values.reshape(grid.shape) if self.mask is None
                             else np.empty(grid.shape, np.float32))

    def consume(self, slab) -> None:
        from .kernels import magnitude_slab

        det = slab.jacobian()
        if self._mag is None or self._mag.size < det.size:
            self._mag = np.empty(det.size, np.float32)  # kept from slab to slab (no page faults)
        mag = self._mag[:det.size].reshape(det.shape)
        magnitude_slab(slab.u, mag)
        if self.jacobian is not None and self.mask is not None:
            self.jacobian[slab.k0:slab.k1] = det
        if self.mask is not None:
            m = self.mask[slab.k0:slab.k1]
            det, mag = det[m], mag[m]
        n = det.size
        self.j_values[self.filled:self.filled + n] = det.reshape(-1)
        if self.u_values is not None:
            self.u_values[self.filled:self.filled + n] = mag.reshape(-1)
        else:
            self.u_tail.add(mag.reshape(-1))
        self.filled += n

    def finish(self) -> dict:
        values = self.j_values[: self.filled]
        norms = self.u_values[: self.filled] if self.u_values is not None else None
        self.j_values = self.u_values = None
        moments = JacobianMoments(self.spacing)
        for c in range(0, values.size, self.MOMENT_CHUNK):  # chunks: the log J buffer stays small
            moments.add(values[c:c + self.MOMENT_CHUNK])
        result = {"jacobian": moments.result(),
                  "displacement_mm": (_magnitude_statistics(norms, None) if norms is not None
                                      else self.u_tail.result())}
        finite = values if moments.nonfinite == 0 else values[np.isfinite(values)]
        result["jacobian_histogram"] = jacobian_histogram(finite, self.bins)
        if self.extras:
            measures.apply_extra("deformation", result, measures.DeformationSample(values, norms, self.spacing))
        return result


class DisplacementTail:
    """|u| statistics of :func:`displacement_statistics` (mean, numpy's linear-interpolated p95, max) over ``n``
    values given in batches, keeping only the largest ``n − ⌊0.95 (n − 1)⌋`` of them (the order statistics the
    95th percentile interpolates between lie there, also when some values turn out non-finite: fewer finite
    values only move the rank down by as much). Memory: 5 % of the values instead of all."""

    def __init__(self, n: int):
        self.keep = max(1, int(n) - int(math.floor(0.95 * (max(int(n), 1) - 1))))
        self.parts: list = []
        self.held = 0
        self.floor = -math.inf  # values below cannot be among the largest ``keep``
        self.count, self.total, self.top = 0, 0.0, -math.inf

    def add(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)] if not bool(np.isfinite(values).all()) else values
        if finite.size == 0:
            return
        self.count += int(finite.size)
        self.total += float(finite.sum(dtype=np.float64))
        self.top = max(self.top, float(finite.max()))
        candidates = finite[finite >= self.floor] if self.floor > -math.inf else finite
        self.parts.append(np.array(candidates, dtype=np.float32))
        self.held += int(candidates.size)
        if self.held > 2 * self.keep + (1 << 20):
            self._shrink()

    def _shrink(self) -> None:
        held = np.concatenate(self.parts)
        if held.size > self.keep:
            held = np.partition(held, held.size - self.keep)[held.size - self.keep:]
            self.floor = float(held.min())
        self.parts, self.held = [held], int(held.size)

    def result(self) -> dict:
        if self.count == 0:
            return _empty("empty mask", ("mean", "p95", "max"))
        self._shrink()
        tail = np.sort(self.parts[0])  # ascending: the largest ``len(tail)`` finite values
        rank = 0.95 * (self.count - 1)  # numpy's "linear" method on the finite values
        lo = int(math.floor(rank))
        first = self.count - tail.size  # the rank of tail[0] among all finite values
        a = float(tail[lo - first])
        b = float(tail[min(lo + 1, self.count - 1) - first])
        t = rank - lo
        p95 = b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp
        return {"voxels": self.count, "mean": self.total / self.count, "p95": p95, "max": self.top}


class JacobianInRegion:
    """Consumer of :func:`transforms.stream`: :func:`jacobian_statistics` over a region of the fixed grid given
    as a (k, j, i) boolean array or, when it is made in the same pass, as ``region(slab) -> slab mask`` (e.g. the
    slab of a :class:`similarity.InsideMoving` consumer fed before this one). Accumulated slab by slab
    (:class:`JacobianMoments`): no values are kept."""

    def __init__(self, fixed_image, region):
        self.moments = JacobianMoments(reference_grid(fixed_image).spacing)
        self.region = region

    def consume(self, slab) -> None:
        m = self.region(slab) if callable(self.region) else np.asarray(self.region[slab.k0:slab.k1], dtype=bool)
        self.moments.add(slab.jacobian()[m])

    def finish(self) -> dict:
        return self.moments.result()


# ---------------------------------------------------------------------------------------------------
# One call for the report
# ---------------------------------------------------------------------------------------------------
def evaluate_deformation(ctx, transform_node, reference_image, mask=None, backward_node=None,
                         create_nodes: bool = False, name: str = "", progress=None) -> dict:
    """Everything the report needs about a transform, on the reference (fixed) grid, inside ``mask``.

    Returns ``{"jacobian": {...}, "displacement_mm": {...}, "inverse_consistency_mm": {...} (when a backward
    transform is given), "region": "mask"|"whole image"}``; with ``create_nodes``, also ``"nodes"`` =
    {"displacement": vector volume node, "jacobian": scalar volume node} (the caller owns them).
    """
    from .transforms import load_registration, stream

    grid = reference_grid(reference_image)
    m = mask_array(mask, reference_image) if mask is not None else None
    stats = DeformationStatistics(grid, m, keep_jacobian=create_nodes)
    (out,) = stream(load_registration(ctx, transform_node), grid, [stats], need_jacobian=True, progress=progress)
    result = {"region": "whole image" if m is None else "mask", "jacobian": out["jacobian"],
              "displacement_mm": out["displacement_mm"]}
    if backward_node is not None:
        result["inverse_consistency_mm"] = inverse_consistency(ctx, transform_node, backward_node, grid, m)
    if create_nodes:
        prefix = f"{name} " if name else ""
        result["nodes"] = {
            "displacement": displacement_volume_node(ctx, transform_node, grid, prefix + "displacement (LPS mm)"),
            "jacobian": jacobian_volume_node(ctx, stats.jacobian, grid, prefix + "Jacobian determinant"),
        }
    return result


UNITS = {"min": "", "max": "", "mean": "", "std": "", "folding_percent": "%", "folding_volume_cc": "cc",
         "sdlogj": "", "folding_voxels": "voxels", "sdlogj_voxels": "voxels", "sdlogj_excluded_voxels": "voxels",
         "nonfinite_voxels": "voxels", "voxels": "voxels", "p95": "mm"}


def deformation_rows(result: dict, transform: str = "") -> list[dict]:
    """Flat table rows ``{transform, group, metric, value, unit, region}`` of :func:`evaluate_deformation`."""
    rows = []
    for group in ("jacobian", "displacement_mm", "inverse_consistency_mm"):
        stats = result.get(group)
        if not stats:
            continue
        for key, value in stats.items():
            if key == "reason":
                continue
            unit = "mm" if group != "jacobian" and key in ("mean", "p95", "max") else UNITS.get(key, "")
            rows.append({"transform": transform, "group": f"deformation.{group}", "metric": key,
                         "value": None if value is None or (isinstance(value, float) and math.isnan(value)) else value,
                         "unit": unit, "region": result.get("region", ""),
                         "note": stats.get("reason", "")})
    return rows


__all__ = [
    "Grid", "reference_grid", "displacement_field", "displacement_field_from_image", "displacement_volume_node", "jacobian_determinant",
    "jacobian_color_node", "jacobian_volume_node", "mask_array", "threshold_mask", "jacobian_statistics",
    "displacement_magnitude", "displacement_statistics", "inverse_consistency", "evaluate_deformation", "deformation_rows", "LPS_TO_RAS",
]
