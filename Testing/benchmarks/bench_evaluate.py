"""Benchmark: ``evaluate`` end to end on a CT-sized pair, per-stage breakdown; cohort throughput vs workers.

Case: fixed and moving 512×512×300 volumes (0.7×0.7×2.0 mm; the moving one oblique by 5°), a rigid + B-spline
registration written as elastix TransformParameters files (initial Euler + cubic B-spline, 12×12×10 grid),
threshold segmentation of both images, 20 landmarks, snapshots and the report. Target: ≤ 15 s on 2 cores.

The stages are timed through evaluate's progress callback (wall time between stage starts). The cohort part
runs N small copies of the case (``--cohort-size``) with 1 and 2 local workers and prints cases per minute.
Asserts nothing.

    python Testing/benchmarks/bench_evaluate.py [--size 512 512 300] [--cohort 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def phantom(size, spacing, origin, direction, seed=0):
    """A head-like phantom (ellipsoid shell + inner structures) of the given grid, int16 CT-like values."""
    import SimpleITK as sitk

    img = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in size[::-1]), indexing="ij")
    d = np.array(direction).reshape(3, 3)
    pts = [d[r, 0] * i * spacing[0] + d[r, 1] * j * spacing[1] + d[r, 2] * k * spacing[2] + origin[r]
           for r in range(3)]
    x, y, z = pts
    r_out = (x / 150) ** 2 + (y / 170) ** 2 + (z / 250) ** 2
    r_in = ((x - 20) / 60) ** 2 + ((y + 10) / 50) ** 2 + (z / 80) ** 2
    arr = np.where(r_out < 1.0, 40.0, -1000.0) + np.where((r_out < 1.0) & (r_out > 0.85), 900.0, 0.0)
    arr = arr + np.where(r_in < 1.0, 60.0, 0.0)
    rng = np.random.default_rng(seed)
    arr = arr + rng.normal(0, 10, arr.shape)
    out = sitk.GetImageFromArray(arr.astype(np.int16))
    out.CopyInformation(img)
    return out


def elastix_files(folder: Path, fixed, seed=1):
    """TransformParameters.0.txt (Euler) and .1.txt (B-spline on the fixed domain, initial = .0)."""
    size, spacing, origin = fixed.GetSize(), fixed.GetSpacing(), fixed.GetOrigin()
    extent = [(n - 1) * s for n, s in zip(size, spacing)]
    common = (f"(FixedImageDimension 3)\n(MovingImageDimension 3)\n(Size {' '.join(map(str, size))})\n"
              f"(Index 0 0 0)\n(Spacing {' '.join(map(str, spacing))})\n(Origin {' '.join(map(str, origin))})\n"
              "(Direction 1 0 0 0 1 0 0 0 1)\n(UseDirectionCosines \"true\")\n(HowToCombineTransforms \"Compose\")\n"
              "(ResultImagePixelType \"float\")\n")
    center = [o + e / 2 for o, e in zip(origin, extent)]
    (folder / "TransformParameters.0.txt").write_text(
        "(Transform \"EulerTransform\")\n(NumberOfParameters 6)\n(TransformParameters 0.02 -0.01 0.03 2.5 -1.5 3.0)\n"
        "(InitialTransformParametersFileName \"NoInitialTransform\")\n"
        f"(CenterOfRotationPoint {' '.join(map(str, center))})\n(ComputeZYX \"false\")\n" + common)
    grid = [12, 12, 10]
    gspacing = [e / (g - 3) for e, g in zip(extent, grid)]
    gorigin = [o - gs for o, gs in zip(origin, gspacing)]
    rng = np.random.default_rng(seed)
    params = rng.normal(0, 2.0, 3 * int(np.prod(grid)))
    (folder / "TransformParameters.1.txt").write_text(
        "(Transform \"BSplineTransform\")\n"
        f"(NumberOfParameters {params.size})\n(TransformParameters {' '.join(f'{v:.6f}' for v in params)})\n"
        "(InitialTransformParametersFileName \"TransformParameters.0.txt\")\n"
        f"(GridSize {' '.join(map(str, grid))})\n(GridIndex 0 0 0)\n(GridSpacing {' '.join(map(str, gspacing))})\n"
        f"(GridOrigin {' '.join(map(str, gorigin))})\n(GridDirection 1 0 0 0 1 0 0 0 1)\n"
        "(BSplineTransformSplineOrder 3)\n(UseCyclicTransform \"false\")\n" + common)
    return folder / "TransformParameters.1.txt"


def make_case(folder: Path, size):
    import SimpleITK as sitk

    from RegistrationQualityLib.elastix import to_sitk_transform

    folder.mkdir(parents=True, exist_ok=True)
    spacing = (0.7, 0.7, 2.0)
    origin = tuple(-(n - 1) * s / 2 for n, s in zip(size, spacing))
    fixed = phantom(size, spacing, origin, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(fixed, str(folder / "fixed.nrrd"), True)
    tp = elastix_files(folder, fixed)
    c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
    moving = phantom(size, spacing, origin, (c, -s, 0, s, c, 0, 0, 0, 1), seed=2)
    sitk.WriteImage(moving, str(folder / "moving.nrrd"), True)
    t = to_sitk_transform(tp)
    rng = np.random.default_rng(3)
    pts = rng.uniform(-60, 60, (20, 3))
    (folder / "fixed.csv").write_text("label,x,y,z\n" + "".join(f"L{i},{p[0]},{p[1]},{p[2]}\n"
                                                                for i, p in enumerate(pts)))
    moved = [np.array(t.TransformPoint(tuple(p))) + rng.normal(0, 0.5, 3) for p in pts]
    (folder / "moving.csv").write_text("label,x,y,z\n" + "".join(f"L{i},{p[0]},{p[1]},{p[2]}\n"
                                                                 for i, p in enumerate(moved)))
    return folder


def evaluate_once(case: Path, out: Path):
    from RegistrationQualityLib.context import Context
    from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

    marks = []

    def progress(text, fraction):
        marks.append((text.split(":")[0], time.perf_counter()))

    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd",
                              transform=case / "TransformParameters.1.txt", threshold=["200", "200"],
                              fixed_landmarks=case / "fixed.csv", moving_landmarks=case / "moving.csv")
    t0 = time.perf_counter()
    result = evaluate(Context.headless(), inputs, EvaluationOptions(), output_dir=out, progress=progress)
    t1 = time.perf_counter()
    stages = []
    for (name, start), (_n, end) in zip(marks, marks[1:] + [("end", t1)]):
        stages.append((name, end - start))
    return t1 - t0, stages, result


def cohort_throughput(case: Path, root: Path, n: int):
    from RegistrationQualityLib.cohort import run_cohort

    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    rows = ["case_id,fixed,moving,transform,threshold,fixed_landmarks,moving_landmarks"]
    for i in range(n):
        rows.append(f"c{i},{case}/fixed.nrrd,{case}/moving.nrrd,{case}/TransformParameters.1.txt,200,"
                    f"{case}/fixed.csv,{case}/moving.csv")
    manifest.write_text("\n".join(rows) + "\n")
    out = []
    for workers in (1, 2):
        target = root / f"out{workers}"
        t0 = time.perf_counter()
        run_cohort(manifest, target, workers=workers)
        out.append((workers, time.perf_counter() - t0))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=3, default=[512, 512, 300])
    p.add_argument("--cohort", type=int, default=4, help="cases in the cohort throughput run (0: skip)")
    p.add_argument("--cohort-size", type=int, nargs=3, default=[256, 256, 100])
    p.add_argument("--keep", help="keep the generated data and reports here")
    args = p.parse_args(argv)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-bench-evaluate-"))
    try:
        t0 = time.perf_counter()
        case = make_case(root / "case", args.size)
        print(f"case {args.size} generated in {time.perf_counter() - t0:.1f} s ({root})")
        total, stages, result = evaluate_once(case, root / "report")
        print(f"\nevaluate end to end: {total:.2f} s (target <= 15 s on 2 cores), verdict {result.verdict}")
        for name, seconds in stages:
            print(f"  {name:12s} {seconds:7.2f} s")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MB")
        if result.report["warnings"]:
            print("warnings:", result.report["warnings"])
        if args.cohort:
            small = make_case(root / "small", args.cohort_size)
            print(f"\ncohort throughput, {args.cohort} cases of {args.cohort_size}:")
            base = None
            for workers, seconds in cohort_throughput(small, root / "cohort", args.cohort):
                base = base or seconds
                print(f"  workers={workers}: {seconds:6.1f} s, {60 * args.cohort / seconds:5.1f} cases/min, "
                      f"speed-up {base / seconds:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
