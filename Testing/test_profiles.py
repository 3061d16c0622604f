"""Tolerance profiles (profiles.py): strict files, pass / review / fail bands on both sides of each limit,
per-segment and data-dependent limits, flags over profiles, the built-in profiles and the CLI's exit status."""

from __future__ import annotations

import json
import re
import sys

import pytest

from RegistrationQualityLib import checks, profiles
from RegistrationQualityLib.errors import BadInputError

from conftest import run_cli, write_shift_case


def _report(dice=0.85, hd=3.0, tre=1.5, names=("liver",)):
    return {"segments": [{"name": n, "after": {"dice": dice, "hausdorff_percentile_mm": hd,
                                               "mean_surface_distance_mm": 1.0, "hausdorff_mm": 6.0}} for n in names],
            "landmarks": {"after": {"mean_mm": tre, "max_mm": 2 * tre}, "points": []},
            "deformation": {"jacobian": {"folding_percent": 0.0}}}


def _profile(checks_entry, **top):
    return profiles.parse({"source": "test", "checks": checks_entry, **top}, "test.json")


@pytest.mark.parametrize("value, state", [(0.91, "pass"), (0.9, "pass"), (0.8999, "review"), (0.8, "review"),
                                          (0.7999, "fail"), (None, "fail")])
def test_dice_band_both_sides(value, state):
    limits = profiles.resolve(_profile({"min_dice": {"pass": 0.9, "review": 0.8}}), {}, {})
    (record,) = checks.run_checks(_report(dice=value), limits)
    assert record["status"] == state and record["passed"] == (state == "pass")
    assert record["limit"] == 0.9 and record["review_limit"] == 0.8


@pytest.mark.parametrize("value, state", [(1.9, "pass"), (2.0, "pass"), (2.01, "review"), (3.0, "review"),
                                          (3.01, "fail")])
def test_distance_band_both_sides(value, state):
    limits = profiles.resolve(_profile({"max_tre": {"pass": 2.0, "review": 3.0}}), {}, {})
    (record,) = checks.run_checks(_report(tre=value), limits)
    assert record["status"] == state


def test_verdicts_and_exit_codes():
    assert checks.verdict([{"status": "pass"}, {"status": "review"}]) == "review"
    assert checks.verdict([{"status": "review"}, {"status": "fail"}]) == "fail"
    assert checks.verdict([{"status": "pass"}]) == "pass" and checks.verdict([]) == "no checks"
    assert checks.EXIT_CODES == {"pass": 0, "no checks": 0, "fail": 1, "review": 4}


def test_per_segment_limits_exact_name_beats_glob():
    p = _profile({"min_dice": {"pass": 0.9, "segments": {"Parotid*": {"pass": 0.7}, "Parotid_L": {"pass": 0.8}}}})
    limits = profiles.resolve(p, {}, {})
    records = {r["subject"]: r for r in checks.run_checks(_report(dice=0.75, names=("Parotid_L", "Parotid_R",
                                                                                     "Liver")), limits)}
    assert records["Parotid_L"]["limit"] == 0.8 and records["Parotid_L"]["status"] == "fail"
    assert records["Parotid_R"]["limit"] == 0.7 and records["Parotid_R"]["status"] == "pass"
    assert records["Liver"]["limit"] == 0.9
    only = profiles.resolve(_profile({"min_dice": {"segments": {"Liver": {"pass": 0.5}}}}), {}, {})
    assert [r["subject"] for r in checks.run_checks(_report(names=("Liver", "Kidney")), only)] == ["Liver"]


def test_data_dependent_limit_is_computed_and_shown():
    p = _profile({"max_tre": {"pass": "max_voxel", "review": "2*max_voxel"}})
    limits = profiles.resolve(p, {"max_voxel": 3.0}, {})
    (record,) = checks.run_checks(_report(tre=4.0), limits)
    assert record["limit"] == 3.0 and record["review_limit"] == 6.0 and record["status"] == "review"
    assert "max_voxel = 3" in record["basis"] and "largest voxel dimension" in record["basis"]


def test_flag_overrides_the_profile_limit():
    p = _profile({"min_dice": {"pass": 0.9, "review": 0.8, "segments": {"liver": {"pass": 0.95}}}})
    limits = profiles.resolve(p, {}, {"min_dice": 0.5})
    (record,) = checks.run_checks(_report(dice=0.6), limits)
    assert record["limit"] == 0.5 and record["review_limit"] is None and record["status"] == "pass"
    assert record["source"] == "command line"


