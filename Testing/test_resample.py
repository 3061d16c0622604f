"""Resampling through the resampling transform: SimpleITK is the reference (inside the field's domain)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import io
from RegistrationQualityLib.resample import resample_image

from conftest import OBLIQUE, make_image


def smooth_image(direction=None):
    k, j, i = np.mgrid[0:20, 0:24, 0:28].astype(np.float32)
    arr = 100 * np.sin(i / 4.0) * np.cos(j / 5.0) + 3 * k
    return make_image(arr.astype(np.float32), spacing=(1.2, 1.0, 2.0), origin=(-10, -12, -20), direction=direction)


@pytest.mark.parametrize("direction", [None, OBLIQUE], ids=["axial", "oblique"])
def test_linear_transform_matches_simpleitk(ctx, tmp_path, direction):
    moving = smooth_image(direction)
    reference = make_image(np.zeros((12, 14, 16), np.float32), spacing=(1.7, 1.3, 2.5), origin=(-5, -8, -10),
                           direction=OBLIQUE.T)
    t = sitk.Euler3DTransform((0, 0, 0), 0.05, -0.1, 0.2, (1.5, -2.0, 0.7))
    sitk.WriteTransform(t, str(tmp_path / "t.tfm"))
    node = io.load_transform(ctx, tmp_path / "t.tfm")
    ours = resample_image(ctx, moving, reference, node)
    ref = sitk.Resample(moving, reference, t, sitk.sitkLinear, 0.0, moving.GetPixelID())
    np.testing.assert_allclose(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(ref), atol=1e-3)
    # no transform: world space
    ours0 = resample_image(ctx, moving, reference, None, interpolation="nearest")
    ref0 = sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours0), sitk.GetArrayFromImage(ref0))


def test_bspline_transform_matches_simpleitk_inside_domain(ctx, tmp_path):
    moving = smooth_image(OBLIQUE)
    reference = make_image(np.zeros((10, 12, 14), np.float32), spacing=(1.5, 1.5, 2.0), origin=(-6, -7, -8))
    domain = make_image(np.zeros((20, 24, 28), np.float32), spacing=(1.2, 1.0, 2.0), origin=(-14, -16, -26))
    bs = sitk.BSplineTransformInitializer(domain, [4, 4, 4], 3)
    rng = np.random.default_rng(3)
    bs.SetParameters(tuple(rng.normal(0, 1.5, len(bs.GetParameters())).tolist()))
    sitk.WriteTransform(bs, str(tmp_path / "bs.h5"))
    node = io.load_transform(ctx, tmp_path / "bs.h5")
    ours = sitk.GetArrayFromImage(resample_image(ctx, moving, reference, node))
    ref = sitk.GetArrayFromImage(sitk.Resample(moving, reference, bs, sitk.sitkLinear, 0.0, moving.GetPixelID()))
    # ITK's B-spline is identity outside its domain, Slicer's keeps the edge displacement: compare inside only
    field = sitk.TransformToDisplacementField(bs, sitk.sitkVectorFloat64, reference.GetSize(), reference.GetOrigin(),
                                              reference.GetSpacing(), reference.GetDirection())
    inside = np.linalg.norm(sitk.GetArrayFromImage(field), axis=-1) > 0
    assert inside.mean() > 0.5
    np.testing.assert_allclose(ours[inside], ref[inside], atol=0.05)


def write_elastix_chain(folder, grid_direction):
    """TransformParameters.0.txt (Euler, rotated) and .1.txt (B-spline with an oblique grid, initial = .0)."""
    rng = np.random.default_rng(11)
    (folder / "TransformParameters.0.txt").write_text(
        '(Transform "EulerTransform")\n(NumberOfParameters 6)\n(TransformParameters 0.1 -0.2 0.15 3 -2 1.5)\n'
        '(InitialTransformParametersFileName "NoInitialTransform")\n(HowToCombineTransforms "Compose")\n'
        "(CenterOfRotationPoint 5 -3 2)\n(FixedImageDimension 3)\n(MovingImageDimension 3)\n")
    grid = (7, 6, 5)
    coef = rng.normal(0, 2.0, 3 * int(np.prod(grid)))
    (folder / "TransformParameters.1.txt").write_text(
        '(Transform "BSplineTransform")\n'
        f"(NumberOfParameters {coef.size})\n(TransformParameters {' '.join(f'{v:.6f}' for v in coef)})\n"
        '(InitialTransformParametersFileName "TransformParameters.0.txt")\n(HowToCombineTransforms "Compose")\n'
        f"(GridSize {' '.join(map(str, grid))})\n(GridIndex 0 0 0)\n(GridSpacing 9 11 13)\n(GridOrigin -30 -32 -28)\n"
        f"(GridDirection {' '.join(f'{v:.12f}' for v in np.asarray(grid_direction).T.ravel())})\n"
        '(BSplineTransformSplineOrder 3)\n(FixedImageDimension 3)\n(MovingImageDimension 3)\n')
    return folder / "TransformParameters.1.txt"


def test_elastix_chain_sampled_exactly_on_an_oblique_grid(ctx, tmp_path):
    from RegistrationQualityLib.elastix import BSplineComponent, _merge_linear, read_transform_chain
    from RegistrationQualityLib.transforms import load_registration, stream

    class Keep:
        def __init__(self):
            self.parts = []

        def consume(self, slab):
            self.parts.append(slab.u.copy())

        def finish(self):
            return np.concatenate(self.parts)

    path = write_elastix_chain(tmp_path, OBLIQUE)
    node = io.load_transform(ctx, path)
    reference = make_image(np.zeros((9, 11, 13), np.float32), spacing=(3.1, 2.7, 4.3), origin=(-22, -25, -18),
                           direction=OBLIQUE.T)
    (u,) = stream(load_registration(ctx, node, fixed_image=reference), reference, [Keep()],
                  slab_voxels=11 * 13 * 4)  # the node's elastix file, sampled by the kernel
    pts = np.array([reference.TransformIndexToPhysicalPoint((i, j, k)) for k in range(9) for j in range(11)
                    for i in range(13)])
    y = pts.copy()
    inside = None
    for part in _merge_linear(read_transform_chain(path)):  # elastix's own evaluation, point by point
        if isinstance(part, BSplineComponent):
            inside = part.inside(y)
            y = part.transform_points(y)
        else:
            y = y @ part.matrix[:3, :3].T + part.matrix[:3, 3]
    assert 0.1 < inside.mean() < 0.95  # both the deformed region and elastix's identity outside are exercised
    np.testing.assert_allclose(u.reshape(-1, 3), y - pts, atol=1e-4)
