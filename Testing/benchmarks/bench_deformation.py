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
from RegistrationQualityLib import io
from RegistrationQualityLib.context import Context


def timed(label, fn, results):
    t0 = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - t0
    print(f"{label:<58s} {results[label]:8.2f} s", flush=True)
    return value


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
        # a smooth B-spline (6x6x6 control meshes) and the same transform as a displacement field on the grid
        bspline = sitk.BSplineTransformInitializer(ref, (6, 6, 6))
        bspline.SetParameters(tuple(np.random.default_rng(0).normal(0, 4.0, len(bspline.GetParameters()))))
        sitk.WriteTransform(bspline, str(Path(tmp) / "bspline.tfm"))
        f = sitk.TransformToDisplacementFieldFilter()
        f.SetReferenceImage(ref)
        f.SetOutputPixelType(sitk.sitkVectorFloat32)
        field = timed("peer: SimpleITK TransformToDisplacementField (B-spline)", lambda: f.Execute(bspline), res)
        field_path = Path(tmp) / "field.mha"
        sitk.WriteImage(field, str(field_path))

        node = timed("ours: load displacement-field file as a node", lambda: io.load_transform(ctx, field_path), res)
        u = timed("ours: displacement_field (field on the grid)", lambda: d.displacement_field(ctx, node, ref), res)
        jac = timed("ours: jacobian_determinant", lambda: d.jacobian_determinant(u, ref), res)
        timed("ours: jacobian_statistics + displacement_statistics",
              lambda: (d.jacobian_statistics(jac, spacing=ref.GetSpacing()), d.displacement_statistics(u)), res)
        del u
        jf = sitk.DisplacementFieldJacobianDeterminantFilter()
        jf.SetUseImageSpacing(True)
        timed("peer: SimpleITK DisplacementFieldJacobianDeterminant", lambda: jf.Execute(field), res)
        del field
        if shutil.which("plastimatch"):
            timed("peer: plastimatch jacobian (file -> file)", lambda: subprocess.run(
                ["plastimatch", "jacobian", "--input", str(field_path), "--output-img", str(Path(tmp) / "j.mha")],
                check=True, capture_output=True), res)
            ours_file = res["ours: load displacement-field file as a node"] + res[
                "ours: displacement_field (field on the grid)"] + res["ours: jacobian_determinant"]
            print(f"ratio ours (load+field+J) / plastimatch jacobian: {ours_file / res[list(res)[-1]]:.2f}")
        print("ratio ours J / SimpleITK J: "
              f"{res['ours: jacobian_determinant'] / res['peer: SimpleITK DisplacementFieldJacobianDeterminant']:.2f}")
        if not args.skip_bspline:
            bnode = io.load_transform(ctx, Path(tmp) / "bspline.tfm")
            ub = timed("ours: displacement_field (B-spline via VTK, slabs)",
                       lambda: d.displacement_field(ctx, bnode, ref), res)
            print("ratio ours B-spline field / SimpleITK: "
                  f"{res['ours: displacement_field (B-spline via VTK, slabs)'] / res[list(res)[0]]:.2f}")
            del ub
        affine = ctx.add_node("vtkMRMLLinearTransformNode", "affine")
        timed("ours: displacement_field (linear, closed form)", lambda: d.displacement_field(ctx, affine, ref), res)


if __name__ == "__main__":
    main()
