"""Inference across seeds: confidence intervals, paired tests, Holm, power (the family: `contrasts`).

Every replica (seed) of a variant is one independent draw, so a per-seed
statistic (S,) is a sample of size S. Cells of the study grid that share a seed
index share their data seed, so two cells are compared *paired by seed index*:
the test is a one-sample t-test on the S differences.

Everything here takes numpy arrays (torch tensors are accepted and copied to
the CPU) and returns plain Python floats, dicts and numpy arrays; nothing reads
or writes a file.

Conventions:

* Confidence intervals are two-sided Student-t intervals with S-1 degrees of
  freedom. With fewer than two values there is no spread to estimate: the mean
  is returned and the interval, t and p are NaN.
* p-values are two-sided. `holm` controls the family-wise error rate
  (held to statsmodels' `multipletests`); the power behind the minimum detectable
  effect is the noncentral t of statsmodels' `TTestPower`, both tails, made
  robust where statsmodels returns NaN (see `_power_exact`).
* The minimum detectable effect (MDE) is in the units of the compared metric.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as st

__all__ = [
    "mean_ci",
    "paired_test",
    "holm",
    "min_detectable_effect",
    "seeds_needed",
    "decision",
    "format_number",
    "format_p",
]


# --------------------------------------------------------------------- helpers
def _vector(values: Any, name: str = "values") -> np.ndarray:
    """A 1-D float64 copy of an array, list or (CPU or GPU) tensor."""
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-seed values, got shape {arr.shape}")
    return arr


def _check_level(value: float, name: str, lo: float = 0.0, hi: float = 1.0) -> float:
    value = float(value)
    if not lo < value < hi:
        raise ValueError(f"{name} must be in ({lo:g}, {hi:g}), got {value!r}")
    return value


def format_number(x: float) -> str:
    """`x` to 3 significant digits for a sentence: 0.0721, -0.00300, 1.50e-05 (below 1e-4), 12345 (from 1000)."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:#.3g}".rstrip(".")  # '#' keeps trailing zeros; exponent below 1e-4


def format_p(p: float) -> str:
    """A p-value for a sentence: '< 1e-6', '= 3.2e-05', '= 0.041', '= 1'."""
    p = float(p)
    if math.isnan(p):
        return "= n/a"
    if p < 1e-6:
        return "< 1e-6"
    if p < 1e-3:
        return f"= {p:.1e}"
    return f"= {p:.2g}"


def _percent(level: float) -> str:
    return f"{level * 100:g}%"


# ------------------------------------------------------------------ intervals
def mean_ci(values: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-seed values and its two-sided Student-t interval.

    The interval is mean +- t_{(1+confidence)/2, S-1} * sd / sqrt(S), sd with
    ddof=1. S = 1 gives (value, nan, nan): one seed says nothing about spread.
    S = 0 raises ValueError. Identical values give lo = hi = mean.
    """
    x = _vector(values)
    confidence = _check_level(confidence, "confidence")
    n = x.size
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def paired_test(a: Any, b: Any, confidence: float = 0.95) -> dict[str, float]:
    """Two-sided paired t-test of mean(a - b) = 0, pairing a[i] with b[i].

    Returns dict(diff, lo, hi, t, p, n): the mean difference, its Student-t
    interval at `confidence`, the t statistic (S-1 df), the two-sided p-value
    and the number of pairs. p equals `scipy.stats.ttest_rel(a, b).pvalue`.

    Zero-variance differences, where the t statistic is 0/0 or x/0:
    all differences exactly 0 -> t = 0, p = 1; all equal and non-zero ->
    t = +-inf, p = 0; both with lo = hi = diff. Fewer than two pairs ->
    t, p, lo, hi are NaN.
    """
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    confidence = _check_level(confidence, "confidence")
    d = a - b
    n = int(d.size)
    if n == 0:
        raise ValueError("paired_test needs at least one pair")
    if n < 2:
        return dict(diff=float(d[0]), lo=math.nan, hi=math.nan, t=math.nan, p=math.nan, n=n)
    if np.all(d == d[0]):
        diff = float(d[0])
        if diff == 0.0:
            return dict(diff=0.0, lo=0.0, hi=0.0, t=0.0, p=1.0, n=n)
        return dict(diff=diff, lo=diff, hi=diff, t=math.copysign(math.inf, diff), p=0.0, n=n)
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    t = diff / se
    p = float(min(1.0, 2.0 * st.t.sf(abs(t), n - 1)))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1) * se)
    return dict(diff=diff, lo=diff - half, hi=diff + half, t=float(t), p=p, n=n)


# ------------------------------------------------------------ multiplicity
def holm(pvalues: Any) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m p-values sorted ascending, p_(i) becomes
    max_{j <= i} min(1, (m - j + 1) * p_(j)): monotone in the sorted order,
    never below the raw p-value, capped at 1. Rejecting where the adjusted
    value is < alpha controls the family-wise error rate at alpha under any
    dependence. NaN entries stay NaN and do not count towards m.

    Written by hand because it is a measured speed-up: statsmodels'
    `multipletests(method="holm")` took about 60 ms a call here against
    microseconds, and the contrast tests call it thousands of times;
    tests/test_stats.py holds this to statsmodels.
    """
    p = _vector(pvalues, "pvalues")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[valid].min()} .. {p[valid].max()}")
    q = p[valid]
    m = q.size
    order = np.argsort(q, kind="stable")
    ranked = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    adjusted = np.empty(m)
    adjusted[order] = ranked
    out = np.full(p.shape, np.nan)
    out[valid] = adjusted
    return out


