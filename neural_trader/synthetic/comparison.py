"""The comparison across cells: per-cell summaries, pooling of reruns, the contrast family, figures.

Takes the per-cell evaluations that `synthetic.metrics.evaluate_cell` produced (plain
dicts, as read back from JSON) and returns values: the comparison dict (schema
in `stages.compare`), its flat headline, and the figures as PNG bytes. Nothing
here reads or writes a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neural_trader import plots
from neural_trader.evaluate import oracle_fraction
from neural_trader.inference import summarise_cell

from neural_trader.synthetic.contrasts import contrasts
from neural_trader.synthetic.sources import Oracle

__all__ = ["SCHEMA", "FIGURES", "cell_name", "summarise_cell", "pool_evaluations", "compare_cells",
           "headline", "null_regime", "figures", "valid_return_table"]

SCHEMA = 1
#: the comparison's figures, plots/comparison/<name>.png
FIGURES = ("test_return", "gap", "learned_position", "valid_return")

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


def figures(comparison: dict[str, Any], evals: Mapping[Cell, dict[str, Any]], models: Sequence[str],
            oracles: Mapping[str, Oracle | None], valid: Mapping[str, np.ndarray],
            epochs: np.ndarray) -> dict[str, bytes]:
    """{name: PNG bytes} of FIGURES: test return and gap per cell, learned positions, validation curves."""
    cells = comparison["cells"]
    labels = [cell_name(x["regime"], x["model"]) for x in cells]
    out = {}
    markers = {"buy and hold": [x["buy_and_hold_return"] for x in cells]}
    if all(x["oracle_return"] is not None for x in cells):
        markers = {"oracle": [x["oracle_return"] for x in cells], **markers}
    out["test_return"] = plots.intervals_png(
        labels, [x["test_return"]["mean"] for x in cells], [x["test_return"]["ci_lo"] for x in cells],
        [x["test_return"]["ci_hi"] for x in cells], title="Test return per step (mean over seeds, CI)",
        ylabel="mean position x next return", markers=markers)
    out["gap"] = plots.intervals_png(
        labels, [x["gap"]["mean"] for x in cells], [x["gap"]["ci_lo"] for x in cells],
        [x["gap"]["ci_hi"] for x in cells], title="Overfitting gap: final train return - test return",
        ylabel="return per step")
    panels, refs = {}, {}
    for regime, oracle in oracles.items():
        grid = np.asarray(evals[(regime, models[0])]["curve"]["last_return"])
        # under a law with nothing to learn no position is better than another: no reference curve
        quiet = oracle is not None and not oracle.signal
        title = f"{regime} (i.i.d.: every position earns 0)" if quiet else regime
        panels[title] = {m: np.asarray(evals[(regime, m)]["curve"]["position"]) for m in models}
        if oracle is not None and oracle.signal:
            refs[title] = oracle.curve(grid)
    out["learned_position"] = plots.panels_png(
        panels, grid, refs, title="Learned position vs last return (other lags 0), band 10-90% over seeds",
        xlabel="last return", ylabel="position", ref_label="oracle")
    out["valid_return"] = plots.lines_png(
        valid, epochs, title="Validation return per epoch, every cell", xlabel="epoch", ylabel="return per step")
    return out
