"""Benchmark: ``evaluate`` end to end on a CT-size pair, for each form of the registration T, against plastimatch.

Case (generated once, kept with ``--keep DIR`` and reused): fixed 512×512×300 int16, 0.7×0.7×2 mm, oblique
direction; moving 512×512×290, another oblique direction; three organ labels on both; 20 landmarks; a smooth
registration T = Euler -> cubic B-spline (elastix TransformParameters.0/.1.txt, B-spline grid 12×12×10 on the
fixed domain). Forms of T evaluated (one ``registration-quality evaluate`` subprocess each, so the peak
memory is per run):

- ``field``:       T sampled on the fixed grid as a displacement-field image (float32 vectors, .nrrd);
- ``tfm``:         an ITK ``BSplineTransform`` .tfm (the B-spline part of T alone: ITK files hold one transform);
- ``elastix``:     the elastix chain as ``--transform TransformParameters.1.txt``;
- ``elastix-dir``: the same chain as ``--elastix-dir`` (a folder holding both parameter files, no result image);
- ``otsu``:        the elastix chain with ``--threshold otsu`` instead of the organ labelmaps;
- ``slicer-elastix``: the scene SlicerElastix leaves (its default, a displacement-field output: transformix's
  ``-def all`` field loaded by Slicer's transforms logic into the output grid transform node, linked to the
  volumes by the moving/fixed registration roles, plus its ``Elastix`` parameter node), the volumes, labelmaps
  and landmarks as nodes, evaluated through the module logic's path (``panel.slicer_elastix_inputs`` finds the
  registration; ``scene_outputs`` on, as the panel asks). The scene is built first and timed apart: the wall
  time of this form is the evaluation only (``evaluate`` = import+parse .. report), its memory is reported as
  the peak and as the peak on top of the scene (the RSS once the scene is loaded: the double RAS grid Slicer
  makes of a 512×512×300 field alone is 1.9 GB).

Each run has the segmentations (or thresholds), landmarks, Jacobian, displacement, similarity, snapshots and the
report. The comparison is plastimatch measured in the same run: ``warp`` of the moving labelmap through the
displacement field (nearest neighbour) + ``threshold`` per label (fixed and warped) + ``dice --all`` per label.

Per-stage times come from evaluate's progress callback (wall time between stage starts, in the child). The peak
memory of each process tree is the ``ru_maxrss`` that ``os.wait4`` reports for the child (Linux: the largest
resident set of the child and of its waited-for descendants); for plastimatch the maximum over its commands.
The machine load (1-minute load average) is printed before and after: the ratio to plastimatch measured in the
same run is the number that counts on a shared machine: plastimatch runs right before each evaluate run and
the ratio is per pair (with ``--repeat N`` the best pair is kept). Asserts nothing.

    python Testing/benchmarks/bench_evaluate.py [--keep DIR] [--forms field tfm ...] [--size 512 512 300]
        [--cohort 4] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FORMS = ("field", "tfm", "elastix", "elastix-dir", "otsu", "slicer-elastix")
ORGANS = {1: ((-40.0, 10.0, 0.0), (45.0, 35.0, 60.0), 60.0),  # label: centre (LPS mm), semi-axes, HU
          2: ((45.0, -5.0, 20.0), (35.0, 40.0, 50.0), 110.0),
          3: ((0.0, 50.0, -60.0), (25.0, 25.0, 35.0), 200.0)}


def _rotation(z_deg, x_deg):
    cz, sz = np.cos(np.radians(z_deg)), np.sin(np.radians(z_deg))
    cx, sx = np.cos(np.radians(x_deg)), np.sin(np.radians(x_deg))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ rx


def phantom(size, spacing, direction, shift=(0.0, 0.0, 0.0), seed=0):
    """(image int16, labels uint8): body ellipsoid with a bone shell and three organs, centred on the origin."""
    import SimpleITK as sitk

    d = np.asarray(direction, float).reshape(3, 3)
    sp = np.asarray(spacing, float)
    centre_index = (np.asarray(size, float) - 1) / 2
    origin = -(d @ (sp * centre_index))
    ni, nj, nk = size
    img = np.empty((nk, nj, ni), np.int16)
    lab = np.zeros((nk, nj, ni), np.uint8)
    rng = np.random.default_rng(seed)
    jj, ii = np.meshgrid(np.arange(nj, dtype=np.float32), np.arange(ni, dtype=np.float32), indexing="ij")
    shift = np.asarray(shift, float)
    for k in range(nk):
        p = [origin[r] + d[r, 0] * sp[0] * ii + d[r, 1] * sp[1] * jj + d[r, 2] * sp[2] * k - shift[r]
             for r in range(3)]
        x, y, z = p
        r_out = (x / 170) ** 2 + (y / 130) ** 2 + (z / 290) ** 2
        arr = np.where(r_out < 1.0, 40.0, -1000.0) + np.where((r_out < 1.0) & (r_out > 0.88), 700.0, 0.0)
        for label, (c, axes, hu) in ORGANS.items():
            inside = ((x - c[0]) / axes[0]) ** 2 + ((y - c[1]) / axes[1]) ** 2 + ((z - c[2]) / axes[2]) ** 2 < 1
            arr[inside] = hu
            lab[k][inside] = label
        img[k] = np.clip(arr + rng.normal(0, 12, arr.shape), -1024, 3000).astype(np.int16)
    out = sitk.GetImageFromArray(img)
    out.SetSpacing(tuple(sp))
    out.SetOrigin(tuple(origin))
    out.SetDirection(tuple(d.ravel()))
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(out)
    return out, labels


def _numbers(v):
    return " ".join(repr(float(x)) for x in np.ravel(v))


def elastix_files(folder: Path, fixed, seed=1):
    """TransformParameters.0.txt (Euler) and .1.txt (B-spline on the fixed domain, initial = .0)."""
    size, spacing, origin = np.array(fixed.GetSize()), np.array(fixed.GetSpacing()), np.array(fixed.GetOrigin())
    d = np.array(fixed.GetDirection()).reshape(3, 3)
    # elastix writes Direction column-major (ITK's matrix flattened by columns)
    common = (f"(FixedImageDimension 3)\n(MovingImageDimension 3)\n(Size {' '.join(map(str, size))})\n"
              f"(Index 0 0 0)\n(Spacing {_numbers(spacing)})\n(Origin {_numbers(origin)})\n"
              f"(Direction {_numbers(d.T)})\n(UseDirectionCosines \"true\")\n(HowToCombineTransforms \"Compose\")\n"
              "(ResultImagePixelType \"short\")\n(FixedInternalImagePixelType \"float\")\n"
              "(MovingInternalImagePixelType \"float\")\n")
    center = origin + d @ (spacing * (size - 1) / 2)
    (folder / "TransformParameters.0.txt").write_text(
        "(Transform \"EulerTransform\")\n(NumberOfParameters 6)\n(TransformParameters 0.02 -0.01 0.03 2.5 -1.5 3.0)\n"
        "(InitialTransformParametersFileName \"NoInitialTransform\")\n"
        f"(CenterOfRotationPoint {_numbers(center)})\n(ComputeZYX \"false\")\n" + common)
    grid = np.array([12, 12, 10])
    extent = (size - 1) * spacing
    gspacing = extent / (grid - 3)
    gorigin = origin - d @ gspacing
    rng = np.random.default_rng(seed)
    params = rng.normal(0, 2.5, 3 * int(np.prod(grid)))
    tp1 = folder / "TransformParameters.1.txt"
    tp1.write_text(
        "(Transform \"BSplineTransform\")\n"
        f"(NumberOfParameters {params.size})\n(TransformParameters {' '.join(f'{v:.6f}' for v in params)})\n"
        "(InitialTransformParametersFileName \"TransformParameters.0.txt\")\n"
        f"(GridSize {' '.join(map(str, grid))})\n(GridIndex 0 0 0)\n(GridSpacing {_numbers(gspacing)})\n"
        f"(GridOrigin {_numbers(gorigin)})\n(GridDirection {_numbers(d.T)})\n"
        "(BSplineTransformSplineOrder 3)\n(UseCyclicTransform \"false\")\n" + common)
    return tp1


def make_case(folder: Path, size, moving_slices=None):
    """Write the case into ``folder`` (skipped when its ``case.json`` exists); returns the folder."""
    import SimpleITK as sitk

    from RegistrationQualityLib.elastix import BSplineComponent, read_transform_chain, to_sitk_transform

    if (folder / "case.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    spacing = (0.7, 0.7, 2.0)
    fixed, fixed_labels = phantom(size, spacing, _rotation(8, 3), seed=0)
    sitk.WriteImage(fixed, str(folder / "fixed.nrrd"))
    sitk.WriteImage(fixed_labels, str(folder / "fixed_labels.nrrd"), True)
    msize = (size[0], size[1], moving_slices or max(1, size[2] - 10))
    moving, moving_labels = phantom(msize, spacing, _rotation(-4, -2), shift=(2.0, -3.0, 4.0), seed=2)
    sitk.WriteImage(moving, str(folder / "moving.nrrd"))
    sitk.WriteImage(moving_labels, str(folder / "moving_labels.nrrd"), True)
    del moving, moving_labels, fixed_labels
    elx = folder / "elastix"
    elx.mkdir(exist_ok=True)
    tp = elastix_files(elx, fixed)
    t = to_sitk_transform(tp)
    # the ITK .tfm form: the chain's B-spline as an ITK BSplineTransform
    b = [c for c in read_transform_chain(tp) if isinstance(c, BSplineComponent)][0]
    images = []
    for dim in range(3):
        img = sitk.GetImageFromArray(np.ascontiguousarray(b.coefficients[dim]))
        img.SetOrigin(tuple(b.origin))
        img.SetSpacing(tuple(b.spacing))
        img.SetDirection(tuple(b.direction.ravel()))
        images.append(img)
    sitk.WriteTransform(sitk.BSplineTransform(images, 3), str(folder / "bspline.tfm"))
    # the displacement-field form: T sampled at the fixed voxel centres (float32, LPS), as ITK writes it
    field = sitk.TransformToDisplacementField(t, sitk.sitkVectorFloat32, fixed.GetSize(), fixed.GetOrigin(),
                                              fixed.GetSpacing(), fixed.GetDirection())
    sitk.WriteImage(field, str(folder / "field.nrrd"))
    del field
    rng = np.random.default_rng(3)
    pts = rng.uniform(-70, 70, (20, 3)) * np.array([1.0, 1.0, 2.0])
    (folder / "fixed.csv").write_text("label,x,y,z\n" + "".join(f"L{i},{p[0]},{p[1]},{p[2]}\n"
                                                                for i, p in enumerate(pts)))
    moved = [np.array(t.TransformPoint(tuple(p))) + rng.normal(0, 0.5, 3) for p in pts]
    (folder / "moving.csv").write_text("label,x,y,z\n" + "".join(f"L{i},{p[0]},{p[1]},{p[2]}\n"
                                                                 for i, p in enumerate(moved)))
    (folder / "case.json").write_text(json.dumps({"size": list(size), "moving_size": list(msize)}))
    return folder


def evaluate_args(case: Path, form: str, out: Path) -> list:
    args = ["--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd",
            "--fixed-landmarks", case / "fixed.csv", "--moving-landmarks", case / "moving.csv", "--output", out]
    if form == "otsu":
        args += ["--threshold", "otsu"]
    else:
        args += ["--fixed-segmentation", case / "fixed_labels.nrrd",
                 "--moving-segmentation", case / "moving_labels.nrrd"]
    if form == "slicer-elastix":  # the child builds the scene from these files (see child_evaluate)
        args += ["--transform", case / "field.nrrd"]
        return [os.fspath(a) for a in ["--scene", *args]]
    t = {"field": ["--transform", case / "field.nrrd"], "tfm": ["--transform", case / "bspline.tfm"],
         "elastix": ["--transform", case / "elastix" / "TransformParameters.1.txt"],
         "elastix-dir": ["--elastix-dir", case / "elastix"],
         "otsu": ["--transform", case / "elastix" / "TransformParameters.1.txt"]}[form]
    return [os.fspath(a) for a in args + t]


def child_evaluate(argv) -> int:
    """In the child process: run evaluate with the CLI's arguments, write stage times as JSON to argv[0]."""
    from RegistrationQualityLib.cli import ArgumentParser, add_evaluate_arguments
    from RegistrationQualityLib.context import Context
    from RegistrationQualityLib.evaluate import evaluate

    try:
        from RegistrationQualityLib.commands import inputs_from_args
    except ImportError:  # before the CLI runners moved to the commands module
        from RegistrationQualityLib.evaluate import inputs_from_args

    target, rest = argv[0], argv[1:]
    scene = bool(rest) and rest[0] == "--scene"
    if scene:
        rest = rest[1:]
    t_start = time.perf_counter()
    parser = ArgumentParser(prog="bench")
    add_evaluate_arguments(parser)
    args = parser.parse_args(rest)
    inputs, options = inputs_from_args(args)
    ctx = Context.headless()
    setup = {}
    if scene:
        inputs, options, setup = slicer_elastix_scene(ctx, inputs, options)
        t_start = time.perf_counter()
    marks = []

    def progress(text, fraction):
        name = text.split(":")[0]
        if not marks or marks[-1][0] != name:
            marks.append((name, time.perf_counter()))

    result = evaluate(ctx, inputs, options, output_dir=args.output, progress=progress)
    t_end = time.perf_counter()
    stages = {"import+parse": marks[0][1] - t_start if marks else 0.0}
    for (name, start), (_n, end) in zip(marks, marks[1:] + [("end", t_end)]):
        stages[name] = stages.get(name, 0.0) + end - start
    Path(target).write_text(json.dumps({"stages": stages, "verdict": result.verdict, "evaluate_seconds": t_end - t_start,
                                        "warnings": result.report["warnings"], **setup}))
    return 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def slicer_elastix_scene(ctx, inputs, options):
    """The scene SlicerElastix leaves after registering ``inputs.moving`` to ``inputs.fixed`` with a
    displacement-field output (lassoan/SlicerElastix, Elastix.py ``_processElastixOutput``: the field loaded with
    ``slicer.util.loadTransform`` and copied into the output transform node, the node referencing the volumes
    with the moving/fixed registration roles; the module's parameter node holds the node references), plus the
    user's labelmaps and landmarks as nodes. Returns the module logic's (inputs, options) and the set-up facts."""
    import dataclasses

    import slicer

    from RegistrationQualityLib import io, panel

    t0 = time.perf_counter()
    fixed = io.load_volume(ctx, inputs.fixed, "fixed")
    moving = io.load_volume(ctx, inputs.moving, "moving")
    loaded = ctx.logic("Transforms").AddTransform(os.fspath(inputs.transform), ctx.scene)
    output = ctx.add_node("vtkMRMLGridTransformNode", "Elastix output transform")
    output.CopyContent(loaded)
    ctx.scene.RemoveNode(loaded)
    output.AddNodeReferenceID(slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole(), moving.GetID())
    output.AddNodeReferenceID(slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole(), fixed.GetID())
    pnode = ctx.add_node("vtkMRMLScriptedModuleNode", "Elastix")
    pnode.SetAttribute("ModuleName", "Elastix")
    pnode.SetNodeReferenceID("FixedVolume", fixed.GetID())
    pnode.SetNodeReferenceID("MovingVolume", moving.GetID())
    pnode.SetNodeReferenceID("OutputTransform", output.GetID())
    found = panel.slicer_elastix_inputs(ctx, moving)
    assert found is not None and found["transform"] is output and found["fixed"] is fixed
    fixed_labels = io.load_volume(ctx, inputs.fixed_segmentation, "fixed labels", labelmap=True)
    moving_labels = io.load_volume(ctx, inputs.moving_segmentation, "moving labels", labelmap=True)
    marks = {k: io.landmarks_to_node(ctx, io.read_landmarks(getattr(inputs, k)), k)
             for k in ("fixed_landmarks", "moving_landmarks")}
    inputs = dataclasses.replace(inputs, fixed=found["fixed"], moving=moving, transform=found["transform"],
                                 fixed_segmentation=fixed_labels, moving_segmentation=moving_labels, **marks)
    options = dataclasses.replace(options, scene_outputs=True)
    return inputs, options, {"scene_seconds": time.perf_counter() - t0, "scene_rss_mb": _rss_mb(),
                             "transform_class": output.GetClassName()}


