"""Benchmark: displacement field + Jacobian determinant on a CT-size grid, against peers in the same run.

Peers: SimpleITK's DisplacementFieldJacobianDeterminantFilter (multithreaded, no direction cosines) and
SimpleITK's TransformToDisplacementField for the B-spline; ``plastimatch jacobian`` on the same field file
when plastimatch is installed. Prints seconds and ratios (ours / peer); asserts nothing.

    python Testing/benchmarks/bench_deformation.py [--size 512 512 300] [--skip-bspline]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from RegistrationQualityLib import deformation as d
from RegistrationQualityLib import transforms
from RegistrationQualityLib.context import Context


def timed(label, fn, results):
    """Wall seconds into ``results``; CPU seconds of this process printed too (the machine may be shared)."""
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    results[label] = time.perf_counter() - t0
    print(f"{label:<62s} {results[label]:8.2f} s wall {time.process_time() - c0:8.2f} s cpu", flush=True)
    return value


def smooth_field(ref) -> np.ndarray:
    """A smooth, non-folding (k, j, i, 3) float32 field (a few mm) built slice by slice."""
    ni, nj, nk = ref.GetSize()
    field = np.empty((nk, nj, ni, 3), np.float32)
    x = np.sin(np.linspace(0, 3 * np.pi, ni, dtype=np.float32))[None, :]
    y = np.cos(np.linspace(0, 2 * np.pi, nj, dtype=np.float32))[:, None]
    for k in range(nk):
        z = np.float32(np.sin(2 * np.pi * k / max(1, nk - 1)))
        field[k, ..., 0] = 3 * x * y
        field[k, ..., 1] = 2 * y * z
        field[k, ..., 2] = 4 * x * z
    return field


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--skip-bspline", action="store_true")
    args = parser.parse_args()
    ni, nj, nk = args.size
    ctx = Context.headless()
    direction = np.array([[0.9848, -0.1736, 0.0], [0.1736, 0.9848, 0.0], [0.0, 0.0, 1.0]])
    ref = sitk.Image([ni, nj, nk], sitk.sitkUInt8)
    ref.SetSpacing((0.98, 0.98, 2.5))
    ref.SetOrigin((-250.0, -250.0, -375.0))
    ref.SetDirection(tuple(direction.ravel()))
    print(f"grid {ni}x{nj}x{nk} = {ni * nj * nk / 1e6:.1f} M voxels")
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        field = sitk.GetImageFromArray(smooth_field(ref), isVector=True)
        field.CopyInformation(ref)
        field_path = Path(tmp) / "field.mha"
        sitk.WriteImage(field, str(field_path))

        timed("ours: read field file (SimpleITK) + displacement_field_from_image",
              lambda: d.displacement_field_from_image(sitk.ReadImage(str(field_path)), ref), res)
        node = timed("ours: load displacement-field file as a node", lambda: transforms.load_transform(ctx, field_path), res)
        u = timed("ours: displacement_field (field on the grid)", lambda: d.displacement_field(ctx, node, ref), res)
        jac = timed("ours: jacobian_determinant", lambda: d.jacobian_determinant(u, ref), res)
        timed("ours: jacobian_statistics + displacement_statistics",
              lambda: (d.jacobian_statistics(jac, spacing=ref.GetSpacing()), d.displacement_statistics(u)), res)
        ctx.remove_nodes([node])
        jf = sitk.DisplacementFieldJacobianDeterminantFilter()
        jf.SetUseImageSpacing(True)
        timed("peer: SimpleITK DisplacementFieldJacobianDeterminant", lambda: jf.Execute(field), res)
        if shutil.which("plastimatch"):
            timed("peer: plastimatch jacobian (file -> file)", lambda: subprocess.run(
                ["plastimatch", "jacobian", "--input", str(field_path), "--output-img", str(Path(tmp) / "j.mha")],
                check=True, capture_output=True), res)
            ours_file = res["ours: read field file (SimpleITK) + displacement_field_from_image"] + res[
                "ours: jacobian_determinant"]
            print(f"ratio ours (read + J) / plastimatch jacobian (read + J + write): "
                  f"{ours_file / res[list(res)[-1]]:.2f}")
        print("ratio ours J / SimpleITK J: "
              f"{res['ours: jacobian_determinant'] / res['peer: SimpleITK DisplacementFieldJacobianDeterminant']:.2f}")
        if not args.skip_bspline:
            bspline = sitk.BSplineTransformInitializer(ref, (6, 6, 6))
            bspline.SetParameters(tuple(np.random.default_rng(0).normal(0, 4.0, len(bspline.GetParameters()))))
            sitk.WriteTransform(bspline, str(Path(tmp) / "bspline.tfm"))
            bnode = transforms.load_transform(ctx, Path(tmp) / "bspline.tfm")
            timed("ours: displacement_field (B-spline via VTK, slabs)", lambda: d.displacement_field(ctx, bnode, ref),
                  res)
            f = sitk.TransformToDisplacementFieldFilter()
            f.SetReferenceImage(ref)
            f.SetOutputPixelType(sitk.sitkVectorFloat32)
            timed("peer: SimpleITK TransformToDisplacementField (B-spline)", lambda: f.Execute(bspline), res)
            print("ratio ours B-spline field / SimpleITK: "
                  f"{res['ours: displacement_field (B-spline via VTK, slabs)'] / res[list(res)[-1]]:.2f}")
        affine = ctx.add_node("vtkMRMLLinearTransformNode", "affine")
        timed("ours: displacement_field (linear, closed form)", lambda: d.displacement_field(ctx, affine, ref), res)


if __name__ == "__main__":
    main()
