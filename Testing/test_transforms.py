"""The transforms layer and its compiled kernels against independent tools: SimpleITK's TransformPoint (elastix
chains, ITK B-spline files), transformix -jac all (analytic spatial Jacobian), numpy finite differences and VTK's
reslice (warping)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from test_deformation import _elastix_bspline_file, oblique_reference

from RegistrationQualityLib import transforms
from RegistrationQualityLib.elastix import to_sitk_transform
from RegistrationQualityLib.transforms import image_ijk_to_lps, load_registration, stream

from conftest import OBLIQUE, make_image, run_elastix_tool


class Collect:
    """Consumer keeping u and J of every slab."""

    def __init__(self):
        self.u, self.j = [], []

    def consume(self, slab):
        self.u.append(slab.u.copy())
        self.j.append(slab.jacobian().copy())

    def finish(self):
        return np.concatenate(self.u), np.concatenate(self.j)


def _bspline_case(tmp_path, size=(24, 20, 12), seed=2, with_euler=True):
    ref = oblique_reference(size=size)
    grid_spacing = 12.0
    extent = np.array(ref.GetSpacing()) * (np.array(ref.GetSize()) - 1)
    grid_size = (np.ceil(extent / grid_spacing).astype(int) + 3)[::-1]
    coefficients = np.random.default_rng(seed).normal(0, 1.5, (3, *grid_size))
    tp = _elastix_bspline_file(tmp_path / "TransformParameters.1.txt", ref, grid_spacing, coefficients)
    if with_euler:
        text = tp.read_text().replace('(InitialTransformParametersFileName "NoInitialTransform")',
                                      f'(InitialTransformParametersFileName "{tmp_path / "TransformParameters.0.txt"}")')
        tp.write_text(text)
        (tmp_path / "TransformParameters.0.txt").write_text(
            '(Transform "EulerTransform")\n(NumberOfParameters 6)\n(TransformParameters 0.05 -0.03 0.08 2.0 -1.0 3.0)\n'
            '(InitialTransformParametersFileName "NoInitialTransform")\n(HowToCombineTransforms "Compose")\n'
            "(CenterOfRotationPoint 1.0 2.0 3.0)\n(FixedImageDimension 3)\n(MovingImageDimension 3)\n"
            '(UseDirectionCosines "true")\n')
    return ref, tp


def test_chain_kernel_equals_simpleitk_transform_point(tmp_path):
    ref, tp = _bspline_case(tmp_path)
    reg = load_registration(None, tp, fixed_image=ref)
    assert not reg.linear and reg.sampler.analytic_jacobian
    (u, _j), = stream(reg, ref, [Collect()], need_jacobian=True, slab_voxels=24 * 20 * 5)  # 3 slabs
    truth = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
        to_sitk_transform(tp), sitk.sitkVectorFloat64, ref.GetSize(), ref.GetOrigin(), ref.GetSpacing(),
        ref.GetDirection()))
    assert np.abs(truth).max() > 1.0  # a real deformation
    assert np.abs(u - truth).max() < 1e-5
    # arbitrary points, inside and outside the control grid's support (unmoved by the B-spline there)
    pts = np.random.default_rng(5).uniform(-60, 60, (300, 3))
    t = to_sitk_transform(tp)
    expected = np.array([t.TransformPoint(tuple(p)) for p in pts])
    assert np.abs(reg.sampler.map_points_lps(pts) - expected).max() < 1e-6


def test_itk_bspline_file_kernel_equals_simpleitk(tmp_path):
    ref = oblique_reference(size=(20, 16, 10))
    mesh = [4, 3, 3]
    b = sitk.BSplineTransformInitializer(ref, mesh, 3)
    params = np.random.default_rng(1).normal(0, 2.0, b.GetNumberOfParameters())
    b.SetParameters(params.tolist())
    path = tmp_path / "b.tfm"
    sitk.WriteTransform(b, str(path))
    reg = load_registration(None, path, fixed_image=ref)
    assert reg.kind == "B-spline"
    pts = np.random.default_rng(6).uniform(-40, 40, (500, 3))
    t = sitk.ReadTransform(str(path))
    expected = np.array([t.TransformPoint(tuple(p)) for p in pts])
    assert np.abs(expected - pts).max() > 0.5
    assert np.abs(reg.sampler.map_points_lps(pts) - expected).max() < 1e-6


@pytest.mark.elastix
def test_analytic_jacobian_equals_transformix_jac(tmp_path):
    import shutil

    if shutil.which("transformix") is None:
        pytest.skip("transformix executable not on PATH")
    ref, tp = _bspline_case(tmp_path, with_euler=True)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_elastix_tool(["transformix", "-jac", "all", "-out", str(out), "-tp", str(tp)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "spatialJacobian.mha")))
    (_u, jac), = stream(load_registration(None, tp, fixed_image=ref), ref, [Collect()], need_jacobian=True)
    assert np.ptp(reference) > 0.1
    assert np.abs(jac - reference).max() < 1e-4  # every voxel, border included (no finite-difference error)


def test_field_jacobian_kernel_equals_numpy_central_differences(tmp_path):
    from RegistrationQualityLib.deformation import jacobian_determinant

    ref, tp = _bspline_case(tmp_path, with_euler=False)
    field = sitk.TransformToDisplacementField(to_sitk_transform(tp), sitk.sitkVectorFloat32, ref.GetSize(),
                                              ref.GetOrigin(), ref.GetSpacing(), ref.GetDirection())
    path = tmp_path / "field.nrrd"
    sitk.WriteImage(field, str(path))
    reg = load_registration(None, path, fixed_image=ref)
    assert isinstance(reg.sampler, transforms.FieldOnGrid)
    (u, jac), = stream(reg, ref, [Collect()], need_jacobian=True, slab_voxels=24 * 20 * 4)  # halos cross slabs
    assert np.array_equal(u, sitk.GetArrayFromImage(field))
    assert np.allclose(jac, jacobian_determinant(u, ref), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, compress, pixel", [
    ("field.nrrd", False, sitk.sitkVectorFloat32), ("field.mha", False, sitk.sitkVectorFloat32),
    ("field.mhd", False, sitk.sitkVectorFloat64), ("field.nrrd", True, sitk.sitkVectorFloat32),
    ("field.nii.gz", True, sitk.sitkVectorFloat32)])
def test_displacement_field_file_streamed_from_disk_equals_itk_read(ctx, tmp_path, name, compress, pixel):
    """Uncompressed NRRD/MetaImage fields are read slab by slab from the file (io.raw_vector_field, a memmap);
    compressed ones through SimpleITK. Both give ITK's voxels; the node built on the file maps points as
    SimpleITK's DisplacementFieldTransform (linear interpolation) does."""
    from RegistrationQualityLib import io
    from RegistrationQualityLib.resample import LPS4

    ref, tp = _bspline_case(tmp_path, with_euler=True)
    field = sitk.TransformToDisplacementField(to_sitk_transform(tp), pixel, ref.GetSize(), ref.GetOrigin(),
                                              ref.GetSpacing(), ref.GetDirection())
    path = tmp_path / name
    sitk.WriteImage(field, str(path), compress)
    mapped = io.raw_vector_field(path, ref.GetSize())
    assert (mapped is not None) == (not compress)
    reg = load_registration(ctx, path, fixed_image=ref)
    assert isinstance(reg.sampler, transforms.FieldOnGrid)
    assert isinstance(reg.sampler.u, np.memmap) == (not compress)
    (u, _jac), = stream(reg, ref, [Collect()], need_jacobian=True, slab_voxels=24 * 20 * 3)
    expected = sitk.GetArrayFromImage(field).astype(np.float32)
    assert np.array_equal(u, expected)
    # the node (landmarks, panel): RAS points through it = SimpleITK's field transform in LPS
    node = reg.node(ctx)
    pts = np.array(ref.TransformContinuousIndexToPhysicalPoint((5.3, 7.7, 4.2))) + np.array([[0, 0, 0],
                                                                                          [3.1, -2.2, 1.4]])
    ft = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    ft.SetInterpolator(sitk.sitkLinear)
    t = node.GetTransformFromParent()
    for p in pts:
        ras = (LPS4[:3, :3] @ p)
        got = LPS4[:3, :3] @ np.array(t.TransformPoint(*ras))
        assert np.allclose(got, ft.TransformPoint(tuple(p)), atol=1e-4)


