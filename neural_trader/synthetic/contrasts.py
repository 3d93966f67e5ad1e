"""The study's family of paired contrasts over seeds, Holm-adjusted together, with verdicts in words.

Cells of the study grid that share a seed index share their data seed, so two
cells are compared paired by seed index (`stats.paired_test`); the whole family
is Holm-adjusted, and each record carries its minimum detectable effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neural_trader.stats import (_check_level, _percent, _vector, decision, format_number, format_p, holm, min_detectable_effect, paired_test)

__all__ = ["contrasts", "METRIC_LABELS", "STATES"]

#: a contrast's verdict: a difference found, a difference ruled out (within the effect of interest), or neither
STATES = ("significant", "equivalent", "undecided")

#: how a metric is named in a verdict; unknown metrics use their key
METRIC_LABELS: dict[str, str] = {"test_return": "test return", "gap": "overfitting gap"}

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
    if rec["state"] == "equivalent":
        return (
            f"{a} and {b} are equivalent on {label} within +-{format_number(rec['effect_of_interest'])} "
            f"(diff {format_number(diff)}, {conf} CI {format_number(lo)} to {format_number(hi)}, inside the margin)"
        )
    if rec["state"] == "undecided":
        effect = rec["effect_of_interest"]
        need, what = (rec["seeds_needed_interest"], format_number(effect)) if effect else \
            (rec["seeds_needed"], f"{format_number(abs(diff))} (the one observed)")
        seeds = f"about {need:,} seeds" if need else "no number of seeds"
        return (
            f"undecided between {a} and {b} on {label}: {seeds} would detect an effect of {what} at "
            f"{_percent(power)} power, {rec['n']} do now (diff {format_number(diff)}, {conf} CI "
            f"{format_number(lo)} to {format_number(hi)}, adjusted p {format_p(rec['p_adj'])})"
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
    effect_of_interest: Mapping[str, float] | None = None,
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
        effect_of_interest: {metric: the smallest difference worth finding, in the
            metric's units}; a metric without one is never called equivalent.

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
    family), significant (p_adj < alpha), mde, n, effect_of_interest (or None),
    seeds_needed (to detect the observed |diff|), seeds_needed_interest (to
    detect the effect of interest), state and a one-line verdict.

    state is one of STATES: "significant" after the Holm adjustment;
    else "equivalent" when the CI at `confidence` lies inside +- the effect of
    interest (the CI rule: at 95% it is stricter than two one-sided tests at
    5%, which use the 90% interval); else "undecided", and the verdict says
    how many seeds would detect the effect of interest. Seeds needed use the
    sample sd of the differences, the same level alpha / m and `power` as the
    MDE (statsmodels' TTestPower); None when there is nothing to size them
    from. A contrast is never reported as "no difference".

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
    sds: list[float] = []  # the sd of each contrast's differences, for the seeds it needs
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
        sds.append(sd)
    if not records:
        return []
    adjusted = holm([r["p"] for r in records])
    for rec, p_adj, sd in zip(records, adjusted, sds):
        rec["p_adj"] = float(p_adj)
        rec["significant"] = bool(p_adj < alpha)  # NaN compares False
        rec.update(decision(rec["significant"], rec["diff"], rec["ci_lo"], rec["ci_hi"], sd,
                            (effect_of_interest or {}).get(rec["metric"]), alpha / m, power))
        where = f"with {rec['within']}" if rec["kind"] == "regime" else f"on {rec['within']}"
        rec["verdict"] = f"{where}: " + _verdict(rec["a"], rec["b"], rec["metric"], rec, confidence, power)
    return records
