"""Inference over seeds for every study: paired contrasts, one family's adjustment and verdict, in words.

Every replica (seed) of a variant is one independent draw, so a per-seed
statistic (S,) is a sample of size S. Cells that share a seed index share their
data seed, so two cells are compared *paired by seed index*: a one-sample t-test
on the S differences (`paired_contrast`). The synthetic study and the sweep
build, adjust and decide their contrasts here; they and the markets' report
word their verdicts with the formatters here.

Everything here takes numpy arrays (torch tensors are accepted and copied to
the CPU) and returns plain Python floats, dicts and numpy arrays; nothing reads
or writes a file.

Conventions:

* Confidence intervals are two-sided Student-t intervals with S-1 degrees of
  freedom. With fewer than two values there is no spread to estimate: the mean
  is returned and the interval, t and p are NaN.
* p-values are two-sided. A family of contrasts is adjusted together by
  `adjust`: Holm (family-wise error rate) or Benjamini-Hochberg (false
  discovery rate). A contrast without a p-value (fewer than two seeds) is not
  a test: it stays NaN and does not count towards the family size m.
* A contrast is then decided (`adjust_family`, the states of STATES):
  significant when its adjusted p-value is below alpha; else equivalent when
  its CI lies inside +- the effect of interest; else undecided. It is never
  reported as "no difference". Its minimum detectable effect (MDE) and the
  seeds it needs are taken at alpha / m, the strictest level either adjustment
  applies, so an effect of that size is found, after adjustment, with at least
  the stated power.
* The power behind the MDE is the noncentral t of statsmodels' `TTestPower`,
  both tails, made robust where statsmodels returns NaN (see `_power_exact`).
  The MDE is in the units of the compared metric.
* A verdict gives the *unadjusted* interval next to the adjusted p-value, and
  says so (`format_evidence`): "(unadjusted 95% CI -0.00183 to -0.000125;
  Holm-adjusted p = 0.14)". The adjusted p decides; the interval gives the
  size. Adjusted intervals were weighed and not used. Holm is step-down, and
  its compatible simultaneous intervals (Strassburger & Bretz 2008, Guilbaud
  2008) say nothing about size: the bound of a rejected contrast falls on 0,
  unless all of the family is rejected. Bonferroni intervals at alpha / m are
  valid simultaneous intervals, but they can cover 0 where Holm rejects, so an
  interval and its verdict would disagree. Equivalence (the CI inside +- the
  effect of interest) is judged on the unadjusted interval, and a wider interval
  would change those verdicts. BH controls the false discovery rate and has no
  simultaneous intervals at all (false coverage-rate intervals,
  Benjamini & Yekutieli 2005, cover only the selected contrasts).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as st

__all__ = [
    "ADJUSTMENTS",
    "STATES",
    "mean_ci",
    "paired_contrast",
    "adjust",
    "adjust_family",
    "min_detectable_effect",
    "seeds_needed",
    "summarise_cell",
    "format_number",
    "format_p",
    "format_percent",
    "format_fixed",
    "format_evidence",
]

#: `adjust`'s methods, in words
ADJUSTMENTS = {"bh": "Benjamini-Hochberg false discovery rate", "holm": "Holm family-wise error rate"}

#: a contrast's verdict: a difference found, a difference ruled out (within the effect of interest), or neither
STATES = ("significant", "equivalent", "undecided")


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


def format_p(p: float, *, relation: bool = True) -> str:
    """A p-value for a sentence: '< 1e-6', '= 3.2e-05', '= 0.041', '= 1'; for a table cell (not `relation`) no '= '."""
    p = float(p)
    if math.isnan(p):
        text = "= n/a"
    elif p < 1e-6:
        text = "< 1e-6"
    elif p < 1e-3:
        text = f"= {p:.1e}"
    else:
        text = f"= {p:.2g}"
    return text if relation else text.removeprefix("= ")


def format_percent(level: float) -> str:
    """A level as a percentage: 0.95 -> '95%', 0.975 -> '97.5%'."""
    return f"{level * 100:g}%"


def format_fixed(x: float | None, digits: int = 4) -> str:
    """A table cell: `x` to `digits` decimals; 'n/a' for None or a non-finite float."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def format_evidence(lo: float, hi: float, confidence: float, *, lead: str | None = None, tail: str | None = None,
                    fmt: Callable[[float], str] = format_number, interval: str = "CI") -> str:
    """A verdict's evidence in brackets: '(<lead>, unadjusted 95% <interval> <lo> to <hi>; <tail>)'.

    The bounds are written by `fmt`. The interval is always the unadjusted one
    (see the module docstring), so it says so; `tail` is what decides, e.g.
    'Holm-adjusted p = 0.14'.
    """
    ci = f"unadjusted {format_percent(confidence)} {interval} {fmt(lo)} to {fmt(hi)}"
    text = f"{lead}, {ci}" if lead else ci
    return f"({text}; {tail})" if tail else f"({text})"


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


