"""Command line: ``registration-quality {compare,evaluate,cohort,review,info,demo}``.

Contract (DEVELOPERS.md): stdout holds results (pure JSON where a command prints JSON); bad input gives
exit status 2 and exactly one stderr line naming the file/option and the problem, never a traceback;
ITK/VTK warnings never reach stderr (file descriptor 2 is pointed at /dev/null while we work, and our own
messages go to the original stderr); progress and info lines go to stderr only on a terminal or with
``--verbose``. Heavy modules (slicer, vtk, SimpleITK) are imported by the subcommands, not here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from . import checks
from .context import silence_native_warnings
from .errors import BadInputError

PROG = "registration-quality"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one BadInputError line (exit 2) instead of usage + error."""

    def error(self, message):  # noqa: D102 - argparse API
        command = self.prog[len(PROG):].strip() if self.prog.startswith(PROG) else self.prog
        raise BadInputError(f"{command}: {message}" if command else message)


def _percentile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None  # argparse names the option
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0-100")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} must not be negative")
    return value


def build_parser() -> ArgumentParser:
    from . import __version__

    parser = ArgumentParser(
        prog=PROG,
        description="Quality assurance of image registrations: segment overlap and surface distances, "
        "landmark TRE, deformation sanity, contour snapshots and a report.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress and info on stderr even when "
                        "it is not a terminal")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True

    p = sub.add_parser("compare", help="Dice, Hausdorff, surface distances and volumes of two labelmaps / "
                       "segmentations, per label")
    p.add_argument("reference", help="reference labelmap or .seg.nrrd")
    p.add_argument("compared", help="compared labelmap or .seg.nrrd (resampled onto the reference grid "
                   "when on another grid)")
    p.add_argument("--percentile", type=_percentile, default=95.0, help="p of HDp, the p-th percentile Hausdorff (0-100; default 95)")
    p.add_argument("--json", metavar="PATH", help="write the JSON here instead of stdout")
    add_nsd_tolerance_argument(p)
    p.set_defaults(handler="RegistrationQualityLib.commands:run_compare_cli")

    p = sub.add_parser("evaluate", help="evaluate one registration and write the QA report")
    add_evaluate_arguments(p)
    p.set_defaults(handler="RegistrationQualityLib.commands:run_evaluate_cli")

    p = sub.add_parser("cohort", help="evaluate many registrations listed in a CSV manifest")
    p.add_argument("manifest", help="CSV with case_id, fixed, moving and evaluate's options as columns")
    p.add_argument("--output", required=True, help="output folder (per-case reports, summary.csv/html)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask distributed scheduler address (optional extra)")
    p.add_argument("--percentile", type=_percentile, default=95.0, help="p of HDp, the p-th percentile Hausdorff (0-100; default 95)")
    p.add_argument("--no-snapshots", action="store_true", help="skip the PNG snapshots")
    p.add_argument("--ratings", metavar="CSV", help="merge human ratings (ratings.csv exported from review.html) "
                   "into summary.csv/summary.html and write agreement.csv")
    add_nsd_tolerance_argument(p)
    add_check_arguments(p)
    p.set_defaults(handler="RegistrationQualityLib.commands:run_cohort_cli")

    p = sub.add_parser("review", help="(re)write summary.html and review.html of an existing cohort folder, "
                       "optionally merging human ratings")
    p.add_argument("cohort_dir", help="a cohort output folder (holds summary.csv)")
    p.add_argument("--ratings", metavar="CSV", help="ratings.csv exported from review.html: merged into "
                   "summary.csv/summary.html, agreement written to agreement.csv")
    p.set_defaults(handler="RegistrationQualityLib.commands:run_review_cli")

    p = sub.add_parser("info", help="print what a file holds (geometry, transform type, landmarks) as JSON")
    p.add_argument("files", nargs="+", help="images, labelmaps, transforms, landmark files")
    p.set_defaults(handler="RegistrationQualityLib.cli:run_info_cli")

    p = sub.add_parser("profiles", help="list the built-in tolerance profiles (or describe the given ones)")
    p.add_argument("profiles", nargs="*", metavar="NAME|FILE", help="profiles to describe (default: all built-in)")
    p.set_defaults(handler="RegistrationQualityLib.commands:run_profiles_cli")

    p = sub.add_parser("demo", help="run evaluate on the bundled sample case (good and imperfect registration)")
    p.add_argument("--output", default="rq-demo", help="output folder (default ./rq-demo)")
    p.add_argument("--case", help="sample case folder (default: the repository's Resources/SampleCase)")
    p.set_defaults(handler="RegistrationQualityLib.commands:run_demo_cli")
    return parser


