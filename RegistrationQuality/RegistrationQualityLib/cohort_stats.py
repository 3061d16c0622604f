"""Cohort statistics: robust outliers, agreement of verdicts with human ratings, comparison of methods.

Standard library and numpy only (no SciPy). Definitions:

* **Robust z-score** (the "modified z-score" of Iglewicz B, Hoaglin DC. *How to Detect and Handle Outliers*,
  ASQC 1993): ``z = 0.6745 (x - median) / MAD`` with ``MAD = median(|x - median|)``; 0.6745 is the 0.75 quantile
  of the standard normal, so z is comparable to a standard score for normal data. A case is flagged when
  ``|z| > 3.5`` (their recommendation; :data:`OUTLIER_Z`). When more than half the values are equal, ``MAD = 0``:
  then ``z = (x - median) / (1.253314 · MeanAD)`` with ``MeanAD = mean(|x - median|)`` (1.253314 = sqrt(pi/2)
  makes MeanAD consistent with the standard deviation of normal data); when MeanAD is 0 too, every value equals
  the median and nothing is flagged. Fewer than :data:`MIN_VALUES` values: no scores.
* **Wilcoxon signed-rank test** of paired differences ``d = a - b`` (two-sided): zero differences are dropped
  (Wilcoxon's method), ``|d|`` ranked with mid-ranks for ties, ``W+`` = sum of the ranks of positive
  differences. For ``n <= EXACT_MAX_N`` non-zero differences the p-value is exact: the distribution of ``W+``
  over all ``2^n`` sign assignments of the observed (mid-)ranks, counted by dynamic programming on doubled
  ranks (so it stays exact with ties), ``p = min(1, 2 min(P(W+ <= w), P(W+ >= w)))``. Above that, the normal
  approximation with tie correction ``var = n(n+1)(2n+1)/24 - sum(t^3 - t)/48`` and a continuity correction of
  0.5. No differences at all (n = 0): p = 1.
* **Cohen's kappa** of the automated verdict against the human rating on the cases that have both (pass /
  review / fail): ``(p_o - p_e) / (1 - p_e)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

OUTLIER_Z = 3.5
MIN_VALUES = 3
EXACT_MAX_N = 50
MAD_SCALE = 0.6745
MEANAD_SCALE = 1.253314
RATINGS = ("pass", "review", "fail")


def robust_z(values: Sequence) -> list:
    """Modified z-score of each value (None stays None; None for all when fewer than MIN_VALUES numbers)."""
    nums = np.array([float(v) for v in values if v is not None], dtype=float)
    if nums.size < MIN_VALUES:
        return [None] * len(values)
    med = float(np.median(nums))
    dev = np.abs(nums - med)
    mad = float(np.median(dev))
    if mad > 0:
        scale = mad / MAD_SCALE
    else:
        mean_ad = float(np.mean(dev))
        if mean_ad == 0:
            return [None if v is None else 0.0 for v in values]
        scale = MEANAD_SCALE * mean_ad
    return [None if v is None else (float(v) - med) / scale for v in values]


def outliers(rows: Sequence[Mapping], columns: Sequence[str], threshold: float = OUTLIER_Z,
             group_key: str | None = "method") -> list:
    """Per row, the list of (column, z) with ``|z| > threshold``, scored within each ``group_key`` value.

    Values are taken with :func:`number` (numeric text is fine); rows without a number in a column are not
    scored in it.
    """
    flags: list = [[] for _ in rows]
    groups: dict = {}
    for i, row in enumerate(rows):
        groups.setdefault((row.get(group_key) or "") if group_key else "", []).append(i)
    for members in groups.values():
        for column in columns:
            z = robust_z([number(rows[i].get(column)) for i in members])
            for i, score in zip(members, z):
                if score is not None and abs(score) > threshold:
                    flags[i].append((column, score))
    return flags


def number(value):
    """A finite float from a number or numeric text, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str) and value.strip():
        try:
            v = float(value)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


# ---------------------------------------------------------------------------------------------------------------
# Wilcoxon signed-rank


def midranks(values: Sequence[float]) -> list:
    """Ranks 1..n of ``values`` with ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided Wilcoxon signed-rank test of ``a - b``: ``{n, zeros, w_plus, p, method}`` (see module docs).

    ``method`` is "exact" or "normal"; differences smaller than 1e-12 times the largest ``|value|`` count as 0.
    """
    a = [float(x) for x in a]
    b = [float(x) for x in b]
    if len(a) != len(b):
        raise ValueError("paired samples need the same length")
    scale = max([abs(x) for x in a + b] + [1.0])
    diffs = [x - y for x, y in zip(a, b)]
    nonzero = [d for d in diffs if abs(d) > 1e-12 * scale]
    n = len(nonzero)
    out = {"n": n, "zeros": len(diffs) - n, "w_plus": 0.0, "p": 1.0, "method": "exact"}
    if n == 0:
        return out
    ranks = midranks([abs(d) for d in nonzero])
    w_plus = sum(r for r, d in zip(ranks, nonzero) if d > 0)
    out["w_plus"] = w_plus
    if n <= EXACT_MAX_N:
        doubled = [int(round(2 * r)) for r in ranks]
        total = sum(doubled)
        counts = np.zeros(total + 1, dtype=float)  # counts[s]: sign assignments with 2 W+ = s
        counts[0] = 1.0
        for r in doubled:
            counts[r:] = counts[r:] + counts[: total + 1 - r].copy()
        probs = counts / counts.sum()
        w2 = int(round(2 * w_plus))
        lower = float(probs[: w2 + 1].sum())
        upper = float(probs[w2:].sum())
        out["p"] = min(1.0, 2.0 * min(lower, upper))
        return out
    mean = n * (n + 1) / 4.0
    ties: dict = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    var = n * (n + 1) * (2 * n + 1) / 24.0 - sum(t**3 - t for t in ties.values()) / 48.0
    out["method"] = "normal"
    if var <= 0:
        return out
    z = (abs(w_plus - mean) - 0.5) / math.sqrt(var)
    out["p"] = min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Methods


