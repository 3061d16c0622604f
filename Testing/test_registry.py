"""The measure and check registries (measures.py, checks.py): complete entries, honest check names, and that
adding a measure is one registry entry + its function (it then shows up everywhere with no other edit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from RegistrationQualityLib import checks, cli, measures, metrics, panel
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate
from RegistrationQualityLib.report import metrics_rows, render_html

from conftest import SHIFT_LPS, run_cli, write_shift_case


# ---------------------------------------------------------------------------------------------------
# Every entry is complete, and every entry is computed by the function it names
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", measures.MEASURES, ids=lambda m: m.key)
def test_every_measure_has_definition_unit_title_and_a_computation(m):
    assert m.title and m.short and m.definition and isinstance(m.unit, str)
    assert m.applies_to in measures.APPLIES_TO and m.better in ("higher", "lower", None)
    if m.compute is None:  # computed with others in one pass: the named function exists
        import importlib

        module, _, name = m.computed_by.partition(".")
        assert hasattr(importlib.import_module(f"RegistrationQualityLib.{module}"), name), m.computed_by
    assert len([x for x in measures.MEASURES if x.key == m.key]) == 1


def _pair(reference, compared, spacing=(1.0, 1.0, 1.0), percentile=95.0):
    """A PairMeasurement of two masks on one grid (the product's own measurement step)."""
    a, b = np.asarray(reference, bool), np.asarray(compared, bool)
    m = metrics.PairMeasurement(int(a.sum()), int(b.sum()), int((a & b).sum()), 0.001, a.sum() * 0.001,
                                b.sum() * 0.001, percentile=percentile)
    m.to_compared, m.to_reference = metrics.directed_surface_distances(a, b, spacing)
    return m


def test_segment_measures_compute_analytic_values():
    """Two 6-voxel cubes, the second shifted by one voxel along x: known overlap and distances."""
    a = np.zeros((10, 10, 11), bool)
    b = np.zeros((10, 10, 11), bool)
    a[2:8, 2:8, 2:8] = True
    b[2:8, 2:8, 3:9] = True
    m = _pair(a, b)
    values = measures.segment_values(m)
    assert values["dice"] == pytest.approx(2 * 180 / 432)
    assert values["jaccard"] == pytest.approx(180 / 252)
    # boundary-to-boundary: the shifted faces are 1 mm apart, every other boundary voxel has a partner at 0
    assert values["hausdorff_mm"] == pytest.approx(1.0)
    assert values["false_positive_cc"] == pytest.approx(36 * 0.001)
    assert values["volume_difference_cc"] == pytest.approx(0.0)
    assert values["directed"]["reference_to_compared"]["max_mm"] == pytest.approx(1.0)
    # every segment measure is in the record, at its field
    for measure in measures.of("segment"):
        if measure.compute is not None:
            assert measure.field.split(".")[0] in values


def test_landmark_measures_compute_analytic_values():
    v = [3.0, 4.0, 5.0, None, float("nan")]
    stats = measures.landmark_statistics(v)
    assert stats == {"mean_mm": 4.0, "std_mm": pytest.approx(np.sqrt(2 / 3)), "median_mm": 4.0,
                     "p95_mm": pytest.approx(4.9), "max_mm": 5.0, "worst30_mean_mm": 5.0, "count": 3}
    assert measures.landmark_statistics([]) == {"mean_mm": None, "std_mm": None, "median_mm": None, "p95_mm": None,
                                                "max_mm": None, "worst30_mean_mm": None, "count": 0}


def test_deformation_and_similarity_measures_are_produced_by_the_functions_they_name():
    from RegistrationQualityLib import deformation, similarity

    jac = np.full((4, 5, 6), 1.0, np.float32)
    jac[0, 0, :2] = -0.5
    u = np.zeros((4, 5, 6, 3), np.float32)
    u[..., 0] = 2.0
    record = {"jacobian": deformation.jacobian_statistics(jac), "displacement_mm": deformation.displacement_statistics(u)}
    for m in measures.of("deformation"):
        if m.computed_by.startswith("deformation."):
            assert m.value_in(record) is not None, m.key
    assert measures.get("jacobian_folding_percent").value_in(record) == pytest.approx(100 * 2 / 120)
    assert measures.get("displacement_max_mm").value_in(record) == pytest.approx(2.0)

    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 7, 8)).astype(np.float32)
    fixed, moving = sitk.GetImageFromArray(a), sitk.GetImageFromArray(2 * a + 1)
    stats = similarity.similarity(fixed, moving)
    for m in measures.of("similarity"):
        if m.computed_by == "similarity.similarity":
            assert m.value_in(stats) is not None, m.key
    assert measures.get("ncc").value_in(stats) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------
