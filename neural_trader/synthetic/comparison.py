"""The comparison across cells: per-cell summaries, pooling of reruns, the contrast family, figures.

Takes the per-cell evaluations that `synthetic.metrics.evaluate_cell` produced (plain
dicts, as read back from JSON) and returns values: the comparison dict (schema
in `stages.compare`), its flat headline, and the figures as PNG bytes. Nothing
here reads or writes a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as st

from neural_trader import plots
from neural_trader.evaluate import oracle_fraction
from neural_trader.inference import format_p, summarise_cell

from neural_trader.synthetic.contrasts import METRIC_LABELS, contrasts
from neural_trader.synthetic.sources import Oracle

__all__ = ["SCHEMA", "FIGURES", "cell_name", "summarise_cell", "pool_evaluations", "compare_cells",
           "headline", "null_regime", "figures", "contrast_panels", "valid_return_table"]

SCHEMA = 1
#: the comparison's figures, plots/comparison/<name>.png, in the report's order: the contrasts first
FIGURES = ("contrasts", "test_return", "gap", "learned_position", "valid_return")

#: the x-axis of each metric's panel of the contrasts figure
_DIFF_LABELS = {"test_return": "difference in test return per step (position x next return)",
                "gap": "difference in overfitting gap (train - test return per step)"}

Cell = tuple[str, str]  # (regime, model)


def cell_name(regime: str, model: str) -> str:
    return f"{regime}-{model}"


def pool_evaluations(evals: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cell's evaluations from several runs as one: per-seed values and curves concatenated.

    Pairs stay aligned because every run contributes its seeds in the same
    order to every cell.
    """
    if len(evals) == 1:
        return evals[0]
    first = evals[0]
    per_seed = {k: [v for ev in evals for v in ev["per_seed"][k]] for k in first["per_seed"]}
    baselines = {
        name: {k: float(np.mean(per_seed[f"{name}_return"])) if k == "mean_return"
               else float(np.mean([ev["baselines"][name][k] for ev in evals])) for k in first["baselines"][name]}
        for name in first["baselines"]
    }
    realised = baselines.get("oracle", {}).get("mean_return")
    test = float(np.mean(per_seed["test_mean_return"]))
    return {
        **first,
        "replicas": sum(ev["replicas"] for ev in evals),
        "per_seed": per_seed,
        "baselines": baselines,
        "oracle_fraction": None if realised is None else oracle_fraction(test, realised),
        "curve": {"last_return": first["curve"]["last_return"],
                  "position": [row for ev in evals for row in ev["curve"]["position"]]},
        "valid_return_curve": [row for ev in evals for row in ev["valid_return_curve"]],
    }


def null_regime(oracles: Mapping[str, Oracle | None]) -> str | None:
    """The first regime whose known law has nothing to learn: every other regime is set against it."""
    return next((r for r, o in oracles.items() if o is not None and not o.signal), None)


def compare_cells(evals: Mapping[Cell, dict[str, Any]], regimes: Sequence[str], models: Sequence[str],
                  oracles: Mapping[str, Oracle | None], compare: Mapping[str, float], runs: int = 1) -> dict[str, Any]:
    """The comparison: every cell's summary and the Holm-adjusted family of paired contrasts.

    Args:
        evals: {(regime, model): evaluation}, in params order.
        oracles: each regime's source oracle (None: law unknown).
        compare: confidence, alpha and power (params `compare`).
        runs: how many independent runs the evaluations pool.
    """
    cells = [summarise_cell(evals[key], compare["confidence"]) for key in evals]
    per_seed = {key: {"test_return": ev["per_seed"]["test_mean_return"], "gap": ev["per_seed"]["gap"]}
                for key, ev in evals.items()}
    family = contrasts(per_seed, list(regimes), list(models), null_regime=null_regime(oracles), **compare)
    replicas = len(next(iter(per_seed.values()))["test_return"])
    return {"schema": SCHEMA, "replicas": replicas, "runs": runs, **compare, "cells": cells, "contrasts": family}


def headline(comparison: dict[str, Any]) -> dict[str, Any]:
    """The numbers `dvc exp show` lists: flat maps, no lists."""
    cells, family = comparison["cells"], comparison["contrasts"]
    keys = [f"{r['metric']}:{r['a']}-{r['b']}@{r['within']}" for r in family]
    out = {
        "test_return": {cell_name(x["regime"], x["model"]): x["test_return"]["mean"] for x in cells},
        "gap": {cell_name(x["regime"], x["model"]): x["gap"]["mean"] for x in cells},
        "diff": {k: r["diff"] for k, r in zip(keys, family)},
        "p_adj": {k: r["p_adj"] for k, r in zip(keys, family)},
    }
    return out


def valid_return_table(valid: Mapping[str, np.ndarray], epochs: np.ndarray) -> str:
    """Long-format TSV (epoch, cell, valid_return mean over seeds) of (S, epochs) curves per cell."""
    rows = ["epoch\tcell\tvalid_return"] + [
        f"{e}\t{cell}\t{v:.6g}" for cell, values in valid.items() for e, v in zip(epochs, values.mean(axis=0))
    ]
    return "\n".join(rows) + "\n"


