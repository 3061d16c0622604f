"""The command-line runners: ``registration-quality compare / evaluate / cohort / demo`` and Slicer batch mode.

Each ``run_*_cli(args, messages)`` receives the parsed arguments (:mod:`.cli` builds the parser and dispatches by
name) and returns the exit status; :func:`batch_main` is the same ``evaluate`` on a running Slicer's scene
(``Resources/Scripts/batch_evaluate.py``). The work itself lives in :mod:`.evaluate`, :mod:`.metrics` and
:mod:`.cohort`; here are only argument mapping, the printed summary lines and exit codes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import checks, cohort, cohort_stats, measures, metrics
from .cli import ArgumentParser, add_evaluate_arguments
from .context import Context
from .errors import BadInputError
from .evaluate import EvaluationInputs, EvaluationOptions, EvaluationResult, evaluate, validate_inputs
from .samplecase import read_case_spec, sample_case_folder
from .surface import check_tolerances


def run_compare_cli(args, messages) -> int:
    """``registration-quality compare REFERENCE COMPARED [--percentile P] [--json PATH]``."""
    result = metrics.compare_files(args.reference, args.compared, args.percentile, messages,
                                   nsd_tolerances=getattr(args, "nsd_tolerance", None))
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    if args.json:
        out = Path(args.json)
        if out.is_dir():
            raise BadInputError(args.json, "--json: is a folder; a file path is needed")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            raise BadInputError(args.json, f"--json: cannot write ({exc.strerror or exc})") from None
        messages.info(f"wrote {out}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def inputs_from_args(args, base: Path | None = None) -> tuple[EvaluationInputs, EvaluationOptions]:
    """EvaluationInputs/Options from parsed evaluate arguments (CLI, Slicer batch script, cohort rows)."""

    def path(value):
        if value in (None, ""):
            return None
        p = Path(value).expanduser()
        if base is not None and not p.is_absolute():
            p = base / p
        return os.fspath(p)

    inputs = EvaluationInputs(
        fixed=path(args.fixed), moving=path(args.moving), transform=path(getattr(args, "transform", None)),
        elastix_dir=path(getattr(args, "elastix_dir", None)), registered=path(getattr(args, "registered", None)),
        fixed_segmentation=path(getattr(args, "fixed_segmentation", None)),
        moving_segmentation=path(getattr(args, "moving_segmentation", None)),
        labels=[path(v) for v in args.labels] if getattr(args, "labels", None) else None,
        threshold=list(args.threshold) if getattr(args, "threshold", None) else None,
        fixed_landmarks=path(getattr(args, "fixed_landmarks", None)),
        moving_landmarks=path(getattr(args, "moving_landmarks", None)),
        case_id=getattr(args, "case_id", None),
    )
    options = EvaluationOptions(percentile=getattr(args, "percentile", measures.DEFAULT_PERCENTILE),
                                snapshots=not getattr(args, "no_snapshots", False),
                                outline_distance_colour=bool(getattr(args, "outline_distance_colour", False)),
                                limits=checks.limits_from_args(args),
                                nsd_tolerances=check_tolerances(getattr(args, "nsd_tolerance", None)),
                                threshold_cleanup=cleanup_from_args(args),
                                same_modality=bool(getattr(args, "same_modality", False)),
                                profile=getattr(args, "profile", None) or None)
    return inputs, options


def cleanup_from_args(args):
    """The threshold clean-up of parsed ``--fill-holes/--largest-component/--min-island-cc/--closing-mm`` (each
    defaults to :class:`segmentation.Cleanup`'s field when not given)."""
    from .segmentation import Cleanup

    default = Cleanup().as_dict()
    given = {k: getattr(args, k, None) for k in default}
    return Cleanup(**{k: default[k] if v is None or v == "" else v for k, v in given.items()})


def summary_lines(result: EvaluationResult) -> list:
    lines = [f"verdict: {result.verdict}"]
    profile = result.report.get("profile")
    if profile:
        lines.append(f"profile: {profile['name']} ({profile['source']})")
    for word, records in (("FAILED", result.failed_checks), ("REVIEW", result.review_checks)):
        for c in records:
            value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
            review = f", review limit {c['review_limit']:g}" if c.get("review_limit") is not None else ""
            lines.append(f"{word} {c['name']} [{c['subject']}]: {value} {'<' if c['comparison'] == '>=' else '>'} "
                         f"limit {c['limit']:g}{review}")
    if result.output_dir is not None:
        lines.append(f"report: {os.fspath(Path(result.output_dir) / 'report.html')}")
    return lines


def run_evaluate_cli(args, messages) -> int:
    inputs, options = inputs_from_args(args)
    validate_inputs(inputs, options)
    ctx = Context.headless()
    result = evaluate(ctx, inputs, options, output_dir=args.output, progress=messages.progress)
    for notice in result.notices:
        messages.error(f"registration-quality: warning: {notice}")
    for line in summary_lines(result):
        sys.stdout.write(line + "\n")
    return result.exit_code


# The limits the README's demo uses: the good registration passes them, the imperfect one does not.
DEMO_LIMITS = {"min_dice": 0.8, "max_hausdorff": 5.0, "max_tre": 2.0, "max_folding": 0.1}


def demo_cases(case_dir: Path) -> list:
    """(name, EvaluationInputs, EvaluationOptions) for each registration of the sample case (case.json)."""
    spec = read_case_spec(case_dir)

    def path(key):
        return os.fspath(case_dir / spec[key]) if spec.get(key) else None

    cases = []
    for name, reg in spec.get("registrations", {}).items():
        inputs = EvaluationInputs(
            fixed=path("fixed"), moving=path("moving"), elastix_dir=os.fspath(case_dir / reg["elastix_dir"]),
            fixed_segmentation=path("fixed_segmentation") or path("fixed_labels"),
            moving_segmentation=path("moving_segmentation") or path("moving_labels"),
            fixed_landmarks=path("fixed_landmarks"), moving_landmarks=path("moving_landmarks"),
            case_id=f"sample-{name}",
        )
        cases.append((name, inputs, EvaluationOptions(**DEMO_LIMITS)))
    if not cases:
        raise BadInputError(os.fspath(case_dir / "case.json"), "lists no registrations")
    return cases


def run_demo_cli(args, messages) -> int:
    case_dir = sample_case_folder(args.case)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise BadInputError("--output", f"{os.fspath(out)} is an existing file; a folder is needed")
    done = []
    for name, inputs, options in demo_cases(case_dir):
        messages.info(f"evaluating the {name} registration of the sample case")
        result = evaluate(Context.headless(), inputs, options, output_dir=out / name, progress=messages.progress)
        sys.stdout.write(f"{name}: " + "; ".join(summary_lines(result)) + "\n")
        done.append((name, inputs, options, result.output_dir))
    folder = cohort.demo_cohort(out / "cohort", done)  # the two evaluations again, as two methods of one case
    sys.stdout.write(f"cohort (the registrations as two methods of one case): {os.fspath(folder / 'review.html')}\n")
    return 0


def batch_main(argv, slicer_module, stdout=None, stderr=None) -> int:
    """Slicer batch mode: ``Slicer --no-main-window --python-script batch_evaluate.py -- ARGS``.

    ARGS are the CLI's ``evaluate`` options (same parser, :func:`cli.add_evaluate_arguments`); the evaluation
    runs on the application's own scene with its module logics, via
    :meth:`Context.from_application`. Returns the CLI's exit status (0 pass, 1 a check failed, 2 bad input).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = ArgumentParser(prog="batch_evaluate.py")
    add_evaluate_arguments(parser)
    try:
        args = parser.parse_args(list(argv))
        inputs, options = inputs_from_args(args)
        validate_inputs(inputs, options)
        ctx = Context.from_application(slicer_module)
        result = evaluate(ctx, inputs, options, output_dir=args.output)
    except BadInputError as exc:
        err.write(f"batch_evaluate.py: error: {exc}\n")
        return 2
    for line in summary_lines(result):
        out.write(line + "\n")
    return result.exit_code


def _agreement_lines(rows) -> list:
    if not any(r.get("human_rating") for r in rows):
        return []
    result = cohort_stats.confusion(rows)
    kappa = "n/a" if result["kappa"] is None else f"{result['kappa']:.3f}"
    lines = [f"ratings: {result['rated']} rated; automated verdict agrees on {result['agreeing']} of "
             f"{result['compared']} compared (Cohen's kappa {kappa})"]
    for r in rows:
        if r.get("rating_agrees") == "no":
            name = r["case_id"] + (f" ({r['method']})" if r.get("method") else "")
            lines.append(f"DISAGREES {name}: automated {r.get('verdict')}, human {r['human_rating']}")
    return lines


def run_cohort_cli(args, messages) -> int:
    defaults = {k: getattr(args, k, None) for k in ("percentile", "profile", *checks.names())}
    defaults["snapshots"] = not getattr(args, "no_snapshots", False)
    if getattr(args, "nsd_tolerance", None):
        defaults["nsd_tolerances"] = check_tolerances(args.nsd_tolerance)
    rows = cohort.run_cohort(args.manifest, args.output, workers=args.workers, scheduler=args.scheduler,
                      defaults=defaults, progress=messages.progress, ratings=getattr(args, "ratings", None))
    failed = [r for r in rows if r["status"] == "failed"]
    failing = [r for r in rows if r.get("verdict") == "fail"]
    sys.stdout.write(f"{len(rows)} case(s): {len(rows) - len(failed)} evaluated, {len(failed)} failed to run, "
                     f"{len(failing)} failed checks; summary: {os.fspath(Path(args.output) / 'summary.html')}; "
                     f"review: {os.fspath(Path(args.output) / 'review.html')}\n")
    for r in failed:
        sys.stdout.write(f"FAILED TO RUN {_name(r)}: {r['error']}\n")
    for r in failing:
        sys.stdout.write(f"FAILED CHECKS {_name(r)}: {r['failed_checks']}\n")
    review = [r for r in rows if r.get("verdict") == "review"]
    for r in review:
        sys.stdout.write(f"NEEDS REVIEW {_name(r)}\n")
    for line in _agreement_lines(rows):
        sys.stdout.write(line + "\n")
    return 1 if failed or failing else 4 if review else 0


def _name(row) -> str:
    return row["case_id"] + (f" ({row['method']})" if row.get("method") else "")


def run_review_cli(args, messages) -> int:
    rows = cohort.run_review(args.cohort_dir, ratings=args.ratings)
    outliers = [r for r in rows if r.get("outlier_columns")]
    sys.stdout.write(f"{len(rows)} registration(s), {len(outliers)} outlier(s); review: "
                     f"{os.fspath(Path(args.cohort_dir) / 'review.html')}; summary: "
                     f"{os.fspath(Path(args.cohort_dir) / 'summary.html')}\n")
    for line in _agreement_lines(rows):
        sys.stdout.write(line + "\n")
    return 0


def run_profiles_cli(args, messages) -> int:
    """``registration-quality profiles [NAME|FILE ...]``: the built-in tolerance profiles (or the given ones)."""
    from . import profiles

    for i, spec in enumerate(args.profiles or profiles.builtin_names()):
        if i:
            sys.stdout.write("\n")
        sys.stdout.write("\n".join(profiles.describe(profiles.load(spec))) + "\n")
    return 0
