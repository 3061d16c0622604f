"""Benchmark: ``registration-quality compare`` on a CT-sized labelmap pair against peers, whole processes.

Pair: 512×512×300 voxels, 0.7×0.7×2.0 mm, two overlapping organ-sized irregular masks (about 1.3-1.6 L each:
ellipsoids whose radius is modulated by smooth noise). Timed as separate processes, interleaved, best of N:

* ours: ``python -m RegistrationQualityLib compare REF CMP --json OUT`` (Dice, Jaccard, volumes, HD, HD95,
  ASSD, directed values);
* ``plastimatch dice --all REF CMP`` (Debian package) when installed;
* DeepMind's ``surface-distance`` (PyPI) in a small script (read both files with SimpleITK, Dice, robust HD95,
  average surface distance) when importable.

Prints wall seconds, the ratio to plastimatch (target <= 0.5), every process's peak RSS (target for ours
<= 1 GB), the numbers each tool reports (they differ by definition: see docs/metrics.md) and, when SciPy is
importable, a cross-check of our distances against an independent SciPy implementation of the pinned definition
(MONAI's: 6-connected erosion boundary, exact EDT with spacing). Asserts nothing.

    python Testing/benchmarks/bench_compare.py [--size 512 512 300] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SURFACE_DISTANCE_SCRIPT = """
