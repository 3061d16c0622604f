"""Benchmark: how soon ``evaluate`` stops after Cancel, in every stage, on the CT-size case of bench_evaluate.

For each stage of the evaluation (and for the align stage at several points of the streamed pass), one in-process
run of the elastix form is cancelled a fixed delay after the stage begins (``cancel()`` starts returning True);
the latency is the time from that moment to the ``InterruptedError``. The panel's Cancel button sets the same
flag. Prints the latency per stage and the largest; asserts nothing.

    python Testing/benchmarks/bench_cancel.py [--keep DIR] [--delay 0.3] [--size 512 512 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_evaluate  # noqa: E402  (the case and the CLI arguments)

POINTS = (("load", 0.0), ("align", 0.0), ("align", 0.25), ("align", 0.5), ("align", 0.9), ("segments", 0.0),
          ("landmarks", 0.0), ("similarity", 0.0), ("snapshots", 0.0), ("snapshots", 1.0), ("snapshots", 2.0),
          ("report", 0.0))


def cancelled_run(case: Path, out: Path, stage: str, at: float, delay: float):
    """(latency s, stage the run stopped in) of one run cancelled ``delay`` s after ``stage`` reached ``at`` (a
    fraction of the align pass, or seconds into any other stage); None if the run ended first."""
    from RegistrationQualityLib.cli import ArgumentParser, add_evaluate_arguments
    from RegistrationQualityLib.commands import inputs_from_args
    from RegistrationQualityLib.context import Context
    from RegistrationQualityLib.evaluate import evaluate

    parser = ArgumentParser(prog="bench")
    add_evaluate_arguments(parser)
    inputs, options = inputs_from_args(parser.parse_args(bench_evaluate.evaluate_args(case, "elastix", out)))
    state = {"stage": None, "since": None, "request": None, "last": None}

    def progress(text, fraction):
        name, _, rest = text.partition(":")
        now = time.perf_counter()
        if name != state["stage"]:
            state["stage"], state["since"] = name, now
        state["last"] = name
        if state["request"] is None and name == stage:
            done = float(rest.strip().rstrip("%")) / 100 if stage == "align" and rest.strip().endswith("%") else None
            if (stage == "align" and done is not None and done >= at) or (stage != "align" and at == 0.0):
                state["request"] = now + delay

    def cancel():
        now = time.perf_counter()
        if state["request"] is None and stage != "align" and state["stage"] == stage and now - state["since"] >= at:
            state["request"] = now + delay
        return state["request"] is not None and now >= state["request"]

    shutil.rmtree(out, ignore_errors=True)
    try:
        evaluate(Context.headless(), inputs, options, output_dir=out, progress=progress, cancel=cancel)
    except InterruptedError:
        return time.perf_counter() - state["request"], state["last"]
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=3, default=[512, 512, 300])
    p.add_argument("--keep", help="keep (and reuse) the generated case here")
    p.add_argument("--delay", type=float, default=0.3, help="seconds after the point before Cancel is pressed")
    args = p.parse_args(argv)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from RegistrationQualityLib.context import silence_native_warnings

    silence_native_warnings()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-bench-cancel-"))
    try:
        case = bench_evaluate.make_case(root / f"case-{'x'.join(map(str, args.size))}", args.size)
        worst = 0.0
        for stage, at in POINTS:
            result = cancelled_run(case, root / "cancelled", stage, at, args.delay)
            where = f"{stage} at {at:.0%} of the pass" if stage == "align" else f"{stage} + {at:.1f} s"
            if result is None:
                print(f"{where:28s} run ended before Cancel")
                continue
            latency, last = result
            worst = max(worst, latency)
            print(f"{where:28s} latency {latency:6.2f} s (stopped in {last})", flush=True)
        print(f"largest latency {worst:.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
