"""Numbers do not move in a refactor: report.json values of the sample case against frozen golden copies.

The golden files (Testing/golden/*.json) were written by ``Testing/golden/make_golden.py`` from the code as it
was before the performance/spec work. A value may change only for a stated reason (a more exact definition,
not speed): regenerate the file and list the value, old and new, and the reason in Testing/golden/CHANGES.md.
Tolerance: 1e-4 relative or 1e-3 absolute (mm, cc, counts).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))

import make_golden  # noqa: E402


def _close(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return abs(a - b) <= max(1e-3, 1e-4 * max(abs(a), abs(b)))


@pytest.mark.parametrize("name", sorted(make_golden.configurations()))
def test_report_values_match_golden(name):
    golden = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    now = make_golden.numeric_leaves(make_golden.run(name))
    missing = sorted(set(golden) - set(now))
    assert not missing, f"{name}: golden values no longer in report.json: {missing[:20]}"
    moved = [f"{k}: golden {golden[k]!r}, now {now[k]!r}" for k in sorted(golden) if not _close(golden[k], now[k])]
    assert not moved, f"{name}: {len(moved)} value(s) moved:\n" + "\n".join(moved[:40])