def test_slicer_grid_node_on_the_fixed_grid_is_read_in_place(ctx, tmp_path):
    """SlicerElastix's output: transformix's deformation field loaded by Slicer's transforms logic (a RAS
    vtkOrientedGridTransform, double grid, cubic interpolation by default). On the fixed grid its vectors are read
    in place and flipped to LPS per slab; u and the finite-difference J equal what VTK's own evaluation of the
    node at every voxel gives (NodeSampler). On another grid the node is evaluated by VTK."""
    ref, tp = _bspline_case(tmp_path, with_euler=True)
    field = sitk.TransformToDisplacementField(to_sitk_transform(tp), sitk.sitkVectorFloat32, ref.GetSize(),
                                              ref.GetOrigin(), ref.GetSpacing(), ref.GetDirection())
    path = tmp_path / "deformationField.mhd"
    sitk.WriteImage(field, str(path))
    node = ctx.logic("Transforms").AddTransform(str(path), ctx.scene)
    assert node.GetTransformFromParent().GetInterpolationModeAsString() == "Cubic"
    reg = load_registration(ctx, node, fixed_image=ref)
    assert isinstance(reg.sampler, transforms.FieldOnGrid) and reg.sampler.ras and reg.node(ctx) is node
    assert reg.sampler.u.dtype == np.float64  # the node's own array, not a copy
    (u, jac), = stream(reg, ref, [Collect()], need_jacobian=True, slab_voxels=24 * 20 * 3)
    vtk_reg = transforms.Registration(transforms.NodeSampler(node), node, "node", node=node)
    (u_vtk, jac_vtk), = stream(vtk_reg, ref, [Collect()], need_jacobian=True, slab_voxels=24 * 20 * 3)
    assert np.abs(u).max() > 1.0
    assert np.allclose(u, sitk.GetArrayFromImage(field), rtol=0, atol=1e-6)
    assert np.allclose(u, u_vtk, rtol=0, atol=1e-4) and np.allclose(jac, jac_vtk, rtol=0, atol=1e-4)
    # a grid that is not the fixed grid (another spacing): VTK evaluates the node
    coarse = sitk.Image([12, 10, 6], sitk.sitkUInt8)
    coarse.SetSpacing([2 * v for v in ref.GetSpacing()])
    coarse.SetOrigin(ref.GetOrigin())
    coarse.SetDirection(ref.GetDirection())
    assert isinstance(load_registration(ctx, node, fixed_image=coarse).sampler, transforms.NodeSampler)
    assert isinstance(load_registration(ctx, node, fixed_image=None).sampler, transforms.NodeSampler)