import sys
import numpy as np
import SimpleITK as sitk
import surface_distance as sd
a = sitk.ReadImage(sys.argv[1]); b = sitk.ReadImage(sys.argv[2])
ma = sitk.GetArrayViewFromImage(a) > 0; mb = sitk.GetArrayViewFromImage(b) > 0
spacing = a.GetSpacing()[::-1]  # numpy (k, j, i) order
d = sd.compute_surface_distances(ma, mb, spacing)
print("dice", sd.compute_dice_coefficient(ma, mb))
print("hd100", sd.compute_robust_hausdorff(d, 100))
print("hd95", sd.compute_robust_hausdorff(d, 95))
print("assd_directed", *sd.compute_average_surface_distance(d))
"""


def organ(shape_kji, spacing, center, radii, seed):
    """An irregular organ-sized mask: ellipsoid with its radius modulated by smooth noise (±15 %)."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    coarse = sitk.GetImageFromArray(rng.normal(0.0, 1.0, (8, 12, 12)).astype(np.float32))
    extent = [n * s for n, s in zip(shape_kji[::-1], spacing)]
    coarse.SetSpacing((extent[0] / 11, extent[1] / 11, extent[2] / 7))
    grid = sitk.Image([int(v) for v in shape_kji[::-1]], sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    noise = sitk.GetArrayFromImage(sitk.Resample(coarse, grid, sitk.Transform(), sitk.sitkLinear))
    k, j, i = (np.arange(n, dtype=np.float32) for n in shape_kji)
    r2 = ((k * spacing[2] - center[2]) / radii[2])[:, None, None] ** 2 + (
        ((j * spacing[1] - center[1]) / radii[1])[:, None] ** 2 + ((i * spacing[0] - center[0]) / radii[0])[None, :] ** 2
    )[None, :, :]
    radius = 1.0 + 0.15 * noise  # the surface moves by up to ~±30 % of the radius where the noise is strong
    return (r2 < radius * radius).astype(np.uint8)


def make_pair(folder: Path, size, spacing):
    """Write reference.nrrd / compared.nrrd (run in a child process: the timing parent stays small)."""
    import numpy as np
    import SimpleITK as sitk

    ni, nj, nk = size
    shape = (nk, nj, ni)
    ext = [n * s for n, s in zip(size, spacing)]
    c = [e / 2 for e in ext]
    scale = min(1.0, min(ext) / 360.0)  # organ-sized (about 1.3-1.6 L) on the CT-sized grid; smaller grids shrink
    ref = organ(shape, spacing, c, (75 * scale, 60 * scale, 70 * scale), 1)
    cmp = organ(shape, spacing, (c[0] + 5 * scale, c[1] - 4 * scale, c[2] + 4 * scale),
                (72 * scale, 63 * scale, 66 * scale), 2)
    paths = []
    for arr, name in ((ref, "reference.nrrd"), (cmp, "compared.nrrd")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin((-ext[0] / 2, -ext[1] / 2, -ext[2] / 2))
        sitk.WriteImage(img, str(folder / name), True)  # gzip, as Slicer writes
        paths.append(folder / name)
    voxel_cc = float(np.prod(spacing)) / 1000
    print(f"reference {ref.sum() * voxel_cc:.0f} cc, compared {cmp.sum() * voxel_cc:.0f} cc", flush=True)
    return paths


def run_with_rss(cmd):
    """(wall seconds, CPU seconds (user + system), peak RSS MiB, stdout) via os.wait4 on the child."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, out


def scipy_cross_check(ref_path, cmp_path, ours: dict, percentile=95.0):
    """Independent check of the pinned definition with SciPy (erosion boundary + exact EDT), on the union box."""
    import numpy as np
    import SimpleITK as sitk

    try:
        from scipy import ndimage
    except ImportError:
        print("cross-check skipped (SciPy not installed)")
        return
    a_img, b_img = sitk.ReadImage(str(ref_path)), sitk.ReadImage(str(cmp_path))
    a, b = sitk.GetArrayViewFromImage(a_img) > 0, sitk.GetArrayViewFromImage(b_img) > 0
    nz = np.nonzero(a | b)
    lo = [max(int(x.min()) - 1, 0) for x in nz]
    hi = [int(x.max()) + 2 for x in nz]
    sl = tuple(slice(s, e) for s, e in zip(lo, hi))
    a_c, b_c = np.pad(a[sl], 1), np.pad(b[sl], 1)
    sampling = a_img.GetSpacing()[::-1]
    edge_a = a_c ^ ndimage.binary_erosion(a_c)  # default structure: 6-connected; border_value 0 = edge outside
    edge_b = b_c ^ ndimage.binary_erosion(b_c)
    d_ab = ndimage.distance_transform_edt(~edge_b, sampling=sampling)[edge_a]
    d_ba = ndimage.distance_transform_edt(~edge_a, sampling=sampling)[edge_b]
    ref = {
        "hausdorff_mm": max(d_ab.max(), d_ba.max()),
        "hausdorff_percentile_mm": max(np.percentile(d_ab, percentile), np.percentile(d_ba, percentile)),
        "mean_surface_distance_mm": np.concatenate([d_ab, d_ba]).mean(),
    }
    worst = max(abs(ours[k] - v) for k, v in ref.items())
    print("cross-check vs SciPy implementation of the pinned definition: "
          + ", ".join(f"{k} {v:.4f}" for k, v in ref.items()) + f"; max |difference| {worst:.2e} mm")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), help="i j k voxels")
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 2.0), help="mm")
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--keep", help="folder to write the pair into (kept)")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_only:  # child process: write the pair into --keep
        make_pair(Path(args.keep), args.size, tuple(args.spacing))
        return
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-bench-compare-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        ni, nj, nk = args.size
        print(f"grid {ni}x{nj}x{nk} = {ni * nj * nk / 1e6:.1f} M voxels, spacing {args.spacing} mm", flush=True)
        # generated in a child process: a forked child's peak RSS includes its parent's pages, so the parent
        # that times the tools must stay small (it imports neither numpy nor SimpleITK until the end)
        subprocess.run([sys.executable, __file__, "--generate-only", "--keep", str(folder), "--size",
                        *map(str, args.size), "--spacing", *map(str, args.spacing)], check=True)
        ref_path, cmp_path = folder / "reference.nrrd", folder / "compared.nrrd"
        out_json = folder / "ours.json"
        tools = {"ours (registration-quality compare)": [sys.executable, "-m", "RegistrationQualityLib", "compare",
                                                          str(ref_path), str(cmp_path), "--json", str(out_json)]}
        plastimatch = shutil.which("plastimatch")
        if plastimatch:
            tools["plastimatch dice --all"] = [plastimatch, "dice", "--all", str(ref_path), str(cmp_path)]
        has_surface_distance = subprocess.run([sys.executable, "-c", "import surface_distance"],
                                              capture_output=True).returncode == 0
        if has_surface_distance:
            script = folder / "surface_distance_run.py"
            script.write_text(SURFACE_DISTANCE_SCRIPT)
            tools["surface-distance (DeepMind)"] = [sys.executable, str(script), str(ref_path), str(cmp_path)]
        else:
            print("surface-distance not installed: skipped (pip install surface-distance)")
        best: dict = {name: (float("inf"), float("inf"), 0.0, "") for name in tools}
        for r in range(args.repeat):
            for name, cmd in tools.items():  # interleaved: load changes hit every tool alike
                wall, cpu, rss, out = run_with_rss(cmd)
                print(f"  run {r + 1}: {name:<38s} {wall:7.2f} s wall {cpu:7.2f} s CPU {rss:7.0f} MiB", flush=True)
                b_wall, b_cpu, b_rss, b_out = best[name]
                best[name] = (min(wall, b_wall), min(cpu, b_cpu), max(rss, b_rss), out if wall < b_wall else b_out)
        ours = json.loads(out_json.read_text())["segments"][0]
        base, base_cpu = best.get("plastimatch dice --all", (None, None))[:2]
        print()
        print(f"| tool | best of {args.repeat} wall (s) | wall ratio to plastimatch | best CPU user+sys (s) | "
              "CPU ratio | peak RSS (MiB) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, (wall, cpu, rss, _out) in best.items():
            ratio = f"{wall / base:.2f}" if base else "n/a"
            cpu_ratio = f"{cpu / base_cpu:.2f}" if base_cpu else "n/a"
            print(f"| {name} | {wall:.2f} | {ratio} | {cpu:.2f} | {cpu_ratio} | {rss:.0f} |")
        print()
        print("values reported (definitions differ, see docs/metrics.md):")
        print(f"  ours: Dice {ours['dice']:.4f}, HD {ours['hausdorff_mm']:.3f} mm, HD95 (max of directed) "
              f"{ours['hausdorff_percentile_mm']:.3f} mm, ASSD (pooled) {ours['mean_surface_distance_mm']:.3f} mm, "
              f"directed 95% {ours['directed']['reference_to_compared']['percentile_mm']:.3f} / "
              f"{ours['directed']['compared_to_reference']['percentile_mm']:.3f} mm")
        if plastimatch:
            out = best["plastimatch dice --all"][3]

            def grab(title):
                m = re.search(re.escape(title) + r"\s*[=:]\s*([-0-9.eE+]+)", out)
                return float(m.group(1)) if m else float("nan")

            dice_p = grab("DICE")
            hd_p = grab("Hausdorff distance (boundary)")
            hd95_p = grab("Percent (0.95) Hausdorff distance (boundary)")
            avg_p = grab("Avg average Hausdorff distance (boundary)")
            print(f"  plastimatch: Dice {dice_p:.4f}, HD (boundary) {hd_p:.3f} mm, 95% HD (boundary) {hd95_p:.3f} mm, "
                  f"avg average HD (boundary) {avg_p:.3f} mm")
        if "surface-distance (DeepMind)" in best:
            values = dict(line.split(" ", 1) for line in best["surface-distance (DeepMind)"][3].strip().splitlines())
            directed = [float(v) for v in values["assd_directed"].split()]
            print(f"  surface-distance: Dice {float(values['dice']):.4f}, HD {float(values['hd100']):.3f} mm, "
                  f"robust HD95 {float(values['hd95']):.3f} mm, average surface distance (directed, surfel-weighted) "
                  f"{directed[0]:.3f} / {directed[1]:.3f} mm")
        scipy_cross_check(ref_path, cmp_path, ours)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
