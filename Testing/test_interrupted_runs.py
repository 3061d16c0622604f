"""Interrupted and repeated runs (issue 11): the report folder is written atomically, a killed run never leaves a
report that looks complete, a re-run into the same --output replaces the old report cleanly, and a cohort that was
killed or had a failing case resumes without recomputing the cases it finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from RegistrationQualityLib import cohort, report
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

import bad_inputs

# A CLI run that pauses inside write_report, after metrics.csv went into the temporary folder: the test kills it there.
PAUSING_CLI = textwrap.dedent(
    """
    import os, sys, time
    from RegistrationQualityLib.report import folder

    write_metrics = folder._write_metrics_csv

    def pause_after(rows, path):
        write_metrics(rows, path)
        with open(os.environ["RQ_TEST_SIGNAL"], "w") as f:
            f.write(str(path))
        time.sleep(300)

    folder._write_metrics_csv = pause_after
    from RegistrationQualityLib.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture
def case(tmp_path):
    return bad_inputs.write_good_case(tmp_path / "case")


def _evaluate_args(case, out):
    return ["evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
            case / "good.tfm", "--fixed-landmarks", case / "fixed.csv", "--moving-landmarks", case / "moving.csv",
            "--max-tre", "0.5", "--no-snapshots", "--output", out]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden_siblings(out: Path) -> list:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _run_evaluate(ctx, case, out, **options):
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "good.tfm",
                              fixed_segmentation=case / "fixed_labels.nrrd",
                              moving_segmentation=case / "moving_labels.nrrd")
    return evaluate(ctx, inputs, EvaluationOptions(**options), output_dir=out)


def test_killed_while_writing_leaves_previous_report_intact_and_rerun_replaces_it(ctx, case, tmp_path):
    out = tmp_path / "report"
    first = _run_evaluate(ctx, case, out, min_dice=0.9, snapshots=False)
    assert first.verdict == "pass"
    previous = _snapshot(out)
    assert {"report.json", "report.html", "metrics.csv"} <= set(previous)

    signal_file = tmp_path / "writing"
    env = dict(os.environ, RQ_TEST_SIGNAL=str(signal_file))
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_CLI, *map(str, _evaluate_args(case, out))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not signal_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert signal_file.exists(), f"the run never reached report writing: {proc.stderr.read()!r}"
        partial = Path(signal_file.read_text()).parent
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # killed inside write_report: the new report was half written in a hidden temporary folder...
    assert partial.parent == out.parent and partial.name.startswith(".report.tmp-")
    assert (partial / "metrics.csv").is_file() and not (partial / "report.json").exists()
    # ...and the previous report is untouched, byte for byte
    assert _snapshot(out) == previous

    # a re-run into the same --output replaces the old report cleanly (landmarks now, no segments)
    from conftest import run_cli

    res = run_cli(*_evaluate_args(case, out), cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    new = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert new["verdict"] == "pass" and new["segments"] == [] and new["landmarks"]["after"]["max_mm"] < 1e-6
    assert sorted(_snapshot(out)) == ["metrics.csv", "report.html", "report.json"]
    assert "dice" not in (out / "metrics.csv").read_text(encoding="utf-8")  # nothing of the old report survives
    # the killed run's temporary stays hidden (never taken for a report); the re-run left no temporaries of its own
    assert _hidden_siblings(out) == [partial.name]


def test_failure_inside_report_writing_keeps_previous_report(ctx, case, tmp_path, monkeypatch):
    out = tmp_path / "report"
    _run_evaluate(ctx, case, out, snapshots=False)
    previous = _snapshot(out)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.folder, "render_html", broken)
    with pytest.raises(OSError, match="No space left"):
        _run_evaluate(ctx, case, out, min_dice=0.5, snapshots=False)
    assert _snapshot(out) == previous
    assert _hidden_siblings(out) == []


def test_rerun_replaces_every_file_of_the_old_report(ctx, case, tmp_path):
    """The old report's extra files (snapshots, anything added to the folder) do not survive a re-run."""
    from RegistrationQualityLib.rendering import rendering_available

    out = tmp_path / "report"
    snapshots = rendering_available()[0]
    first = _run_evaluate(ctx, case, out, snapshots=snapshots)
    (out / "my-notes.txt").write_text("added by hand after the run\n")
    if snapshots:
        assert first.report["snapshots"] and (out / "snapshots").is_dir()
    second = _run_evaluate(ctx, case, out, min_dice=0.99, snapshots=False)
    assert second.verdict == "pass" and second.report["segments"][0]["after"]["dice"] == 1.0  # exact translation
    files = sorted(_snapshot(out))
    assert files == ["metrics.csv", "report.html", "report.json"], files
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["options"]["min_dice"] == 0.99 and saved["snapshots"] == []
    assert _hidden_siblings(out) == []