def test_raw_vector_field_refuses_other_layouts(tmp_path):
    from RegistrationQualityLib import io

    scalar = make_image(np.zeros((4, 5, 6), np.float32))
    sitk.WriteImage(scalar, str(tmp_path / "scalar.nrrd"))
    assert io.raw_vector_field(tmp_path / "scalar.nrrd", scalar.GetSize()) is None
    vec = sitk.Compose([scalar] * 3)
    sitk.WriteImage(vec, str(tmp_path / "vec.nrrd"))
    assert io.raw_vector_field(tmp_path / "vec.nrrd", vec.GetSize()).shape == (4, 5, 6, 3)
    truncated = tmp_path / "cut.nrrd"
    truncated.write_bytes((tmp_path / "vec.nrrd").read_bytes()[:-8])
    assert io.raw_vector_field(truncated, vec.GetSize()) is None  # then read by ITK, which names the problem


def test_warp_equals_simpleitk_resample_through_the_chain(ctx, tmp_path):
    from RegistrationQualityLib.resample import Warp

    ref, tp = _bspline_case(tmp_path, size=(30, 26, 14))
    rng = np.random.default_rng(3)
    moving = make_image(rng.normal(100, 30, (16, 28, 32)).astype(np.float32), spacing=(0.9, 1.1, 2.2),
                        origin=(-14.0, -12.0, -16.0), direction=OBLIQUE)
    labels = make_image(rng.integers(0, 4, (16, 28, 32)).astype(np.uint8), spacing=(0.9, 1.1, 2.2),
                        origin=(-14.0, -12.0, -16.0), direction=OBLIQUE)
    reg = load_registration(ctx, tp, fixed_image=ref)
    warped, warped_labels = stream(reg, ref, [Warp(moving, ref, "linear"), Warp(labels, ref, "nearest")])
    t = to_sitk_transform(tp)
    old = sitk.GetArrayFromImage(sitk.Resample(moving, ref, t, sitk.sitkLinear, 0.0, moving.GetPixelID()))
    old_labels = sitk.GetArrayFromImage(sitk.Resample(labels, ref, t, sitk.sitkNearestNeighbor, 0, labels.GetPixelID()))
    new, new_labels = sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(warped_labels)
    assert warped.GetPixelID() == moving.GetPixelID() and warped_labels.GetPixelID() == labels.GetPixelID()
    inside = (old != 0) & (new != 0)
    assert inside.sum() > 500
    assert np.abs(new[inside] - old[inside]).max() < 1e-3
    assert np.mean((new != 0) != (old != 0)) < 0.01  # the same half-voxel border rule but at ties
    assert np.mean(new_labels != old_labels) < 0.01


