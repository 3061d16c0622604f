"""Benchmark: resampling a CT-sized volume through an elastix rigid -> affine -> B-spline chain.

Volume: 512×512×300 float32, 0.7×0.7×2.0 mm, oblique direction (default size; ``--size`` to change). The chain is
written by hand (Euler -> Affine -> BSpline, 3 files linked by InitialTransformParametersFileName, B-spline grid
covering the image inside its valid region, random coefficients of a few mm). Timed in this process, best of N:

* ``transformix -in`` (the peer and the reference; linear interpolation, float output) when on PATH — includes
  its own file reading/writing, so the comparison is end to end: ours also reads the file and writes the result;
* ours, SimpleITK path: ``elastix.to_sitk_transform`` + ``sitk.Resample`` (ITK, multithreaded);
* ours, Slicer path: ``elastix.load_transform_parameters`` + ``resample.resample_image`` (vtkOrientedImageDataResample
  through the node's composite transform).

Prints seconds, the ratios to transformix, and the largest voxel difference to transformix's image (where the
sample lies inside the moving image, 3 voxels from any border: edge handling differs between interpolators).
Asserts nothing.

    python Testing/benchmarks/bench_elastix.py [--size 512 512 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_chain(folder: Path, image) -> Path:
    size, spacing, origin = image.GetSize(), image.GetSpacing(), image.GetOrigin()
    d = np.array(image.GetDirection()).reshape(3, 3)
    header = (f"(FixedImageDimension 3)\n(MovingImageDimension 3)\n(Size {size[0]} {size[1]} {size[2]})\n"
              f"(Index 0 0 0)\n(Spacing {spacing[0]} {spacing[1]} {spacing[2]})\n"
              f"(Origin {origin[0]} {origin[1]} {origin[2]})\n(Direction {' '.join(map(str, d.T.ravel()))})\n"
              '(UseDirectionCosines "true")\n(HowToCombineTransforms "Compose")\n'
              '(ResampleInterpolator "FinalBSplineInterpolator")\n(FinalBSplineInterpolationOrder 1)\n'
              '(Resampler "DefaultResampler")\n(DefaultPixelValue 0)\n(ResultImageFormat "mha")\n'
              '(ResultImagePixelType "float")\n(FixedInternalImagePixelType "float")\n'
              '(MovingInternalImagePixelType "float")\n')
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in size]))
    c = " ".join(map(str, centre))
    (folder / "euler.txt").write_text('(Transform "EulerTransform")\n(NumberOfParameters 6)\n'
                                      "(TransformParameters 0.02 -0.03 0.05 2 -3 1)\n"
                                      f"(CenterOfRotationPoint {c})\n"
                                      '(InitialTransformParametersFileName "NoInitialTransform")\n' + header)
    (folder / "affine.txt").write_text('(Transform "AffineTransform")\n(NumberOfParameters 12)\n'
                                       "(TransformParameters 1.02 0.01 0 -0.01 0.98 0.02 0 0.01 1.01 1 0.5 -1)\n"
                                       f"(CenterOfRotationPoint {c})\n"
                                       '(InitialTransformParametersFileName "euler.txt")\n' + header)
    extent = np.array(size) * np.array(spacing)
    grid_spacing = extent / 8  # the image spans grid indices 2..10 of 13: inside the valid region [1, 11)
    grid_size = np.array([13, 13, 13])
    grid_origin = np.array(origin) + d @ (-2 * grid_spacing)
    rng = np.random.default_rng(0)
    coefficients = rng.normal(0, 3.0, size=3 * int(np.prod(grid_size)))
    (folder / "bspline.txt").write_text(
        '(Transform "BSplineTransform")\n'
        f"(NumberOfParameters {coefficients.size})\n"
        f"(TransformParameters {' '.join(f'{v:.6f}' for v in coefficients)})\n"
        f"(GridSize {' '.join(map(str, grid_size))})\n(GridIndex 0 0 0)\n"
        f"(GridSpacing {' '.join(map(str, grid_spacing))})\n(GridOrigin {' '.join(map(str, grid_origin))})\n"
        f"(GridDirection {' '.join(map(str, d.T.ravel()))})\n(BSplineTransformSplineOrder 3)\n"
        '(UseCyclicTransform "false")\n(InitialTransformParametersFileName "affine.txt")\n' + header)
    return folder / "bspline.txt"


def best(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    import SimpleITK as sitk

    from RegistrationQualityLib import elastix
    from RegistrationQualityLib.context import Context
    from RegistrationQualityLib.resample import resample_image

    nx, ny, nz = args.size
    z, y, x = np.ogrid[0:nz, 0:ny, 0:nx]
    arr = (1000 * np.sin(x / 17.0) * np.cos(y / 23.0) + 300 * np.sin(z / 7.0)).astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    del arr
    image.SetSpacing((0.7, 0.7, 2.0))
    image.SetOrigin((-180.0, -170.0, -300.0))
    a = np.radians(20.0)  # oblique: 20 degrees about z, then 10 about x
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    b = np.radians(10.0)
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    image.SetDirection(tuple((rx @ rz).ravel()))
    with tempfile.TemporaryDirectory(prefix="rq-bench-elastix-") as tmp:
        folder = Path(tmp)
        moving_path = folder / "moving.mha"
        sitk.WriteImage(image, str(moving_path))
        tp = write_chain(folder, image)
        print(f"volume {args.size} float32, chain Euler -> Affine -> BSpline (13^3 grid), best of {args.repeat}")
        rows = []
        ref = None
        if shutil.which("transformix"):
            out = folder / "tx"
            out.mkdir()

            def run_transformix():
                subprocess.run(["transformix", "-in", str(moving_path), "-out", str(out), "-tp", str(tp)],
                               check=True, capture_output=True, cwd=folder)  # relative initial names
                return sitk.ReadImage(str(out / "result.mha"))

            seconds, ref = best(run_transformix, args.repeat)
            rows.append(("transformix -in (peer)", seconds, None))

        def ours_sitk():
            moving = sitk.ReadImage(str(moving_path))
            result = sitk.Resample(moving, moving, elastix.to_sitk_transform(tp), sitk.sitkLinear, 0.0,
                                   sitk.sitkFloat32)
            sitk.WriteImage(result, str(folder / "ours_sitk.mha"))
            return result

        seconds, result = best(ours_sitk, args.repeat)
        rows.append(("ours: SimpleITK path", seconds, result))
        ctx = Context.headless()

        def ours_slicer():
            moving = sitk.ReadImage(str(moving_path))
            node = elastix.load_transform_parameters(ctx, tp)
            try:
                result = resample_image(ctx, moving, moving, node)
            finally:
                ctx.remove_nodes([node])
            sitk.WriteImage(result, str(folder / "ours_slicer.mha"))
            return result

        seconds, result = best(ours_slicer, args.repeat)
        rows.append(("ours: Slicer node path", seconds, result))
        peer = rows[0][1] if ref is not None else None
        mask = None
        if ref is not None:
            ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
            ones.CopyInformation(image)
            inside = sitk.Resample(ones, image, elastix.to_sitk_transform(tp), sitk.sitkNearestNeighbor)
            mask = sitk.GetArrayFromImage(sitk.BinaryErode(inside, [2, 2, 2])) > 0
            mask[:3], mask[-3:], mask[:, :3], mask[:, -3:], mask[:, :, :3], mask[:, :, -3:] = (False,) * 6
        for name, seconds, result in rows:
            line = f"{name:28s} {seconds:7.2f} s"
            if peer:
                line += f"   ratio to transformix {seconds / peer:5.2f}"
            if result is not None and mask is not None:
                diff = np.abs(sitk.GetArrayViewFromImage(result) - sitk.GetArrayViewFromImage(ref))[mask]
                line += f"   max |diff| {diff.max():.4g} (values up to 1300)"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
