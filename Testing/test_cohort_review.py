"""Cohort review data: several methods per case (real evaluations), human ratings merged back (hand-made example),
the review command and its bad input."""

from __future__ import annotations

import csv
import re

import pytest

from RegistrationQualityLib import cohort
from RegistrationQualityLib.cohort import read_manifest, run_cohort
from RegistrationQualityLib.errors import BadInputError

from conftest import run_cli, write_shift_case
from review_helpers import page_data, write_case_files


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def html_table(section: str) -> list:
    """Rows of the first table in an HTML fragment as lists of cell texts (tags dropped)."""
    table = section[section.index("<table"):section.index("</table>")]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, flags=re.S)]
            for tr in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]


def section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    (root / "data").mkdir()
    write_shift_case(root / "data")
    common = "data/fixed.nrrd,data/moving.nrrd,{},data/fixed_labels.nrrd,data/moving_labels.nrrd,0.9"
    lines = ["case_id,method,fixed,moving,transform,fixed_segmentation,moving_segmentation,min_dice"]
    for case in ("a", "b"):
        lines.append(f"{case},good," + common.format("data/good.tfm"))
        lines.append(f"{case},none," + common.format("data/identity.tfm"))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    out = root / "out"
    rows = run_cohort(root / "manifest.csv", out, defaults={"snapshots": False})
    return root, out, rows


def test_two_method_manifest_gives_method_table_and_ranks(two_methods):
    root, out, rows = two_methods
    assert (out / "cases" / "a" / "good" / "report.json").is_file()
    assert (out / "cases" / "b" / "none" / "report.json").is_file()
    summary = read_csv(out / "summary.csv")
    assert [(r["case_id"], r["method"], r["verdict"], r["method_rank"]) for r in summary] == [
        ("a", "good", "pass", "1"), ("a", "none", "fail", "2"), ("b", "good", "pass", "1"), ("b", "none", "fail", "2")]
    page = (out / "summary.html").read_text(encoding="utf-8")
    table = html_table(section(page, "methods"))
    head = table[0]
    by_method = {r[0]: dict(zip(head, r)) for r in table[1:]}
    assert by_method["good"]["Registrations"] == "2" and by_method["good"]["pass"] == "2"
    assert by_method["none"]["fail"] == "2" and by_method["none"]["pass"] == "0"
    assert by_method["good"]["Mean rank in case"] == "1.00" and by_method["none"]["Mean rank in case"] == "2.00"
    assert by_method["good"]["Best in case"] == "2" and by_method["none"]["Best in case"] == "0"
    dice = float(summary[0]["min_dice_after"])
    assert by_method["good"][next(h for h in head if h.startswith("Lowest Dice"))].startswith(f"{dice:.3f}")
    methods = section(page, "methods")
    pairs = html_table(methods[methods.index("Paired differences"):])
    dice_pair = next(r for r in pairs if r[0].startswith("Lowest Dice"))
    # two cases, both differences positive: exact two-sided p = 2 * (1/2)^2 = 0.5
    assert dice_pair[1] == "good − none" and dice_pair[2] == "2" and dice_pair[4] == "good"
    assert dice_pair[5] == "0.5" and dice_pair[6] == "exact"
    data = page_data(out / "review.html")
    assert data["methods"] is True
    assert [(r["id"], r["m"]) for r in data["rows"]] in ([("a", "good"), ("a", "none"), ("b", "good"), ("b", "none")],
                                                         [("b", "good"), ("b", "none"), ("a", "good"), ("a", "none")])


def test_cohort_ratings_option_and_rerun_keep_the_ratings(two_methods):
    root, out, rows = two_methods
    ratings = root / "ratings.csv"
    ratings.write_text("case_id,method,rating,note,reviewer,seconds,rated_at\n"
                       "a,good,fail,shifted,ann,3,2026-01-01T10:00:00Z\n", encoding="utf-8")
    res = run_cli("cohort", root / "manifest.csv", "--output", out, "--no-snapshots", "--ratings", ratings)
    assert res.returncode == 1, res.stderr  # the 'none' registrations fail their checks
    assert "DISAGREES a (good): automated pass, human fail" in res.stdout
    again = run_cohort(root / "manifest.csv", out, defaults={"snapshots": False})  # no --ratings: kept
    by_key = {(r["case_id"], r["method"]): r for r in read_csv(out / "summary.csv")}
    assert by_key[("a", "good")]["human_rating"] == "fail" and by_key[("a", "good")]["human_note"] == "shifted"
    assert by_key[("a", "good")]["rating_agrees"] == "no" and by_key[("b", "good")]["human_rating"] == ""
    assert {r["status"] for r in again} == {"ok (earlier run)"}
    assert (out / "agreement.csv").is_file()


def test_manifest_method_column_bad_input(tmp_path):
    (tmp_path / "f.nrrd").write_text("x")
    m = tmp_path / "m.csv"
    m.write_text("case_id,method,fixed,moving\nc1,A,f.nrrd,f.nrrd\nc1,A,f.nrrd,f.nrrd\n")
    with pytest.raises(BadInputError, match="line 3: case_id 'c1' with method 'A' appears twice"):
        read_manifest(m)
    m.write_text("case_id,method,fixed,moving\nc1,,f.nrrd,f.nrrd\n")
    with pytest.raises(BadInputError, match="method '' must be letters"):
        read_manifest(m)
    m.write_text("case_id,method,fixed,moving\nc1,A,f.nrrd,f.nrrd\nc1,B,f.nrrd,f.nrrd\n")
    assert [(c["case_id"], c["method"]) for c in read_manifest(m)] == [("c1", "A"), ("c1", "B")]