def paired_contrast(a: Any, b: Any, confidence: float = 0.95, alpha: float = 0.05, power: float = 0.8, *,
                    label: str = "paired values") -> dict[str, Any]:
    """a minus b, paired by seed index (a[i] with b[i]): the contrast record every study reports.

    Returns dict(mean_a, mean_b, diff, ci_lo, ci_hi, t, p, n, sd_diff, mde):
    the means, the mean difference and its Student-t interval at `confidence`,
    the t statistic (S-1 df) of the two-sided paired t-test of mean(a - b) = 0
    and its p-value (equal to `scipy.stats.ttest_rel(a, b).pvalue`), the number
    of pairs, the sd of the differences (ddof=1; NaN below two pairs) and the
    minimum detectable effect at level `alpha` (one test, unadjusted) and `power`.

    Zero-variance differences, where the t statistic is 0/0 or x/0:
    all differences exactly 0 -> t = 0, p = 1; all equal and non-zero ->
    t = +-inf, p = 0; both with ci_lo = ci_hi = diff. Fewer than two pairs ->
    t, p, ci_lo, ci_hi are NaN. `label` names the contrast in errors.
    """
    a, b = _vector(a, f"{label}: a"), _vector(b, f"{label}: b")
    if a.shape != b.shape:
        raise ValueError(f"{label}: cannot pair {a.size} seeds with {b.size} (paired values need equal lengths)")
    confidence = _check_level(confidence, "confidence")
    d = a - b
    n = int(d.size)
    if n == 0:
        raise ValueError(f"{label}: a paired contrast needs at least one pair")
    sd = float(np.std(d, ddof=1)) if n > 1 else math.nan
    return dict(mean_a=float(a.mean()), mean_b=float(b.mean()), **_paired_t(d, confidence), n=n, sd_diff=sd,
                mde=min_detectable_effect(sd, n, alpha, power))


def _paired_t(d: np.ndarray, confidence: float) -> dict[str, float]:
    """diff, ci_lo, ci_hi, t, p of the differences d (n,), as `paired_contrast` documents."""
    n = d.size
    if n < 2:
        return dict(diff=float(d[0]), ci_lo=math.nan, ci_hi=math.nan, t=math.nan, p=math.nan)
    if np.all(d == d[0]):
        diff = float(d[0])
        if diff == 0.0:
            return dict(diff=0.0, ci_lo=0.0, ci_hi=0.0, t=0.0, p=1.0)
        return dict(diff=diff, ci_lo=diff, ci_hi=diff, t=math.copysign(math.inf, diff), p=0.0)
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    t = diff / se
    p = float(min(1.0, 2.0 * st.t.sf(abs(t), n - 1)))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1) * se)
    return dict(diff=diff, ci_lo=diff - half, ci_hi=diff + half, t=float(t), p=p)


