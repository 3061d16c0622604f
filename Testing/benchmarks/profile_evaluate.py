"""Profile: where one ``evaluate`` run of the CT-size benchmark case spends its time, per stream consumer.

Runs ``evaluate`` in this process on a case made by ``bench_evaluate.py --keep DIR`` (one form of T) and prints
the wall and process CPU seconds of each stage helper, of the registration's sampler and of every consumer's
``consume`` / ``finish`` in the streamed pass. CPU is the whole process's (both threads of the prefetched
stream): inside the stream it shows how busy the cores are, not what one consumer costs. ``--serial`` turns the
prefetch off, so that each consumer's wall time is its own cost on all cores. Run it twice: the first run in a
fresh environment compiles the kernels.

    python Testing/benchmarks/profile_evaluate.py DIR/case-512x512x300 [--form otsu] [--serial]
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import bench_evaluate

WALL: dict = collections.defaultdict(float)
CPU: dict = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(owner, name: str, label: str) -> None:
    f = getattr(owner, name)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), _cpu()
        try:
            return f(*args, **kwargs)
        finally:
            WALL[label] += time.perf_counter() - t
            CPU[label] += _cpu() - c
            CALLS[label] += 1

    setattr(owner, name, wrapper)


def instrument(serial: bool) -> None:
    from RegistrationQualityLib import deformation, ndv, rendering, resample, similarity, transforms
    from RegistrationQualityLib import evaluate as ev

    for module, cls in ((deformation, "DeformationStatistics"), (deformation, "JacobianInRegion"),
                        (ndv, "NonDiffeomorphicVolume"), (ndv, "Learn2RegSDlogJ"), (resample, "Warp"),
                        (similarity, "InsideMoving"), (rendering, "JacobianPicture")):
        for method in ("consume", "finish"):
            _timed(getattr(module, cls), method, f"{cls}.{method}")
    for name in ("_load_image", "_load_registration", "_load_label_pair", "_union_on", "_threshold_masks",
                 "_similarity_before", "_segments", "_landmarks", "_similarity", "_snapshots"):
        _timed(ev, name, f"evaluate.{name}")
    for cls in ("Chain", "FieldOnGrid", "NodeSampler"):
        _timed(getattr(transforms, cls), "sample", f"{cls}.sample")
    if serial:
        stream = transforms.stream

        def serial_stream(*args, **kwargs):
            kwargs["prefetch"] = False
            return stream(*args, **kwargs)

        transforms.stream = serial_stream
    _timed(transforms, "stream", "transforms.stream")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", help="a case folder written by bench_evaluate.py --keep")
    p.add_argument("--form", default="otsu", choices=[f for f in bench_evaluate.FORMS if f != "slicer-elastix"])
    p.add_argument("--serial", action="store_true", help="sample the slabs in the consuming thread (no prefetch)")
    args = p.parse_args(argv)
    instrument(args.serial)
    out = Path(tempfile.mkdtemp(prefix="rq-profile-"))
    t, c = time.perf_counter(), _cpu()
    bench_evaluate.child_evaluate([str(out / "stages.json"), *bench_evaluate.evaluate_args(Path(args.case), args.form,
                                                                                             out / "report")])
    print(f"{args.form}: {time.perf_counter() - t:.2f} s wall, {_cpu() - c:.2f} s CPU ({out})")
    for name, seconds in json.loads((out / "stages.json").read_text())["stages"].items():
        print(f"  stage {name:14s} {seconds:7.2f} s")
    for label, seconds in sorted(WALL.items(), key=lambda item: -item[1]):
        print(f"  {label:38s} {seconds:7.2f} s wall {CPU[label]:7.2f} s CPU  x{CALLS[label]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