def rated_cohort(folder):
    rows = []
    for case_id, verdict, status in (("c1", "pass", "ok"), ("c2", "fail", "ok"), ("c3", "pass", "ok"),
                                     ("c4", None, "failed"), ("c5", "review", "ok"), ("c6", "pass", "ok")):
        rows.append({"case_id": case_id, "status": status, "verdict": verdict,
                     "error": "bad input: x" if status == "failed" else "", "min_dice_after": 0.8,
                     "report": f"cases/{case_id}/report.html" if status == "ok" else None})
    write_case_files(folder, rows)
    cohort.write_summary(rows, folder)
    ratings = folder / "ratings.csv"
    ratings.write_text(
        "case_id,method,rating,note,reviewer,seconds,rated_at\n"
        "c1,,pass,,ann,3.5,2026-01-01T10:00:00Z\n"
        'c2,,pass,"looks fine, limit too strict",ann,12,2026-01-01T10:01:00Z\n'
        "c3,,review,,ann,4,2026-01-01T10:02:00Z\n"
        "c4,,fail,could not load,ann,1,2026-01-01T10:03:00Z\n"
        "c5,,fail,,ann,2,2026-01-01T10:04:00Z\n"
        "c5,,review,second look,ann,2,2026-01-01T10:09:00Z\n"
        "zzz,,fail,,ann,1,2026-01-01T10:05:00Z\n", encoding="utf-8")
    return ratings


def test_ratings_merge_and_confusion_table(tmp_path):
    ratings = rated_cohort(tmp_path)
    res = run_cli("review", tmp_path, "--ratings", ratings)
    assert res.returncode == 0, res.stderr
    assert "DISAGREES c2: automated fail, human pass" in res.stdout
    assert "DISAGREES c3: automated pass, human review" in res.stdout
    assert "agrees on 2 of 4 compared" in res.stdout  # c1, c5 agree; c2, c3 do not; c4 has no verdict
    summary = {r["case_id"]: r for r in read_csv(tmp_path / "summary.csv")}
    assert summary["c5"]["human_rating"] == "review" and summary["c5"]["human_note"] == "second look"  # latest wins
    assert summary["c2"]["human_note"] == "looks fine, limit too strict" and summary["c2"]["review_seconds"] == "12"
    assert [summary[c]["rating_agrees"] for c in ("c1", "c2", "c3", "c4", "c5", "c6")] == [
        "yes", "no", "no", "", "yes", ""]
    agreement = {(r["automated_verdict"], r["human_rating"]): int(r["count"])
                 for r in read_csv(tmp_path / "agreement.csv")}
    assert agreement[("pass", "pass")] == 1 and agreement[("fail", "pass")] == 1
    assert agreement[("pass", "review")] == 1 and agreement[("review", "review")] == 1
    assert agreement[("not evaluated", "fail")] == 1 and agreement[("pass", "unrated")] == 1
    assert sum(agreement.values()) == 6
    page = (tmp_path / "summary.html").read_text(encoding="utf-8")
    table = html_table(section(page, "agreement"))
    assert table[0][1:] == ["pass", "review", "fail", "unrated", "total"]
    rows = {r[0]: r[1:] for r in table[1:]}
    assert rows["pass"] == ["1", "1", "0", "1", "3"] and rows["fail"] == ["1", "0", "0", "0", "1"]
    assert rows["review"] == ["0", "1", "0", "0", "1"] and rows["not evaluated"] == ["0", "0", "1", "0", "1"]
    # kappa by hand on (auto, human) = (pass, pass) (fail, pass) (pass, review) (review, review):
    # p_o = 2/4; p_e = (2/4)(2/4) + (1/4)(2/4) + (1/4)(0) = 3/8 -> kappa = (1/2 - 3/8) / (5/8) = 0.2
    assert "Cohen's kappa 0.200" in page
    order = [r["id"] for r in page_data(tmp_path / "summary.html")["rows"]]
    assert order[:2] == ["c2", "c3"]  # disagreements first, two steps (fail vs pass) before one
    review = page_data(tmp_path / "review.html")
    assert {r["id"]: r.get("hr") for r in review["rows"]}["c2"] == "pass"

    res = run_cli("review", tmp_path)  # without --ratings the merged ratings stay
    assert res.returncode == 0 and read_csv(tmp_path / "summary.csv")[1]["human_rating"] == "pass"


def test_review_command_bad_input(tmp_path):
    ratings = rated_cohort(tmp_path)
    ratings.write_text("case_id,rating\nc1,good\n", encoding="utf-8")
    res = run_cli("review", tmp_path, "--ratings", ratings)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "ratings.csv: line 2: rating 'good' is not pass, review, fail or empty" in res.stderr
    ratings.write_text("case_id,rating\nnobody,pass\n", encoding="utf-8")
    res = run_cli("review", tmp_path, "--ratings", ratings)
    assert res.returncode == 2 and "none of its 1 rating(s) matches" in res.stderr
    res = run_cli("review", tmp_path / "cases")
    assert res.returncode == 2 and "holds no summary.csv" in res.stderr