def run_measured(cmd, env=None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB of the process tree, exit code) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([os.fspath(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):
        print(f"  command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, proc.returncode


def run_plastimatch(case: Path, work: Path):
    """plastimatch warp (nearest neighbour, through the field) + threshold per label + dice --all per label."""
    exe = shutil.which("plastimatch")
    if exe is None:
        return None
    work.mkdir(parents=True, exist_ok=True)
    cmds = [[exe, "warp", "--input", case / "moving_labels.nrrd", "--output-img", work / "warped.nrrd",
             "--xf", case / "field.nrrd", "--fixed", case / "fixed.nrrd", "--interpolation", "nn"]]
    for label in ORGANS:
        cmds.append([exe, "threshold", "--input", case / "fixed_labels.nrrd", "--output", work / f"f{label}.nrrd",
                     "--range", f"{label},{label}"])
        cmds.append([exe, "threshold", "--input", work / "warped.nrrd", "--output", work / f"w{label}.nrrd",
                     "--range", f"{label},{label}"])
    for label in ORGANS:
        cmds.append([exe, "dice", "--all", work / f"f{label}.nrrd", work / f"w{label}.nrrd"])
    total, peak = 0.0, 0.0
    for cmd in cmds:
        wall, rss, _rc = run_measured(cmd)
        total += wall
        peak = max(peak, rss)
    return total, peak


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover
        return "n/a"


def cohort_throughput(case: Path, root: Path, n: int):
    from RegistrationQualityLib.cohort import run_cohort

    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    rows = ["case_id,fixed,moving,transform,fixed_segmentation,moving_segmentation,fixed_landmarks,moving_landmarks"]
    for i in range(n):
        rows.append(f"c{i},{case}/fixed.nrrd,{case}/moving.nrrd,{case}/elastix/TransformParameters.1.txt,"
                    f"{case}/fixed_labels.nrrd,{case}/moving_labels.nrrd,{case}/fixed.csv,{case}/moving.csv")
    manifest.write_text("\n".join(rows) + "\n")
    out = []
    for workers in (1, 2):
        target = root / f"out{workers}"
        shutil.rmtree(target, ignore_errors=True)
        t0 = time.perf_counter()
        run_cohort(manifest, target, workers=workers)
        out.append((workers, time.perf_counter() - t0))
    return out


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child-evaluate":
        return child_evaluate(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=3, default=[512, 512, 300])
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--repeat", type=int, default=1, help="runs per form (the fastest is reported)")
    p.add_argument("--cohort", type=int, default=0, help="cases in the cohort throughput run (0: skip)")
    p.add_argument("--cohort-size", type=int, nargs=3, default=[256, 256, 100])
    p.add_argument("--keep", help="keep (and reuse) the generated data and reports here")
    p.add_argument("--json", help="write the measurements to this JSON file")
    args = p.parse_args(argv)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-bench-evaluate-"))
    results = {"size": args.size, "load_before": loadavg(), "forms": {}}
    try:
        t0 = time.perf_counter()
        case = make_case(root / f"case-{'x'.join(map(str, args.size))}", args.size)
        print(f"case {args.size} ready in {time.perf_counter() - t0:.1f} s ({case}); load {loadavg()}")
        for form in args.forms:
            best = None
            for _ in range(max(1, args.repeat)):
                # plastimatch right before each evaluate run: on a shared machine both see the same load
                plast = run_plastimatch(case, root / "plastimatch")
                out = root / f"report-{form}"
                shutil.rmtree(out, ignore_errors=True)
                stages_file = root / f"stages-{form}.json"
                stages_file.unlink(missing_ok=True)
                cmd = [sys.executable, os.path.abspath(__file__), "--child-evaluate", stages_file,
                       *evaluate_args(case, form, out)]
                load = loadavg()
                wall, rss, rc = run_measured(cmd)
                facts = json.loads(stages_file.read_text()) if stages_file.is_file() else {}
                if form == "slicer-elastix" and "evaluate_seconds" in facts:
                    wall = facts["evaluate_seconds"]  # the scene is what the user already has
                ratio = wall / plast[0] if plast else None
                if best is None or (ratio if ratio is not None else wall) < best["key"]:
                    best = {"key": ratio if ratio is not None else wall, "seconds": wall, "peak_mb": rss, "exit": rc,
                            "ratio": ratio, "load": load,
                            "plastimatch": {"seconds": plast[0], "peak_mb": plast[1]} if plast else None,
                            **facts}
            best.pop("key")
            p_text = (f", {best['ratio']:.2f}x plastimatch ({best['plastimatch']['seconds']:.2f} s, peak "
                      f"{best['plastimatch']['peak_mb']:.0f} MB)" if best["plastimatch"] else ", plastimatch absent")
            scene_text = (f" ({best['peak_mb'] - best['scene_rss_mb']:.0f} MB on top of the scene's "
                          f"{best['scene_rss_mb']:.0f} MB, built in {best['scene_seconds']:.1f} s)"
                          if "scene_rss_mb" in best else "")
            print(f"\n{form}: {best['seconds']:.2f} s{p_text}, peak {best['peak_mb']:.0f} MB{scene_text}, exit "
                  f"{best['exit']}, verdict {best.get('verdict')}, load {best['load']}")
            for name, seconds in (best.get("stages") or {}).items():
                print(f"  {name:14s} {seconds:7.2f} s")
            if best.get("warnings"):
                print("  warnings:", best["warnings"])
            results["forms"][form] = best
        results["load_after"] = loadavg()
        print(f"\nload average before/after: {results['load_before']} / {results['load_after']}")
        if args.cohort:
            small = make_case(root / f"case-{'x'.join(map(str, args.cohort_size))}", args.cohort_size)
            print(f"\ncohort throughput, {args.cohort} cases of {args.cohort_size}:")
            base = None
            for workers, seconds in cohort_throughput(small, root / "cohort", args.cohort):
                base = base or seconds
                print(f"  workers={workers}: {seconds:6.1f} s, {60 * args.cohort / seconds:5.1f} cases/min, "
                      f"speed-up {base / seconds:.2f}x")
                results.setdefault("cohort", []).append({"workers": workers, "seconds": seconds})
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