def test_linear_node_is_a_one_matrix_chain(ctx):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    ref = oblique_reference()
    node = ctx.add_node("vtkMRMLLinearTransformNode", "t")
    m = vtkMatrix4x4()
    m.SetElement(0, 3, 5.0)
    m.SetElement(0, 1, 0.1)
    node.SetMatrixTransformFromParent(m)
    reg = load_registration(ctx, node, fixed_image=ref)
    assert reg.linear and reg.node(ctx) is node
    (u, jac), = stream(reg, ref, [Collect()], need_jacobian=True)
    x = image_ijk_to_lps(ref) @ np.array([2, 3, 4, 1.0])
    ras = np.diag([-1, -1, 1.0]) @ x[:3]
    moved_ras = np.array([ras[0] + 0.1 * ras[1] + 5.0, ras[1], ras[2]])
    assert np.allclose(x[:3] + u[4, 3, 2], np.diag([-1, -1, 1.0]) @ moved_ras, atol=1e-4)
    assert np.allclose(jac, 1.0, atol=1e-6)


class CollectHalo:
    """Consumer checking the halo view against the whole field."""

    def __init__(self, whole):
        self.whole, self.checked = whole, 0

    def consume(self, slab):
        lo = slab.k_offset
        assert np.array_equal(slab.u_halo[slab.first: slab.first + slab.k1 - slab.k0], slab.u)
        assert np.array_equal(slab.u_halo, self.whole[lo: lo + len(slab.u_halo)])
        assert lo == max(0, slab.k0 - 1) and lo + len(slab.u_halo) == min(slab.nk, slab.k1 + 1)
        self.checked += 1

    def finish(self):
        return self.checked


@pytest.mark.parametrize("form", ["chain", "field"])
def test_halo_slabs_for_stencil_consumers(tmp_path, form):
    ref, tp = _bspline_case(tmp_path, with_euler=False)
    whole_reg = load_registration(None, tp, fixed_image=ref)
    (whole, jac_whole), = stream(whole_reg, ref, [Collect()], need_jacobian=True)
    if form == "field":
        image = sitk.GetImageFromArray(whole, isVector=True)
        image.CopyInformation(ref)
        sitk.WriteImage(image, str(tmp_path / "f.nrrd"))
        reg = load_registration(None, tmp_path / "f.nrrd", fixed_image=ref)
    else:
        reg = whole_reg
    collect = Collect()
    checked, (u, jac) = stream(reg, ref, [CollectHalo(whole), collect], need_jacobian=True, halo=True,
                               slab_voxels=24 * 20 * 3)
    assert checked == 4 and np.array_equal(u, whole)
    if form == "chain":
        assert np.array_equal(jac, jac_whole)  # the analytic J is unchanged by the halo


