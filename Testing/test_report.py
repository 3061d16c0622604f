"""The QA report folder: JSON round trip, metrics.csv rows, the self-contained HTML page, atomic replacement,
and the page rendered by headless Chromium."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest

from RegistrationQualityLib import report as rq_report
from RegistrationQualityLib.errors import BadInputError

from review_helpers import page_data

MAGENTA = (255, 0, 255)  # appears in the test snapshot only: seeing it on screen proves the image was embedded


def png_bytes(rgb: np.ndarray) -> bytes:
    """A PNG file (8-bit RGB, no filtering) from an (H, W, 3) uint8 array, written by hand (PNG spec, W3C 2003)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(np.uint8).tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def snapshot_image(width=240, height=120) -> np.ndarray:
    """Grey ramp with a magenta square (the 'contour'), two panels."""
    ramp = np.linspace(30, 200, width, dtype=np.float64)
    img = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2).astype(np.uint8)
    img[30:90, 40:100] = MAGENTA
    img[30:90, 150:200] = MAGENTA
    return img


def segment_values(dice, hd95, hd, msd, ref_cc, cmp_cc, status="ok"):
    return {
        "dice": dice, "jaccard": None if dice is None else dice / (2 - dice), "hausdorff_mm": hd,
        "hausdorff_percentile_mm": hd95, "mean_surface_distance_mm": msd,
        "directed": {"reference_to_compared": {"max_mm": hd, "percentile_mm": hd95, "mean_mm": msd},
                     "compared_to_reference": {"max_mm": None if hd is None else hd * 0.8,
                                               "percentile_mm": hd95, "mean_mm": msd}},
        "reference_volume_cc": ref_cc, "compared_volume_cc": cmp_cc, "status": status,
    }


