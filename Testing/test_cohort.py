"""Cohort runs: manifest parsing, a broken case does not stop the others, resume, local workers vs Dask."""

from __future__ import annotations

import csv
import json

import pytest

from RegistrationQualityLib.cohort import read_manifest, run_cohort
from RegistrationQualityLib.errors import BadInputError

from conftest import run_cli, write_shift_case
from review_helpers import page_data

NO_SNAPSHOTS = {"snapshots": False}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    (root / "data").mkdir()
    write_shift_case(root / "data")
    rows = [
        "case_id,fixed,moving,transform,fixed_segmentation,moving_segmentation,fixed_landmarks,moving_landmarks,"
        "min_dice",
        "good,data/fixed.nrrd,data/moving.nrrd,data/good.tfm,data/fixed_labels.nrrd,data/moving_labels.nrrd,"
        "data/fixed.csv,data/moving.csv,0.9",
        "unregistered,data/fixed.nrrd,data/moving.nrrd,data/identity.tfm,data/fixed_labels.nrrd,"
        "data/moving_labels.nrrd,,,0.9",
        "broken,data/fixed.nrrd,data/missing.nrrd,data/good.tfm,,,,,",
    ]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


def test_cohort_local_and_resume(cohort_dir):
    out = cohort_dir / "out-local"
    rows = run_cohort(cohort_dir / "manifest.csv", out, workers=1, defaults=NO_SNAPSHOTS)
    by_id = {r["case_id"]: r for r in rows}
    assert by_id["good"]["verdict"] == "pass" and by_id["good"]["mean_tre_after_mm"] == pytest.approx(0, abs=1e-6)
    assert by_id["unregistered"]["verdict"] == "fail" and "min_dice" in by_id["unregistered"]["failed_checks"]
    assert by_id["broken"]["status"] == "failed" and "missing.nrrd" in by_id["broken"]["error"]
    s = summary(out)
    assert list(s) == ["good", "unregistered", "broken"]
    order = [r["id"] for r in page_data(out / "summary.html")["rows"]]  # worst cases first
    assert order == ["broken", "unregistered", "good"] == [r["id"] for r in page_data(out / "review.html")["rows"]]
    assert (out / "cases" / "good" / "report.json").exists() and not (out / "cases" / "broken").exists()

    stamp = (out / "cases" / "good" / "report.json").stat().st_mtime_ns
    rows2 = run_cohort(cohort_dir / "manifest.csv", out, workers=1, defaults=NO_SNAPSHOTS)
    assert (out / "cases" / "good" / "report.json").stat().st_mtime_ns == stamp  # skipped, not recomputed
    assert {r["case_id"]: r["status"] for r in rows2} == {"good": "ok (earlier run)",
                                                          "unregistered": "ok (earlier run)", "broken": "failed"}


def _comparable(rows):
    keep = ("case_id", "status", "verdict", "min_dice_before", "min_dice_after", "mean_tre_after_mm",
            "folding_percent", "failed_checks")
    return {r["case_id"]: {k: r[k] for k in keep} for r in rows.values()}


def test_workers_and_dask_give_the_same_summary(cohort_dir):
    distributed = pytest.importorskip("distributed")
    out_w = cohort_dir / "out-workers"
    run_cohort(cohort_dir / "manifest.csv", out_w, workers=2, defaults=NO_SNAPSHOTS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        out_d = cohort_dir / "out-dask"
        run_cohort(cohort_dir / "manifest.csv", out_d, scheduler=c.scheduler_address, defaults=NO_SNAPSHOTS)
    assert _comparable(summary(out_w)) == _comparable(summary(out_d))
    assert summary(out_d)["good"]["verdict"] == "pass"


def test_cohort_cli_exit_status(cohort_dir, tmp_path):
    res = run_cli("cohort", cohort_dir / "manifest.csv", "--output", tmp_path / "o", "--no-snapshots")
    assert res.returncode == 1
    assert "FAILED TO RUN broken" in res.stdout and "FAILED CHECKS unregistered" in res.stdout
    assert res.stderr == ""
    assert json.loads((tmp_path / "o" / "cases" / "good" / "report.json").read_text())["verdict"] == "pass"


@pytest.mark.parametrize(
    "text, message",
    [
        ("case_id,fixed,moving,bogus\na,f,m,x\n", "unknown column 'bogus'"),
        ("case_id,fixed-segmentation,fixed,moving\n", "did you mean 'fixed_segmentation'"),
        ("case_id,moving\na,m\n", "missing column 'fixed'"),
        ("fixed,moving\nf,m\n", "missing column 'case_id'"),
        ("case_id,fixed,moving\na,f,m\na,f,m\n", "case_id 'a' appears twice"),
        ("case_id,fixed,moving\n../x,f,m\n", "case_id '../x' must be"),
        ("case_id,fixed,moving,min_dice\na,f,m,high\n", "column min_dice: 'high' is not a number"),
        ("case_id,fixed,moving\n", "no cases"),
        ("case_id,fixed,moving\na,,m\n", "'fixed' is empty"),
    ],
)
def test_bad_manifests(tmp_path, text, message):
    p = tmp_path / "m.csv"
    p.write_text(text)
    with pytest.raises(BadInputError, match="m.csv: .*" + message.replace("(", r"\(").replace(".", r"\.")):
        read_manifest(p)


def test_bad_manifest_cli_exit_2(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("case_id,fixed,moving,bogus\na,f,m,x\n")
    res = run_cli("cohort", p, "--output", tmp_path / "o")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "unknown column 'bogus'" in res.stderr


def test_manifest_paths_resolve_against_its_folder(tmp_path):
    p = tmp_path / "sub" / "m.csv"
    p.parent.mkdir()
    p.write_text("case_id,fixed,moving,threshold\na,f.nrrd,/abs/m.nrrd,100:200;otsu\n")
    (case,) = read_manifest(p)
    assert case["fixed"] == str(p.parent.resolve() / "f.nrrd") and case["moving"] == "/abs/m.nrrd"
    assert case["threshold"] == ["100:200", "otsu"]
