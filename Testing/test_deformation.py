"""Deformation QA: displacement fields, Jacobian determinant (physical derivatives), folding, SDlogJ,
displacement statistics and inverse consistency, checked against analytic fields and SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import deformation as d
from RegistrationQualityLib import io, transforms
from RegistrationQualityLib.errors import BadInputError

from conftest import OBLIQUE, make_image, rotation_matrix, run_elastix_tool

LPS4 = np.diag([-1.0, -1.0, 1.0, 1.0])
SPACING = (0.8, 1.5, 2.5)


def oblique_reference(size=(11, 9, 7), origin=(-3.0, 4.0, 2.0), direction=OBLIQUE, spacing=SPACING):
    return make_image(np.zeros(size[::-1], np.float32), spacing=spacing, origin=origin, direction=direction)


def voxel_points(image) -> np.ndarray:
    """LPS voxel centres (k, j, i, 3) via SimpleITK (independent of the module's Grid)."""
    size = image.GetSize()
    pts = np.empty(size[::-1] + (3,))
    for k in range(size[2]):
        for j in range(size[1]):
            for i in range(size[0]):
                pts[k, j, i] = image.TransformIndexToPhysicalPoint((i, j, k))
    return pts


def linear_node(ctx, matrix_lps, name="affine"):
    """Transform node whose FromParent (resampling, fixed -> moving) is the LPS matrix."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    ras = LPS4 @ np.asarray(matrix_lps, float) @ LPS4
    m = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, ras[r, c])
    node = ctx.add_node("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformFromParent(m)
    return node


def sitk_displacement(transform, reference) -> np.ndarray:
    f = sitk.TransformToDisplacementFieldFilter()
    f.SetReferenceImage(reference)
    f.SetOutputPixelType(sitk.sitkVectorFloat64)
    return sitk.GetArrayFromImage(f.Execute(transform))


AFFINE = np.eye(4)
AFFINE[:3, :3] = rotation_matrix((1, -1, 2), 20) @ np.array([[1.2, 0.1, 0.0], [0.05, 0.9, 0.2], [0.0, -0.1, 1.1]])
AFFINE[:3, 3] = (4.0, -2.5, 7.0)


# ---------------------------------------------------------------------------------------------------
# displacement fields
# ---------------------------------------------------------------------------------------------------
def test_affine_displacement_and_jacobian_equal_det_a_everywhere(ctx):
    ref = oblique_reference()
    node = linear_node(ctx, AFFINE)
    u = d.displacement_field(ctx, node, ref)
    x = voxel_points(ref)
    expected = x @ AFFINE[:3, :3].T + AFFINE[:3, 3] - x
    assert u.shape == (7, 9, 11, 3) and u.dtype == np.float32
    np.testing.assert_allclose(u, expected, atol=2e-5)
    jac = d.jacobian_determinant(u, ref)
    np.testing.assert_allclose(jac, np.linalg.det(AFFINE[:3, :3]), atol=2e-5)  # border voxels included
    stats = d.jacobian_statistics(jac, spacing=ref.GetSpacing())
    assert stats["voxels"] == 7 * 9 * 11 and stats["folding_voxels"] == 0
    assert stats["std"] < 1e-5 and stats["sdlogj"] < 1e-5


def test_identity_gives_zero_field_and_unit_jacobian(ctx):
    ref = oblique_reference()
    u = d.displacement_field(ctx, None, ref)
    assert not u.any()
    assert np.all(d.jacobian_determinant(u, ref) == 1)


@pytest.mark.parametrize("kind", ["field", "bspline", "composite"])
def test_nonlinear_displacement_matches_simpleitk(ctx, tmp_path, kind):
    """Grid, B-spline and composite files loaded into Slicer nodes give ITK's own T(x) - x."""
    rng = np.random.default_rng(3)
    domain = make_image(np.zeros((12, 14, 16), np.float32), spacing=(3.0, 2.5, 2.0), origin=(-20.0, -15.0, -10.0),
                        direction=rotation_matrix((0, 1, 1), 15))
    if kind == "field":
        field = sitk.GetImageFromArray(rng.normal(0, 2.0, (12, 14, 16, 3)), isVector=True)
        field.CopyInformation(domain)
        path = tmp_path / "field.nrrd"
        sitk.WriteImage(field, str(path))
        transform = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    else:
        bspline = sitk.BSplineTransformInitializer(domain, (4, 4, 4))
        bspline.SetParameters(tuple(rng.normal(0, 3.0, len(bspline.GetParameters()))))
        transform = bspline
        if kind == "composite":
            transform = sitk.CompositeTransform([sitk.Euler3DTransform((5.0, 5.0, 5.0), 0.05, -0.1, 0.08, (1, 2, -1)),
                                                 bspline])
        path = tmp_path / ("t.h5" if kind == "composite" else "t.tfm")
        sitk.WriteTransform(transform, str(path))
    node = transforms.load_transform(ctx, path)
    if kind == "field":
        # Slicer interpolates displacement grids cubically (vtkGridTransform mode 2); ITK's
        # DisplacementFieldTransform linearly. Compare like with like.
        node.GetTransformFromParent().SetInterpolationModeToLinear()
    # an oblique, anisotropic reference grid well inside the field's domain
    half_extent = OBLIQUE @ (np.array([1.7, 2.1, 1.3]) * (np.array([8, 7, 6]) - 1) / 2)
    centre = np.array(domain.TransformContinuousIndexToPhysicalPoint((7.5, 6.5, 5.5)))
    ref = make_image(np.zeros((6, 7, 8), np.float32), spacing=(1.7, 2.1, 1.3), origin=tuple(centre - half_extent),
                     direction=OBLIQUE)
    u = d.displacement_field(ctx, node, ref, slab_voxels=100)  # several slabs
    np.testing.assert_allclose(u, sitk_displacement(transform, ref), atol=1e-4)


def test_field_on_the_reference_grid_is_read_directly(ctx, tmp_path):
    ref = oblique_reference()
    vectors = np.random.default_rng(5).normal(0, 1.5, (7, 9, 11, 3))
    field = sitk.GetImageFromArray(vectors, isVector=True)
    field.CopyInformation(ref)
    sitk.WriteImage(field, str(tmp_path / "f.nii.gz"))
    node = transforms.load_transform(ctx, tmp_path / "f.nii.gz")
    u = d.displacement_field(ctx, node, ref)
    np.testing.assert_allclose(u, vectors, atol=1e-6)
    np.testing.assert_allclose(d.displacement_field_from_image(sitk.ReadImage(str(tmp_path / "f.nii.gz")), ref), u,
                               atol=1e-6)
    with pytest.raises(BadInputError, match="not on the reference grid"):
        d.displacement_field_from_image(field, oblique_reference(origin=(0.0, 0.0, 0.0)))
    # the general evaluation through Slicer's transform gives the same at the grid points
    x = voxel_points(ref)
    general = d._map_points_lps(d._world_to_node(node), x) - x
    np.testing.assert_allclose(u, general, atol=1e-5)


def test_displacement_node_round_trips_as_a_transform(ctx, tmp_path):
    ref = oblique_reference()
    node = linear_node(ctx, AFFINE)
    vol = d.displacement_volume_node(ctx, node, ref, name="u")
    assert vol.IsA("vtkMRMLVectorVolumeNode") and vol.GetImageData().GetNumberOfScalarComponents() == 3
    assert vol.GetAttribute("RegistrationQuality.VectorCoordinateSystem") == "LPS"
    np.testing.assert_allclose(io.node_ijk_to_ras(vol), io.image_ijk_to_ras(ref), atol=1e-9)
    io.save_node(vol, tmp_path / "u.nrrd")
    loaded = transforms.load_transform(ctx, tmp_path / "u.nrrd")
    np.testing.assert_allclose(d.displacement_field(ctx, loaded, ref), d.displacement_field(ctx, node, ref),
                               atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Jacobian determinant: physical derivatives
# ---------------------------------------------------------------------------------------------------
def quadratic_field(points, rng):
    """u(y) = B y + Σ H y y (y = x - x0) and its exact gradient; central differences are exact for it."""
    x0 = points.reshape(-1, 3).mean(axis=0)
    y = points - x0
    b = rng.normal(0, 0.08, (3, 3))
    h = rng.normal(0, 0.004, (3, 3, 3))
    u = y @ b.T + np.einsum("abc,...b,...c->...a", h, y, y)
    grad = b + np.einsum("adc,...c->...ad", h + h.transpose(0, 2, 1), y)
    return u, np.linalg.det(np.eye(3) + grad)


def test_jacobian_uses_spacing_and_direction_cosines():
    ref = oblique_reference(size=(12, 10, 8))
    u, expected = quadratic_field(voxel_points(ref), np.random.default_rng(7))
    jac = d.jacobian_determinant(u.astype(np.float32), ref)
    inner = (slice(1, -1),) * 3
    np.testing.assert_allclose(jac[inner], expected[inner], atol=2e-4)
    # the same physical field sampled on an axis-aligned, isotropic grid gives the same J at the same points
    axis = oblique_reference(size=(12, 10, 8), direction=np.eye(3), spacing=(1.0, 1.0, 1.0))
    u2, expected2 = quadratic_field(voxel_points(axis), np.random.default_rng(7))
    np.testing.assert_allclose(d.jacobian_determinant(u2, axis)[inner], expected2[inner], atol=2e-4)


def test_jacobian_matches_simpleitk_after_rotating_vectors_into_grid_axes():
    """SimpleITK's filter differentiates along the index axes with spacing only (no direction cosines):
    with vectors expressed in the grid axes (D^T u) the determinant is the same, det(D^T F D) = det F."""
    ref = oblique_reference(size=(12, 10, 8))
    u, _ = quadratic_field(voxel_points(ref), np.random.default_rng(11))
    jac = d.jacobian_determinant(u, ref)
    direction = np.array(ref.GetDirection()).reshape(3, 3)

    def itk_jacobian(vectors):
        img = sitk.GetImageFromArray(vectors, isVector=True)
        img.CopyInformation(ref)
        f = sitk.DisplacementFieldJacobianDeterminantFilter()
        f.SetUseImageSpacing(True)
        return sitk.GetArrayFromImage(f.Execute(img))

    inner = (slice(1, -1),) * 3  # ITK uses zero-flux Neumann borders, we use one-sided differences
    np.testing.assert_allclose(jac[inner], itk_jacobian(u @ direction)[inner], atol=1e-5)
    assert np.abs(jac[inner] - itk_jacobian(u)[inner]).max() > 1e-2  # the unrotated field is not comparable


def test_folding_field_has_the_expected_folding_volume(ctx, tmp_path):
    """u = f(s) e_i along the (oblique) i axis, f' = -3 mm/mm for |s| <= 3 voxels: 7 folded columns."""
    ref = oblique_reference(size=(21, 6, 5))
    x = voxel_points(ref)
    e_i = np.array(ref.GetDirection()).reshape(3, 3)[:, 0]
    s = (x - x[0, 0, 10]) @ e_i  # mm along the i axis from column 10
    half = 3 * SPACING[0]
    f = -3.0 * np.clip(s, -half, half)
    u = f[..., None] * e_i
    jac = d.jacobian_determinant(u, ref)
    np.testing.assert_allclose(jac[:, :, 8:13], -2.0, atol=1e-5)  # inside: 1 + f' = -2
    np.testing.assert_allclose(jac[:, :, [7, 13]], -0.5, atol=1e-5)  # kink voxels: half the slope
    np.testing.assert_allclose(jac[:, :, [*range(0, 7), *range(14, 21)]], 1.0, atol=1e-5)
    stats = d.jacobian_statistics(jac, spacing=ref.GetSpacing())
    folded = 7 * 6 * 5
    voxel_cc = SPACING[0] * SPACING[1] * SPACING[2] / 1000
    assert stats["folding_voxels"] == folded and stats["sdlogj_excluded_voxels"] == folded
    assert stats["folding_percent"] == pytest.approx(100 * 7 / 21)
    assert stats["folding_volume_cc"] == pytest.approx(folded * voxel_cc)
    assert stats["min"] == pytest.approx(-2.0, abs=1e-5) and stats["sdlogj"] == pytest.approx(0.0, abs=1e-5)
    assert stats["sdlogj_voxels"] == 21 * 6 * 5 - folded
    # same through a displacement-field file and the one-call evaluation
    field = sitk.GetImageFromArray(u, isVector=True)
    field.CopyInformation(ref)
    sitk.WriteImage(field, str(tmp_path / "fold.nrrd"))
    result = d.evaluate_deformation(ctx, transforms.load_transform(ctx, tmp_path / "fold.nrrd"), ref)
    assert result["region"] == "whole image"
    assert result["jacobian"]["folding_volume_cc"] == pytest.approx(folded * voxel_cc)
    assert result["displacement_mm"]["max"] == pytest.approx(3 * half, rel=1e-6)


def test_sdlogj_definition_on_two_values():
    jac = np.array([[[0.5, 2.0, 2.0, 0.5, -1.0, 0.0]]], np.float32)
    stats = d.jacobian_statistics(jac)
    assert stats["sdlogj"] == pytest.approx(np.log(2.0))  # log J = ±log 2 on the four positive voxels
    assert stats["sdlogj_voxels"] == 4 and stats["sdlogj_excluded_voxels"] == 2
    assert stats["folding_voxels"] == 2 and stats["folding_percent"] == pytest.approx(100 / 3)
    assert stats["min"] == -1.0 and stats["max"] == 2.0
    assert stats["folding_volume_cc"] == pytest.approx(2 / 1000)


# ---------------------------------------------------------------------------------------------------
# regions: whole image, masks
# ---------------------------------------------------------------------------------------------------
def test_statistics_cover_the_whole_image_without_mask_and_the_mask_with_one(ctx):
    ref = oblique_reference(size=(15, 13, 11))
    scale = 1.1
    centre = np.array(ref.TransformContinuousIndexToPhysicalPoint((7.0, 6.0, 5.0)))
    m = np.eye(4)
    m[:3, :3] *= scale
    m[:3, 3] = (1 - scale) * centre  # scaling about the centre: |u| = 0.1 r, J = 1.331
    node = linear_node(ctx, m)
    r = np.linalg.norm(voxel_points(ref) - centre, axis=-1)
    whole = d.evaluate_deformation(ctx, node, ref)
    assert whole["jacobian"]["voxels"] == 15 * 13 * 11 == whole["displacement_mm"]["voxels"]
    assert whole["displacement_mm"]["max"] == pytest.approx(0.1 * r.max(), rel=1e-5)
    assert whole["displacement_mm"]["mean"] == pytest.approx(0.1 * r.mean(), rel=1e-5)
    assert whole["jacobian"]["mean"] == pytest.approx(scale**3, abs=1e-5)
    # a sphere of radius 6 mm as a labelmap on another grid (resampled nearest-neighbour onto the reference)
    labels = make_image(np.zeros((30, 30, 30), np.uint8), spacing=(1.0, 1.0, 1.0), origin=tuple(centre - 14.5))
    lab = sitk.GetArrayFromImage(labels)
    lab[np.linalg.norm(voxel_points(labels) - centre, axis=-1) <= 6.0] = 3
    labels = sitk.GetImageFromArray(lab)
    labels.SetOrigin(tuple(centre - 14.5))
    mask = d.mask_array(labels, ref, labels=[3])
    inside = r <= 6.0
    node_mask = d.mask_array(io.image_to_volume(ctx, labels, "lab", labelmap=True), ref, labels=[3])
    np.testing.assert_array_equal(node_mask, mask)  # a labelmap volume node gives the same mask
    assert abs(int(mask.sum()) - int(inside.sum())) <= 0.1 * inside.sum()  # nearest-neighbour resampling
    masked = d.evaluate_deformation(ctx, node, ref, mask=mask)
    assert masked["region"] == "mask" and masked["jacobian"]["voxels"] == int(mask.sum())
    assert masked["displacement_mm"]["voxels"] == int(mask.sum())
    assert masked["displacement_mm"]["max"] == pytest.approx(0.1 * r[mask].max(), rel=1e-5)
    assert masked["displacement_mm"]["p95"] == pytest.approx(np.percentile(0.1 * r[mask], 95), rel=1e-5)
    assert masked["displacement_mm"]["max"] < whole["displacement_mm"]["max"]
    empty = d.evaluate_deformation(ctx, node, ref, mask=np.zeros(mask.shape, bool))
    assert empty["jacobian"]["mean"] is None and empty["jacobian"]["reason"] == "empty mask"
    assert empty["displacement_mm"]["max"] is None


def test_threshold_mask_and_mask_errors():
    img = make_image(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    m = d.threshold_mask(img, lower=5, upper=10)
    assert m.sum() == 6 and m.reshape(-1)[5] and not m.reshape(-1)[11]
    with pytest.raises(BadInputError) as err:
        d.mask_array(np.ones((3, 3, 3)), img)
    assert "\n" not in str(err.value) and str(err.value).startswith("mask: shape")
    with pytest.raises(BadInputError):
        d.jacobian_determinant(np.zeros((2, 3, 5, 3), np.float32), img)


# ---------------------------------------------------------------------------------------------------
# inverse consistency
# ---------------------------------------------------------------------------------------------------
def test_inverse_consistency_of_exact_and_offset_inverses(ctx):
    ref = oblique_reference()
    forward = linear_node(ctx, AFFINE, "forward")
    exact = d.inverse_consistency(ctx, forward, linear_node(ctx, np.linalg.inv(AFFINE), "backward"), ref)
    assert exact["voxels"] == 7 * 9 * 11 and exact["max"] < 1e-6
    shift = np.eye(4)
    shift[:3, 3] = (0.0, 2.0, 0.0)
    offset = d.inverse_consistency(ctx, forward, linear_node(ctx, shift @ np.linalg.inv(AFFINE), "b2"), ref)
    assert offset["mean"] == pytest.approx(2.0) and offset["p95"] == pytest.approx(2.0)
    assert offset["max"] == pytest.approx(2.0)


def test_inverse_consistency_of_a_grid_and_its_slicer_inverse(ctx, tmp_path):
    ref = oblique_reference()
    domain = make_image(np.zeros((10, 10, 10), np.float32), spacing=(4.0, 4.0, 4.0), origin=(-20.0, -20.0, -20.0))
    z = np.linspace(-1, 1, 10)
    vectors = np.stack(np.meshgrid(z, z, z, indexing="ij"), axis=-1)[..., ::-1] * 1.5  # smooth, invertible
    field = sitk.GetImageFromArray(vectors, isVector=True)
    field.CopyInformation(domain)
    sitk.WriteImage(field, str(tmp_path / "f.nrrd"))
    forward = transforms.load_transform(ctx, tmp_path / "f.nrrd")
    backward = ctx.add_node("vtkMRMLGridTransformNode", "inverse")
    backward.SetAndObserveTransformToParent(forward.GetTransformFromParent())  # FromParent = iterative inverse
    err = d.inverse_consistency(ctx, forward, backward, ref)
    assert err["max"] < 1e-3
    identity = d.inverse_consistency(ctx, forward, linear_node(ctx, np.eye(4), "id"), ref)
    u = d.displacement_field(ctx, forward, ref)
    assert identity["max"] == pytest.approx(float(np.linalg.norm(u, axis=-1).max()), rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# nodes and rows
# ---------------------------------------------------------------------------------------------------
def test_jacobian_node_uses_a_diverging_table_centred_on_one(ctx):
    ref = oblique_reference()
    jac = np.linspace(-0.5, 2.5, 7 * 9 * 11, dtype=np.float32).reshape(7, 9, 11)
    node = d.jacobian_volume_node(ctx, jac, ref)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(io.volume_to_image(node)), jac)
    display = node.GetDisplayNode()
    table = d.jacobian_color_node(ctx)
    assert display.GetColorNodeID() == table.GetID()
    low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    assert (low + high) / 2 == pytest.approx(1.0) and display.GetAutoWindowLevel() == 0
    n = table.GetNumberOfColors()
    rgba = [0.0] * 4
    table.GetColor(n // 2, rgba)
    assert rgba[:3] == pytest.approx([1.0, 1.0, 1.0])  # white at J = 1
    table.GetColor(0, rgba)
    low_rgb = rgba[:3]
    table.GetColor(n - 1, rgba)
    assert low_rgb[2] > low_rgb[0] and rgba[0] > rgba[2]  # blue below 1, red above
    d.jacobian_volume_node(ctx, jac, ref, name="second")
    assert ctx.scene.GetNodesByName(d.JACOBIAN_COLOR_NODE_NAME).GetNumberOfItems() == 1


def test_rows_carry_groups_units_and_nulls(ctx):
    ref = oblique_reference()
    result = d.evaluate_deformation(ctx, linear_node(ctx, AFFINE), ref,
                                    backward_node=linear_node(ctx, np.linalg.inv(AFFINE)), create_nodes=True,
                                    name="reg")
    assert result["nodes"]["jacobian"].GetName() == "reg Jacobian determinant"
    rows = d.deformation_rows(result, transform="reg")
    groups = {r["group"] for r in rows}
    assert groups == {"deformation.jacobian", "deformation.displacement_mm", "deformation.inverse_consistency_mm"}
    folding = [r for r in rows if r["metric"] == "folding_volume_cc"][0]
    assert folding["unit"] == "cc" and folding["value"] == 0
    p95 = [r for r in rows if r["group"] == "deformation.displacement_mm" and r["metric"] == "p95"][0]
    assert p95["unit"] == "mm" and p95["value"] == pytest.approx(result["displacement_mm"]["p95"])


# ---------------------------------------------------------------------------------------------------
# independent reference: transformix -jac (analytic spatial Jacobian of an elastix B-spline)
# ---------------------------------------------------------------------------------------------------
def _elastix_bspline_file(path, ref, grid_spacing, coefficients):
    size, spacing, origin = ref.GetSize(), ref.GetSpacing(), np.array(ref.GetOrigin())
    direction = np.array(ref.GetDirection()).reshape(3, 3)
    grid_size = coefficients.shape[1:][::-1]
    grid_origin = origin - direction @ np.full(3, grid_spacing)  # one control point before the image
    column_major = " ".join(f"{v:.12f}" for v in direction.T.ravel())  # elastix writes directions by column
    values = " ".join(repr(float(v)) for v in coefficients.ravel())
    path.write_text(
        f'(Transform "BSplineTransform")\n(NumberOfParameters {coefficients.size})\n(TransformParameters {values})\n'
        '(InitialTransformParametersFileName "NoInitialTransform")\n(HowToCombineTransforms "Compose")\n'
        "(FixedImageDimension 3)\n(MovingImageDimension 3)\n"
        '(FixedInternalImagePixelType "float")\n(MovingInternalImagePixelType "float")\n'
        f"(Size {size[0]} {size[1]} {size[2]})\n(Index 0 0 0)\n(Spacing {spacing[0]} {spacing[1]} {spacing[2]})\n"
        f"(Origin {origin[0]} {origin[1]} {origin[2]})\n(Direction {column_major})\n"
        '(UseDirectionCosines "true")\n'
        f"(GridSize {grid_size[0]} {grid_size[1]} {grid_size[2]})\n(GridIndex 0 0 0)\n"
        f"(GridSpacing {grid_spacing} {grid_spacing} {grid_spacing})\n"
        f"(GridOrigin {grid_origin[0]} {grid_origin[1]} {grid_origin[2]})\n(GridDirection {column_major})\n"
        '(BSplineTransformSplineOrder 3)\n(UseCyclicTransform "false")\n'
        '(ResampleInterpolator "FinalBSplineInterpolator")\n(FinalBSplineInterpolationOrder 1)\n'
        '(Resampler "DefaultResampler")\n(DefaultPixelValue 0)\n(ResultImageFormat "mha")\n'
        '(ResultImagePixelType "float")\n')
    return path


@pytest.mark.elastix
def test_jacobian_matches_transformix_analytic_jacobian(ctx, tmp_path):
    import shutil

    if shutil.which("transformix") is None:
        pytest.skip("transformix executable not on PATH")
    from RegistrationQualityLib import elastix

    ref = oblique_reference(size=(24, 20, 12))  # oblique, spacing 0.8 x 1.5 x 2.5 mm
    grid_spacing = 12.0
    extent = np.array(ref.GetSpacing()) * (np.array(ref.GetSize()) - 1)
    grid_size = (np.ceil(extent / grid_spacing).astype(int) + 3)[::-1]  # (k, j, i)
    coefficients = np.random.default_rng(2).normal(0, 1.5, (3, *grid_size))
    errors = []
    for refine in (1, 2):  # the same B-spline on the grid and on a grid of half the spacing
        grid = make_image(np.zeros(tuple((np.array(ref.GetSize()[::-1]) - 1) * refine + 1), np.float32),
                          spacing=np.array(ref.GetSpacing()) / refine, origin=ref.GetOrigin(), direction=OBLIQUE)
        out = tmp_path / f"r{refine}"
        out.mkdir()
        tp = _elastix_bspline_file(out / "TransformParameters.0.txt", grid, grid_spacing, coefficients)
        proc = run_elastix_tool(["transformix", "-jac", "all", "-out", str(out), "-tp", str(tp)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:]
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "spatialJacobian.mha")))
        node = elastix.load_transform_parameters(ctx, tp)
        jac = d.jacobian_determinant(d.displacement_field(ctx, node, grid), grid)
        common = (slice(refine, -refine, refine),) * 3  # interior voxels of the coarse grid
        assert np.ptp(reference[common]) > 0.1  # a real deformation
        errors.append(float(np.abs(jac[common] - reference[common]).max()))
    # central differences vs transformix's analytic spatial Jacobian: small, and second order (÷4 per halving)
    assert errors[0] < 0.01
    assert errors[1] < errors[0] / 3


@pytest.mark.parametrize("n, nan_fraction", [(1, 0.0), (2, 0.0), (17, 0.0), (5000, 0.0), (200_001, 0.0),
                                             (50_000, 0.02), (100, 0.5)])
def test_displacement_tail_equals_numpy_statistics(n, nan_fraction):
    """|u| statistics kept from the largest 5 % only (deformation.DisplacementTail) = numpy's mean, linear p95 and
    max over all finite values, fed in uneven batches, with non-finite values moving the rank."""
    from RegistrationQualityLib.deformation import DisplacementTail

    rng = np.random.default_rng(n)
    values = rng.gamma(2.0, 1.5, n).astype(np.float32)
    if nan_fraction:
        values[rng.random(n) < nan_fraction] = np.nan
    tail = DisplacementTail(n)
    for part in np.array_split(values, 11):
        tail.add(part)
    got = tail.result()
    finite = values[np.isfinite(values)].astype(np.float64)
    assert got["voxels"] == finite.size
    assert got["p95"] == pytest.approx(np.percentile(finite, 95), rel=1e-6)
    assert got["mean"] == pytest.approx(finite.mean(), rel=1e-12)
    assert got["max"] == finite.max()
    assert tail.held <= max(1, n - int(np.floor(0.95 * (n - 1))))


def _numpy_jacobian_histogram(values, bins):
    """The histogram's definition written with numpy: np.percentile, np.histogram and the clipped counts."""
    p_lo, p_hi = np.percentile(values, [0.5, 99.5])
    lo, hi = min(float(p_lo), 0.5), max(float(p_hi), 1.5)
    vmin = float(values.min())
    if vmin <= 0:
        lo = min(lo, max(vmin, -2.0), -0.05)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "clipped_below": int(np.count_nonzero(values < lo)), "clipped_above": int(np.count_nonzero(values > hi))}


@pytest.mark.parametrize("n", [1, 2, 3, 8, 201, 65_537, 300_001])
def test_jacobian_histogram_and_percentiles_equal_numpy_exactly(n):
    """deformation.jacobian_histogram (key buckets, order statistics gathered from their buckets, exact binning
    against the float32 edges) = np.percentile + np.histogram + the clipped counts, value for value: smooth,
    folding and tied values, and values placed on every edge and one float32 ulp either side of it."""
    from RegistrationQualityLib.deformation import _linear_percentiles, jacobian_histogram
    from RegistrationQualityLib.kernels import key_histogram

    rng = np.random.default_rng(n)
    cases = [(1 + 0.2 * rng.normal(size=n)).astype(np.float32), rng.normal(0.3, 1.5, n).astype(np.float32),
             rng.choice(np.array([-3, -0.05, -0.0, 0, 0.5, 1, 1.5, 2.5], np.float32), size=n)]
    edgy = (1 + 0.3 * rng.normal(size=n)).astype(np.float32)
    edges = np.array(_numpy_jacobian_histogram(edgy, 60)["edges"], np.float32)
    k = min(n, 400)
    picks = edges[rng.integers(0, edges.size, k)]
    shifted = np.where(rng.random(k) < 0.5, np.nextafter(picks, np.float32(-9)), np.nextafter(picks, np.float32(9)))
    edgy[rng.integers(0, n, k)] = np.where(rng.random(k) < 0.4, picks, shifted)
    cases.append(edgy)
    for values in cases:
        assert jacobian_histogram(values, 60) == _numpy_jacobian_histogram(values, 60)
        blocks = max(1, min(16, n // (1 << 16)))
        got = _linear_percentiles(values, key_histogram(values, blocks)[0], [0.5, 5, 50, 95, 99.5, 100])
        np.testing.assert_array_equal(got, np.percentile(values, [0.5, 5, 50, 95, 99.5, 100]))


@pytest.mark.parametrize("n, bad", [(1, 0), (5, 0), (70_000, 0), (70_000, 3), (3_000_000, 0), (3_000_000, 1)])
def test_batch_moments_equal_numpy_with_and_without_non_finite_values(n, bad):
    """deformation._batch_moments (the compiled passes behind JacobianMoments: straight vectorised loops, a
    block with NaN/±inf summed again testing each value) = numpy over the finite values."""
    from RegistrationQualityLib.deformation import _batch_moments

    rng = np.random.default_rng(n + bad)
    x = (1 + 0.1 * rng.normal(size=n)).astype(np.float32)
    x[rng.integers(0, n, bad)] = np.array([np.nan, np.inf, -np.inf], np.float32)[:bad]
    got = _batch_moments(x)
    finite = x[np.isfinite(x)].astype(np.float64)
    assert got[:2] == (finite.size, n - finite.size)
    assert got[2] == pytest.approx(finite.mean(), rel=1e-13)
    assert got[3] == pytest.approx(((finite - finite.mean()) ** 2).sum(), rel=1e-11, abs=1e-300)
    assert got[4:] == (finite.min(), finite.max())
