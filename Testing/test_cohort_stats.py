"""Cohort statistics against hand-computed values and brute-force oracles: robust z, Wilcoxon, agreement, ranks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from RegistrationQualityLib import cohort_stats as cs


def test_robust_z_flags_a_planted_outlier_and_nothing_in_a_uniform_cohort():
    rng = np.random.default_rng(3)
    values = list(rng.uniform(0.80, 0.90, 200))
    flags = cs.outliers([{"dice": v} for v in values], ["dice"])
    assert not any(flags)  # uniform: |z| <= 0.6745 * 0.5 / 0.25 = 1.35 everywhere
    values[17] = 0.20
    flags = cs.outliers([{"dice": v} for v in values], ["dice"])
    assert [i for i, f in enumerate(flags) if f] == [17]
    (column, z), = flags[17]
    nums = np.array(values)
    med = np.median(nums)
    assert column == "dice" and z == pytest.approx(0.6745 * (0.20 - med) / np.median(np.abs(nums - med)))
    assert z < -3.5


def test_robust_z_hand_values_and_mad_zero():
    # median 3, |x - 3| = 2 1 0 1 97 -> MAD 1: z = 0.6745 (x - 3)
    assert cs.robust_z([1, 2, 3, 4, 100]) == pytest.approx([-1.349, -0.6745, 0.0, 0.6745, 65.4265])
    # more than half equal: MAD = 0 -> z = (x - median) / (1.253314 MeanAD); MeanAD = 5 / 5 = 1
    z = cs.robust_z([0, 0, 0, 0, 5])
    assert z == pytest.approx([0, 0, 0, 0, 5 / 1.253314])
    assert cs.robust_z([2.0] * 6) == [0.0] * 6  # all equal: nothing is far from the rest
    assert cs.robust_z([1.0, None, 9.0]) == [None, None, None]  # fewer than 3 numbers: no scores
    flags = cs.outliers([{"f": 0.0}] * 30 + [{"f": 0.4}], ["f"])
    assert flags[-1] and not any(flags[:-1])  # a single folding case in a cohort without folding


def test_outliers_are_scored_within_each_method():
    rows = [{"method": "a", "x": 1.0 + 0.01 * i} for i in range(20)] + \
           [{"method": "b", "x": 5.0 + 0.01 * i} for i in range(20)]
    assert not any(cs.outliers(rows, ["x"]))  # each method is uniform; together they are bimodal
    assert not any(cs.outliers(rows, ["x"], group_key=None))  # bimodal halves: MAD large, nothing extreme


def brute_force_p(d):
    """Two-sided exact p by enumerating all sign assignments of the mid-ranks (the oracle)."""
    d = [x for x in d if x != 0]
    ranks = cs.midranks([abs(x) for x in d])
    w = sum(r for r, x in zip(ranks, d) if x > 0)
    all_w = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(d))]
    lower = sum(v <= w + 1e-9 for v in all_w) / len(all_w)
    upper = sum(v >= w - 1e-9 for v in all_w) / len(all_w)
    return min(1.0, 2 * min(lower, upper))


def test_wilcoxon_known_values():
    # all five differences positive: P(W+ = 15) = 1/32, two-sided 2/32
    assert cs.wilcoxon_signed_rank([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])["p"] == pytest.approx(0.0625)
    # Hollander & Wolfe (1973) depression scores, x = first visit, y = second: W+ = 40, exact p = 5/128 (R gives
    # 0.03906 with wilcox.test(x, y, paired = TRUE))
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    res = cs.wilcoxon_signed_rank(x, y)
    assert res["w_plus"] == 40 and res["p"] == pytest.approx(5 / 128) and res["method"] == "exact"
    assert cs.wilcoxon_signed_rank([1, 2], [1, 2]) == {"n": 0, "zeros": 2, "w_plus": 0.0, "p": 1.0,
                                                       "method": "exact"}


def test_wilcoxon_exact_with_ties_and_zeros_matches_enumeration():
    rng = np.random.default_rng(11)
    for _ in range(25):
        n = int(rng.integers(1, 13))
        d = [float(v) for v in rng.integers(-3, 4, n)]  # many ties and zeros
        res = cs.wilcoxon_signed_rank(d, [0.0] * n)
        assert res["zeros"] == d.count(0.0)
        assert res["p"] == pytest.approx(brute_force_p(d), abs=1e-12)


def test_wilcoxon_normal_approximation_for_large_n(monkeypatch):
    rng = np.random.default_rng(5)
    d = list(np.round(rng.normal(0.15, 1.0, 80), 1))  # ties from the rounding
    approx = cs.wilcoxon_signed_rank(d, [0.0] * 80)
    assert approx["method"] == "normal"
    # by hand: mean n(n+1)/4, tie-corrected variance, continuity 0.5, two-sided normal tail
    nz = [v for v in d if v != 0]
    n = len(nz)
    ranks = cs.midranks([abs(v) for v in nz])
    w = sum(r for r, v in zip(ranks, nz) if v > 0)
    counts = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in counts.values()) / 48
    z = (abs(w - n * (n + 1) / 4) - 0.5) / math.sqrt(var)
    assert approx["p"] == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2)))), rel=1e-9)
    monkeypatch.setattr(cs, "EXACT_MAX_N", 200)
    exact = cs.wilcoxon_signed_rank(d, [0.0] * 80)
    assert exact["method"] == "exact" and exact["p"] == pytest.approx(approx["p"], abs=0.01)


def test_wilcoxon_against_scipy_when_installed():
    scipy_stats = pytest.importorskip("scipy.stats", reason="SciPy (an independent implementation) is not "
                                      "installed; the hand-computed and enumerated values above still apply")
    rng = np.random.default_rng(5)
    d = list(np.round(rng.normal(0.15, 1.0, 80), 1))
    ref = scipy_stats.wilcoxon(d, zero_method="wilcox", correction=True, method="approx")
    assert cs.wilcoxon_signed_rank(d, [0.0] * 80)["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    small = [0.3, -1.2, 2.5, 0.8, 1.9, -0.4, 1.1]
    ref = scipy_stats.wilcoxon(small, method="exact")
    assert cs.wilcoxon_signed_rank(small, [0.0] * 7)["p"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_confusion_table_and_kappa_by_hand():
    pairs = [("pass", "pass")] * 6 + [("pass", "fail")] * 1 + [("fail", "fail")] * 3 + [("fail", "pass")] * 2 + \
            [("review", "review")] * 1 + [("review", "pass")] * 1
    rows = [{"status": "ok", "verdict": a, "human_rating": h} for a, h in pairs]
    rows += [{"status": "ok", "verdict": "pass", "human_rating": ""},
             {"status": "failed", "verdict": None, "human_rating": "fail"},
             {"status": "ok", "verdict": "no checks", "human_rating": "pass"}]
    res = cs.confusion(rows)
    t = res["table"]
    assert t["pass"] == {"pass": 6, "review": 0, "fail": 1, "unrated": 1}
    assert t["fail"] == {"pass": 2, "review": 0, "fail": 3, "unrated": 0}
    assert t["review"] == {"pass": 1, "review": 1, "fail": 0, "unrated": 0}
    assert t["not evaluated"]["fail"] == 1 and t["no checks"]["pass"] == 1
    assert res["rated"] == 16 and res["compared"] == 14 and res["agreeing"] == 10
    # p_o = 10/14; automated marginals pass 7, review 2, fail 5; human pass 9, review 1, fail 4
    p_e = (7 * 9 + 2 * 1 + 5 * 4) / 14**2
    assert res["kappa"] == pytest.approx((10 / 14 - p_e) / (1 - p_e))
    assert cs.disagreement(rows[6]) == 2 and cs.disagreement(rows[0]) is None
    assert cs.disagreement({"status": "ok", "verdict": "review", "human_rating": "pass"}) == 1


def test_method_ranks_table_and_paired_differences():
    rows = []
    for i in range(8):
        rows.append({"case_id": f"c{i}", "method": "A", "status": "ok", "verdict": "pass", "dice": 0.9 + 0.001 * i})
        rows.append({"case_id": f"c{i}", "method": "B", "status": "ok", "verdict": "fail" if i < 3 else "pass",
                     "dice": 0.8 + 0.002 * i})
    rows.append({"case_id": "c9", "method": "A", "status": "failed", "verdict": None})
    ranks = cs.case_ranks(rows, "dice", higher_is_better=True)
    assert ranks[:16] == [1.0, 2.0] * 8 and ranks[16] is None
    table = {t["method"]: t for t in cs.method_table(rows, ["dice"])}
    assert table["A"]["counts"] == {"pass": 8, "review": 0, "fail": 0, "no checks": 0, "not evaluated": 1}
    assert table["B"]["counts"]["fail"] == 3 and table["B"]["cases"] == 8
    assert table["A"]["figures"]["dice"] == pytest.approx((0.90175, 0.9035, 0.90525))
    (pair,) = cs.paired_differences(rows, "dice", ["A", "B"])
    assert pair["n_pairs"] == 8 and pair["median_difference"] == pytest.approx(0.1 - 0.001 * 3.5)
    assert pair["p"] == pytest.approx(2 / 256) and pair["test"] == "exact"  # all 8 differences positive