def make_report(verdict="fail"):
    """A realistic report dict as evaluate builds it (REPORT_SCHEMA), with awkward strings to escape."""
    geometry = {"size": [256, 256, 120], "spacing_mm": [0.9, 0.9, 2.5], "origin_lps_mm": [-115.0, -115.0, 0.0],
                "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "pixel_type": "16-bit signed integer"}
    points = [{"label": f"F-{i:02d}", "before_mm": b, "after_mm": a, "error_vector_ras_mm": [a, 0.0, 0.0],
               "outside_domain": i == 4}
              for i, (b, a) in enumerate([(6.1, 1.2), (4.4, 0.8), (9.7, 3.4), (3.0, 1.9), (5.5, 0.6)])]
    after = [p["after_mm"] for p in points]
    before = [p["before_mm"] for p in points]

    def stats(v):
        return {"mean_mm": float(np.mean(v)), "std_mm": float(np.std(v)), "median_mm": float(np.median(v)),
                "p95_mm": float(np.percentile(v, 95)), "max_mm": float(np.max(v)), "count": len(v)}

    edges = [float(e) for e in np.linspace(-0.5, 3.0, 36)]
    centres = 0.5 * (np.array(edges[:-1]) + np.array(edges[1:]))
    counts = [float(c) for c in np.round(50000 * np.exp(-((centres - 1.0) / 0.25) ** 2))]
    counts[2] = 12.0  # folding voxels at J in [-0.4, -0.3)
    checks = [
        {"name": "min_dice", "subject": "liver", "passed": True, "value": 0.93, "limit": 0.8, "comparison": ">="},
        {"name": "min_dice", "subject": "lesion <3>", "passed": verdict == "pass", "value": 0.62, "limit": 0.8,
         "comparison": ">="},
        {"name": "min_dice", "subject": "empty one", "passed": verdict == "pass", "value": None, "limit": 0.8,
         "comparison": ">="},
        {"name": "max_tre", "subject": None, "passed": verdict == "pass", "value": 3.4, "limit": 2.0,
         "comparison": "<="},
        {"name": "max_folding", "subject": None, "passed": True, "value": 0.004, "limit": 0.1, "comparison": "<="},
    ]
    return {
        "tool": {"name": "RegistrationQuality", "version": "0.1.0", "python": "3.11.7", "slicer_core": "5.13.31053.0",
                 "vtk": "9.6.2", "simpleitk": "2.5.7", "numpy": "2.4.6"},
        "created": "2026-11-25T13:00:00Z",
        "case_id": "patient <07> & co",
        "verdict": verdict,
        "inputs": {"fixed": {"path": "/data/case 07/fixed.nrrd", "geometry": geometry},
                   "moving": {"path": "/data/case 07/moving<1>.nii.gz", "geometry": dict(geometry, size=[256, 256, 110])},
                   "transform": {"path": "/data/case 07/TransformParameters.1.txt", "kind": "elastix B-spline chain"},
                   "registered": None,
                   "fixed_segmentation": {"path": "/data/case 07/fixed-seg.nrrd", "geometry": geometry},
                   "moving_segmentation": {"path": "/data/case 07/moving-seg.nrrd", "geometry": geometry},
                   "fixed_landmarks": {"path": "/data/case 07/fixed.mrk.json", "count": 5},
                   "moving_landmarks": {"path": "/data/case 07/moving.fcsv", "count": 6},
                   "threshold": None},
        "elastix": {"elastix_version": "5.0.1", "fixed_image": "fixed.nrrd", "moving_image": "moving.nrrd",
                    "transform_parameters": "/data/case 07/TransformParameters.1.txt", "result_image": None,
                    "total_seconds": 41.3,
                    "stages": [{"index": 0, "transform": "BSplineTransform",
                                "metric": "AdvancedMattesMutualInformation",
                                "optimizer": "AdaptiveStochasticGradientDescent", "final_metric": -0.74,
                                "seconds": 40.1, "resolutions": [
                                    {"resolution": 0, "iterations": 250, "final_metric": -0.61, "seconds": 12.5,
                                     "stop": "Maximum number of iterations has been reached."},
                                    {"resolution": 1, "iterations": 500, "final_metric": -0.74, "seconds": 27.6,
                                     "stop": "Maximum number of iterations has been reached."}]}],
                    "warnings": ["too many samples map outside moving image buffer <resolution 0>"]},
        "options": {"percentile": 95.0, "min_dice": 0.8, "max_hausdorff": None, "max_tre": 2.0, "max_folding": 0.1},
        "segments": [
            {"name": "liver", "label": 1, "before": segment_values(0.71, 9.5, 14.2, 3.1, 1520.0, 1490.0),
             "after": segment_values(0.93, 2.1, 5.0, 0.7, 1520.0, 1511.2)},
            {"name": "lesion <3>", "label": 3, "before": segment_values(0.40, 7.0, 9.0, 3.9, 12.3, 11.0),
             "after": segment_values(0.62, 7.9, 11.3, 2.8, 12.3, 12.0)},
            {"name": "empty one", "label": 7,
             "before": segment_values(None, None, None, None, 0.0, 4.2, "empty reference segment"),
             "after": segment_values(None, None, None, None, 0.0, 4.0, "empty reference segment")},
        ],
        "segments_source": "labelmaps",
        "landmarks": {"points": points, "before": stats(before), "after": stats(after),
                      "unmatched": {"fixed_only": [], "moving_only": ["M-99"]}},
        "deformation": {"jacobian": {"min": -0.35, "max": 2.9, "mean": 1.01, "std": 0.22, "folding_percent": 0.004,
                                     "folding_volume_cc": 0.031, "sdlogj": 0.19, "sdlogj_excluded_voxels": 12,
                                     "region": "whole image"},
                        "jacobian_histogram": {"edges": edges, "counts": counts},
                        "displacement_mm": {"mean": 3.2, "p95": 7.7, "max": 12.5}},
        "similarity": {"before": {"ncc": 0.62, "nmi": 1.11, "mse": 5400.0, "mae": 41.0},
                       "after": {"ncc": 0.91, "nmi": 1.29, "mse": 1200.0, "mae": 17.5},
                       "region": "fixed image", "bins": 64},
        "checks": checks if verdict != "no checks" else [],
        "snapshots": [{"file": "snapshots/axial.png", "title": "Axial through <lesion> centroid: before | after",
                       "caption": "blue = fixed, orange = moving"}],
        "definitions": {"dice": "Dice = 2|A∩B|/(|A|+|B|) (Dice 1945, Ecology 26:297)",
                        "tre": "TRE = |T(p_fixed) − p_moving| (Fitzpatrick & West 2001)"},
        "warnings": ["moving landmark M-99 has no fixed partner <ignored>"],
    }


@pytest.fixture
def snapshot_png(tmp_path):
    path = tmp_path / "src" / "axial.png"
    path.parent.mkdir()
    path.write_bytes(png_bytes(snapshot_image()))
    return path


def test_png_helper_decodes_with_simpleitk(tmp_path):
    """The hand-written PNG is a valid PNG (independent decoder), so the page embeds a real image."""
    import SimpleITK as sitk

    image = snapshot_image(16, 8)
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(image))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), image)