# -- cohorts -------------------------------------------------------------------------------------------------------
def _write_cohort(tmp_path) -> Path:
    case = bad_inputs.write_good_case(tmp_path / "data")
    lines = ["case_id,fixed,moving,transform,fixed_segmentation,moving_segmentation,min_dice"]
    for cid in ("c1", "c2", "c3"):
        lines.append(f"{cid},data/fixed.nrrd,data/moving.nrrd,data/good.tfm,data/fixed_labels.nrrd,"
                     f"data/moving_labels.nrrd,0.9")
    assert case.is_dir()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _count_evaluations(monkeypatch, fail_on=None, error=None):
    """Wrap evaluate() (looked up by cohort.run_case at call time); returns the list of evaluated case ids."""
    import RegistrationQualityLib.evaluate as ev

    real = ev.evaluate
    seen = []

    def counting(ctx, inputs, options=None, output_dir=None, **kw):
        seen.append(inputs.case_id)
        if inputs.case_id == fail_on:
            raise error
        return real(ctx, inputs, EvaluationOptions(**{**vars(options), "snapshots": False}), output_dir, **kw)

    monkeypatch.setattr(ev, "evaluate", counting)
    return seen


def _report_mtimes(out) -> dict:
    return {cid: (out / "cases" / cid / "report.json").stat().st_mtime_ns for cid in ("c1", "c2", "c3")
            if (out / "cases" / cid / "report.json").exists()}


def test_cohort_killed_mid_way_resumes_and_skips_finished_cases(tmp_path, monkeypatch):
    manifest = _write_cohort(tmp_path)
    out = tmp_path / "cohort"
    seen = _count_evaluations(monkeypatch, fail_on="c2", error=KeyboardInterrupt())  # Ctrl-C / kill during c2
    with pytest.raises(KeyboardInterrupt):
        cohort.run_cohort(manifest, out)
    assert seen == ["c1", "c2"]
    assert cohort.is_finished(out, "c1") and not cohort.is_finished(out, "c2")
    assert not (out / "cases" / "c2").exists() and not (out / "summary.csv").exists()
    mtimes = _report_mtimes(out)
    assert list(mtimes) == ["c1"]

    monkeypatch.undo()
    seen = _count_evaluations(monkeypatch)
    rows = cohort.run_cohort(manifest, out)
    assert seen == ["c2", "c3"]  # c1 is not recomputed
    assert [r["status"] for r in rows] == ["ok (earlier run)", "ok", "ok"]
    assert _report_mtimes(out)["c1"] == mtimes["c1"]
    assert all(r["verdict"] == "pass" and r["min_dice_after"] == pytest.approx(1.0) for r in rows)
    summary = (out / "summary.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in summary] == ["case_id", "c1", "c2", "c3"]


def test_cohort_retries_only_the_failed_case(tmp_path, monkeypatch):
    manifest = _write_cohort(tmp_path)
    out = tmp_path / "cohort"
    seen = _count_evaluations(monkeypatch, fail_on="c2", error=MemoryError("injected"))
    rows = cohort.run_cohort(manifest, out)
    assert seen == ["c1", "c2", "c3"]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "MemoryError: injected" in rows[1]["error"]
    assert (out / "cases" / "c2.error.json").is_file()
    mtimes = _report_mtimes(out)
    assert sorted(mtimes) == ["c1", "c3"]

    monkeypatch.undo()
    seen = _count_evaluations(monkeypatch)
    rows = cohort.run_cohort(manifest, out)
    assert seen == ["c2"]
    assert [r["status"] for r in rows] == ["ok (earlier run)", "ok", "ok (earlier run)"]
    assert {k: v for k, v in _report_mtimes(out).items() if k != "c2"} == mtimes
    assert not (out / "cases" / "c2.error.json").exists()
    assert [r["case_id"] for r in rows] == ["c1", "c2", "c3"]


@pytest.mark.parametrize("stage, after_checks", [("load", 1), ("snapshots", 3)])
def test_cancel_inside_a_stage_stops_there(ctx, case, tmp_path, monkeypatch, stage, after_checks):
    """Cancel is honoured between the steps of a stage (each input loaded, each comparison, each picture), not only
    between stages: the run stops in that stage with InterruptedError (a cancelled snapshot stage is not reported
    as a rendering failure), writes no report and leaves no snapshot folder behind."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    inputs = EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "good.tfm",
                              fixed_segmentation=case / "fixed_labels.nrrd",
                              moving_segmentation=case / "moving_labels.nrrd")
    state = {"stage": None, "checks": 0, "stopped_in": None}

    def progress(text, fraction):
        state["stage"] = text.split(":")[0]

    def cancel():
        if state["stage"] == stage:
            state["checks"] += 1
            if state["checks"] > after_checks:  # the stage's own call, then ``after_checks`` checks inside it
                state["stopped_in"] = state["stage"]
                return True
        return False

    out = tmp_path / "report"
    with pytest.raises(InterruptedError):
        evaluate(ctx, inputs, EvaluationOptions(), output_dir=out, progress=progress, cancel=cancel)
    assert state["stopped_in"] == stage and state["stage"] == stage
    assert not out.exists() and _hidden_siblings(out) == []
    assert list((tmp_path / "tmp").iterdir()) == []  # no rq-snapshots-* folder left
