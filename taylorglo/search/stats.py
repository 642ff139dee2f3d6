"""Statistics of comparisons between arms: Welch's t-test (the primary test), Mann-Whitney U,
Cohen's d and wins over paired seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["compare_arms", "mann_whitney", "welch_ttest"]


def welch_ttest(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's t-test of mean(a) != mean(b): t, degrees of freedom, two-sided p, Cohen's d.

    Uses scipy for p when installed (else a normal approximation). Needs n >= 2 on each side.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per side, got {len(a)} and {len(b)}")
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = statistics.variance(a), statistics.variance(b)
    se2 = va / len(a) + vb / len(b)
    pooled = math.sqrt((va + vb) / 2)
    d = (ma - mb) / pooled if pooled > 0 else (0.0 if ma == mb else math.copysign(math.inf, ma - mb))
    if se2 == 0:
        t = 0.0 if ma == mb else math.copysign(math.inf, ma - mb)
        df = float(len(a) + len(b) - 2)
        p = 1.0 if ma == mb else 0.0
    else:
        t = (ma - mb) / math.sqrt(se2)
        df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
        try:
            from scipy import stats

            p = float(2 * stats.t.sf(abs(t), df))
        except ImportError:
            p = math.erfc(abs(t) / math.sqrt(2))
    return {
        "mean_a": ma,
        "mean_b": mb,
        "std_a": math.sqrt(va),
        "std_b": math.sqrt(vb),
        "n_a": len(a),
        "n_b": len(b),
        "t": t,
        "df": df,
        "p": p,
        "cohens_d": d,
    }


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value (scipy), or None when scipy is missing or a side is empty."""
    if not a or not b:
        return None
    try:
        from scipy import stats
    except ImportError:
        return None
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(stats.mannwhitneyu(list(a), list(b), alternative="two-sided").pvalue)


def compare_arms(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's t-test, Mann-Whitney p, Cohen's d and wins of a over b (pairs in seed order).

    ``t`` and ``cohens_d`` are None where they are infinite (both sides constant, different means).
    """
    out = welch_ttest(a, b)
    for key in ("t", "cohens_d"):  # infinite when both sides have no spread; JSON has no inf
        if not math.isfinite(out[key]):
            out[key] = None
    out["mann_whitney_p"] = mann_whitney(a, b)
    out["wins"] = sum(x > y for x, y in zip(a, b))
    out["pairs"] = min(len(a), len(b))
    return out
