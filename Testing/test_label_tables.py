"""Label-name tables (``--labels``): Slicer colour tables, ITK-SNAP label descriptions, CSV; names reach the report."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from RegistrationQualityLib import io
from RegistrationQualityLib.errors import BadInputError

from conftest import run_cli, write_shift_case

SLICER_CTBL = """# Color table file /tmp/GenericAnatomyColors.ctbl
# 3 values
0 Background 0 0 0 0
3 white_matter 255 244 209 255
7 caudate 30 111 85 255
"""

ITKSNAP = """################################################
# ITK-SnAP Label Description File
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
################################################
    0     0    0    0        0  0  0    "Clear Label"
    3   255    0    0        1  1  1    "white matter"
    7     0  255    0        1  1  1    "Caudate nucleus (left)"
"""

CSV_HEADER = "LabelValue,Name,Color_R,Color_G,Color_B,Color_A\n0,background,0,0,0,0\n3,white matter,1,2,3,255\n" \
             "7,caudate,4,5,6,255\n"
CSV_PLAIN = "3, white matter\n7,caudate\n"


@pytest.mark.parametrize("name, text, expected", [
    ("colors.ctbl", SLICER_CTBL, {3: "white_matter", 7: "caudate"}),
    ("colors.txt", SLICER_CTBL, {3: "white_matter", 7: "caudate"}),
    ("labels.txt", ITKSNAP, {3: "white matter", 7: "Caudate nucleus (left)"}),
    ("labels.csv", CSV_HEADER, {3: "white matter", 7: "caudate"}),
    ("labels.csv", CSV_PLAIN, {3: "white matter", 7: "caudate"}),
])
def test_each_format_parses_to_its_names(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert io.read_label_table(path) == expected


@pytest.mark.parametrize("text, problem", [
    ("3 wm 1 2 3 255\n3 gm 1 2 3 255\n", "line 2: label value 3 appears twice"),
    ("x wm 1 2 3 255\n", "line 1: label value 'x' is not an integer"),
    ("-1 wm 1 2 3 255\n", "is not an integer"),
    ("3\n", "line 1: expected Slicer colour table"),
    ('    3 255 0 0 1 1 "wm"\n', "line 1: expected ITK-SNAP"),
    ("value,colour\n3,red\n", "line 1: CSV header needs a value and a name column"),
    ("3,\n", "line 1: empty label name"),
    ("0 Background 0 0 0 0\n", "no labels other than 0"),
    ("# only comments\n", "no labels"),
])
def test_bad_tables_are_one_line_errors(tmp_path, text, problem):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError) as err:
        io.read_label_table(path)
    msg = str(err.value)
    assert msg.startswith(str(path) + ": ") and problem in msg and "\n" not in msg


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                   HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from([SLICER_CTBL, ITKSNAP, CSV_HEADER, CSV_PLAIN]), cut=st.floats(0, 1),
       junk=st.text(max_size=8), where=st.floats(0, 1))
def test_mutated_tables_parse_or_raise_bad_input(tmp_path, seed, cut, junk, where):
    text = seed[: int(cut * len(seed))] if cut < 0.5 else seed
    i = int(where * len(text))
    text = text[:i] + junk + text[i:]
    path = tmp_path / "fuzz.txt"
    path.write_text(text, encoding="utf-8")
    try:
        table = io.read_label_table(path)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert table and all(isinstance(k, int) and k > 0 and isinstance(v, str) and v for k, v in table.items())


def test_labels_name_labelmap_segments_in_the_report(tmp_path):
    case = write_shift_case(tmp_path)
    (case / "names.ctbl").write_text("0 Background 0 0 0 0\n3 tumour 255 0 0 255\n", encoding="utf-8")
    out = tmp_path / "report"
    r = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                case / "good.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                case / "moving_labels.nrrd", "--labels", case / "names.ctbl", "--no-snapshots", "--output", out)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert [e["name"] for e in report["segments"]] == ["tumour"]
    assert report["segments"][0]["after"]["dice"] > 0.9
    assert report["inputs"]["labels"] == [str(case / "names.ctbl")]
    html = (out / "report.html").read_text()
    assert "tumour" in html
    r = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                case / "good.tfm", "--labels", case / "names.ctbl", "--no-snapshots", "--output", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--labels" in r.stderr


def test_cohort_manifest_columns_for_labels_cleanup_and_modality(tmp_path):
    case = write_shift_case(tmp_path)
    (case / "names.csv").write_text("value,name\n3,tumour\n", encoding="utf-8")
    (case / "m.csv").write_text(
        "case_id,fixed,moving,transform,fixed_segmentation,moving_segmentation,labels,threshold,fill_holes,"
        "largest_component,min_island_cc,same_modality\n"
        "c1,fixed.nrrd,moving.nrrd,good.tfm,fixed_labels.nrrd,moving_labels.nrrd,names.csv,otsu,no,false,0.5,yes\n",
        encoding="utf-8")
    r = run_cli("cohort", case / "m.csv", "--output", tmp_path / "out", "--no-snapshots")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "out" / "cases" / "c1" / "report.json").read_text())
    assert [e["name"] for e in report["segments"]] == ["tumour", "threshold"]
    assert report["options"]["threshold_cleanup"] == {"fill_holes": False, "largest_component": False,
                                                      "min_island_cc": 0.5, "closing_mm": 0.0}
    assert report["options"]["same_modality"] is True
    (case / "bad.csv").write_text("case_id,fixed,moving,transform,fill_holes\nc1,fixed.nrrd,moving.nrrd,good.tfm,"
                                  "maybe\n", encoding="utf-8")
    r = run_cli("cohort", case / "bad.csv", "--output", tmp_path / "out2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "column fill_holes: 'maybe' is not true/false" in r.stderr
