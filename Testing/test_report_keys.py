"""Every report.json key that docs/report.md documents is shown on the report page (issue 16).

The documented keys are read from docs/report.md's report.json table: the top-level keys (first column) and the
keys named in backticks in the content column. For each, every string or number it holds in the sample case's
report (good elastix registration, segmentations, landmarks, a threshold) must appear in the page's text: strings
as they are (paths by file name), numbers as any rounding of them.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pytest

from RegistrationQualityLib.context import Context
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "Resources" / "SampleCase"
# Keys whose values are not meant for the page, with the reason (the test fails when a key is added to the docs
# without either a rendering or a reason here).
NOT_SHOWN = {
    "deformation.edges": "the histogram chart's bins",
    "deformation.counts": "the histogram chart's bars",
    "landmarks.error_vector_ras_mm": "drawn as vectors in the panel; the page shows |vector| (after_mm)",
    "created": "shown as the page's date, formatted",
    "inputs.direction": "direction cosines: the page shows size and spacing",
    "inputs.origin_lps_mm": "the page shows size and spacing",
    "checks.name": "shown as the check's title (Minimum Dice, ...)",
    "checks.comparison": "shown as ≥ / ≤",
    "checks.measure": "the registry key of the gated measure; the page shows the check's title",
}


def documented_keys() -> dict:
    """{top-level key: set of documented sub-keys} from docs/report.md's report.json table."""
    text = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    section = text[text.index("## report.json"):text.index("## metrics.csv")]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        subs = set()
        for code in re.findall(r"`([^`]*)`", cells[1]):
            subs.update(w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code) if w not in ("null", "true", "false"))
        for key in re.findall(r"`([a-z_]+)`", cells[0]):
            out[key] = subs
    return out


def _items(value):
    """(dict key, scalar or list of scalars) pairs anywhere under ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and not _scalars(v):
                yield from _items(v)
            else:
                yield k, v
    elif isinstance(value, list):
        for v in value:
            yield from _items(v)


def _scalars(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, (str, int, float)) for x in v)


def _values(v):
    for x in (v if isinstance(v, list) else [v]):
        if isinstance(x, (str, int, float)) and not isinstance(x, bool):
            yield x


def _shown(value, text: str, numbers: list) -> bool:
    if isinstance(value, str):
        v = " ".join(value.split())
        return v in text or Path(v).name in text or v.replace("<=", "≤") in text
    if not math.isfinite(value):
        return True
    for n, decimals in numbers:  # n is value rounded to its shown decimals
        if abs(n - value) <= 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12 and (
                decimals >= 1 or abs(value) >= 5 or float(value).is_integer()):
            return True
    return False


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("keys") / "report"
    inputs = EvaluationInputs(
        fixed=str(CASE / "fixed_dwi.nrrd"), moving=str(CASE / "moving_cbf.nrrd"),
        elastix_dir=str(CASE / "registrations" / "good"),
        fixed_segmentation=str(CASE / "fixed_segmentation.seg.nrrd"),
        moving_segmentation=str(CASE / "moving_segmentation.seg.nrrd"), threshold=["otsu"],
        fixed_landmarks=str(CASE / "fixed_landmarks.mrk.json"), moving_landmarks=str(CASE / "moving_landmarks.mrk.json"))
    evaluate(Context.headless(), inputs, EvaluationOptions(snapshots=False, min_dice=0.8, max_tre=2.0,
                                                           max_folding=0.1), output_dir=out)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    raw = (out / "report.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", " ", raw) + " " + " ".join(re.findall(r'title="([^"]*)"', raw)))
    text = " ".join(text.split())
    numbers = []
    for n in re.findall(r"[-−]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text):
        mantissa = re.split("[eE]", n)[0]
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        if "e" in n.lower():
            decimals -= int(re.split("[eE]", n)[1])
        numbers.append((float(n.replace("−", "-")), decimals))
    return report, text, numbers


def test_docs_list_the_report_keys():
    keys = documented_keys()
    assert {"inputs", "elastix", "segments", "landmarks", "deformation", "similarity", "checks", "warnings"} <= set(keys)
    assert {"stages", "final_metric", "iterations", "stop", "metric", "optimizer"} <= keys["elastix"]


@pytest.mark.parametrize("top", sorted(documented_keys()))
def test_every_documented_key_is_on_the_page(page, top):
    report, text, numbers = page
    assert top in report, f"docs/report.md documents '{top}' but report.json has no such key"
    if top in NOT_SHOWN:
        return
    subs = documented_keys()[top]
    missing = []
    if isinstance(report[top], (dict, list)):
        pairs = [(k, v) for k, v in _items(report[top]) if not subs or k in subs]
    else:
        pairs = [(top, report[top])]
    for key, value in pairs:
        if f"{top}.{key}" in NOT_SHOWN:
            continue
        for v in list(_values(value))[:50]:
            if not _shown(v, text, numbers):
                missing.append(f"{top}.{key} = {v!r}")
    assert not missing, f"{len(missing)} documented value(s) not on the page: {missing[:15]}"
