"""Freeze the numbers of report.json on the sample case (run once before a refactor; see test_golden.py).

    python Testing/golden/make_golden.py            # rewrites Testing/golden/*.json from the current code

Each configuration is evaluated in-process without snapshots; every numeric leaf of report.json except
timings and software versions is kept. A changed number is a decision: list it in the closing note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "RegistrationQuality"))

CASE = ROOT / "Resources" / "SampleCase"

# Keys whose values are not results (time, provenance of the run, paths).
SKIP_KEYS = {"tool", "created", "seconds", "total_seconds", "time_s", "elapsed_s", "path", "output_dir"}


def configurations() -> dict:
    """name -> (EvaluationInputs kwargs, EvaluationOptions kwargs); paths relative to the sample case."""
    seg = {"fixed_segmentation": "fixed_segmentation.seg.nrrd", "moving_segmentation": "moving_segmentation.seg.nrrd"}
    lm = {"fixed_landmarks": "fixed_landmarks.mrk.json", "moving_landmarks": "moving_landmarks.mrk.json"}
    base = {"fixed": "fixed_dwi.nrrd", "moving": "moving_cbf.nrrd"}
    limits = {"min_dice": 0.8, "max_hausdorff": 5.0, "max_tre": 2.0, "max_folding": 0.1}
    return {
        "sample_good": ({**base, **seg, **lm, "elastix_dir": "registrations/good"}, limits),
        "sample_imperfect": ({**base, **seg, **lm, "elastix_dir": "registrations/imperfect"}, limits),
        "sample_good_transform": ({**base, **seg, **lm, "transform": "registrations/good/TransformParameters.1.txt"},
                                  limits),
        "sample_good_labels_otsu": ({**base, "fixed_segmentation": "fixed_labels.nrrd",
                                     "moving_segmentation": "moving_labels.nrrd", "threshold": ["otsu"],
                                     "transform": "registrations/good/TransformParameters.1.txt"}, {}),
    }


def run(name: str) -> dict:
    from RegistrationQualityLib.context import Context
    from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

    inp, opt = configurations()[name]
    kw = {k: ([v] if False else v) for k, v in inp.items()}
    for k, v in list(kw.items()):
        if isinstance(v, str):
            kw[k] = str(CASE / v)
    result = evaluate(Context.headless(), EvaluationInputs(**kw), EvaluationOptions(snapshots=False, **opt))
    return result.report


def numeric_leaves(obj, prefix="") -> dict:
    """{dotted path: number or None} for every numeric/None leaf; lists of dicts keyed by name/label."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in SKIP_KEYS:
                continue
            out.update(numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            key = str(i)
            if isinstance(v, dict):
                for field in ("name", "label", "subject"):
                    if isinstance(v.get(field), (str, int)):
                        key = f"{field}={v[field]}" + (f"#{v['name']}" if field == "subject" and "name" in v else "")
                        break
            out.update(numeric_leaves(v, f"{prefix}[{key}]"))
    elif isinstance(obj, bool):
        out[prefix] = obj
    elif isinstance(obj, (int, float)) or obj is None:
        out[prefix] = obj
    return out


def main() -> None:
    for name in configurations():
        leaves = numeric_leaves(run(name))
        (HERE / f"{name}.json").write_text(json.dumps(leaves, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(name, len(leaves), "values")


if __name__ == "__main__":
    main()
