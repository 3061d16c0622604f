"""The bad-input matrix (issue 11): every row of ``bad_inputs.CASES`` through the CLI and through the module logic.

Bad input must give exit status 2 and exactly one stderr line naming the file/option and the problem (no traceback,
nothing on stdout), the same problem as a :class:`BadInputError` from ``evaluate()`` / ``metrics.compare_files``, and
no report left behind (the output folder is absent, or a previous report there is intact byte for byte). Empty
segments are not bad input: null + reason, exit 0 unless a requested check fails (exit 1).

CLI cost: every row goes through ``cli.main`` in ONE fresh interpreter (a driver that points file descriptors 1 and
2 at per-row files, so each row's stdout/stderr is exactly what a shell would see); a sample of rows also runs as
separate ``python -m RegistrationQualityLib`` processes and must agree with the driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from RegistrationQualityLib.errors import BadInputError

import bad_inputs
from bad_inputs import CASES, previous_report, write_case_files
from conftest import run_cli

PROG_ERROR = "registration-quality: error: "
BY_ID = {c.id: c for c in CASES}
BAD = [c for c in CASES if c.exit == 2]
SUBPROCESS_SAMPLE = ["missing-file", "corrupt-nrrd-header", "elastix-initial-transform-cycle", "percentile-above-100",
                     "empty-segment-evaluate-check"]

DRIVER = textwrap.dedent(
    """
    import json, os, sys, tempfile, traceback
    from RegistrationQualityLib.cli import main

    cases = json.load(open(sys.argv[1]))
    results = {}
    for case_id, argv in cases:
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            try:
                rc = main(argv)
            except BaseException:  # main must not raise: whatever escapes is shown as the traceback it would be
                traceback.print_exc()
                rc = -1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        results[case_id] = {"rc": rc, "stdout": out.read().decode("utf-8", "replace"),
                            "stderr": err.read().decode("utf-8", "replace")}
    json.dump(results, open(sys.argv[2], "w"))
    """
)


def _tree_digest(folder: Path, skip=("out", "api")) -> dict:
    digest = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if rel.parts[0] in skip:
            continue
        digest[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return digest


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    folder = write_case_files(tmp_path_factory.mktemp("matrix"))
    previous = {}
    for case in CASES:
        if case.previous_report:
            for root in ("out", "api"):
                previous[(root, case.id)] = previous_report(case.output_path(folder, root))
    folder_digest = _tree_digest(folder)
    return folder, previous, folder_digest


@pytest.fixture(scope="module")
def cli_results(case_dir, tmp_path_factory):
    folder = case_dir[0]
    work = tmp_path_factory.mktemp("driver")
    (work / "cases.json").write_text(json.dumps([[c.id, c.argv(folder, "out")] for c in CASES]))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(work / "cases.json"), str(work / "results.json")],
                          capture_output=True, text=True, timeout=600, cwd=work)
    assert proc.returncode == 0, f"the CLI driver died: {proc.stderr[-2000:]}"
    return json.loads((work / "results.json").read_text())


def _assert_no_report_left(case, folder, previous, root):
    out = case.output_path(folder, root)
    if case.previous_report:
        files = previous[(root, case.id)]
        assert sorted(p.name for p in out.iterdir()) == sorted(files), "previous report folder changed"
        for name, data in files.items():
            assert (out / name).read_bytes() == data, f"previous {name} changed"
    elif case.output is None:
        assert not out.exists(), f"{out} left behind"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] \
        if out.parent.is_dir() else []
    assert not leftovers, f"temporary folders left behind: {leftovers}"


def test_matrix_is_big_enough():
    assert len(BAD) >= 30 and len(BY_ID) == len(CASES)
    assert {c.command for c in BAD} == {"compare", "evaluate"}


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_cli_bad_input(case, case_dir, cli_results):
    folder, previous, _ = case_dir
    res = cli_results[case.id]
    lines = res["stderr"].splitlines()
    assert res["rc"] == 2, res
    assert len(lines) == 1, f"expected one stderr line, got: {res['stderr']!r}"
    line = lines[0]
    assert line.startswith(PROG_ERROR) and "Traceback" not in line and "internal error" not in line, line
    for fragment in case.expect + case.cli_only:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert res["stdout"] == "", res["stdout"]
    _assert_no_report_left(case, folder, previous, "out")


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_api_bad_input(case, case_dir, ctx):
    folder, previous, _ = case_dir
    nodes_before = ctx.scene.GetNumberOfNodes()
    with pytest.raises(BadInputError) as info:
        case.run_api(ctx, folder, "api")
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert ctx.scene.GetNumberOfNodes() == nodes_before, "temporary nodes left in the scene"
    _assert_no_report_left(case, folder, previous, "api")


def _empty_compare_segment(segments):
    by_label = {s["label"]: s for s in segments}
    assert sorted(by_label) == [2, 5]
    five = by_label[5]  # only in the reference: the compared segment is empty
    assert five["dice"] == 0.0 and five["compared_volume_cc"] == 0.0
    assert five["hausdorff_mm"] is None and five["hausdorff_percentile_mm"] is None
    assert five["mean_surface_distance_mm"] is None
    assert "not in" in five["status"] and "fixed_labels.nrrd" in five["status"], five["status"]
    assert by_label[2]["dice"] == 1.0 and by_label[2]["hausdorff_mm"] == 0.0


def _empty_threshold_report(report):
    (segment,) = report["segments"]
    assert segment["name"] == "threshold"
    for stage in ("before", "after"):
        assert segment[stage]["dice"] is None and segment[stage]["hausdorff_mm"] is None
        assert "empty" in segment[stage]["status"]
    (check,) = report["checks"]
    assert check["name"] == "min_dice" and check["value"] is None and check["passed"] is False
    assert report["verdict"] == "fail"


def test_empty_segment_compare_is_not_bad_input(case_dir, cli_results, ctx):
    folder = case_dir[0]
    res = cli_results["empty-segment-compare"]
    assert res["rc"] == 0 and res["stderr"] == "", res
    _empty_compare_segment(json.loads(res["stdout"])["segments"])
    _empty_compare_segment(BY_ID["empty-segment-compare"].run_api(ctx, folder, "api")["segments"])


def test_empty_segment_fails_a_requested_check(case_dir, cli_results, ctx):
    folder = case_dir[0]
    case = BY_ID["empty-segment-evaluate-check"]
    res = cli_results[case.id]
    assert res["rc"] == 1 and res["stderr"] == "", res
    assert "FAILED min_dice [threshold]: n/a" in res["stdout"]
    _empty_threshold_report(json.loads((case.output_path(folder, "out") / "report.json").read_text()))
    result = case.run_api(ctx, folder, "api")
    assert result.exit_code == 1
    _empty_threshold_report(result.report)


def _nonfinite_report(report, fragments):
    assert report["verdict"] == "no checks"
    assert any(all(f in w for f in fragments) for w in report["warnings"]), report["warnings"]
    for stage in ("before", "after"):
        sim = report["similarity"][stage]
        assert all(np.isfinite(sim[k]) for k in ("ncc", "nmi", "mse", "mae")), sim
    # the registration is exact: with the missing voxels left out the intensities correlate (not ~0 as with inf)
    assert report["similarity"]["after"]["ncc"] > 0.99
    assert report["similarity"]["after"]["mse"] < 1e6


@pytest.mark.parametrize("case_id", ["nan-voxels-in-image", "inf-voxels-in-image"])
def test_nonfinite_intensities_are_missing_data(case_id, case_dir, cli_results, ctx):
    folder = case_dir[0]
    case = BY_ID[case_id]
    res = cli_results[case_id]
    assert res["rc"] == 0 and res["stderr"] == "", res
    _nonfinite_report(json.loads((case.output_path(folder, "out") / "report.json").read_text(encoding="utf-8")),
                      case.expect)
    _nonfinite_report(case.run_api(ctx, folder, "api").report, case.expect)


@pytest.mark.parametrize("case_id", SUBPROCESS_SAMPLE)
def test_console_script_agrees_with_driver(case_id, case_dir, cli_results, tmp_path):
    """The real ``python -m RegistrationQualityLib`` process gives the same status and stderr as the driver."""
    folder = case_dir[0]
    case = BY_ID[case_id]
    out_root = f"sub-{case_id}"
    res = run_cli(*case.argv(folder, out_root), cwd=tmp_path)
    expected = cli_results[case_id]
    assert res.returncode == expected["rc"]
    assert res.stderr == expected["stderr"].replace(os.fspath(case.output_path(folder, "out")),
                                                    os.fspath(case.output_path(folder, out_root)))


def test_matrix_left_every_input_untouched(case_dir, cli_results):
    """Runs last in this module: no row modified, added or removed a file outside the output folders."""
    folder, _, digest = case_dir
    assert _tree_digest(folder, skip=("out", "api") + tuple(f"sub-{c}" for c in SUBPROCESS_SAMPLE)) == digest


def test_table_documented():
    """docs/bad-input.md lists every row of the matrix."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "bad-input.md").read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"rows missing from docs/bad-input.md: {missing}"
    assert bad_inputs.__doc__
