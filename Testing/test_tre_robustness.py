"""TRE robustness: fraction of landmarks that improved and the mean of the worst 30 %, on a hand-made set."""

from __future__ import annotations

import numpy as np
import pytest

from RegistrationQualityLib.landmarks import TREResult, summarize_distances, worst_count


def test_worst_count_rounds_thirty_percent_up():
    assert [worst_count(n) for n in (0, 1, 2, 3, 4, 10, 11)] == [0, 1, 1, 1, 2, 3, 4]


def test_robustness_on_a_hand_made_set():
    # errors before: 10, 10, 10, 10, 10 mm along x; after: 1, 2, 12, 3, 20 (the moving landmark sits at +x)
    fixed = np.zeros((5, 3))
    moving = np.array([[10.0, 0, 0]] * 5)
    after = np.array([1.0, 2.0, 12.0, 3.0, 20.0])
    mapped = moving + np.c_[after, np.zeros(5), np.zeros(5)]
    result = TREResult(labels=list("ABCDE"), fixed_ras=fixed, moving_ras=moving, fixed_mapped_ras=mapped,
                       outside_domain=np.zeros(5, bool)).as_dict()
    assert result["after"]["improved_fraction"] == pytest.approx(3 / 5)  # A, B, D improved; C, E got worse
    assert result["after"]["worst30_mean_mm"] == pytest.approx((20 + 12) / 2)  # ceil(1.5) = 2 worst
    assert result["before"]["worst30_mean_mm"] == pytest.approx(10.0)
    assert summarize_distances([])["worst30_mean_mm"] is None