def test_write_report_folder_json_round_trip_and_csv(tmp_path, snapshot_png):
    report = make_report()
    original = copy.deepcopy(report)
    out = rq_report.write_report(report, tmp_path / "case07", {"axial.png": snapshot_png, "_tempdir": tmp_path})
    assert out == tmp_path / "case07"
    assert report == original  # input not modified
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "report.html", "report.json", "snapshots"]
    assert (out / "snapshots" / "axial.png").read_bytes() == snapshot_png.read_bytes()
    assert json.loads((out / "report.json").read_text(encoding="utf-8")) == original
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left

    with open(out / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(rq_report.METRICS_COLUMNS)
    index = {(r["section"], r["subject"], r["metric"], r["stage"]): r for r in rows}
    assert len(index) == len(rows)  # one row per metric and stage
    assert float(index[("segments", "liver", "dice", "after")]["value"]) == 0.93
    assert float(index[("segments", "lesion <3>", "hausdorff_percentile_mm", "before")]["value"]) == 7.0
    assert index[("segments", "lesion <3>", "hausdorff_percentile_mm", "before")]["unit"] == "mm"
    assert index[("segments", "liver", "compared_volume_cc", "after")]["unit"] == "cc"
    directed = index[("segments", "liver", "directed.compared_to_reference.max_mm", "before")]
    assert float(directed["value"]) == pytest.approx(14.2 * 0.8)
    empty = index[("segments", "empty one", "dice", "after")]
    assert empty["value"] == "" and empty["note"] == "empty reference segment"
    assert float(index[("segments", "empty one", "compared_volume_cc", "after")]["value"]) == 4.0
    assert float(index[("landmarks", "F-02", "tre_mm", "after")]["value"]) == 3.4
    assert index[("landmarks", "F-04", "tre_mm", "before")]["note"] == "outside the transform's domain"
    mean_after = float(index[("landmarks", "all landmarks", "tre_mean_mm", "after")]["value"])
    assert mean_after == pytest.approx(np.mean([1.2, 0.8, 3.4, 1.9, 0.6]))
    assert index[("landmarks", "all landmarks", "tre_count", "after")]["unit"] == ""
    assert float(index[("deformation", "whole image", "jacobian_folding_percent", "-")]["value"]) == 0.004
    assert index[("deformation", "whole image", "jacobian_folding_percent", "-")]["unit"] == "%"
    assert float(index[("deformation", "whole image", "displacement_p95_mm", "-")]["value"]) == 7.7
    assert float(index[("similarity", "fixed image", "ncc", "before")]["value"]) == 0.62
    assert float(index[("elastix", "stage 0 BSplineTransform resolution 1", "final_metric_value", "-")]["value"]) \
        == -0.74
    assert index[("elastix", "stage 0 BSplineTransform resolution 0", "iterations", "-")]["value"] == "250"
    assert index[("elastix", "stage 0 BSplineTransform", "final_metric_value", "-")]["note"] == \
        "AdvancedMattesMutualInformation"
    assert float(index[("elastix", "", "total_seconds", "-")]["value"]) == 41.3
    check = index[("checks", "lesion <3>", "min_dice", "-")]
    assert float(check["value"]) == 0.62 and check["note"].startswith("failed")
    # every number of the JSON's segments and landmark points is in the CSV, and the CSV reader inverts the writer
    parsed = rq_report.read_metrics_csv(out / "metrics.csv")
    assert [r["value"] for r in parsed] == [r["value"] for r in rq_report.metrics_rows(original)]
    per_segment_stage = sum(1 for _ in rq_report._flatten(original["segments"][0]["after"]))
    assert sum(1 for r in rows if r["section"] == "segments") == 3 * 2 * per_segment_stage
    assert sum(1 for r in rows if r["section"] == "landmarks" and r["metric"] == "tre_mm") == 5 * 2


def test_report_numbers_are_plain_json(tmp_path):
    """numpy scalars and arrays become plain JSON; NaN/inf become null (never a fake number)."""
    report = make_report("no checks")
    report["deformation"]["jacobian"]["min"] = np.float32(-0.25)
    report["deformation"]["jacobian"]["sdlogj_excluded_voxels"] = np.int64(3)
    report["deformation"]["jacobian_histogram"]["counts"] = np.asarray(report["deformation"]["jacobian_histogram"]
                                                                       ["counts"])
    report["similarity"]["after"]["nmi"] = float("nan")
    out = rq_report.write_report(report, tmp_path / "r")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["deformation"]["jacobian"]["min"] == -0.25
    assert data["deformation"]["jacobian"]["sdlogj_excluded_voxels"] == 3
    assert data["similarity"]["after"]["nmi"] is None
    assert data["snapshots"] == []  # listed but not produced: left out, with a warning
    assert any("axial.png" in w for w in data["warnings"])
    assert "NaN" not in (out / "report.json").read_text(encoding="utf-8")


def html_text_content(page: str) -> str:
    """Visible text without tags (style and svg titles included), entities decoded."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_html_is_self_contained_and_escaped(tmp_path, snapshot_png):
    report = make_report("fail")
    page = rq_report.render_html(report, {"snapshots/axial.png": snapshot_png})
    # verdict banner with the failing checks listed, in words
    assert 'class="banner fail has-list"' in page
    assert "3 of 5 requested checks failed" in page
    failing = page[page.index('<ul class="failing">'):page.index("</ul>", page.index('<ul class="failing">'))]
    assert failing.count("<li>") == 3
    assert "lesion &lt;3&gt;" in failing and "could not be computed" in failing and "mean TRE is 3.40 mm" in failing
    # every user string is escaped: no raw '<3>', '<1>', '<lesion>', '<07>' anywhere
    for raw in ("<3>", "<1>", "<lesion>", "<07>", "<resolution 0>", "<ignored>"):
        assert raw not in page
    assert "patient &lt;07&gt; &amp; co" in page
    # self-contained: one embedded PNG (the snapshot, byte-exact), no external resources, no scripts
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 1
    import base64

    assert base64.b64decode(uris[0]) == snapshot_png.read_bytes()
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and "url(" not in page
    # tables and charts
    assert page.count("<svg") == 2
    tre = page[page.index('<section id="landmarks">'):page.index("</section>", page.index('id="landmarks"'))]
    bars = re.findall(r"<title>(F-\d\d) after: ([\d.]+) mm</title>", tre)
    assert [label for label, _ in bars] == ["F-02", "F-03", "F-00", "F-01", "F-04"]  # worst after first
    assert [float(v) for _, v in bars] == [3.4, 1.9, 1.2, 0.8, 0.6]
    assert "limit 2 mm" in tre and "F-04 *" in tre and "M-99" in tre
    above = re.findall(r'fill="#D55E00"><title>(F-\d\d) after', tre)
    assert above == ["F-02"]  # the only landmark above max_tre = 2 mm after registration is drawn in vermillion
    jac = page[page.index('<section id="deformation">'):]
    red_bins = re.findall(r'fill="#D55E00"><title>J in \[([-\d.e]+), ([-\d.e]+)\): ([\d,]+) voxels', jac)
    assert red_bins and all(float(a) < 0 for a, _, _ in red_bins)
    assert sum(int(c.replace(",", "")) for *_, c in red_bins) == 12
    blue_bins = re.findall(r'fill="#56B4E9"><title>J in \[([-\d.e]+),', jac)
    assert blue_bins and all(float(a) >= 0 for a in blue_bins)
    segments = page[page.index('<section id="segments">'):page.index("</section>", page.index('id="segments"'))]
    assert segments.count("<tr>") == 4  # header + 3 segments
    assert '0.710 → <span class="better" title="improved">0.930 ▲' in segments
    assert '7.00 → <span class="worse" title="worse">7.90 ▲' in segments  # HD95 of the lesion got worse
    assert "empty reference segment" in segments and "HD95</span><br><small>mm</small>" in segments
    similarity = page[page.index('<section id="similarity">'):]
    assert '5400 → 1200</td>' in similarity  # MSE without --same-modality: information only, no verdict colour
    text = html_text_content(page)
    for words in ("Inputs", "fixed.nrrd", "256 × 256 × 120", "elastix B-spline chain", "AdvancedMattesMutualInformation",
                  "Definitions", "Dice = 2|A∩B|/(|A|+|B|)", "Software versions", "5.13.31053.0", "Warnings",
                  "Lowest Dice after", "Mean TRE after", "Folding (J ≤ 0)"):
        assert words in text, words


def _similarity_rows(page: str) -> dict:
    """{metric title: (better-when cell text, judgement class or None)} of the page's similarity table."""
    section = page[page.index('<section id="similarity">'):page.index("</section>", page.index('id="similarity"'))]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", section, re.S)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        judged = re.search(r'class="(better|worse|same)"', cells[2])
        rows[re.sub(r"<[^>]+>", "", cells[0])] = (re.sub(r"<[^>]+>", "", cells[1]), judged and judged.group(1))
    return rows


def test_mse_and_mae_are_judged_only_for_the_same_modality():
    report = make_report("pass")
    report["similarity"] = {"before": {"ncc": 0.62, "nmi": 1.10, "mse": 5400.0, "mae": 61.0},
                            "after": {"ncc": 0.91, "nmi": 1.25, "mse": 1200.0, "mae": 22.0}, "region": "r"}
    rows = _similarity_rows(rq_report.render_html(report))
    assert rows["Normalised cross-correlation (NCC)"] == ("higher", "better")
    assert rows["Normalised mutual information (NMI)"] == ("higher", "better")
    for title in ("Mean squared error (MSE)", "Mean absolute error (MAE)"):
        assert rows[title][0].startswith("information only") and rows[title][1] is None
    report["options"]["same_modality"] = True
    rows = _similarity_rows(rq_report.render_html(report))
    assert rows["Mean squared error (MSE)"] == ("lower", "better")
    assert rows["Mean absolute error (MAE)"] == ("lower", "better")


def test_html_verdicts_and_missing_sections():
    passing = rq_report.render_html(make_report("pass"))
    assert 'class="banner pass"' in passing and "All 5 requested checks passed" in passing
    assert '<ul class="failing">' not in passing
    assert "image snapshots/axial.png is not available" in passing  # no image given: a visible placeholder
    bare = {"tool": {"name": "RegistrationQuality", "version": "0.1.0"}, "verdict": "no checks", "inputs": {},
            "segments": [], "landmarks": None, "deformation": None, "similarity": None, "checks": [],
            "snapshots": [], "definitions": {}, "warnings": [], "elastix": None}
    page = rq_report.render_html(bare)
    assert 'class="banner none"' in page and "NO CHECKS" in page
    assert "<svg" not in page and 'id="segments"' not in page and 'id="landmarks"' not in page


def test_rewrite_replaces_previous_report_cleanly(tmp_path, snapshot_png):
    out = tmp_path / "case"
    rq_report.write_report(make_report("fail"), out, {"snapshots/axial.png": snapshot_png})
    (out / "snapshots" / "stale.png").write_bytes(b"old")
    second = make_report("pass")
    second["snapshots"] = []
    rq_report.write_report(second, out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "report.html", "report.json"]
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["verdict"] == "pass"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "src"]  # nothing aside, nothing temporary