# Honest check names: each check gates what it says
# ---------------------------------------------------------------------------------------------------
def _segment_report(**after):
    base = {"dice": 0.9, "hausdorff_percentile_mm": 3.0, "hausdorff_mm": 9.0, "mean_surface_distance_mm": 1.2}
    base.update(after)
    return {"segments": [{"name": "liver", "label": 1, "before": {}, "after": base}],
            "landmarks": {"before": {"mean_mm": 5.0, "max_mm": 8.0}, "after": {"mean_mm": 1.5, "max_mm": 4.0}},
            "deformation": {"jacobian": {"folding_percent": 0.0}}}


@pytest.mark.parametrize("name, value", [("min_dice", 0.9), ("max_hausdorff", 3.0), ("max_hausdorff_max", 9.0),
                                         ("max_mean_distance", 1.2), ("max_tre", 1.5), ("max_tre_point", 4.0),
                                         ("max_folding", 0.0)])
def test_each_check_gates_the_value_it_names(name, value):
    check = checks.get(name)
    (record,) = checks.run_checks(_segment_report(), {name: 1.0})
    assert record["value"] == value and record["measure"] == check.measure and record["name"] == name
    # just inside / just outside the limit
    inside = value + (-1e-9 if check.comparison == ">=" else 1e-9)
    outside = value + (1e-6 if check.comparison == ">=" else -1e-6)
    assert checks.run_checks(_segment_report(), {name: inside})[0]["passed"]
    assert not checks.run_checks(_segment_report(), {name: outside})[0]["passed"]


def test_check_titles_and_help_say_what_they_gate():
    assert checks.get("max_hausdorff").title_for(95) == "HD95 (95th percentile Hausdorff)"
    assert checks.get("max_hausdorff").title_for(90) == "HD90 (90th percentile Hausdorff)"
    assert checks.get("max_hausdorff_max").title_for(95) == "maximum Hausdorff"
    assert checks.get("max_tre").title_for() == "mean TRE"
    help_text = {c.flag: c.help_text() for c in checks.CHECKS}
    assert "percentile Hausdorff" in help_text["--max-hausdorff"] and "maximum" not in help_text["--max-hausdorff"]
    assert "maximum Hausdorff" in help_text["--max-hausdorff-max"]
    assert "mean TRE" in help_text["--max-tre"] and "worst single landmark" in help_text["--max-tre-point"]
    assert "mean surface distance" in help_text["--max-mean-distance"]
    # the measure each check gates has the title the check names
    for c in checks.CHECKS:
        m = c.measure_spec
        assert c.unit == m.unit
        assert c.title_for(95).split()[0].lower() in m.title_for(95).lower(), (c.name, m.title)


def test_missing_value_never_passes():
    (record,) = checks.run_checks(_segment_report(dice=None), {"min_dice": 0.0})
    assert record["value"] is None and not record["passed"] and record["status"] == "fail"
    (record,) = checks.run_checks({"segments": []}, {"max_hausdorff": 100.0})
    assert record["subject"] == "no segment to check" and not record["passed"]