def add_evaluate_arguments(p) -> None:
    """evaluate's options; shared with the Slicer batch script and the cohort manifest's columns."""
    p.add_argument("--fixed", required=True, help="fixed image (file or DICOM folder)")
    p.add_argument("--moving", required=True, help="moving image")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--transform", help="resampling transform fixed->moving: ITK .tfm/.h5/.txt, displacement "
                   "field, or elastix TransformParameters file")
    g.add_argument("--elastix-dir", help="elastix output folder (final TransformParameters.N.txt is used)")
    p.add_argument("--registered", help="the moving image already resampled onto the fixed grid (e.g. elastix "
                   "result.0.nrrd)")
    p.add_argument("--fixed-segmentation", help="labelmap or .seg.nrrd on the fixed image")
    p.add_argument("--moving-segmentation", help="labelmap or .seg.nrrd on the moving image")
    p.add_argument("--labels", action="append", metavar="FILE",
                   help="label names of the labelmaps: Slicer colour table (.ctbl/.txt), ITK-SNAP label "
                   "description file or CSV value,name (give twice for fixed then moving)")
    p.add_argument("--threshold", action="append", metavar="LO[:HI]|otsu",
                   help="threshold segmentation of both images (give twice for fixed then moving ranges)")
    add_cleanup_arguments(p)
    p.add_argument("--fixed-landmarks", help=".mrk.json, .fcsv or CSV label,x,y,z (LPS)")
    p.add_argument("--moving-landmarks", help="landmarks on the moving image, matched by label")
    p.add_argument("--percentile", type=_percentile, default=95.0, help="p of HDp, the p-th percentile Hausdorff (0-100; default 95)")
    p.add_argument("--same-modality", action="store_true", help="fixed and moving images share intensity units: "
                   "judge MSE/MAE (else they are shown as information only)")
    p.add_argument("--no-snapshots", action="store_true", help="skip the PNG snapshots")
    p.add_argument("--outline-distance-colour", action="store_true",
                   help="in the before | after snapshots, colour the fixed outline after registration by its signed "
                   "distance to the registered segment (the heat maps' colours and range)")
    add_nsd_tolerance_argument(p)
    add_check_arguments(p)
    p.add_argument("--output", required=True, help="report folder (written atomically)")


def add_nsd_tolerance_argument(p) -> None:
    p.add_argument("--nsd-tolerance", type=_positive, action="append", metavar="MM", dest="nsd_tolerance",
                   help="tolerance of the normalised surface Dice in mm (default 2; repeat for several)")


def add_cleanup_arguments(p) -> None:
    """Clean-up of --threshold masks (segmentation.Cleanup); each image on its own grid."""
    p.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None,
                   help="fill 3D holes of the threshold masks (default: on)")
    p.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                   help="keep only the largest connected component of each threshold mask (default: on)")
    p.add_argument("--min-island-cc", type=_positive, metavar="CC",
                   help="remove threshold islands smaller than CC cubic centimetres (default 0: none)")
    p.add_argument("--closing-mm", type=_positive, metavar="MM",
                   help="morphological closing of the threshold masks with a ball of radius MM (default 0: none)")


def add_check_arguments(p) -> None:
    """``--profile`` and one flag per check of the check registry (:mod:`.checks`), with help saying what it
    gates; a flag replaces the profile's limits of its check."""
    p.add_argument("--profile", metavar="NAME|FILE", help="tolerance profile: pass and review limits per check "
                   "(built-in: see 'registration-quality profiles'; or a JSON/TOML file); a check flag replaces "
                   "the profile's limits of that check")
    checks.add_arguments(p, _positive)


# ---------------------------------------------------------------------------------------------------
# stderr discipline
# ---------------------------------------------------------------------------------------------------
class Messages:
    """Where the CLI's own stderr lines go: errors always, info/progress on a terminal or with --verbose."""

    def __init__(self, stream, verbose: bool = False):
        self.stream = stream
        isatty = getattr(stream, "isatty", lambda: False)
        self.chatty = verbose or bool(isatty())

    def error(self, text: str) -> None:
        self.stream.write(" ".join(str(text).split()) + "\n")
        self.stream.flush()

    def info(self, text: str) -> None:
        if self.chatty:
            self.stream.write(str(text) + "\n")
            self.stream.flush()

    def progress(self, stage: str, fraction: float | None = None) -> None:
        if self.chatty:
            pct = "" if fraction is None else f" {100.0 * fraction:5.1f}%"
            self.stream.write(f"[{PROG}]{pct} {stage}\n")
            self.stream.flush()


