"""The study's family of paired contrasts over seeds, Holm-adjusted together, with verdicts in words.

Cells of the study grid that share a seed index share their data seed, so two
cells are compared paired by seed index (`inference.paired_contrast`); the
whole family is Holm-adjusted and decided by `inference.adjust_family`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from neural_trader.inference import (adjust_family, format_evidence, format_number, format_p, format_percent,
                                    paired_contrast)

__all__ = ["contrasts", "METRIC_LABELS"]

#: how a metric is named in a verdict; unknown metrics use their key
METRIC_LABELS: dict[str, str] = {"test_return": "test return", "gap": "overfitting gap"}

# ---------------------------------------------------------------- contrasts
def _cell(results: Mapping, regime: str, variant: str, metric: str) -> Any:
    try:
        cell = results[(regime, variant)]
    except KeyError:
        raise ValueError(f"results has no cell ({regime!r}, {variant!r})") from None
    try:
        return cell[metric]
    except KeyError:
        raise ValueError(f"results[({regime!r}, {variant!r})] has no metric {metric!r}") from None


def _verdict(a: str, b: str, metric: str, rec: dict[str, Any], confidence: float, power: float) -> str:
    label = METRIC_LABELS.get(metric, metric)
    diff, lo, hi = rec["diff"], rec["ci_lo"], rec["ci_hi"]
    if math.isnan(rec["p"]):
        return f"{a} vs {b} on {label} is not testable with n = {rec['n']} seed(s) (diff {format_number(diff)})"
    adjusted = f"Holm-adjusted p {format_p(rec['p_adj'])}"
    if rec["state"] == "equivalent":
        return (f"{a} and {b} are equivalent on {label} within ±{format_number(rec['effect_of_interest'])} "
                + format_evidence(lo, hi, confidence, lead=f"diff {format_number(diff)}", tail="inside the margin"))
    if rec["state"] == "undecided":
        effect = rec["effect_of_interest"]
        need, what = (rec["seeds_needed_interest"], format_number(effect)) if effect else \
            (rec["seeds_needed"], f"{format_number(abs(diff))} (the one observed)")
        seeds = f"about {need:,} seeds" if need else "no number of seeds"
        return (f"undecided between {a} and {b} on {label}: {seeds} would detect an effect of {what} at "
                f"{format_percent(power)} power, {rec['n']} do now "
                + format_evidence(lo, hi, confidence, lead=f"diff {format_number(diff)}", tail=adjusted))
    up = diff > 0
    size = format_number(abs(diff))
    # the interval of the size of the effect in the stated direction
    tail = format_evidence(*((lo, hi) if up else (-hi, -lo)), confidence, tail=adjusted)
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
         name "momentum - random / base" (" / metric" added when there are
         several regime metrics);
      2. for each regime, each variant other than variants[0] minus
         variants[0], on each of `variant_metrics`:
         name "dropout - base / momentum / test_return".

    Each record holds: name, kind ('regime' or 'variant'), a, b, within (the
    fixed variant or regime), metric, the fields of `inference.paired_contrast`
    but sd_diff, and those `inference.adjust_family` adds over the whole family
    with Holm (p_adj, significant, effect_of_interest, seeds_needed,
    seeds_needed_interest, state), `mde` being its MDE at alpha / m, then a
    one-line verdict. The undecided verdict says how many seeds would detect the
    effect of interest. Equivalence is the CI rule: at 95% it is stricter than
    two one-sided tests at 5%, which use the 90% interval.
    """
    regimes, variants = list(regimes), list(variants)
    for what, names in (("regimes", regimes), ("variants", variants)):
        if not names:
            raise ValueError(f"{what} must name at least one entry")
        if len(set(names)) != len(names):
            raise ValueError(f"{what} has duplicate names: {names}")
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
                name = f"{regime} - {reference} / {variant}"
                if len(regime_metrics) > 1:
                    name += f" / {metric}"
                plan.append(("regime", name, regime, reference, variant, metric))
    base = variants[0]
    for regime in regimes:
        for variant in variants[1:]:
            for metric in variant_metrics:
                plan.append(("variant", f"{variant} - {base} / {regime} / {metric}", variant, base, regime, metric))

    records: list[dict[str, Any]] = []
    for kind, name, a, b, within, metric in plan:
        cells = ((a, within), (b, within)) if kind == "regime" else ((within, a), (within, b))
        va, vb = (_cell(results, *cell, metric) for cell in cells)
        records.append(dict(name=name, kind=kind, a=a, b=b, within=within, metric=metric,
                            **paired_contrast(va, vb, confidence, alpha, power, label=name)))
    adjust_family(records, "holm", alpha=alpha, power=power, margins=effect_of_interest)
    for rec in records:
        rec["mde"] = rec.pop("mde_adjusted")  # this study reports the MDE at the family's level only
        del rec["sd_diff"]
        where = f"with {rec['within']}" if rec["kind"] == "regime" else f"on {rec['within']}"
        rec["verdict"] = f"{where}: " + _verdict(rec["a"], rec["b"], rec["metric"], rec, confidence, power)
    return records