@pytest.mark.parametrize("data, message", [
    ({"source": "s", "checks": {"min_dice": {"pass": 0.9}}, "colour": 1}, "unknown key 'colour'"),
    ({"checks": {"min_dice": {"pass": 0.9}}}, "source: missing"),
    ({"source": "s", "checks": {"max_dice": {"pass": 0.9}}}, "checks.max_dice: unknown check"),
    ({"source": "s", "checks": {"min_dice": {"pass": 0.9, "warn": 0.8}}}, "checks.min_dice: unknown key 'warn'"),
    ({"source": "s", "checks": {"min_dice": {"pass": "0.9x"}}}, "checks.min_dice.pass: '0.9x' is not a limit"),
    ({"source": "s", "checks": {"min_dice": {"pass": -1}}}, "checks.min_dice.pass: -1 is not a valid limit"),
    ({"source": "s", "checks": {"min_dice": {"pass": True}}}, "checks.min_dice.pass: True is not a limit"),
    ({"source": "s", "checks": {"max_tre": {"pass": "2*max_pixel"}}}, "'2*max_pixel' is not a limit"),
    ({"source": "s", "checks": {"min_dice": {"pass": 0.8, "review": 0.9}}}, "review limit 0.9 must be below"),
    ({"source": "s", "checks": {"max_tre": {"pass": 3, "review": 2}}}, "review limit 2 must be above"),
    ({"source": "s", "checks": {"min_dice": {"review": 0.8}}}, "'review' needs a 'pass' limit"),
    ({"source": "s", "checks": {"min_dice": {"source": "x"}}}, "checks.min_dice: 'pass' is missing"),
    ({"source": "s", "checks": {"min_dice": {"pass": 0.9, "segments": {"Par[otid": {"pass": 0.8}}}}},
     "segment selector 'Par[otid' has an unbalanced"),
    ({"source": "s", "checks": {"min_dice": {"pass": 0.9, "segments": {"": {"pass": 0.8}}}}},
     "segment selector '' must be a segment name"),
    ({"source": "s", "checks": {"max_tre": {"pass": 2, "segments": {"a": {"pass": 1}}}}},
     "max_tre is not a per-segment check"),
    ({"source": "s", "checks": {"min_dice": {"pass": 0.9, "segments": {"a": {"pass": 0.8, "x": 1}}}}},
     "checks.min_dice.segments.a: unknown key 'x'"),
    ({"source": "s", "checks": {}}, "checks: must be an object naming at least one check"),
])
def test_broken_profile_names_the_file_and_the_entry(tmp_path, data, message):
    path = tmp_path / "site.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=re.escape(message)) as err:
        profiles.load(path)
    assert str(path) in str(err.value)


def test_broken_profile_is_exit_2_with_one_line(tmp_path):
    (tmp_path / "case").mkdir()
    case = write_shift_case(tmp_path / "case")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": "s", "checks": {"min_dice": {"pass": 0.9, "colour": "red"}}}))
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--profile", bad, "--no-snapshots", "--output", tmp_path / "out")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert str(bad) in res.stderr and "unknown key 'colour'" in res.stderr
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--profile", "no-such-profile", "--output", tmp_path / "out")
    assert res.returncode == 2 and "--profile: 'no-such-profile' is neither a built-in profile" in res.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TOML profiles need tomllib (3.11+) or tomli")
def test_toml_profile(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('source = "our commissioning"\n[checks.min_dice]\npass = 0.9\nreview = 0.8\n'
                    '[checks.min_dice.segments."Parotid*"]\npass = 0.7\n')
    p = profiles.load(path)
    assert p.name == "site" and p.checks[0].band.review.number == 0.8 and p.checks[0].segments[0][0] == "Parotid*"


@pytest.mark.parametrize("name", profiles.builtin_names())
def test_builtin_profiles_parse_and_cite_a_source(name):
    p = profiles.load(name)
    assert p.name == name and p.source and p.checks
    for pc in p.checks:
        assert pc.band.source  # every limit says where it comes from (or that it is a site preset chosen here)


def test_builtins_are_the_issue_list():
    assert set(profiles.builtin_names()) == {"tg132", "head-and-neck", "brain-srs", "thorax", "pelvis"}
    tg = {pc.name: pc.band for pc in profiles.load("tg132").checks}
    assert tg["max_tre"].pass_.term == "max_voxel" and tg["min_dice"].pass_.number == 0.9
    assert tg["min_dice"].review.number == 0.8 and tg["max_folding"].pass_.number == 0.0
    assert "Brock" in profiles.load("tg132").source


def test_profiles_command_lists_them():
    res = run_cli("profiles")
    assert res.returncode == 0, res.stderr
    for name in profiles.builtin_names():
        assert f"{name}:" in res.stdout
    assert "pass ≤ max_voxel mm" in res.stdout and "Brock" in res.stdout


def test_review_verdict_from_the_cli_exit_4_and_report(tmp_path):
    (tmp_path / "case").mkdir()
    case = write_shift_case(tmp_path / "case")
    site = tmp_path / "site.json"
    # the good translation: TRE after ~0 mm, Dice after > 0.9; a Dice band it cannot pass but can review
    site.write_text(json.dumps({"profile": "site", "source": "test preset", "checks": {
        "min_dice": {"pass": 0.999, "review": 0.5}, "max_tre": {"pass": "max_voxel"}}}))
    args = ["evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
            case / "good.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
            case / "moving_labels.nrrd", "--fixed-landmarks", case / "fixed.csv", "--moving-landmarks",
            case / "moving.csv", "--profile", site, "--no-snapshots", "--output", tmp_path / "out"]
    res = run_cli(*args)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "verdict: review" in res.stdout and "REVIEW min_dice" in res.stdout
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["verdict"] == "review" and rep["profile"]["name"] == "site"
    assert rep["profile"]["data"]["max_voxel_mm"] == 3.0  # the fixed image's 1.5 x 1.5 x 3 mm voxels
    tre = next(c for c in rep["checks"] if c["name"] == "max_tre")
    assert tre["limit"] == 3.0 and tre["status"] == "pass"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "⚠ REVIEW" in page and 'class="banner review' in page and "test preset" in page
    assert '<span class="badge review">⚠ review</span>' in page
    # a flag replaces the profile's limit: the same run passes
    res = run_cli(*args[:-2], "--min-dice", "0.5", "--output", tmp_path / "out2")
    assert res.returncode == 0, res.stdout + res.stderr
    # a profile check without its inputs is skipped with a warning (no landmarks given)
    res = run_cli(*[a for a in args[:-2] if a not in (case / "fixed.csv", case / "moving.csv",
                                                     "--fixed-landmarks", "--moving-landmarks")],
                  "--output", tmp_path / "out3")
    rep = json.loads((tmp_path / "out3" / "report.json").read_text())
    assert not any(c["name"] == "max_tre" for c in rep["checks"])
    assert any("max_tre not checked" in w for w in rep["warnings"])