@contextlib.contextmanager
def native_stderr_silenced():
    """Point fd 2 at /dev/null (native ITK/VTK output) and yield a stream on the original stderr.

    When ``sys.stderr`` is not fd 2 (pytest's capsys, an embedding app), nothing is redirected.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd != 2 or os.environ.get("RQ_NATIVE_WARNINGS"):
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    stream = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    old = sys.stderr
    sys.stderr = stream
    try:
        yield stream
    finally:
        stream.flush()
        sys.stderr = old
        stream.close()
        os.dup2(saved, 2)
        os.close(saved)


def _resolve(handler: str):
    import importlib

    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv=None) -> int:
    """Entry point of the console script; returns the exit status."""
    silence_native_warnings()  # a headless entry point (never inside the Slicer application)
    with native_stderr_silenced() as err:
        messages = Messages(err, verbose=argv is not None and ("-v" in argv or "--verbose" in argv))
        debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        try:
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help / --version
                return int(exc.code or 0)
            messages = Messages(err, verbose=args.verbose)
            return int(_resolve(args.handler)(args, messages) or 0)
        except BadInputError as exc:
            messages.error(f"{PROG}: error: {exc}")
            return 2
        except KeyboardInterrupt:
            messages.error(f"{PROG}: interrupted")
            return 130
        except Exception as exc:  # an internal error: one line, traceback only with --debug
            if debug:
                import traceback

                traceback.print_exc(file=err)
            messages.error(f"{PROG}: internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
            return 3


# ---------------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------------
def run_info_cli(args, messages) -> int:
    import json

    out = [describe_file(path) for path in args.files]
    sys.stdout.write(json.dumps(out if len(out) > 1 else out[0], indent=2) + "\n")
    return 0


def _grid(reader) -> dict:
    return {"size": list(reader.GetSize()), "spacing_mm": list(reader.GetSpacing()),
            "origin_lps_mm": list(reader.GetOrigin()), "direction": list(reader.GetDirection())}


def describe_file(path) -> dict:
    """What ``registration-quality info`` prints for one path: landmarks, transforms (elastix: the chain),
    elastix output folders (stages, metric, iterations, fixed grid), ``.seg.nrrd`` segments, images (pixel type)."""
    from pathlib import Path

    from . import io

    entry = {"path": os.fspath(path)}
    ext = io.file_extension(path)
    if Path(path).is_dir() and any(Path(path).glob("TransformParameters.*.txt")):
        return {**entry, **_describe_elastix_folder(path)}
    if ext in (".mrk.json", ".json", ".fcsv", ".csv"):
        lm = io.read_landmarks(path)
        entry.update(kind="landmarks", count=len(lm), labels=lm.labels,
                     lps_mm=[[round(v, 4) for v in p] for p in lm.lps.tolist()])
    elif ext == ".txt" and io.is_elastix_parameter_file(path):
        from .elastix import LinearComponent, describe_chain, read_transform_chain
        from .elastix_inputs import parameter_file_grid

        chain = read_transform_chain(path)
        entry.update(kind="transform", format="elastix TransformParameters", chain=describe_chain(chain),
                     files=[c.source for c in chain], linear=all(isinstance(c, LinearComponent) for c in chain),
                     fixed_grid=parameter_file_grid(path))
    elif ext in (".tfm", ".h5", ".hdf5", ".mat"):
        from .context import Context
        from .transforms import load_transform

        node = load_transform(Context.headless(), path)
        entry.update(kind="transform", mrml_class=node.GetClassName(), linear=bool(node.IsLinear()))
    elif ext in (".seg.nrrd", ".seg.nhdr"):
        from .metrics import read_segmentation_file

        src = read_segmentation_file(path)
        entry.update(kind="segmentation", segments=[{"name": s.name, "label": s.label, "layer": s.layer}
                                                    for s in src.segments], **_grid(src.geometry))
    else:
        # a DICOM folder has no header-only read: read the series itself
        reader = io.read_image(path, scalar=False) if Path(path).is_dir() else io.read_image_information(path)
        dim, comps = io.describe_dimension(reader)
        pixel = reader.GetPixelIDTypeAsString() if hasattr(reader, "GetPixelIDTypeAsString") else \
            io._sitk().GetPixelIDValueAsString(reader.GetPixelID())
        entry.update(kind="image", dimension=dim, components=comps, pixel_type=pixel, **_grid(reader))
    return entry


def _describe_elastix_folder(path) -> dict:
    from .elastix import describe_chain, find_elastix_result, read_transform_chain
    from .elastix_inputs import parameter_file_grid

    res = find_elastix_result(path)
    prov = res.provenance()
    final = res.transform_parameters
    return {"kind": "elastix output folder", "elastix_version": prov.get("elastix_version"),
            "fixed_image": res.fixed_image, "moving_image": res.moving_image,
            "transform_parameters": final, "chain": describe_chain(read_transform_chain(final)) if final else None,
            "stages": prov.get("stages", []),
            "fixed_grid": parameter_file_grid(final) if final else None, "result_image": res.final_result_image,
            "warnings": res.warnings}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