def quartiles(values: Sequence[float]):
    """(q1, median, q3) by linear interpolation between order statistics (numpy's default), or None."""
    nums = [float(v) for v in values if v is not None]
    if not nums:
        return None
    q = np.percentile(np.array(nums), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def method_table(rows: Sequence[Mapping], columns: Sequence[str], verdicts=("pass", "review", "fail")) -> list:
    """Per method (first-seen order): ``{method, cases, counts: {verdict: n, "not evaluated": n},
    figures: {column: (q1, median, q3) or None}}``; ``rows`` need ``method``, ``verdict``, ``status``."""
    by: dict = {}
    for row in rows:
        by.setdefault(row.get("method") or "", []).append(row)
    out = []
    for method, members in by.items():
        counts = {v: 0 for v in verdicts}
        counts["no checks"] = 0
        counts["not evaluated"] = 0
        for row in members:
            if not evaluated(row):
                counts["not evaluated"] += 1
            elif row.get("verdict") in counts:
                counts[row["verdict"]] += 1
            else:
                counts["no checks"] += 1
        figures = {c: quartiles([number(r.get(c)) for r in members]) for c in columns}
        out.append({"method": method, "cases": len(members), "counts": counts, "figures": figures})
    return out


def evaluated(row: Mapping) -> bool:
    """True when the case ran to a verdict (status "ok", "ok (earlier run)", ... or no status)."""
    status = str(row.get("status") or "").strip().lower()
    return status.startswith("ok") or status in ("done", "finished", "skipped", "")


def case_ranks(rows: Sequence[Mapping], column: str, higher_is_better: bool) -> list:
    """Per row, the rank (1 = best, ties share the mean rank) of its method among the rows of the same
    ``case_id`` on ``column``; None where the row has no value or its case has a single valued row."""
    ranks: list = [None] * len(rows)
    by: dict = {}
    for i, row in enumerate(rows):
        value = number(row.get(column))
        if value is not None:
            by.setdefault(row.get("case_id"), []).append((i, value))
    for members in by.values():
        if len(members) < 2:
            continue
        keyed = [(-v if higher_is_better else v) for _, v in members]
        for (i, _), r in zip(members, midranks(keyed)):
            ranks[i] = r
    return ranks


def paired_differences(rows: Sequence[Mapping], column: str, methods: Sequence[str]) -> list:
    """For each pair (a, b) of methods: ``{a, b, n_pairs, median_difference, w_plus, p, method}`` over the cases
    where both have a value (difference = a - b)."""
    values: dict = {}
    for row in rows:
        v = number(row.get(column))
        if v is not None:
            values.setdefault(row.get("method") or "", {})[row.get("case_id")] = v
    out = []
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            common = [c for c in values.get(a, {}) if c in values.get(b, {})]
            xs = [values[a][c] for c in common]
            ys = [values[b][c] for c in common]
            entry = {"a": a, "b": b, "column": column, "n_pairs": len(common),
                     "median_difference": float(np.median(np.array(xs) - np.array(ys))) if common else None}
            if common:
                test = wilcoxon_signed_rank(xs, ys)
                entry.update(w_plus=test["w_plus"], p=test["p"], test=test["method"], n_nonzero=test["n"])
            else:
                entry.update(w_plus=None, p=None, test=None, n_nonzero=0)
            out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Agreement with human ratings

AUTOMATED = ("pass", "review", "fail", "no checks", "not evaluated")
HUMAN = ("pass", "review", "fail", "unrated")


def automated_label(row: Mapping) -> str:
    if not evaluated(row):
        return "not evaluated"
    verdict = row.get("verdict")
    return verdict if verdict in RATINGS else "no checks"


def confusion(rows: Sequence[Mapping], rating_key: str = "human_rating") -> dict:
    """``{"table": {automated: {human: count}}, "rated", "compared", "agreeing", "kappa"}``.

    ``compared``: rows with an automated pass/review/fail and a human rating; ``kappa``: Cohen's kappa on them
    (None when undefined: no compared rows, or chance agreement 1).
    """
    table = {a: {h: 0 for h in HUMAN} for a in AUTOMATED}
    pairs = []
    rated = 0
    for row in rows:
        human = row.get(rating_key) or ""
        human = human if human in RATINGS else "unrated"
        rated += human != "unrated"
        auto = automated_label(row)
        table[auto][human] += 1
        if auto in RATINGS and human in RATINGS:
            pairs.append((auto, human))
    n = len(pairs)
    agreeing = sum(a == h for a, h in pairs)
    kappa = None
    if n:
        p_o = agreeing / n
        p_e = sum((sum(a == k for a, _ in pairs) / n) * (sum(h == k for _, h in pairs) / n) for k in RATINGS)
        kappa = None if p_e >= 1 else (p_o - p_e) / (1 - p_e)
    return {"table": table, "rated": rated, "compared": n, "agreeing": agreeing, "kappa": kappa}


def disagreement(row: Mapping, rating_key: str = "human_rating"):
    """How far apart the automated verdict and the human rating are (1 or 2 steps on pass < review < fail), or
    None when they agree or one of them is missing."""
    auto, human = automated_label(row), row.get(rating_key)
    if auto not in RATINGS or human not in RATINGS or auto == human:
        return None
    return abs(RATINGS.index(auto) - RATINGS.index(human))
