"""The sweep's inference and report: per-point summaries, the grid-wide contrast family, verdicts, figures.

Takes each point's evaluations (the dicts `synthetic.metrics.evaluate_cell` produced, as
read back from JSON, keyed by dropout value) and returns values: the
`metrics/sweep.json` dict, the Markdown of `reports/sweep.md` and figures as
PNG bytes. Nothing here reads or writes a file.

Within a point, replica s of every dropout value shares its data draw and
initial weights, so dropout d is compared with dropout 0 paired by seed
(`inference.paired_contrast`). The family is every (point, dropout value != 0,
metric) contrast of the whole grid, test return and gap together; p-values are
adjusted once over that family and each contrast decided by
`inference.adjust_family` (Benjamini-Hochberg or Holm, `sweep.fdr`).

metrics/sweep.json, schema 1 (returns and gaps are per step, in units of the
return series; NaN where a value is undefined, e.g. fewer than two seeds)::

    schema: 1
    dropout: [0.0, ...]            # the contrast axis, reference first
    axes: [{key, values}]          # the grid axes in sweep order (a list: JSON writers sort dict keys)
    method: "bh" | "holm"          # the multiplicity control
    alpha, confidence, power       # q threshold / family-wise level, CI level, power of the MDE
    family_size: int               # contrasts with a p-value (the m of the adjustment)
    points: [{                     # one per computed point, grid order
        name, values: {axis: value},
        settings: {hidden, n_train, rho},   # effective, swept or not
        replicas: S,
        summary: [{                # one row per dropout value, reference first
            dropout, model,
            test_return, test_return_best, gap: {mean, ci_lo, ci_hi},   # t-intervals over seeds
            oracle_fraction: {mean, ci_lo, ci_hi} | null,  # per-seed test return / that seed's realised
                                                           # oracle return; null when the oracle earns 0 (rho 0)
            oracle_fraction_pooled: float | null,          # mean test return / mean oracle return
            train_return, sharpe, hit_rate, mean_position, best_epoch,
            oracle_return, buy_and_hold_return, oracle_expected_return}]}]
    contrasts: [{                  # one per (point, dropout != 0, metric), grid order, test_return then gap
        point, values, settings, dropout,
        metric: "test_return" | "gap",
        mean_a, mean_b,            # dropout d, dropout 0
        diff, ci_lo, ci_hi, t, p, n, sd_diff,   # paired over seeds: d minus 0
        mde,                       # minimum detectable effect at level alpha (one test, unadjusted)
        mde_adjusted,              # ... at alpha / family_size, the strictest level either method applies
        q,                         # BH q-value or Holm-adjusted p, over the whole family
        significant,               # q < alpha
        effect_of_interest,        # compare.effect_of_interest of the metric, or null
        seeds_needed,              # to detect the observed |diff| at alpha / family_size and `power`
        seeds_needed_interest,     # ... to detect the effect of interest
        state}]                    # significant | equivalent (CI inside +- the effect of interest) | undecided
    effect_of_interest: {metric: float}
    verdicts: [str]                # plain words, significant cells then a closing line per metric
    failed: [{point, values, error}]   # points that did not compute: reported, not fatal
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neural_trader.artifacts import markdown_table
from neural_trader.inference import (ADJUSTMENTS, adjust_family, format_fixed, format_p, mean_ci, paired_contrast,
                                    summarise_cell)
from neural_trader.sweep.points import REFERENCE, Point, SweepConfig
from neural_trader.sweep.verdicts import _qname, _value_text, verdicts

__all__ = ["SCHEMA", "FIGURES", "METRICS", "point_summary", "sweep_contrasts", "verdicts", "sweep_summary",
           "sweep_markdown", "sweep_artifact"]

SCHEMA = 1
#: the sweep's figures, plots/sweep/<name>.png
FIGURES = ("effect_test_return", "effect_gap", "oracle_fraction")
#: contrast metric -> its per-seed key in an evaluation
METRICS = {"test_return": "test_mean_return", "gap": "gap"}
_TOL = 1e-12  # |oracle return| at or below this: the oracle earns nothing, no fraction


# ---------------------------------------------------------------- summaries
def _fraction_ci(ev: dict[str, Any], confidence: float) -> dict[str, float] | None:
    """Mean and t-interval over seeds of test return / the same seed's realised oracle return."""
    ps = ev["per_seed"]
    if "oracle_return" not in ps:
        return None
    oracle = np.asarray(ps["oracle_return"], dtype=float)
    if not np.all(np.isfinite(oracle)) or np.any(np.abs(oracle) <= _TOL):
        return None
    mean, lo, hi = mean_ci(np.asarray(ps["test_mean_return"], dtype=float) / oracle, confidence)
    return {"mean": mean, "ci_lo": lo, "ci_hi": hi}