def test_output_must_be_a_folder_we_may_replace(tmp_path):
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    with pytest.raises(BadInputError) as err:
        rq_report.write_report(make_report(), a_file)
    assert str(err.value).startswith("--output: ") and "file" in str(err.value) and "\n" not in str(err.value)
    assert a_file.read_text() == "keep me"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(BadInputError, match="^--output: .*not a report folder"):
        rq_report.write_report(make_report(), foreign)
    assert (foreign / "holiday.jpg").read_bytes() == b"jpeg"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (rq_report.write_report(make_report(), empty) / "report.json").is_file()
    with pytest.raises(BadInputError, match="snapshot image not found"):
        rq_report.write_report(make_report(), tmp_path / "x", {"axial.png": tmp_path / "nope.png"})
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "photos", "report.txt"]


@pytest.mark.parametrize("stage", ["html", "rename"])
def test_failure_mid_write_leaves_old_report_intact(tmp_path, snapshot_png, monkeypatch, stage):
    out = tmp_path / "case"
    rq_report.write_report(make_report("pass"), out, {"axial.png": snapshot_png})
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    class Killed(Exception):
        pass

    if stage == "html":
        def broken(*args, **kwargs):
            raise Killed("killed while rendering")

        monkeypatch.setattr(rq_report.folder, "render_html", broken)
    else:
        real_rename = os.rename

        def broken(src, dst):  # the old report moved aside, then the new one cannot move in
            if ".tmp-" in os.fspath(src):
                raise Killed("killed at the rename")
            return real_rename(src, dst)

        monkeypatch.setattr(rq_report.folder.os, "rename", broken)
    with pytest.raises(Killed):
        rq_report.write_report(make_report("fail"), out, {"axial.png": snapshot_png})
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "src"]
    with pytest.raises(Killed):
        rq_report.write_report(make_report("fail"), tmp_path / "new", {"axial.png": snapshot_png})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "src"]  # no partial folder


