"""Resample an image onto a reference grid through a registration's resampling transform.

Convention: the transform node holds the *resampling* transform T (fixed -> moving, Slicer's FromParent, what
elastix/ITK files contain). The output at reference voxel centre x is the moving image interpolated at T(x),
i.e. the moving image brought into the fixed image's space. Without a transform, the moving image is sampled
at x itself (world space: "before registration").

Evaluation warps every image through :class:`Warp`, a consumer of :func:`transforms.stream` (the registration
sampled once per fixed voxel), and the "before" image through the same kernel with T = identity
(:func:`identity_slabs`). :func:`resample_image` (node-based, for the Python console, the panel and labelmaps of
the other grid): linear transforms (and none) go through SimpleITK's multithreaded resampler with the exact affine
in LPS; non-linear ones (grid, B-spline, composite) through Slicer's ``vtkOrientedImageDataResample`` with the
node's own transform, so every transform Slicer can hold is honoured exactly as Slicer applies it.
"""

from __future__ import annotations

import numpy as np

from .io import _sitk, image_ijk_to_ras, vtk_to_matrix
from .transforms import Slab, image_ijk_to_lps, slab_ranges

LPS4 = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_linear(transform_node) -> bool:
    return transform_node is None or bool(transform_node.IsTransformToWorldLinear())