def point_summary(evals: Mapping[float, dict[str, Any]], confidence: float) -> list[dict[str, Any]]:
    """One row per dropout value (reference first): `comparison.summarise_cell` plus the oracle fraction's CI.

    Args:
        evals: {dropout: evaluation} of one point.
        confidence: two-sided level of every interval.
    """
    rows = []
    for d in sorted(evals, key=lambda d: d != REFERENCE):  # stable: the others keep their order
        row = summarise_cell(evals[d], confidence)
        row["oracle_fraction_pooled"] = row.pop("oracle_fraction")
        rows.append({"dropout": float(d), **row, "oracle_fraction": _fraction_ci(evals[d], confidence)})
    return rows


# ---------------------------------------------------------------- contrasts
def sweep_contrasts(points: Sequence[tuple[Point, Mapping[float, dict[str, Any]]]], *, confidence: float = 0.95,
                    power: float = 0.8, alpha: float = 0.05, method: str = "bh",
                    effect_of_interest: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Dropout d minus dropout 0, paired by seed, on test return and gap, at every point; adjusted grid-wide.

    Args:
        points: (point, {dropout: evaluation}) for every computed point; each
            mapping holds the reference 0.0.
        confidence, power: CI level and the power of the minimum detectable effect.
        alpha: q threshold (bh) or family-wise level (holm); also the MDE's level.
        method: "bh" or "holm".
        effect_of_interest: {metric: smallest difference worth finding}, as the
            study's `compare.effect_of_interest`: a contrast that is not
            significant is equivalent when its CI lies inside +- it, else
            undecided, with the seeds that would detect it.

    Returns one record per (point, dropout, metric), in the schema of the module docstring.
    """
    records = []
    for point, evals in points:
        if REFERENCE not in evals:
            raise ValueError(f"point {point.name}: no evaluation at dropout {REFERENCE}, the reference")
        ref = evals[REFERENCE]["per_seed"]
        for d, ev in evals.items():
            if d == REFERENCE:
                continue
            for metric, key in METRICS.items():
                records.append({"point": point.name, "values": dict(point.values), "settings": dict(point.settings),
                                "dropout": float(d), "metric": metric,
                                **paired_contrast(ev["per_seed"][key], ref[key], confidence, alpha, power,
                                                  label=f"point {point.name}, dropout {d}")})
    adjust_family(records, method, alpha=alpha, power=power, margins=effect_of_interest)
    for rec in records:
        rec["q"] = rec.pop("p_adj")
    return records


# ---------------------------------------------------------------- the JSON
def sweep_summary(sweep: SweepConfig, results: Sequence[tuple[Point, Mapping[float, dict[str, Any]]]],
                  failed: Sequence[tuple[Point, str]] = (), *, confidence: float = 0.95,
                  power: float = 0.8, effect_of_interest: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The metrics/sweep.json dict (schema in the module docstring).

    Args:
        results: (point, {dropout: evaluation}) of every point that computed, grid order.
        failed: (point, error message) of every point that did not.
        confidence, power: params `compare` of the study.
    """
    family = sweep_contrasts(results, confidence=confidence, power=power, alpha=sweep.alpha, method=sweep.fdr,
                             effect_of_interest=effect_of_interest)
    points = [{**point.to_json(), "replicas": len(next(iter(evals.values()))["per_seed"]["test_mean_return"]),
               "summary": point_summary(evals, confidence)} for point, evals in results]
    return {
        "schema": SCHEMA,
        "dropout": sorted(sweep.dropout, key=lambda d: d != REFERENCE),
        "axes": [{"key": k, "values": list(v)} for k, v in sweep.axes.items()],
        "method": sweep.fdr, "alpha": sweep.alpha, "confidence": confidence, "power": power,
        "effect_of_interest": dict(effect_of_interest or {}),
        "family_size": int(sum(not math.isnan(r["q"]) for r in family)),
        "points": points,
        "contrasts": family,
        "verdicts": verdicts(family, sweep.alpha, method=sweep.fdr, confidence=confidence),
        "failed": [{"point": p.name, "values": dict(p.values), "error": str(err)} for p, err in failed],
    }


# ---------------------------------------------------------------- Markdown
def _ci_text(c: dict[str, float] | None, digits: int = 4) -> str:
    if not c:
        return "n/a"
    mean, lo, hi = (format_fixed(c[k], digits) for k in ("mean", "ci_lo", "ci_hi"))
    return f"{mean} ({lo} to {hi})"


def _head(summary: dict[str, Any]) -> list[str]:
    """The title, the design in one paragraph, the verdicts and the failed points."""
    pct = f"{summary['confidence']:.0%}"
    axes = "; ".join(f"{a['key']}: {', '.join(str(v) for v in a['values'])}" for a in summary["axes"]) or "none"
    qname = _qname(summary["method"])
    drops = ", ".join(_value_text(d) for d in summary["dropout"])
    lines = [
        "# Dropout sweep", "",
        (f"Grid axes: {axes}. Dropout values at every point: {drops} (each compared with 0, paired by seed: "
         f"replica s shares its data draw and initial weights). {len(summary['points'])} points computed, "
         f"{len(summary['failed'])} failed. Intervals are {pct} t-intervals over seeds; p-values are paired "
         f"t-tests, adjusted over all {summary['family_size']} contrasts of the grid "
         f"({ADJUSTMENTS[summary['method']]}, {qname} < {summary['alpha']:g})."), "",
        "## Verdicts", "",
    ]
    lines += [f"- {v}" for v in summary["verdicts"]] or ["- no contrasts"]
    if summary["failed"]:
        lines += ["", "## Failed points", ""] + [f"- {f['point']}: {f['error']}" for f in summary["failed"]]
    return lines


def _state(r: dict[str, Any]) -> str:
    return r.get("state", "significant" if r["significant"] else "undecided")


def sweep_markdown(summary: dict[str, Any], figures_dir: str = "../plots/sweep") -> str:
    """reports/sweep.md: design, verdicts, failed points, points and contrasts; figures under `figures_dir`."""
    pct, qname = f"{summary['confidence']:.0%}", _qname(summary["method"])
    lines = _head(summary)
    lines += ["", "## Points", "",
              f"| point | dropout | test return ({pct} CI) | oracle fraction | gap (train - test) |",
              "|---|---|---|---|---|"]
    for p in summary["points"]:
        for r in p["summary"]:
            lines.append(f"| {p['name']} | {_value_text(r['dropout'])} | {_ci_text(r['test_return'])} "
                         f"| {_ci_text(r['oracle_fraction'], 2)} | {_ci_text(r['gap'])} |")
    lines += ["", "## Contrasts (dropout d minus dropout 0)", "",
              (f"| point | dropout | metric | diff | {pct} CI | p | {qname} | detectable at {summary['power']:.0%} "
               "power (alpha / adjusted) | seeds needed: observed / of interest | verdict |"),
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["contrasts"]:
        need = " / ".join("n/a" if r.get(k) is None else f"{r[k]:,}" for k in ("seeds_needed", "seeds_needed_interest"))
        diff, lo, hi, mde, mde_adjusted = (format_fixed(r[k]) for k in ("diff", "ci_lo", "ci_hi", "mde", "mde_adjusted"))
        p_text, q_text = (format_p(r[k], relation=False) for k in ("p", "q"))
        lines.append(f"| {r['point']} | {_value_text(r['dropout'])} | {r['metric']} | {diff} | {lo} to {hi} | {p_text} "
                     f"| {q_text} "
                     f"| {mde} / {mde_adjusted} | {need} "
                     f"| {_state(r)} |")
    lines += ["", "## Figures", ""] + [f"![{f}]({figures_dir}/{f}.png)" for f in FIGURES]
    return "\n".join(lines) + "\n"


def sweep_artifact(summary: dict[str, Any], figures: Mapping[str, str]) -> str:
    """reports/sweep.md for the Prefect UI: its words, tables that fit a 700 px column, figures inlined.

    `figures`: figure name -> image source (a data URI). The points table is
    split into test return and gap; the contrasts into one decision table per
    metric (diff with its unadjusted CI, q, state) and a power table.
    """
    pct, qname = f"{summary['confidence']:.0%}", _qname(summary["method"])
    rows = [(p["name"], _value_text(r["dropout"]), r) for p in summary["points"] for r in p["summary"]]
    lines = [*_head(summary), "", "## Points", ""]
    lines += markdown_table(["point", "dropout", f"test return ({pct} CI)", "of oracle (CI)"],
                            [[p, d, _ci_text(r["test_return"]), _ci_text(r["oracle_fraction"], 2)] for p, d, r in rows])
    lines += ["", "### Gap", ""]
    lines += markdown_table(["point", "dropout", f"gap, train - test ({pct} CI)"],
                            [[p, d, _ci_text(r["gap"])] for p, d, r in rows])
    lines += ["", "## Contrasts (dropout d minus dropout 0)", "",
              f"Each metric's contrasts, then their power: p unadjusted; detectable: the effect found at "
              f"{summary['power']:.0%} power at alpha / at the adjusted level; seeds needed to detect the observed "
              "difference / the effect of interest."]
    for metric, label in (("test_return", "Test return"), ("gap", "Gap")):
        family = [r for r in summary["contrasts"] if r["metric"] == metric]
        if family:
            lines += ["", f"### {label}", ""]
            lines += markdown_table(["point", "dropout", f"diff (unadjusted {pct} CI)", qname, "verdict"],
                                    [[r["point"], _value_text(r["dropout"]), _ci_text(_diff(r)),
                                      format_p(r["q"], relation=False), _state(r)] for r in family])
            lines += ["", f"Power, {label.lower()}:", ""]
            lines += markdown_table(["point", "dropout", "p", "detectable", "seeds needed"],
                                    [[r["point"], _value_text(r["dropout"]), format_p(r["p"], relation=False),
                                      f"{format_fixed(r['mde'])} / {format_fixed(r['mde_adjusted'])}",
                                      " / ".join("n/a" if r.get(k) is None else f"{r[k]:,}"
                                                 for k in ("seeds_needed", "seeds_needed_interest"))]
                                     for r in family])
    lines += ["", "## Figures", ""]
    for f, src in figures.items():
        lines += [f"![{f}]({src})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _diff(r: dict[str, Any]) -> dict[str, float]:
    return {"mean": r["diff"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"]}
