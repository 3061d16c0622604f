"""Resample an image onto a reference grid through a registration's resampling transform.

Convention: the transform node holds the *resampling* transform T (fixed -> moving, Slicer's FromParent, what
elastix/ITK files contain). The output at reference voxel centre x is the moving image interpolated at T(x),
i.e. the moving image brought into the fixed image's space. Without a transform, the moving image is sampled
at x itself (world space: "before registration").

Linear transforms (and none) go through SimpleITK's multithreaded resampler with the exact affine in LPS;
non-linear ones (grid, B-spline, composite) through Slicer's ``vtkOrientedImageDataResample`` with the node's
own transform, so every transform Slicer can hold is honoured exactly as Slicer applies it.
"""

from __future__ import annotations

import numpy as np

from .io import _sitk, image_ijk_to_ras, matrix_to_vtk, vtk_to_matrix

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


SAMPLED_ATTRIBUTE = "RegistrationQuality.SampledFrom"


def sampled_transform_node(ctx, transform_node, reference_image, displacement=None, name: str | None = None):
    """A grid transform node holding ``transform_node``'s resampling transform sampled at the reference voxels.

    At every reference voxel centre x the new node's FromParent gives exactly T(x) (float32 displacements), so
    resampling onto the reference grid through it equals resampling through T, while T itself (a B-spline
    chain, a composite) is evaluated only once: evaluate() samples the registration once and reuses it for
    images, labels, domain masks and the Jacobian. ``displacement``: (k, j, i, 3) LPS field u = T(x) - x when
    already computed. The caller owns (and removes) the node.
    """
    import slicer
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from .deformation import displacement_field

    if displacement is None:
        displacement = displacement_field(ctx, transform_node, reference_image)
    ras = np.ascontiguousarray(displacement, dtype=np.float32).reshape(-1, 3) * np.float32([-1.0, -1.0, 1.0])
    ijk_to_ras = image_ijk_to_ras(reference_image)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    data = vtkImageData()
    data.SetDimensions(*reference_image.GetSize())
    data.SetSpacing(*spacing)
    data.SetOrigin(*ijk_to_ras[:3, 3])
    data.GetPointData().SetScalars(numpy_to_vtk(ras, deep=1))
    direction = vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            direction.SetElement(r, c, float(ijk_to_ras[r, c] / spacing[c]))
    grid = slicer.vtkOrientedGridTransform()
    grid.SetDisplacementGridData(data)
    grid.SetGridDirectionMatrix(direction)
    grid.SetInterpolationModeToLinear()
    node = ctx.add_node("vtkMRMLGridTransformNode", name or f"{transform_node.GetName()} (sampled)")
    node.SetAndObserveTransformFromParent(grid)
    node.SetAttribute(SAMPLED_ATTRIBUTE, transform_node.GetID() or "")
    return node