def linear_from_world_lps(transform_node) -> np.ndarray:
    """4×4 matrix (LPS) of a linear node's world -> node transform (FromParent chain): fixed -> moving."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    transform_node.GetMatrixTransformFromWorld(m)
    return LPS4 @ vtk_to_matrix(m) @ LPS4


def sitk_affine(transform_node):
    """SimpleITK AffineTransform (LPS, fixed -> moving) of a linear transform node."""
    sitk = _sitk()
    m = linear_from_world_lps(transform_node)
    t = sitk.AffineTransform(3)
    t.SetMatrix(tuple(m[:3, :3].ravel().tolist()))
    t.SetTranslation(tuple(m[:3, 3].tolist()))
    return t


def _oriented(image, with_scalars: bool):
    """vtkOrientedImageData of a SimpleITK image (voxels shared via a numpy copy when requested)."""
    import slicer
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    sitk = _sitk()
    oi = slicer.vtkOrientedImageData()
    size = image.GetSize()
    oi.SetExtent(0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1)
    m = vtkMatrix4x4()
    ijk_to_ras = image_ijk_to_ras(image)
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(ijk_to_ras[r, c]))
    oi.SetImageToWorldMatrix(m)
    if with_scalars:
        arr = np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).ravel()
        oi.GetPointData().SetScalars(numpy_to_vtk(arr, deep=1))
    else:
        oi.AllocateScalars(10, 1)  # VTK_FLOAT; content unused, geometry only
    return oi


def resample_image(ctx, moving_image, reference_image, transform_node=None, interpolation: str = "linear",
                   background: float = 0.0):
    """The moving image on the reference grid, sampled at T(x) (T = node's FromParent; identity if None).

    ``interpolation``: "linear" for intensities, "nearest" for labelmaps. Output pixel type = input's.
    """
    sitk = _sitk()
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation must be 'linear' or 'nearest', not {interpolation!r}")
    if is_linear(transform_node):
        tx = sitk.Transform() if transform_node is None else sitk_affine(transform_node)
        interp = sitk.sitkLinear if interpolation == "linear" else sitk.sitkNearestNeighbor
        return sitk.Resample(moving_image, reference_image, tx, interp, float(background), moving_image.GetPixelID())
    return _resample_nonlinear(moving_image, reference_image, transform_node, interpolation == "linear", background)


def _resample_nonlinear(moving_image, reference_image, transform_node, linear: bool, background: float):
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    sitk = _sitk()
    moving_to_world = vtkGeneralTransform()
    transform_node.GetTransformToWorld(moving_to_world)  # input (moving) -> reference (fixed) world
    out = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        _oriented(moving_image, True), _oriented(reference_image, False), out, linear, False, moving_to_world,
        float(background),
    )
    size = reference_image.GetSize()
    extent = out.GetExtent()
    if tuple(extent) != (0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1):  # pragma: no cover - defensive
        raise RuntimeError(f"resampling returned extent {extent}, expected the reference grid {size}")
    arr = vtk_to_numpy(out.GetPointData().GetScalars()).reshape(size[2], size[1], size[0])
    result = sitk.GetImageFromArray(np.array(arr, copy=True))
    result.CopyInformation(reference_image)
    if result.GetPixelID() != moving_image.GetPixelID():
        result = sitk.Cast(result, moving_image.GetPixelID())
    return result


# ---------------------------------------------------------------------------------------------------
# Streamed warping (a consumer of transforms.stream)
# ---------------------------------------------------------------------------------------------------
class Warp:
    """Consumer of :func:`transforms.stream`: ``image`` sampled at T(x) for every fixed voxel x (linear for
    intensities, nearest neighbour for labelmaps), written slab by slab into an array on the fixed grid;
    ``finish()`` returns it as a SimpleITK image of the input's pixel type.

    Semantics as VTK's reslice used before (Slicer's resampling of non-linear transforms): a sample point within
    half a voxel of the image's voxel centres is inside (border voxels extended), elsewhere ``background``;
    integer images round the interpolated value to the nearest integer.

    ``inside``: the same pass also makes :attr:`inside`, the (k, j, i) mask of fixed voxels whose T(x) falls in a
    moving voxel (:class:`similarity.InsideMoving`'s rule, from the same continuous index). A slab without a
    displacement (``slab.u`` None: see :func:`identity_slabs`) samples the image at x itself.
    """

    def __init__(self, image, fixed_image, interpolation: str = "linear", background: float = 0.0,
                 inside: bool = False):
        sitk = _sitk()
        if interpolation not in ("linear", "nearest"):
            raise ValueError(f"interpolation must be 'linear' or 'nearest', not {interpolation!r}")
        self.image, self.fixed = image, fixed_image
        self.array = sitk.GetArrayViewFromImage(image)
        self.linear = interpolation == "linear"
        self.background = float(background)
        self.lps_to_index = np.ascontiguousarray(np.linalg.inv(image_ijk_to_lps(image)))
        self.ijk_to_lps = np.ascontiguousarray(image_ijk_to_lps(fixed_image))
        self.out = np.empty(fixed_image.GetSize()[::-1], dtype=self.array.dtype)
        integer = np.issubdtype(self.array.dtype, np.integer)
        info = np.iinfo(self.array.dtype) if integer else None
        self.rounding = bool(integer and self.linear)
        self.clip = (float(info.min), float(info.max)) if integer else (0.0, 0.0)
        self.inside = np.empty(self.out.shape, bool) if inside else None

    def consume(self, slab) -> None:
        from .kernels import warp_slab

        with_u = slab.u is not None
        inside = self.inside[slab.k0:slab.k1] if self.inside is not None else _NO_MASK
        warp_slab(slab.u if with_u else _NO_U, with_u, slab.k0, self.ijk_to_lps, self.lps_to_index, self.array,
                  self.linear, self.background, self.rounding, self.clip[0], self.clip[1],
                  self.out[slab.k0:slab.k1], self.inside is not None, inside)

    def finish(self):
        sitk = _sitk()
        self.image = self.array = None  # the input's voxels may go before the copy into the result is made
        result = sitk.GetImageFromArray(self.out)
        result.CopyInformation(self.fixed)
        self.out = None
        return result


_NO_U = np.zeros((1, 1, 1, 3), np.float32)  # the kernel's u and mask arguments when it does not read them
_NO_MASK = np.zeros((1, 1, 1), bool)


def identity_slabs(fixed_image):
    """Slabs of the fixed grid with no registration sampled on them (``u`` None), for :class:`Warp`: the moving
    data in world space ("before registration") in the same kernel, slab for slab, as through T."""
    return [Slab(k0, k1, None, None) for k0, k1 in slab_ranges(fixed_image.GetSize())]


def warp_in_world(image, fixed_image):
    """``(image on the fixed grid, inside mask)``: ``image`` linearly resampled at x itself (no registration) by
    :class:`Warp` over :func:`identity_slabs`, with its moving-domain mask from the same pass."""
    warp = Warp(image, fixed_image, "linear", inside=True)
    for slab in identity_slabs(fixed_image):
        warp.consume(slab)
    return warp.finish(), warp.inside