# -------------------------------------------------------------------- power
def _power_exact(nc: float, df: int, crit: float) -> float:
    """P(|T| > crit) for T ~ noncentral t(df, nc): statsmodels' `TTestPower.power`, made robust.

    statsmodels (and scipy's nct.cdf) return NaN for the lower tail far out, and
    `TTestPower.solve_power` then stops at its search bound (measured with
    statsmodels 0.15: n = 2, alpha 0.01, power 0.9 gave 10.0 instead of 74.05).
    So the lower tail P(T < -crit) is taken as P(T' > crit), T' ~ nct(df, -nc),
    and a non-finite tail that far out counts as 0. tests/test_stats.py holds
    this to statsmodels wherever statsmodels is finite.
    """
    upper = float(st.nct.sf(crit, df, nc))
    lower = float(st.nct.sf(crit, df, -nc))
    return upper + (lower if math.isfinite(lower) else 0.0)


@functools.lru_cache(maxsize=1024)
def _standard_mde(n: int, alpha: float, power: float, method: str) -> float:
    """The MDE in units of the difference's sd (linear in sd, so cached per n)."""
    df = n - 1
    crit = float(st.t.ppf(1 - alpha / 2, df))
    approx = (crit + float(st.t.ppf(power, df))) / math.sqrt(n)
    if method == "approx":
        return approx
    # power(nc) rises from alpha (< power) at nc = 0; bracket the root, then solve
    hi = max(1.0, 2.0 * approx * math.sqrt(n))
    while _power_exact(hi, df, crit) < power:
        hi *= 2.0
        if hi > 1e8:  # pragma: no cover - unreachable for valid alpha/power
            raise RuntimeError("could not bracket the noncentrality for the MDE")
    nc = optimize.brentq(lambda v: _power_exact(v, df, crit) - power, 0.0, hi, xtol=1e-10, rtol=1e-12)
    return nc / math.sqrt(n)


def min_detectable_effect(
    sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8, *, method: str = "exact"
) -> float:
    """The smallest true mean difference a two-sided paired t-test detects with probability `power`.

    With n pairs whose differences have standard deviation `sd_diff` (treated as
    known, e.g. the sample sd), the test at level `alpha` rejects when
    |t| > t_{1-alpha/2, n-1}. method="exact" (default) solves
    P(|T| > t_crit) = power for T ~ noncentral t(n-1, delta*sqrt(n)/sd) with
    scipy's `nct`, counting both tails. method="approx" returns the textbook
    (t_{1-alpha/2,n-1} + t_{power,n-1}) * sd / sqrt(n), which ignores the far
    tail and is slightly smaller for very small n.

    Returns 0 when sd_diff is 0 and NaN for n < 2 (no test is possible) or a
    non-finite sd. The MDE scales like sd / sqrt(n) (up to the df of t).
    """
    if method not in ("exact", "approx"):
        raise ValueError(f"method must be 'exact' or 'approx', got {method!r}")
    alpha = _check_level(alpha, "alpha")
    power = _check_level(power, "power")
    if power <= alpha:
        raise ValueError(f"power ({power}) must exceed alpha ({alpha})")
    sd = float(sd_diff)
    if sd < 0:
        raise ValueError(f"sd_diff must be >= 0, got {sd}")
    if int(n) < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    return sd * _standard_mde(int(n), alpha, power, method)


