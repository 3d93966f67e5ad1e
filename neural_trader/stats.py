"""Inference across seeds: confidence intervals, paired tests, Holm, power.

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
* p-values are two-sided. `holm` controls the family-wise error rate.
* The minimum detectable effect (MDE) is in the units of the compared metric.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as st

__all__ = [
    "mean_ci",
    "paired_test",
    "holm",
    "min_detectable_effect",
    "contrasts",
    "format_number",
    "format_p",
    "METRIC_LABELS",
]

#: how a metric is named in a verdict; unknown metrics use their key
METRIC_LABELS: dict[str, str] = {"test_return": "test return", "gap": "overfitting gap"}


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
    """P(|T| > crit) for T ~ noncentral t(df, nc).

    The lower tail P(T < -crit) is taken as P(T' > crit) with T' ~ nct(df, -nc)
    (scipy's nct.cdf far in the left tail can return NaN); a non-finite tail
    that far out is negligible and counts as 0.
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


# ---------------------------------------------------------------- contrasts
def _cell(results: Mapping, regime: str, variant: str, metric: str) -> np.ndarray:
    try:
        cell = results[(regime, variant)]
    except KeyError:
        raise ValueError(f"results has no cell ({regime!r}, {variant!r})") from None
    try:
        values = cell[metric]
    except KeyError:
        raise ValueError(f"results[({regime!r}, {variant!r})] has no metric {metric!r}") from None
    return _vector(values, f"results[({regime!r}, {variant!r})][{metric!r}]")


def _verdict(a: str, b: str, metric: str, rec: dict[str, Any], confidence: float, power: float) -> str:
    label = METRIC_LABELS.get(metric, metric)
    conf = _percent(confidence)
    diff, lo, hi = rec["diff"], rec["ci_lo"], rec["ci_hi"]
    if math.isnan(rec["p"]):
        return f"{a} vs {b} on {label} is not testable with n = {rec['n']} seed(s) (diff {format_number(diff)})"
    if not rec["significant"]:
        return (
            f"no significant difference between {a} and {b} on {label} "
            f"(diff {format_number(diff)}, {conf} CI {format_number(lo)} to {format_number(hi)}, "
            f"adjusted p {format_p(rec['p_adj'])}; detectable at {_percent(power)} power: "
            f"{format_number(rec['mde'])})"
        )
    up = diff > 0
    size = format_number(abs(diff))
    # the interval of the size of the effect in the stated direction
    mlo, mhi = (lo, hi) if up else (-hi, -lo)
    tail = f"({conf} CI {format_number(mlo)} to {format_number(mhi)}, adjusted p {format_p(rec['p_adj'])})"
    if metric == "test_return":
        return f"{a} {'beats' if up else 'trails'} {b} by {size} per step {tail}"
    if metric == "gap":
        return f"{a} has a {'larger' if up else 'smaller'} overfitting gap than {b} by {size} {tail}"
    return f"{a} is {'higher' if up else 'lower'} than {b} on {label} by {size} {tail}"


def contrasts(
    results: Mapping[tuple[str, str], Mapping[str, Any]],
    regimes: Sequence[str],
    variants: Sequence[str],
    *,
    null_regime: str | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
    regime_metrics: Sequence[str] = ("test_return",),
    variant_metrics: Sequence[str] = ("test_return", "gap"),
) -> list[dict[str, Any]]:
    """The study's family of paired contrasts, Holm-adjusted together.

    Args:
        results: {(regime, variant): {metric: per-seed values (S,)}}; cells
            compared in one contrast are paired by seed index and need equal S.
        regimes, variants: names in params order.
        null_regime: the regime every other regime is compared against (the
            i.i.d. one); None uses regimes[0].
        confidence, alpha, power: as in CompareConfig, so
            `contrasts(..., **cfg.compare.model_dump())` works.
        regime_metrics, variant_metrics: the metrics of each kind of contrast.

    The family, in this order:
      1. for each variant, each regime other than the reference minus the
         reference, on each of `regime_metrics`:
         name "momentum - random | base" (" | metric" added when there are
         several regime metrics);
      2. for each regime, each variant other than variants[0] minus
         variants[0], on each of `variant_metrics`:
         name "dropout - base | momentum | test_return".

    Each record holds: name, kind ('regime' or 'variant'), a, b, within (the
    fixed variant or regime), metric, mean_a, mean_b, diff (mean of a - b),
    ci_lo, ci_hi (t interval at `confidence`), t, p, p_adj (Holm over the whole
    family), significant (p_adj < alpha), mde, n and a one-line verdict.

    `mde` is the minimum detectable effect at `power` for a two-sided test at
    level alpha / m (m = family size): the strictest level Holm can apply, so
    an effect of that size would be declared significant, after adjustment,
    with at least that power. It uses the sample sd of the differences.
    """
    regimes, variants = list(regimes), list(variants)
    for what, names in (("regimes", regimes), ("variants", variants)):
        if not names:
            raise ValueError(f"{what} must name at least one entry")
        if len(set(names)) != len(names):
            raise ValueError(f"{what} has duplicate names: {names}")
    confidence = _check_level(confidence, "confidence")
    alpha = _check_level(alpha, "alpha")
    power = _check_level(power, "power")
    if null_regime is None:
        reference = regimes[0]
    elif null_regime not in regimes:
        raise ValueError(f"null_regime {null_regime!r} is not one of the regimes {regimes}")
    else:
        reference = null_regime
    regime_metrics, variant_metrics = list(regime_metrics), list(variant_metrics)

    plan: list[tuple[str, str, str, str, str, str]] = []  # kind, name, a, b, within, metric
    for variant in variants:
        for regime in regimes:
            if regime == reference:
                continue
            for metric in regime_metrics:
                name = f"{regime} - {reference} | {variant}"
                if len(regime_metrics) > 1:
                    name += f" | {metric}"
                plan.append(("regime", name, regime, reference, variant, metric))
    base = variants[0]
    for regime in regimes:
        for variant in variants[1:]:
            for metric in variant_metrics:
                plan.append(("variant", f"{variant} - {base} | {regime} | {metric}", variant, base, regime, metric))

    m = len(plan)
    records: list[dict[str, Any]] = []
    for kind, name, a, b, within, metric in plan:
        if kind == "regime":
            va, vb = _cell(results, a, within, metric), _cell(results, b, within, metric)
        else:
            va, vb = _cell(results, within, a, metric), _cell(results, within, b, metric)
        if va.size != vb.size:
            raise ValueError(f"{name}: cannot pair {va.size} seeds with {vb.size} seeds")
        test = paired_test(va, vb, confidence)
        sd = float(np.std(va - vb, ddof=1)) if va.size > 1 else math.nan
        records.append(
            dict(
                name=name,
                kind=kind,
                a=a,
                b=b,
                within=within,
                metric=metric,
                mean_a=float(va.mean()),
                mean_b=float(vb.mean()),
                diff=test["diff"],
                ci_lo=test["lo"],
                ci_hi=test["hi"],
                t=test["t"],
                p=test["p"],
                mde=min_detectable_effect(sd, test["n"], alpha / m, power),
                n=test["n"],
            )
        )
    if not records:
        return []
    adjusted = holm([r["p"] for r in records])
    for rec, p_adj in zip(records, adjusted):
        rec["p_adj"] = float(p_adj)
        rec["significant"] = bool(p_adj < alpha)  # NaN compares False
        where = f"with {rec['within']}" if rec["kind"] == "regime" else f"on {rec['within']}"
        rec["verdict"] = f"{where}: " + _verdict(rec["a"], rec["b"], rec["metric"], rec, confidence, power)
    return records