def _mean_ci(confidence: float) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A figure's band: (S, E) -> the mean over seeds and its t-interval at `confidence`, per column."""
    def band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = values.shape[0]
        mean = values.mean(axis=0)
        half = st.t.ppf(0.5 + confidence / 2, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
        return mean, mean - half, mean + half
    return band


def contrast_panels(family: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The family of contrasts as forest-plot panels: one per (a - b, metric), each at its own scale.

    Returns the keyword arguments of `plots.forest_png`: panels (title -> a row per
    contrast, labelled by what it is within, with its state and adjusted p), the
    x-label and the effect of interest of each panel.
    """
    panels: dict[str, list[plots.ForestRow]] = {}
    xlabels, margins = {}, {}
    for r in family:
        title = f"{r['a']} - {r['b']}: {METRIC_LABELS.get(r['metric'], r['metric'])}"
        if r["effect_of_interest"]:
            title += f" (effect of interest \u00b1{r['effect_of_interest']:g})"
        where = f"with {r['within']}" if r["kind"] == "regime" else f"on {r['within']}"
        note = f"{r['state']}, adjusted p {format_p(r['p_adj'], relation=False)}"
        panels.setdefault(title, []).append(plots.ForestRow(where, r["diff"], r["ci_lo"], r["ci_hi"], r["state"], note))
        xlabels[title] = _DIFF_LABELS.get(r["metric"], f"difference in {r['metric']}")
        margins[title] = r["effect_of_interest"]
    return {"panels": panels, "xlabels": xlabels, "margins": margins}


def figures(comparison: dict[str, Any], evals: Mapping[Cell, dict[str, Any]], models: Sequence[str],
            oracles: Mapping[str, Oracle | None], valid: Mapping[str, np.ndarray],
            epochs: np.ndarray) -> dict[str, bytes]:
    """{name: PNG bytes} of FIGURES: the contrasts, test return and gap per regime, learned positions, validation."""
    cells, pct = comparison["cells"], f"{comparison['confidence']:.0%}"
    out = {"contrasts": plots.forest_png(
        **contrast_panels(comparison["contrasts"]), ci_label=f"{pct} CI, unadjusted",
        title=f"Paired contrasts over {comparison['replicas']} seeds, Holm-adjusted p")}
    by_regime: dict[str, list[dict[str, Any]]] = {}
    for x in cells:
        by_regime.setdefault(x["regime"], []).append(x)

    def panels(metric: str) -> dict[str, list[plots.Interval]]:
        return {regime: [plots.Interval(x["model"], x[metric]["mean"], x[metric]["ci_lo"], x[metric]["ci_hi"])
                         for x in xs] for regime, xs in by_regime.items()}

    refs = {"oracle (same test draws)": {r: [x["oracle_return"] for x in xs] for r, xs in by_regime.items()},
            "buy and hold": {r: [x["buy_and_hold_return"] for x in xs] for r, xs in by_regime.items()}}
    out["test_return"] = plots.intervals_png(
        panels("test_return"), title=f"Test return per step: mean over seeds, {pct} CI, each regime at its own scale",
        ylabel="position x next return, per step", references=refs, scale_with=("oracle (same test draws)",))
    out["gap"] = plots.intervals_png(
        panels("gap"), title=f"Overfitting gap: final train return - test return, {pct} CI",
        ylabel="return per step")
    curves, refs_curve, titles = {}, {}, {}
    for regime, oracle in oracles.items():
        grid = np.asarray(evals[(regime, models[0])]["curve"]["last_return"])
        curves[regime] = {m: np.asarray(evals[(regime, m)]["curve"]["position"]) for m in models}
        # under a law with nothing to learn no position is better than another: no reference curve
        if oracle is not None and not oracle.signal:
            titles[regime] = f"{regime} (i.i.d.: every position earns 0)"
        if oracle is not None and oracle.signal:
            refs_curve[regime] = oracle.curve(grid)
    out["learned_position"] = plots.grid_curves_png(
        curves, grid, refs_curve, titles=titles, ref_label="oracle",
        title="Learned position vs last return (other lags 0): each seed, and the mean",
        xlabel="last return / vol", ylabel="position (0 = flat, 1 = long)")
    expected = {r: xs[0]["oracle_expected_return"] for r, xs in by_regime.items()
                if xs[0].get("oracle_expected_return") is not None}
    out["valid_return"] = plots.panels_png(
        {regime: {x["model"]: valid[cell_name(regime, x["model"])] for x in xs} for regime, xs in by_regime.items()},
        epochs, {r: np.full(len(epochs), v) for r, v in expected.items()}, sharey=False,
        band=_mean_ci(comparison["confidence"]),
        title=f"Validation return per epoch: mean over seeds, band its {pct} CI, each regime at its own scale",
        xlabel="epoch", ylabel="position x next return, per step", ref_label="oracle (expected)")
    return out