def seeds_needed(sd_diff: float, effect: float, alpha: float = 0.05, power: float = 0.8,
                 *, most: int = 10**9) -> int | None:
    """The fewest seeds (pairs) at which a two-sided paired t-test at level `alpha` detects a true mean
    difference `effect` with probability `power`, the differences' sd being `sd_diff`.

    The inverse of `min_detectable_effect` (exact: the noncentral t, both
    tails): the smallest n >= 2 with min_detectable_effect(sd, n) <= |effect|,
    found by doubling and bisection over n. tests/test_stats.py holds it to
    statsmodels' `TTestPower.solve_power`, whose solver fails to converge for
    the very large effect sizes (a few seeds) this must also answer. None when
    there is nothing to detect (effect 0), no spread to size it from (sd not
    finite) or more than `most` seeds would be needed; 2 when sd is 0.
    """
    alpha = _check_level(alpha, "alpha")
    power = _check_level(power, "power")
    sd, effect = float(sd_diff), abs(float(effect))
    if not (math.isfinite(sd) and math.isfinite(effect)) or effect == 0:
        return None
    if sd == 0:
        return 2

    def detects(n: int) -> bool:
        return sd * _standard_mde(n, alpha, power, "exact") <= effect

    if detects(2):
        return 2
    lo, hi = 2, 4  # detects(lo) is False
    while not detects(hi):
        lo, hi = hi, hi * 2
        if hi > most:
            return None
    while hi - lo > 1:  # detects(hi), not detects(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if detects(mid) else (mid, hi)
    return hi


def decision(significant: bool, diff: float, ci_lo: float, ci_hi: float, sd_diff: float, margin: float | None,
             alpha: float, power: float) -> dict[str, Any]:
    """A contrast's three-state verdict and the seeds it needs, the fields the study and the sweep both report.

    state: "significant" (as the caller's adjustment decided), else "equivalent"
    when the CI lies inside +- `margin` (the effect of interest; None: never
    equivalent), else "undecided". seeds_needed detects the observed |diff|,
    seeds_needed_interest the margin, both at level `alpha` and `power`.
    """
    inside = margin is not None and -margin < ci_lo and ci_hi < margin
    return {"effect_of_interest": margin,
            "seeds_needed": seeds_needed(sd_diff, diff, alpha, power),
            "seeds_needed_interest": seeds_needed(sd_diff, margin or 0.0, alpha, power),
            "state": "significant" if significant else "equivalent" if inside else "undecided"}


# ------------------------------------------------------------- a cell's summary
def _ci(values: list[float], confidence: float) -> dict[str, float]:
    mean, lo, hi = mean_ci(np.asarray(values), confidence)
    return {"mean": mean, "ci_lo": lo, "ci_hi": hi}


def summarise_cell(ev: dict[str, Any], confidence: float) -> dict[str, Any]:
    """One cell's row: means and t-intervals over seeds of its evaluation."""
    ps = ev["per_seed"]
    oracle = ev["baselines"].get("oracle", {}).get("mean_return")
    return {
        "regime": ev["regime"],
        "model": ev["model"],
        "test_return": _ci(ps["test_mean_return"], confidence),
        "test_return_best": _ci(ps["test_mean_return_best"], confidence),
        "gap": _ci(ps["gap"], confidence),
        "train_return": float(np.mean(ps["train_return"])),
        "sharpe": float(np.mean(ps["test_sharpe"])),
        "hit_rate": float(np.mean(ps["test_hit_rate"])),
        "mean_position": float(np.mean(ps["test_mean_position"])),
        "best_epoch": float(np.mean(ps["best_epoch"])),
        "oracle_return": oracle,
        "buy_and_hold_return": ev["baselines"]["buy_and_hold"]["mean_return"],
        "oracle_expected_return": ev["oracle_expected_return"],
        "oracle_fraction": ev["oracle_fraction"],
    }