def test_validation_names_the_flag():
    from RegistrationQualityLib.errors import BadInputError

    with pytest.raises(BadInputError, match="--max-tre-point: needs landmarks"):
        checks.validate_limits({"max_tre_point": 2.0}, {"segments": True})
    with pytest.raises(BadInputError, match="--max-mean-distance: -1 is not a valid limit"):
        checks.validate_limits({"max_mean_distance": -1}, {"segments": True})
    with pytest.raises(BadInputError, match="nope: is not a check"):
        checks.validate_limits({"nope": 1.0}, {})


def test_evaluation_options_keep_their_field_names_and_take_new_checks():
    o = EvaluationOptions(min_dice=0.8, max_hausdorff=5.0, max_tre=2.0, max_folding=0.1, max_tre_point=4.0)
    assert (o.min_dice, o.max_hausdorff, o.max_tre, o.max_folding, o.max_tre_point) == (0.8, 5.0, 2.0, 0.1, 4.0)
    assert o.check_limits() == {"min_dice": 0.8, "max_hausdorff": 5.0, "max_tre": 2.0, "max_tre_point": 4.0,
                                "max_folding": 0.1}
    assert EvaluationOptions(limits={"max_hausdorff_max": 7.0}).max_hausdorff_max == 7.0


def test_new_gates_from_the_cli(tmp_path):
    (tmp_path / "case").mkdir()
    case = write_shift_case(tmp_path / "case")
    res = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--fixed-segmentation", case / "fixed_labels.nrrd", "--moving-segmentation",
                  case / "moving_labels.nrrd", "--fixed-landmarks", case / "fixed.csv", "--moving-landmarks",
                  case / "moving.csv", "--max-tre-point", "0.5", "--max-hausdorff-max", "0.01",
                  "--max-mean-distance", "5", "--no-snapshots", "--output", tmp_path / "out")
    assert res.returncode == 1, res.stderr
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    by_name = {c["name"]: c for c in rep["checks"]}
    assert by_name["max_tre_point"]["passed"] and by_name["max_tre_point"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert not by_name["max_hausdorff_max"]["passed"]  # voxelised balls on different grids: HD max > 0.01 mm
    assert by_name["max_hausdorff_max"]["value"] == rep["segments"][0]["after"]["hausdorff_mm"]
    assert by_name["max_mean_distance"]["passed"]
    assert rep["options"]["max_tre_point"] == 0.5 and rep["options"]["max_tre"] is None
    assert "FAILED max_hausdorff_max" in res.stdout
    bad = run_cli("evaluate", "--fixed", case / "fixed.nrrd", "--moving", case / "moving.nrrd", "--transform",
                  case / "good.tfm", "--max-tre-point", "1", "--output", tmp_path / "out2")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--max-tre-point: needs landmarks" in bad.stderr


# ---------------------------------------------------------------------------------------------------
# Adding a measure = one registry entry + its function: it appears everywhere with no other edit
# ---------------------------------------------------------------------------------------------------
def overlap_of_reference(m):
    """|A∩B| / |A|: the fraction of the reference covered (a made-up measure for this test)."""
    return None if m.n_reference == 0 else m.n_both / m.n_reference


@pytest.fixture
def fake_measure():
    measure = measures.register(measures.Measure(
        "fake_coverage", "segment", "fake_coverage", "Fake reference coverage", "Fake cov.", "", 3, "higher",
        "|A∩B| / |A| (test only)", compute=overlap_of_reference, shown=True))
    check = checks.register(checks.Check("min_fake_coverage", "--min-fake-coverage", "fake_coverage", "each", ">=",
                                         "segments", "fake reference coverage"))
    yield measure, check
    checks.unregister(check.name)
    measures.unregister(measure.key)


def test_a_new_measure_appears_everywhere(ctx, tmp_path, fake_measure, capsys):
    measure, check = fake_measure
    # CLI help
    assert cli.main(["evaluate", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--min-fake-coverage" in help_text and "fake reference coverage" in help_text
    # report.json (segments and checks), through the CLI's own argument mapping
    (tmp_path / "case").mkdir()
    case = write_shift_case(tmp_path / "case")
    args = cli.build_parser().parse_args([
        "evaluate", "--fixed", str(case / "fixed.nrrd"), "--moving", str(case / "moving.nrrd"), "--transform",
        str(case / "good.tfm"), "--fixed-segmentation", str(case / "fixed_labels.nrrd"), "--moving-segmentation",
        str(case / "moving_labels.nrrd"), "--min-fake-coverage", "0.5", "--no-snapshots", "--output",
        str(tmp_path / "out")])
    from RegistrationQualityLib.commands import inputs_from_args

    inputs, options = inputs_from_args(args)
    result = evaluate(ctx, inputs, options, output_dir=tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    segment = saved["segments"][0]
    assert segment["after"]["fake_coverage"] > 0.9 > segment["before"]["fake_coverage"]
    record = next(c for c in saved["checks"] if c["name"] == "min_fake_coverage")
    assert record["passed"] and record["value"] == segment["after"]["fake_coverage"]
    assert "fake_coverage" in saved["definitions"] and saved["options"]["min_fake_coverage"] == 0.5
    # metrics.csv
    rows = [r for r in metrics_rows(result.report) if r["metric"] == "fake_coverage"]
    assert {r["stage"] for r in rows} == {"before", "after"}
    assert "fake_coverage" in (tmp_path / "out" / "metrics.csv").read_text()
    # HTML: the segments table column, the checks table and the definitions
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Fake cov." in page and "fake reference coverage" in page and "Fake reference coverage" in page
    assert render_html(result.report).count("Fake cov.") >= 1
    # the panel's results table, with the check column matched by check name
    panel_rows = [r for r in panel.summary_rows(result.report) if r["key"] == "fake_coverage"]
    assert panel_rows and panel_rows[0]["measure"] == "Fake cov." and panel_rows[0]["check"].startswith("pass (≥ 0.5")


def test_a_new_deformation_measure_is_computed_in_the_streamed_pass(ctx, tmp_path):
    """A deformation measure with its own function receives the region's J and |u| values."""
    measures.register(measures.Measure(
        "fake_u_median_mm", "deformation", "displacement_mm.fake_median", "Median displacement (test)", "|u| median",
        "mm", 2, None, "median |u| (test only)", compute=lambda sample: float(np.median(sample.displacement)),
        shown=True))
    try:
        case = write_shift_case(tmp_path)
        result = evaluate(ctx, EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd",
                                                transform=case / "good.tfm"), EvaluationOptions(snapshots=False),
                          output_dir=tmp_path / "out")
        value = result.report["deformation"]["displacement_mm"]["fake_median"]
        assert value == pytest.approx(float(np.linalg.norm(SHIFT_LPS)), abs=1e-3)  # a translation: |u| constant
        assert "Median displacement (test)" in (tmp_path / "out" / "report.html").read_text()
        assert any(r["metric"] == "displacement_fake_median_mm" for r in metrics_rows(result.report))
    finally:
        measures.unregister("fake_u_median_mm")


def test_shift_case_values_unchanged_by_the_registry(ctx, tmp_path):
    """The registry computes what the code computed before: the translation case's analytic values."""
    case = write_shift_case(tmp_path)
    rep = evaluate(ctx, EvaluationInputs(fixed=case / "fixed.nrrd", moving=case / "moving.nrrd",
                                         transform=case / "good.tfm", fixed_landmarks=case / "fixed.csv",
                                         moving_landmarks=case / "moving.csv"),
                   EvaluationOptions(snapshots=False)).report
    shift = float(np.linalg.norm(SHIFT_LPS))
    assert rep["landmarks"]["before"] == pytest.approx({"mean_mm": shift, "std_mm": 0.0, "median_mm": shift,
                                                        "p95_mm": shift, "max_mm": shift, "worst30_mean_mm": shift,
                                                        "count": 3}, abs=1e-6)
