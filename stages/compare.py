"""The compare stage: read every synthetic cell's evaluation, compare in the core, write JSON, report and figures.

The markets have their own comparison stage (`stages.market.market_compare`).

`metrics/comparison.json` schema (version 1), every number of the report:

    schema: 1
    replicas: S seeds per cell;  runs: independent runs pooled;  confidence, alpha, power: params `compare`
    cells: [ {regime, model,
              test_return: {mean, ci_lo, ci_hi},        # last-epoch weights, held-out test split
              test_return_best: {mean, ci_lo, ci_hi},   # weights of each seed's best validation epoch
              gap: {mean, ci_lo, ci_hi},                # final train return - test return
              train_return, sharpe, hit_rate, mean_position, best_epoch: mean over seeds,
              oracle_return, buy_and_hold_return,       # on the same test draws, mean over seeds
              oracle_expected_return,                   # analytic, from the source's known law
              oracle_fraction}, ... ]                   # test_return.mean / oracle_return (null without signal)
    contrasts: [ {name, kind, a, b, within, metric, mean_a, mean_b, diff, ci_lo, ci_hi,
                  t, p, p_adj, significant, mde, n, effect_of_interest, seeds_needed,
                  seeds_needed_interest, state, verdict}, ... ]   # see neural_trader.synthetic.contrasts

`metrics/comparison/headline.json` repeats the headline numbers as flat maps, the
shape `dvc metrics show/diff` and `dvc exp show` can display (they skip lists):

    test_return: {cell: mean}    gap: {cell: mean}
    diff: {"<metric>:<a>-<b>@<within>": diff}    p_adj: {same keys: Holm-adjusted p}

`metrics/comparison/valid_return.tsv` (epoch, cell, valid_return: mean over seeds)
is the long-format table behind dvc.yaml's overlay of every cell's validation curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neural_trader.params import StudyConfig
from neural_trader.synthetic import comparison as cmp
from neural_trader.synthetic.report import comparison_markdown
from neural_trader.synthetic.sources import make_source

from .catalog import Workspace, atomic_write_bytes, read_json, write_json


def compare(cfg: StudyConfig, ws: Workspace, sources: Sequence[Workspace] = ()) -> dict[str, Any]:
    """Compare every cell of `ws`, or pool the cells of independent reruns (`sources`) into `ws`.

    Reruns of the same params with different base seeds pool by concatenating
    each cell's per-seed values: pairs stay aligned because every source
    contributes its seeds in the same order to every cell.
    """
    runs = list(sources) or [ws]
    evals = {key: cmp.pool_evaluations([read_json(src.eval_metrics(cmp.cell_name(*key))) for src in runs])
             for key in cfg.cells}
    oracles = {name: make_source(reg).oracle for name, reg in cfg.data.regimes.items()}
    result = cmp.compare_cells(evals, list(cfg.data.regimes), list(cfg.models), oracles,
                               cfg.compare.model_dump(), runs=len(runs))
    valid = {cmp.cell_name(*key): np.asarray(ev["valid_return_curve"]) for key, ev in evals.items()}  # (S, epochs)
    epochs = np.arange(1, cfg.train.epochs + 1)
    atomic_write_bytes(ws.comparison_tables / "valid_return.tsv", cmp.valid_return_table(valid, epochs).encode())
    for name, png in cmp.figures(result, evals, list(cfg.models), oracles, valid, epochs).items():
        atomic_write_bytes(ws.comparison_plots / f"{name}.png", png)
    figures_dir = (Path("..") / ws.rel(ws.comparison_plots)).as_posix()
    report = comparison_markdown(cfg, result, figures_dir)
    write_json(ws.comparison_json, result)
    write_json(ws.comparison_tables / "headline.json", cmp.headline(result))
    atomic_write_bytes(ws.comparison_report, report.encode())
    return _summary(result)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the task returns and the command line prints: the verdict table and each cell's test return."""
    keys = ("diff", "ci_lo", "ci_hi", "p_adj", "significant", "verdict")
    table = [{"contrast": r["name"], **{k: r[k] for k in keys}} for r in result["contrasts"]]
    return {"table": table, "replicas": result["replicas"], "runs": result["runs"],
            "cells": {cmp.cell_name(x["regime"], x["model"]): x["test_return"]["mean"] for x in result["cells"]}}
