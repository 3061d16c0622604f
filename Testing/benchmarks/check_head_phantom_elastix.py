"""Independent check on the head phantom with real elastix runs (issue 16); prints a table, asserts nothing.

Writes Testing/head_phantom.py's T1-like fixed image and perfusion-like moving map, registers them with elastix
(rigid, Mattes MI: a good 3 x 300-iteration run and a poor 3 x 15-iteration run), then evaluates each with
``--threshold otsu`` raw (``--no-fill-holes --no-largest-component``) and with the default clean-up, and once
with --fixed/--moving swapped (must be refused, exit 2).

    python Testing/benchmarks/check_head_phantom_elastix.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PARAMS = """(Transform "EulerTransform")
(Registration "MultiResolutionRegistration")
(Metric "AdvancedMattesMutualInformation")
(Optimizer "AdaptiveStochasticGradientDescent")
(NumberOfResolutions 3)
(MaximumNumberOfIterations {iterations})
(NumberOfSpatialSamples 4000)
(ImageSampler "RandomCoordinate")
(NewSamplesEveryIteration "true")
(AutomaticTransformInitialization "true")
(AutomaticTransformInitializationMethod "CenterOfGravity")
(WriteResultImage "false")
"""
MEASURES = ("dice", "hausdorff_percentile_mm", "hausdorff_mm", "mean_surface_distance_mm")


def evaluate(root: Path, reg: str, extra, out: str):
    cmd = [sys.executable, "-m", "RegistrationQualityLib", "evaluate", "--fixed", "fixed_t1.nrrd", "--moving",
           "moving_cbf.nrrd", "--elastix-dir", reg, "--threshold", "otsu", *extra, "--no-snapshots", "--output", out]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    return proc, (json.loads((root / out / "report.json").read_text()) if proc.returncode in (0, 1) else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    import head_phantom

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-head-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        head_phantom.write_case(root)
        for name, iterations in (("good", 300), ("poor", 15)):
            (root / f"{name}.txt").write_text(PARAMS.format(iterations=iterations))
            (root / name).mkdir(exist_ok=True)
            subprocess.run(["elastix", "-f", "fixed_t1.nrrd", "-m", "moving_cbf.nrrd", "-p", f"{name}.txt", "-out",
                            name], cwd=root, check=True, capture_output=True)
        print(f"{'registration':12s} {'clean-up':8s} " + " ".join(f"{m:>28s}" for m in MEASURES))
        for reg in ("good", "poor"):
            for label, extra in (("raw", ["--no-fill-holes", "--no-largest-component"]), ("default", [])):
                _, report = evaluate(root, reg, extra, f"r_{reg}_{label}")
                e = report["segments"][0]
                cells = [f"{e['before'][m]:.3f} -> {e['after'][m]:.3f}" for m in MEASURES]
                print(f"{reg:12s} {label:8s} " + " ".join(f"{c:>28s}" for c in cells))
        proc = subprocess.run([sys.executable, "-m", "RegistrationQualityLib", "evaluate", "--fixed",
                               "moving_cbf.nrrd", "--moving", "fixed_t1.nrrd", "--elastix-dir", "good", "--threshold",
                               "otsu", "--no-snapshots", "--output", "r_swapped"], cwd=root, capture_output=True,
                              text=True)
        print(f"swapped inputs: exit {proc.returncode}: {proc.stderr.strip()}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