# ---------------------------------------------------------------------------------------------------
# Fast exact sampling of elastix chains on a grid
# ---------------------------------------------------------------------------------------------------
def _reslice_bspline(coefficients: np.ndarray, index_map: np.ndarray, size) -> np.ndarray:
    """Evaluate a cubic B-spline (coefficients (3, nz, ny, nx)) at ``index_map @ (i, j, k, 1)`` for every voxel
    of a grid of ``size`` (i, j, k); returns (k, j, i, 3) float32. VTK's B-spline interpolator evaluates the
    tensor-product spline exactly (the input *is* the coefficient image) and vtkImageReslice walks the output
    rows incrementally on all cores."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkImagingCore import vtkImageBSplineInterpolator, vtkImageReslice

    nz, ny, nx = coefficients.shape[1:]
    coef = vtkImageData()
    coef.SetDimensions(nx, ny, nz)
    values = np.ascontiguousarray(np.moveaxis(coefficients, 0, -1), dtype=np.float64).reshape(-1, 3)
    coef.GetPointData().SetScalars(numpy_to_vtk(values, deep=1))
    interpolator = vtkImageBSplineInterpolator()
    interpolator.SetSplineDegree(3)
    interpolator.SetBorderModeToClamp()
    reslice = vtkImageReslice()
    reslice.SetInputData(coef)
    reslice.SetInterpolator(interpolator)
    reslice.SetResliceAxes(matrix_to_vtk(index_map))
    reslice.SetOutputOrigin(0.0, 0.0, 0.0)
    reslice.SetOutputSpacing(1.0, 1.0, 1.0)
    reslice.SetOutputExtent(0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1)
    reslice.SetOutputScalarType(10)  # VTK_FLOAT
    reslice.Update()
    out = reslice.GetOutput()
    return vtk_to_numpy(out.GetPointData().GetScalars()).reshape(size[2], size[1], size[0], 3).copy()


def elastix_displacement_field(transform_node, reference_image, moving_image=None):
    """u(x) = T(x) - x (LPS, (k, j, i, 3) float32) of an elastix-file node at the reference voxel centres, or
    None when the node is not an elastix chain of the form linear* -> one B-spline -> linear*.

    Exact: equals elastix's evaluation (identity outside the B-spline's valid region 1 <= index < n-2, as
    transformix does) up to float32 rounding, computed in one multithreaded pass (see :func:`_reslice_bspline`).
    """
    from pathlib import Path

    from .elastix import NODE_SOURCE_ATTRIBUTE, BSplineComponent, LinearComponent, _merge_linear, read_transform_chain

    if transform_node is None or transform_node.GetParentTransformNode() is not None:
        return None
    path = transform_node.GetAttribute(NODE_SOURCE_ATTRIBUTE)
    if not path or not Path(path).is_file():
        return None
    parts = _merge_linear(read_transform_chain(path, moving_image=moving_image))
    splines = [i for i, p in enumerate(parts) if isinstance(p, BSplineComponent)]
    if len(splines) != 1 or not all(isinstance(p, (LinearComponent, BSplineComponent)) for p in parts):
        return None
    b = parts[splines[0]]
    pre, post = np.eye(4), np.eye(4)
    for p in parts[: splines[0]]:
        pre = p.matrix @ pre
    for p in parts[splines[0] + 1:]:
        post = p.matrix @ post
    size = reference_image.GetSize()
    ijk_to_lps = np.eye(4)
    d = np.array(reference_image.GetDirection()).reshape(3, 3)
    ijk_to_lps[:3, :3] = d @ np.diag(reference_image.GetSpacing())
    ijk_to_lps[:3, 3] = reference_image.GetOrigin()
    grid_to_lps = np.eye(4)
    grid_to_lps[:3, :3] = b.direction @ np.diag(b.spacing)
    grid_to_lps[:3, 3] = b.origin
    ijk_to_pre = pre @ ijk_to_lps  # y = A_pre x
    index_map = np.linalg.inv(grid_to_lps) @ ijk_to_pre  # continuous B-spline index of y
    u_b = _reslice_bspline(b.coefficients, index_map, size)  # (k, j, i, 3), float32
    # T(x) - x = (P_post P_pre - I) x + p + P_post (inside(y) * u_B(y)): the affine part and the B-spline index
    # are affine in (i, j, k): build one slice plane and step it along k
    affine = post @ pre @ ijk_to_lps - ijk_to_lps
    ni, nj, nk = size
    ii = np.arange(ni, dtype=np.float64)[None, :, None]
    jj = np.arange(nj, dtype=np.float64)[:, None, None]

    def plane(m, dtype):
        return (m[:3, 3] + jj * m[:3, 1] + ii * m[:3, 0]).astype(dtype), m[:3, 2].astype(dtype)

    lin0, lin_k = plane(affine, np.float32)
    g0, g_k = plane(index_map, np.float64)  # the valid-region test in double, as elastix
    lo, hi = 1.0, b.size.astype(np.float64) - 2.0
    rotate = not np.allclose(post[:3, :3], np.eye(3))
    out = u_b
    for k in range(nk):
        g = g0 + k * g_k
        outside = ~np.all((g >= lo) & (g < hi), axis=-1)
        slab = out[k]
        slab[outside] = 0.0
        if rotate:
            slab[...] = slab @ post[:3, :3].T.astype(np.float32)
        slab += lin0
        slab += np.float32(k) * lin_k
    return out
