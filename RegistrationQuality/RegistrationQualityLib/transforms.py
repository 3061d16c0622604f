"""The transforms layer: a registration's resampling transform T (fixed -> moving, LPS) as something that can be
*sampled on the fixed grid slab by slab*, and the one LPS <-> RAS flip.

Below deformation, resample, similarity and evaluate. A registration is read for computation straight from its
source, never through Slicer's transform logic:

* elastix ``TransformParameters`` chains and ITK ``BSplineTransform`` files -> :class:`Chain`: the parsed
  components (linear matrices, cubic B-spline coefficient grids) evaluated per point by a compiled kernel
  (:func:`kernels.chain_slab`) with elastix's semantics — components applied in order (``Compose``), a
  B-spline moves a point only inside its valid region ``1 <= index < n - 2`` — together with the analytic
  spatial Jacobian (what ``transformix -jac all`` writes);
* a displacement-field image on the fixed grid -> :class:`FieldOnGrid` (read with SimpleITK; its vectors are u);
* anything else (a transform node: grid elsewhere, composite, inverse) -> :class:`NodeSampler`, through VTK's
  ``TransformPoints`` one slab at a time.

A Slicer transform node is made only when something needs one (landmarks' inverse mapping, the panel, saving):
:meth:`Registration.node`.

Streaming (:func:`stream`): the fixed grid is cut into z-slabs; for each slab the registration is sampled once
(``u = T(x) - x``, float32, plus its Jacobian determinant: analytic for a :class:`Chain`, central differences
with a one-slice halo otherwise) and handed to every *consumer*. A consumer is any object with

* ``consume(slab)`` — called once per slab in increasing k; ``slab`` is a :class:`Slab` (``k0``, ``k1``,
  ``u`` (k1-k0, nj, ni, 3) float32, ``jacobian()`` -> (k1-k0, nj, ni) float32 computed on first use and shared;
  with ``stream(..., halo=True)`` also ``u_halo`` = the slab plus one slice either side where the grid has one,
  ``first`` = index of slice k0 in ``u_halo``, ``k_offset`` = global k of ``u_halo[0]``, ``nk`` = slices of the
  grid: what a finite-difference stencil such as :mod:`ndv` needs); it must not keep references to the arrays
  (the buffers are reused);
* ``finish()`` — called once after the last slab; returns the consumer's result.

Memory therefore grows with the slab, not with the volume (besides what a consumer keeps).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import io
from .elastix import (
    NODE_SOURCE_ATTRIBUTE,
    BSplineComponent,
    LinearComponent,
    _merge_linear,
    _node_moving_frame,
    load_transform_parameters,
    read_transform_chain,
)
from .errors import BadInputError

# The one LPS <-> RAS flip (x and y negated; its own inverse).
LPS_RAS = io.LPS_TO_RAS
LPS_RAS4 = np.diag([-1.0, -1.0, 1.0, 1.0])

# Voxels per slab (≈ 1.5 M: 512×512×6 slices; 18 MB of float32 vectors).
SLAB_VOXELS = 3 << 19


def image_ijk_to_lps(image) -> np.ndarray:
    """4×4 voxel index (i, j, k) -> LPS of a SimpleITK image (or of a reader that has read its header)."""
    m = np.eye(4)
    d = np.array(image.GetDirection(), float).reshape(3, 3)
    m[:3, :3] = d @ np.diag(image.GetSpacing())
    m[:3, 3] = image.GetOrigin()
    return m


def _kernels():
    from . import kernels

    return kernels


# ---------------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------------
class Chain:
    """Linear and cubic B-spline components applied in order to a fixed point (LPS)."""

    analytic_jacobian = True
    halo = 0

    def __init__(self, components: list, description: str = ""):
        parts = _merge_linear(list(components))
        kinds, mats, coefs, offsets, sizes = [], [], [], [], []
        offset = 0
        for comp in parts:
            if isinstance(comp, LinearComponent):
                kinds.append(0)
                mats.append(np.asarray(comp.matrix, float))
                offsets.append(0)
                sizes.append((0, 0, 0))
            elif isinstance(comp, BSplineComponent):
                grid_to_lps = np.eye(4)
                grid_to_lps[:3, :3] = np.asarray(comp.direction, float) @ np.diag(comp.spacing)
                grid_to_lps[:3, 3] = comp.origin
                kinds.append(1)
                m = np.eye(4)
                m[:3, :3] = np.linalg.inv(grid_to_lps[:3, :3])
                m[:3, 3] = comp.origin
                mats.append(m)
                # interleaved (nz, ny, nx, 3): the 3 components of a control point side by side
                c = np.ascontiguousarray(np.moveaxis(np.asarray(comp.coefficients, np.float32), 0, -1))
                coefs.append(c.ravel())
                offsets.append(offset)
                offset += c.size
                sizes.append(tuple(int(n) for n in comp.size))
            else:
                raise TypeError(f"not a linear or B-spline component: {comp!r}")
        self.components = parts
        self.description = description
        self.kinds = np.array(kinds, np.int64)
        self.mats = np.array(mats, float).reshape(-1, 4, 4)
        self.coef = np.concatenate(coefs) if coefs else np.zeros(1, np.float32)  # float32: the kernel's sums
        self.offsets = np.array(offsets, np.int64)
        self.sizes = np.array(sizes, np.int64).reshape(-1, 3)

    @property
    def linear(self) -> bool:
        return bool(np.all(self.kinds == 0))

    def sample(self, ijk_to_lps, ni, nj, k0, k1, want_det, out_u, out_det):
        _kernels().chain_slab(k0, k1, ni, nj, np.ascontiguousarray(ijk_to_lps, float), self.kinds, self.mats,
                              self.coef, self.offsets, self.sizes, bool(want_det), out_u, out_det)

    def map_points_lps(self, points) -> np.ndarray:
        """T of an (N, 3) LPS array (float64), the same kernel as the grid sampling."""
        pts = np.asarray(points, float).reshape(-1, 3)
        out = pts.copy()
        one = np.empty((1, 1, 1, 3), np.float32)
        det = np.empty((1, 1, 1), np.float32)
        m = np.eye(4)
        for n, p in enumerate(pts):  # each point as the origin of a one-voxel grid
            m[:3, 3] = p
            self.sample(m, 1, 1, 0, 1, False, one, det)
            out[n] = p + one[0, 0, 0].astype(float)
        return out


class FieldOnGrid:
    """A displacement field (LPS vectors u = T(x) - x, (k, j, i, 3)) defined on the fixed grid itself.

    ``u``: an array, or a read-only ``np.memmap`` of the file (:func:`io.raw_vector_field`): then each slab is
    read from the file when sampled and its pages are released after the copy, so a streamed pass holds one
    slab, not the field (a 512×512×300 float32 field is 943 MB)."""

    analytic_jacobian = False
    halo = 1
    linear = False

    def __init__(self, u, ijk_to_lps, source: str, ras: bool = False):
        self.u = u
        self.size = tuple(int(n) for n in u.shape[2::-1])
        self.ijk_to_lps = np.asarray(ijk_to_lps, float)
        self.source = source
        self.ras = ras  # the vectors are RAS (a Slicer grid transform's own array): flipped to LPS per slab

    @classmethod
    def from_image(cls, field_image, source: str) -> FieldOnGrid:
        import SimpleITK as sitk

        return cls(sitk.GetArrayFromImage(field_image), image_ijk_to_lps(field_image), source)

    def on_grid(self, ijk_to_lps, size) -> bool:
        scale = max(1.0, float(np.abs(ijk_to_lps).max()))
        return self.size == tuple(size) and np.allclose(self.ijk_to_lps, ijk_to_lps, rtol=0,
                                                                         atol=1e-6 * scale)

    def sample(self, ijk_to_lps, ni, nj, k0, k1, want_det, out_u, out_det):
        out_u[...] = self.u[k0:k1]
        if self.ras:
            out_u[..., :2] *= -1.0
        _release_pages(self.u, k0, k1)

    @classmethod
    def of_node(cls, node, fixed_image) -> FieldOnGrid | None:
        """The displacement grid of a grid transform node, read in place, when it is the resampling transform
        (FromParent, not inverted, no parent) sampled on the fixed grid itself -- what SlicerElastix leaves in the
        scene (transformix's ``deformationField`` loaded by Slicer: a RAS vtkOrientedGridTransform with a double
        grid). At its own grid points the node's transform is exactly the stored vector (linear or cubic
        interpolation alike), so the stream reads the vectors instead of asking VTK for every voxel. Else None."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        if fixed_image is None or node.GetParentTransformNode() is not None:
            return None
        t = node.GetTransformFromParent()
        if t is None or not t.IsA("vtkGridTransform") or t.GetInverseFlag():
            return None
        info = _support_index_range(t)
        if (info is None or info[0].GetNumberOfScalarComponents() != 3 or t.GetDisplacementScale() != 1.0
                or t.GetDisplacementShift() != 0.0 or info[0].GetPointData().GetScalars() is None):
            return None
        grid, direction, _kind = info
        ni, nj, nk = grid.GetDimensions()
        u = vtk_to_numpy(grid.GetPointData().GetScalars()).reshape(nk, nj, ni, 3)
        field = cls(u, LPS_RAS4 @ _grid_ijk_to_ras(grid, direction), node.GetName(), ras=True)
        field._owner = grid  # the array lives in the node's image data
        return field if field.on_grid(image_ijk_to_lps(fixed_image), fixed_image.GetSize()) else None

    def node(self, ctx, name):
        """A grid transform node on the field's own memory (a memmap stays a memmap): the LPS field as a VTK grid
        between two LPS <-> RAS flips, so no RAS copy of the vectors is made."""
        import slicer
        from vtkmodules.util.numpy_support import numpy_to_vtk
        from vtkmodules.vtkCommonDataModel import vtkImageData
        from vtkmodules.vtkCommonMath import vtkMatrix4x4
        from vtkmodules.vtkCommonTransforms import vtkGeneralTransform, vtkMatrixToLinearTransform

        spacing = np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0)
        data = vtkImageData()
        data.SetDimensions(*self.size)
        data.SetSpacing(*spacing)
        data.SetOrigin(*self.ijk_to_lps[:3, 3])
        flat = self.u.reshape(-1, 3)
        if flat.dtype != np.float32 and flat.dtype != np.float64 or not flat.dtype.isnative:
            flat = np.ascontiguousarray(flat, dtype=np.float32)
        self._vtk_array = numpy_to_vtk(flat, deep=0)  # VTK reads the array (or the mapped file) in place
        self._vtk_array_owner = flat
        data.GetPointData().SetScalars(self._vtk_array)
        direction = vtkMatrix4x4()
        for r in range(3):
            for c in range(3):
                direction.SetElement(r, c, float(self.ijk_to_lps[r, c] / spacing[c]))
        grid = slicer.vtkOrientedGridTransform()
        grid.SetDisplacementGridData(data)
        grid.SetGridDirectionMatrix(direction)
        grid.SetInterpolationModeToLinear()
        flip = vtkMatrix4x4()
        for r in range(3):
            flip.SetElement(r, r, float(LPS_RAS4[r, r]))
        flip_t = vtkMatrixToLinearTransform()
        flip_t.SetInput(flip)
        ras = vtkGeneralTransform()  # RAS -> LPS -> T (LPS) -> RAS
        ras.PostMultiply()
        ras.Concatenate(flip_t)
        ras.Concatenate(grid)
        ras.Concatenate(flip_t)
        node = ctx.add_node("vtkMRMLGridTransformNode", name)
        node.SetAndObserveTransformFromParent(ras)
        return node