def test_tensor_sum_jacobian_equals_three_tensor_sums_bit_for_bit():
    """kernels_bspline.tensor_sum_jacobian (value + 3 derivatives in one pass, weights made from the fraction) gives
    exactly the float32 results of tensor_sum run four times with the weights of the value and of each
    derivative (the weights as chain_slab made them: float64, stored as float32)."""
    from RegistrationQualityLib.kernels_bspline import RUN, SIXTH, tensor_sum, tensor_sum_jacobian

    rng = np.random.default_rng(4)
    n = RUN - 3
    coef = rng.normal(0, 5, 192).astype(np.float32)
    frac = rng.random((3, n))
    frac[:, 0] = 0.0  # on a knot
    frac[:, 1] = np.nextafter(1.0, 0.0)

    def weights(f):
        h, f2 = 1.0 - f, f * f
        f3 = f2 * f
        value = [h * h * h * SIXTH, (3.0 * f3 - 6.0 * f2 + 4.0) * SIXTH, (-3.0 * f3 + 3.0 * f2 + 3.0 * f + 1.0) * SIXTH,
                 f3 * SIXTH]
        derivative = [-0.5 * h * h, 1.5 * f2 - 2.0 * f, -1.5 * f2 + f + 0.5, 0.5 * f2]
        return (np.ascontiguousarray(np.array(value).astype(np.float32)),
                np.ascontiguousarray(np.array(derivative).astype(np.float32)))

    (wx, dx), (wy, dy), (wz, dz) = (weights(frac[a]) for a in range(3))
    want = np.zeros((12, n), np.float32)
    for q, (a, b, c) in enumerate(((wx, wy, wz), (dx, wy, wz), (wx, dy, wz), (wx, wy, dz))):
        out = np.zeros((3, n), np.float32)
        tensor_sum(coef, a, b, c, out, 0, n)
        want[3 * q: 3 * q + 3] = out
    fr = np.zeros(3 * RUN)
    for a in range(3):
        fr[a * RUN: a * RUN + n] = frac[a]
    got = np.zeros(12 * RUN, np.float32)
    tensor_sum_jacobian(coef, fr, got, n)
    np.testing.assert_array_equal(got.reshape(12, RUN)[:, :n], want)
    assert np.abs(want[3:]).max() > 0.1  # real derivatives, not zeros


@pytest.mark.parametrize("form", ["chain", "field"])
def test_prefetched_stream_equals_the_sequential_one_and_stops_on_error(tmp_path, form):
    """stream(prefetch=True) (the next slab sampled in a worker thread, two buffer sets) gives every consumer the
    very slabs of the sequential pass, halo included; an exception in a consumer stops the worker."""
    import threading

    ref, tp = _bspline_case(tmp_path, with_euler=False)
    reg = load_registration(None, tp, fixed_image=ref)
    (whole, jac_whole), = stream(reg, ref, [Collect()], need_jacobian=True, prefetch=False)
    if form == "field":
        image = sitk.GetImageFromArray(whole, isVector=True)
        image.CopyInformation(ref)
        sitk.WriteImage(image, str(tmp_path / "f.nrrd"))
        reg = load_registration(None, tmp_path / "f.nrrd", fixed_image=ref)
    runs = {}
    for prefetch in (False, True):
        checked, (u, jac) = stream(reg, ref, [CollectHalo(whole), Collect()], need_jacobian=True, halo=True,
                                   slab_voxels=24 * 20 * 3, prefetch=prefetch)
        runs[prefetch] = (checked, u, jac)
    assert runs[True][0] == runs[False][0] == 4
    assert np.array_equal(runs[True][1], runs[False][1]) and np.array_equal(runs[True][1], whole)
    assert np.array_equal(runs[True][2], runs[False][2])

    class Boom:
        seen = 0

        def consume(self, slab):
            Boom.seen += 1
            if slab.k0 > 0:
                raise InterruptedError("cancelled")

        def finish(self):
            return None

    with pytest.raises(InterruptedError):
        stream(reg, ref, [Boom()], need_jacobian=True, slab_voxels=24 * 20 * 3, prefetch=True)
    assert Boom.seen == 2
    assert not [t for t in threading.enumerate() if t.name == "rq-stream-prefetch"]