def cohort_row(case_id, verdict, report_path, min_dice_after, tre_after, folding, failed_checks=""):
    """A summary row as cohort.py writes it (SUMMARY_COLUMNS; values as read back from summary.csv are text)."""
    return {"case_id": case_id, "status": "ok", "verdict": verdict, "error": "", "segments": 3,
            "min_dice_before": 0.40, "min_dice_after": min_dice_after, "max_hausdorff_percentile_after_mm": 7.9,
            "mean_tre_before_mm": 5.74, "mean_tre_after_mm": tre_after, "max_tre_after_mm": 3.4,
            "folding_percent": folding, "sdlogj": 0.19, "ncc_before": 0.62, "ncc_after": 0.91,
            "failed_checks": failed_checks, "report": report_path}


def test_summary_page(tmp_path, snapshot_png):
    cohort = tmp_path / "cohort"
    folder = rq_report.write_report(make_report("fail"), cohort / "cases" / "c2", {"axial.png": snapshot_png})
    rows = [
        cohort_row("c1", "pass", "cases/c1/report.html", 0.85, 1.1, 0.0),
        cohort_row("c2", "fail", folder / "report.html", 0.62, 1.58, 0.004, "min_dice[lesion]; max_tre[None]"),
        {k: ("" if v is None else str(v)) for k, v in cohort_row("c3", "no checks", "cases/c3/report.html", 0.9,
                                                                 None, 0.01).items()},
        {"case_id": "c4 <broken>", "status": "failed", "verdict": None, "error": "moving.nrrd: file not found"},
        dict(cohort_row("c0", "pass", "cases/c0/report.html", 0.70, 1.3, 0.0), status="ok (earlier run)"),
    ]
    page_path = rq_report.summary_html(rows, cohort / "summary.html")
    page = page_path.read_text(encoding="utf-8")
    data = page_data(page_path)
    # worst first: not evaluated, fail, then the rest by the lowest Dice after registration
    assert [r["id"] for r in data["rows"]] == ["c4 <broken>", "c2", "c0", "c1", "c3"]
    by_id = {r["id"]: r for r in data["rows"]}
    assert by_id["c2"]["href"] == "cases/c2/report.html"  # absolute path made relative
    assert by_id["c4 <broken>"]["err"] == "moving.nrrd: file not found" and by_id["c4 <broken>"]["ev"] == 0
    assert by_id["c2"]["fc"] == "min_dice[lesion]; max_tre[None]" and by_id["c2"]["img"] == 0
    tiles = dict(re.findall(r'<div class="k">([^<]+)</div><div class="v"[^>]*>(\d+)</div>', page))
    assert {k: tiles[k] for k in ("Passed", "Review", "Failed", "No checks", "Could not be evaluated")} == {
        "Passed": "2", "Review": "0", "Failed": "1", "No checks": "1", "Could not be evaluated": "1"}
    columns = {c["key"]: c for c in data["columns"]}
    # before columns join their after plot: Dice, HD, TRE (+before), max TRE, folding, SD log J, NCC (+before)
    assert [k for k, c in columns.items() if c["plot"]] == [
        "min_dice_after", "max_hausdorff_percentile_after_mm", "mean_tre_after_mm", "max_tre_after_mm",
        "folding_percent", "sdlogj", "ncc_after"]
    assert columns["min_dice_after"]["before"] == "min_dice_before" and columns["segments"]["plot"] is False
    dice = data["columns"].index(columns["min_dice_after"])
    assert by_id["c2"]["x"][dice] == 0.62 and by_id["c3"]["x"][dice] == 0.9  # text read back as numbers
    assert "<broken>" not in page and "data:image" not in page  # escaped; pictures stay files
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external resources
    assert [p.name for p in page_path.parent.iterdir() if p.name.startswith(".")] == []


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (Debian package 'chromium')")
def test_report_renders_in_headless_chromium(tmp_path, snapshot_png):
    import SimpleITK as sitk

    if "/snap/" in os.path.realpath(chromium()):
        pytest.skip("snap-confined Chromium cannot read or write pytest's temporary files")
    out = rq_report.write_report(make_report("fail"), tmp_path / "case", {"axial.png": snapshot_png})
    shot = tmp_path / "shot.png"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
               "--window-size=1280,2000", (out / "report.html").as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(shot)))[..., :3].astype(np.int32)
    assert pixels.shape[:2] == (2000, 1280)
    coarse = pixels // 8
    colours = np.unique(coarse[..., 0] * 1024 + coarse[..., 1] * 32 + coarse[..., 2])
    assert len(colours) > 50  # text, tables, charts and the picture, not a blank page

    def share(rgb, tolerance=6):
        return float(np.mean(np.all(np.abs(pixels - np.array(rgb)) <= tolerance, axis=-1)))

    assert share((0xD5, 0x5E, 0x00)) > 0.002  # the red 'fail' banner (and failing badges)
    assert share((0x00, 0x9E, 0x73)) == 0.0 or share((0xD5, 0x5E, 0x00)) > share((0x00, 0x9E, 0x73))
    assert share(MAGENTA, 2) > 0.002  # the embedded snapshot was decoded and drawn
    banner_rows = np.where(np.mean(np.all(np.abs(pixels - (0xD5, 0x5E, 0x00)) <= 6, axis=-1), axis=1) > 0.5)[0]
    assert banner_rows.size > 30 and banner_rows.min() < 300  # a wide banner near the top of the page