def _release_pages(array, k0: int, k1: int) -> None:
    """Drop the pages of slices k0..k1-1 of a memory-mapped array from this process's resident set (they are
    read again from the page cache if touched later); no-op for ordinary arrays."""
    import mmap

    m = getattr(array, "_mmap", None)
    if m is None or not hasattr(m, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    per_slice = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    base = array.offset if hasattr(array, "offset") else 0
    start = base + k0 * per_slice
    page = mmap.PAGESIZE
    lo = (start // page) * page
    # numpy maps from the page-aligned offset below ``array.offset``: positions are relative to that
    delta = (base // mmap.ALLOCATIONGRANULARITY) * mmap.ALLOCATIONGRANULARITY
    length = base + k1 * per_slice - lo
    try:
        m.madvise(mmap.MADV_DONTNEED, lo - delta, length)
    except (OSError, ValueError):  # pragma: no cover - best effort
        pass


class NodeSampler:
    """Any transform node's FromWorld transform through VTK, one slab at a time (the general fallback)."""

    analytic_jacobian = False
    halo = 1

    def __init__(self, node):
        from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

        self.node = node
        self.transform = vtkGeneralTransform()
        node.GetTransformFromWorld(self.transform)
        self.linear = bool(node.IsTransformToWorldLinear())

    def sample(self, ijk_to_lps, ni, nj, k0, k1, want_det, out_u, out_det):
        from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
        from vtkmodules.vtkCommonCore import vtkPoints

        m = ijk_to_lps
        kk = np.arange(k0, k1, dtype=float)[:, None, None, None]
        jj = np.arange(nj, dtype=float)[None, :, None, None]
        ii = np.arange(ni, dtype=float)[None, None, :, None]
        x = m[:3, 3] + ii * m[:3, 0] + jj * m[:3, 1] + kk * m[:3, 2]
        ras = np.ascontiguousarray((x * np.diag(LPS_RAS)).reshape(-1, 3))
        src = vtkPoints()
        src.SetData(numpy_to_vtk(ras, deep=0))
        dst = vtkPoints()
        dst.SetDataTypeToDouble()
        self.transform.TransformPoints(src, dst)
        y = vtk_to_numpy(dst.GetData()).reshape(x.shape) * np.diag(LPS_RAS)
        del src
        out_u[...] = y - x


# ---------------------------------------------------------------------------------------------------
# Loading a registration for computation
# ---------------------------------------------------------------------------------------------------
class Registration:
    """The registration's resampling transform: a sampler for computation and a lazily built Slicer node."""

    def __init__(self, sampler, source, kind: str, node=None, node_factory=None, chain_description=None):
        self.sampler = sampler
        self.source = source
        self.kind = kind
        self.chain_description = chain_description
        self._node = node
        self._node_factory = node_factory

    @property
    def linear(self) -> bool:
        return bool(self.sampler.linear)


    def node(self, ctx):
        """The transform node (built on first call, into the ``tmp`` given to :func:`load_registration`)."""
        if self._node is None and self._node_factory is not None:
            self._node = self._node_factory(ctx)
        return self._node


def load_transform(ctx, path, name: str | None = None, moving_image=None):
    """Load a transform file as a transform node holding the *resampling* transform as FromParent.

    ITK .tfm/.txt/.h5/.mat files and displacement-field images go through Slicer's transforms logic;
    elastix ``TransformParameters.*.txt`` files go through :mod:`RegistrationQualityLib.elastix`
    (``moving_image`` is needed there only for ``UseDirectionCosines "false"`` files). Displacement grids are
    interpolated linearly between their points, as ITK's DisplacementFieldTransform (and transformix) do;
    Slicer's own default would be cubic.
    """
    io.check_file(path, "transform file")
    name = name or io.node_name_from_path(path)
    ext = io.file_extension(path)
    if ext == ".txt" and io.is_elastix_parameter_file(path):
        return load_transform_parameters(ctx, path, name=name, moving_image=moving_image)
    if ext in io.IMAGE_EXTENSIONS:
        reader = io.read_image_information(path)
        dim, comps = io.describe_dimension(reader)
        if comps != dim or dim != 3:
            raise BadInputError(
                io._name(path), f"not a displacement field ({dim}D image with {comps} component(s)); "
                "a 3D image with 3 components is needed"
            )
    elif ext not in io.TRANSFORM_EXTENSIONS:
        raise BadInputError(io._name(path), f"unknown transform format '{ext or Path(path).name}'")
    node = ctx.logic("Transforms").AddTransform(str(path), ctx.scene)
    if node is None:
        raise BadInputError(io._name(path), "not a readable transform (unknown format or corrupt file)")
    node.SetName(name)
    _linear_grid_interpolation(node.GetTransformFromParent())
    return node


def _linear_grid_interpolation(transform) -> None:
    """Switch every grid transform inside ``transform`` (a general transform's concatenation included) to
    linear interpolation, ITK's convention for displacement fields."""
    import slicer

    if transform is None:
        return
    if isinstance(transform, slicer.vtkOrientedGridTransform):
        transform.SetInterpolationModeToLinear()
        return
    if hasattr(transform, "GetNumberOfConcatenatedTransforms"):
        transform.Update()
        for i in range(transform.GetNumberOfConcatenatedTransforms()):
            _linear_grid_interpolation(transform.GetConcatenatedTransform(i))


def _itk_bspline_component(t, source) -> BSplineComponent | None:
    """BSplineComponent of a SimpleITK BSplineTransform (ITK's v4 file form), else None."""
    import SimpleITK as sitk

    try:
        b = sitk.BSplineTransform(t)
    except (RuntimeError, TypeError):
        return None
    if b.GetOrder() != 3:
        return None
    images = b.GetCoefficientImages()
    first = images[0]
    coef = np.stack([sitk.GetArrayFromImage(img) for img in images]).astype(np.float64)  # (3, nz, ny, nx)
    return BSplineComponent(size=np.array(first.GetSize(), float), origin=np.array(first.GetOrigin(), float),
                            spacing=np.array(first.GetSpacing(), float),
                            direction=np.array(first.GetDirection(), float).reshape(3, 3), coefficients=coef,
                            source=source, kind="ITK BSplineTransform")


class _MovingFrame:
    """A moving image's origin and direction: all that reading an elastix file with ``UseDirectionCosines
    "false"`` needs of it (:func:`elastix.read_transform_chain`), kept by :meth:`Registration.node`'s factory in
    place of the image, so that the moving voxels can be freed as soon as the streamed pass is done."""

    def __init__(self, image):
        self.origin, self.direction = tuple(image.GetOrigin()), tuple(image.GetDirection())

    def GetOrigin(self):  # noqa: N802 - SimpleITK's spelling, read by elastix._origin_direction
        return self.origin

    def GetDirection(self):  # noqa: N802
        return self.direction


def load_registration(ctx, value, moving_image=None, fixed_image=None, name: str = "registration transform",
                      elastix_file=None, tmp=None):
    """A :class:`Registration` of a transform file (elastix, ITK, displacement-field image) or a transform node.

    ``elastix_file``: the final TransformParameters file of an elastix folder (``--elastix-dir``). ``tmp``: a
    :class:`context.TemporaryNodes` that takes every node made here or later by :meth:`Registration.node`.
    """
    if elastix_file is not None:
        value = elastix_file
    if hasattr(value, "GetID") and hasattr(value, "IsA"):  # a node
        path = value.GetAttribute(NODE_SOURCE_ATTRIBUTE)
        if path and Path(path).is_file() and value.GetParentTransformNode() is None:
            chain = read_transform_chain(path, moving_image or _node_moving_frame(value))
            if all(isinstance(c, (LinearComponent, BSplineComponent)) for c in chain):
                return Registration(Chain(chain), value, "elastix", node=value)
        return _from_node(value, value, fixed_image=fixed_image)
    path = os.fspath(value)
    ext = io.file_extension(path)
    if hasattr(moving_image, "GetPixelID"):  # a SimpleITK image: the node built later keeps its frame, not its voxels
        moving_image = _MovingFrame(moving_image)

    def node_factory(c):
        node = load_transform(c, path, name=name, moving_image=moving_image)
        if tmp is not None:
            tmp.add(node)
        return node

    if ext == ".txt" and io.is_elastix_parameter_file(path):
        from .elastix import describe_chain

        chain = read_transform_chain(path, moving_image)
        if all(isinstance(c, (LinearComponent, BSplineComponent)) for c in chain):
            return Registration(Chain(chain, describe_chain(chain)), path, "elastix", node_factory=node_factory,
                                chain_description=describe_chain(chain))
        reg = _from_node(node_factory(ctx), path, "elastix")
        reg.chain_description = describe_chain(chain)
        return reg
    if ext in io.IMAGE_EXTENSIONS:
        reader = io.read_image_information(path)
        dim, comps = io.describe_dimension(reader)
        if comps != dim or dim != 3:
            raise BadInputError(io._name(path), f"not a displacement field ({dim}D image with {comps} "
                                "component(s)); a 3D image with 3 components is needed")
        field = None
        if fixed_image is not None:
            mapped = io.raw_vector_field(path, reader.GetSize())
            if mapped is not None:
                field = FieldOnGrid(mapped, image_ijk_to_lps(reader), path)
        if field is None:
            import SimpleITK as sitk

            image = io.read_image(path, scalar=False)
            if image.GetPixelID() != sitk.sitkVectorFloat32:
                image = sitk.Cast(image, sitk.sitkVectorFloat32)
            field = FieldOnGrid.from_image(image, path)
            del image
        if fixed_image is not None and field.on_grid(image_ijk_to_lps(fixed_image), fixed_image.GetSize()):
            def field_node(c):
                node = field.node(c, name)
                if tmp is not None:
                    tmp.add(node)
                return node

            return Registration(field, path, "displacement field", node_factory=field_node)
        del field
        return _from_node(node_factory(ctx), path, "displacement field")
    if ext in io.TRANSFORM_EXTENSIONS and ext != ".h5":
        import SimpleITK as sitk

        try:
            t = sitk.ReadTransform(path)
        except RuntimeError:
            t = None
        comp = _itk_bspline_component(t, path) if t is not None else None
        if comp is not None:
            return Registration(Chain([comp], "BSplineTransform"), path, "B-spline", node_factory=node_factory)
    return _from_node(node_factory(ctx), path)


def _from_node(node, source, kind="node", fixed_image=None):
    """A node's registration: linear -> its matrix (a one-component :class:`Chain`); a grid transform on the fixed
    grid -> its vectors (:meth:`FieldOnGrid.of_node`); else :class:`NodeSampler`."""
    field = FieldOnGrid.of_node(node, fixed_image) if node.IsA("vtkMRMLGridTransformNode") else None
    if field is not None:
        return Registration(field, source, kind, node=node)
    if node.IsTransformToWorldLinear():
        from vtkmodules.vtkCommonMath import vtkMatrix4x4

        m = vtkMatrix4x4()
        node.GetMatrixTransformFromWorld(m)
        ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
        lps = LPS_RAS4 @ ras @ LPS_RAS4
        return Registration(Chain([LinearComponent(lps, str(source), "linear")]), source, kind, node=node)
    return Registration(NodeSampler(node), source, kind, node=node)


# ---------------------------------------------------------------------------------------------------
# The domain of a transform node's grid / B-spline components
# ---------------------------------------------------------------------------------------------------
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


def _grid_ijk_to_ras(data, direction) -> np.ndarray:
    """4×4 IJK -> RAS of a transform's grid image (its first extent index as index 0) with its direction."""
    spacing = np.array(data.GetSpacing(), dtype=float)
    first = np.array(data.GetExtent()[::2], dtype=float)
    m = np.eye(4)
    m[:3, :3] = direction @ np.diag(spacing)
    m[:3, 3] = np.array(data.GetOrigin(), dtype=float) + direction @ (spacing * first)
    return m


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
    dims = np.array(data.GetDimensions(), dtype=float)
    m = _grid_ijk_to_ras(data, direction)
    u = np.linalg.solve(m[:3, :3], (np.asarray(points, dtype=float) - m[:3, 3]).T).T
    if kind == "bspline":
        bad = (u < 1.0) | (u >= dims - 2.0)
    else:
        bad = (u < -1e-6) | (u > dims - 1.0 + 1e-6)
    return np.any(bad, axis=1)


def points_outside_domain(transform, ras) -> np.ndarray:
    """The one domain rule: True for points (RAS, N×3) that ``transform`` maps outside a component's domain.

    ``transform``: a transform node (its FromWorld: the resampling transform fixed -> moving) or a
    vtkAbstractTransform. Each grid / B-spline component is checked at the point it receives (its output for an
    inverted component, since its grid lies in its forward input space): cubic B-spline ``1 <= u < n - 2``
    (elastix/ITK's valid region: outside, elastix returns the point unchanged, Slicer keeps a fading
    displacement), displacement grid ``0 <= u <= n - 1`` with 1e-6 voxel of round-off allowed (the grid's own
    voxel centres are inside; ITK gives zero displacement outside, Slicer keeps the edge value). Linear and other
    components have no bounded domain.
    """
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import VTK_DOUBLE, vtkPoints
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    def _map_points(t, p):
        src, dst = vtkPoints(), vtkPoints()
        src.SetData(numpy_to_vtk(np.ascontiguousarray(p, dtype=float), deep=1))
        dst.SetDataType(VTK_DOUBLE)
        t.TransformPoints(src, dst)
        return np.array(vtk_to_numpy(dst.GetData()), dtype=float).reshape(-1, 3)

    pts = np.array(ras, dtype=float).reshape(-1, 3)
    outside = np.zeros(len(pts), dtype=bool)
    if transform is None or len(pts) == 0:
        return outside
    if hasattr(transform, "GetTransformFromWorld"):  # a node
        general = vtkGeneralTransform()
        transform.GetTransformFromWorld(general)
        transform = general
    for comp in _components(transform):
        mapped = _map_points(comp, pts)
        inverted = bool(comp.GetInverseFlag()) if hasattr(comp, "GetInverseFlag") else False
        outside |= _outside_support(comp, mapped if inverted else pts)
        pts = mapped
    return outside


# ---------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------
class Slab:
    """One z-slab of the fixed grid with the registration sampled on it (see the module docstring)."""

    def __init__(self, k0, k1, u, jacobian_fn, u_halo=None, first=0, k_offset=0, nk=0):
        self.k0, self.k1, self.u = k0, k1, u
        self.u_halo, self.first, self.k_offset, self.nk = u_halo, first, k_offset, nk
        self._jacobian_fn = jacobian_fn
        self._jacobian = None

    def jacobian(self) -> np.ndarray:
        if self._jacobian is None:
            self._jacobian = self._jacobian_fn()
        return self._jacobian


def slab_ranges(size, slab_voxels: int = SLAB_VOXELS):
    ni, nj, nk = size
    step = max(1, int(slab_voxels) // max(1, ni * nj))
    return [(k0, min(nk, k0 + step)) for k0 in range(0, nk, step)]


def stream(registration, fixed_image, consumers, need_jacobian: bool = False, progress=None,
           slab_voxels: int = SLAB_VOXELS, halo: bool = False, prefetch: bool | None = None) -> list:
    """Sample ``registration`` on the fixed grid slab by slab and feed every consumer; returns their results.

    ``need_jacobian``: slabs can give J (analytic, or central differences: then the halo is sampled anyway).
    ``halo``: consumers get ``slab.u_halo`` (see the module docstring). ``progress(fraction)`` is called after
    each slab (it may raise to cancel the run). ``prefetch`` (default: for the compiled samplers, :class:`Chain`
    and :class:`FieldOnGrid`, when there are several slabs): the next slab is sampled in a second thread while
    the consumers take the current one (two buffers, handed over in order; ``chain_slab`` releases the GIL), so
    the cores left idle by the consumers' serial steps sample ahead. The slabs and their values are the same.
    """
    sampler = registration.sampler if isinstance(registration, Registration) else registration
    if hasattr(fixed_image, "ijk_to_lps") and hasattr(fixed_image, "size"):  # a deformation.Grid
        ijk_to_lps, size = np.asarray(fixed_image.ijk_to_lps, float), tuple(fixed_image.size)
    else:
        ijk_to_lps, size = image_ijk_to_lps(fixed_image), tuple(fixed_image.GetSize())
    ranges = slab_ranges(size, slab_voxels)
    if prefetch is None:
        prefetch = isinstance(sampler, (Chain, FieldOnGrid)) and len(ranges) > 2
    slabs = _Sampling(sampler, ijk_to_lps, size, ranges, need_jacobian, halo, buffers=2 if prefetch else 1)
    source = _Prefetched(slabs) if prefetch else slabs
    try:
        for slab in source:
            for c in consumers:
                c.consume(slab)
            source.release()
            if progress is not None:
                progress(slab.k1 / size[2])
    finally:
        source.close()
    return [c.finish() for c in consumers]


class _Sampling:
    """The slabs of :func:`stream`, sampled in order into ``buffers`` sets of buffers used in turn (a set is
    written again only after the slab it held was released: :class:`_Prefetched` sees to that)."""

    def __init__(self, sampler, ijk_to_lps, size, ranges, need_jacobian, halo, buffers=1):
        self.sampler, self.ranges = sampler, ranges
        self.ijk_to_lps = ijk_to_lps
        self.ni, self.nj, self.nk = size
        self.a_mat = np.ascontiguousarray(ijk_to_lps[:3, :3])
        self.det_a = float(np.linalg.det(self.a_mat))
        self.halo = 1 if halo or (need_jacobian and not sampler.analytic_jacobian) else 0
        self.analytic = need_jacobian and sampler.analytic_jacobian
        step = ranges[0][1] - ranges[0][0]
        # analytic J: computed with u for every sampled slice (halo slices too) and carried with it, so that each
        # slice of the grid is sampled exactly once; finite differences: J of the slab's own slices from u
        self.sets = [(np.empty((step + 2 * self.halo, self.nj, self.ni, 3), np.float32),
                      np.empty((step + 2 * self.halo if self.analytic else step, self.nj, self.ni), np.float32))
                     for _ in range(buffers)]

    def __iter__(self):
        k = _kernels()
        sampler, halo, analytic, nk = self.sampler, self.halo, self.analytic, self.nk
        ni, nj, a_mat, det_a = self.ni, self.nj, self.a_mat, self.det_a
        carry = None  # (global k of the first carried slice, u slices, J slices): the previous slab's last slices
        for n, (k0, k1) in enumerate(self.ranges):
            buf, det_all = self.sets[n % len(self.sets)]
            lo, hi = max(0, k0 - halo), min(nk, k1 + halo)
            u_all = buf[: hi - lo]
            start = lo
            if carry is not None:
                prev_lo, prev_u, prev_det = carry
                n_copy = prev_lo + len(prev_u) - lo
                if n_copy > 0:
                    u_all[:n_copy] = prev_u[lo - prev_lo:]
                    if analytic:
                        det_all[:n_copy] = prev_det[lo - prev_lo:]
                    start = lo + n_copy
            if start < hi:
                sampler.sample(self.ijk_to_lps, ni, nj, start, hi, analytic, u_all[start - lo:],
                               det_all[start - lo: hi - lo] if analytic else det_all)
            if halo and hi < nk:
                tail_lo = max(lo, hi - 2 * halo)
                carry = (tail_lo, u_all[tail_lo - lo:].copy(),
                         det_all[tail_lo - lo: hi - lo].copy() if analytic else None)
            u = u_all[k0 - lo: k1 - lo]
            if analytic:
                det = det_all[k0 - lo: k1 - lo]

                def jac(det=det):
                    return det
            elif sampler.analytic_jacobian:  # J not asked for: the analytic sampler has none
                def jac():
                    raise RuntimeError("stream(..., need_jacobian=False): no Jacobian")
            else:
                def jac(u_all=u_all, first=k0 - lo, count=k1 - k0, lo=lo, det_all=det_all):
                    out = det_all[:count]
                    k.fd_jacobian_slab(u_all, first, count, nk, lo, a_mat, det_a, out)
                    return out
            yield Slab(k0, k1, u, jac, u_all, k0 - lo, lo, nk)

    def release(self) -> None:  # one buffer set, used in order: nothing to hand back
        pass

    def close(self) -> None:
        pass


class _Prefetched:
    """Iterate a :class:`_Sampling` of two buffer sets with the sampling one slab ahead in a worker thread: the
    worker takes a free set before it samples into it (``release()`` frees the oldest once its consumers are done);
    slabs, or the worker's exception, are handed over in order."""

    _END = object()

    def __init__(self, sampling):
        import queue
        import threading

        self._free = threading.Semaphore(len(sampling.sets))
        self._ready = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sampling,), name="rq-stream-prefetch", daemon=True)
        self._thread.start()

    def _run(self, sampling) -> None:
        try:
            slabs = iter(sampling)
            while True:
                self._free.acquire()  # a set is sampled into only once the slab it held was released
                if self._stop.is_set():
                    return
                slab = next(slabs, self._END)
                self._ready.put(slab)
                if slab is self._END:
                    return
        except BaseException as exc:  # handed to the consuming thread, raised there
            self._ready.put(exc)

    def __iter__(self):
        while True:
            item = self._ready.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def release(self) -> None:
        self._free.release()

    def close(self) -> None:
        self._stop.set()
        self._free.release()  # a worker waiting for a set wakes up and stops
        self._thread.join()