# ------------------------------------------------------------ multiplicity
def adjust(pvalues: Any, method: str) -> np.ndarray:
    """Adjusted p-values of one family, in input order: "holm" (family-wise) or "bh" (false discovery rate).

    Holm: with the m p-values sorted ascending, p_(i) becomes
    max_{j <= i} min(1, (m - j + 1) * p_(j)); rejecting where it is < alpha
    controls the family-wise error rate at alpha under any dependence.
    Benjamini-Hochberg: statsmodels' `multipletests(method="fdr_bh")` q-values;
    rejecting where q < alpha controls the false discovery rate at alpha for
    independent or positively dependent tests. Never below the raw p-value,
    capped at 1. NaN entries (no test) stay NaN and do not count towards m.

    Holm is written out because statsmodels' holm runs a full `gc.collect()`
    on every call: benchmarks/holm_speed.py measured it about 2,500 times
    slower in a bare interpreter and 15,000 times with torch loaded (0.2 s a
    call), which made the 300 families of the contrasts' null test take 50 s
    instead of 6 s. tests/unit/test_inference.py holds it to statsmodels bit for bit.
    """
    if method not in ADJUSTMENTS:
        raise ValueError(f"method must be one of {sorted(ADJUSTMENTS)}, got {method!r}")
    p = _vector(pvalues, "pvalues")
    valid = ~np.isnan(p)
    q = p[valid]
    if np.any((q < 0) | (q > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {q.min()} .. {q.max()}")
    out = np.full(p.shape, np.nan)
    if method == "holm":
        m = q.size
        order = np.argsort(q, kind="stable")
        out[np.flatnonzero(valid)[order]] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    elif q.size:
        # imported here: statsmodels' multitest imports pandas (about 1 s), which the synthetic study never needs
        from statsmodels.stats.multitest import multipletests

        out[valid] = multipletests(q, method="fdr_bh")[1]
    return out


def adjust_family(records: Sequence[dict[str, Any]], method: str, *, alpha: float, power: float,
                  margins: Mapping[str, float] | None = None) -> int:
    """Adjust a family of `paired_contrast` records together and decide each, in place; returns m.

    Adds to each record: p_adj (`adjust` over the family), significant
    (p_adj < alpha), effect_of_interest (margins[metric], None: never
    equivalent), state (one of STATES, see the module docstring) and, at
    level alpha / m (m: the records with a p-value, at least 1): mde_adjusted,
    seeds_needed (to detect the observed |diff|) and seeds_needed_interest (to
    detect the effect of interest), all at `power`.
    """
    adjusted = adjust([r["p"] for r in records], method)
    m = max(1, int(np.sum(~np.isnan(adjusted))))
    level = alpha / m
    for rec, p_adj in zip(records, adjusted):
        margin = (margins or {}).get(rec["metric"])
        significant = bool(p_adj < alpha)  # NaN compares False
        inside = margin is not None and -margin < rec["ci_lo"] and rec["ci_hi"] < margin
        sd = rec["sd_diff"]
        rec.update(p_adj=float(p_adj), significant=significant, effect_of_interest=margin,
                   mde_adjusted=min_detectable_effect(sd, rec["n"], level, power),
                   seeds_needed=seeds_needed(sd, rec["diff"], level, power),
                   seeds_needed_interest=seeds_needed(sd, margin or 0.0, level, power),
                   state="significant" if significant else "equivalent" if inside else "undecided")
    return m


# -------------------------------------------------------------------- power
def _power_exact(nc: float, df: int, crit: float) -> float:
    """P(|T| > crit) for T ~ noncentral t(df, nc): statsmodels' `TTestPower.power`, made robust.

    statsmodels (and scipy's nct.cdf) return NaN for the lower tail far out, and
    `TTestPower.solve_power` then stops at its search bound (measured with
    statsmodels 0.15: n = 2, alpha 0.01, power 0.9 gave 10.0 instead of 74.05).
    So the lower tail P(T < -crit) is taken as P(T' > crit), T' ~ nct(df, -nc),
    and a non-finite tail that far out counts as 0. tests/unit/test_inference.py holds
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
    found by doubling and bisection over n. tests/unit/test_inference.py holds it to
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
