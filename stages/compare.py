"""The compare stage: read every cell's evaluation, compare in the core, write JSON, report and figures.

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

from neural_trader.synthetic import comparison as cmp
from neural_trader.markets import report as mr
from neural_trader import plots
from neural_trader.params import StudyConfig
from neural_trader.evaluate import CURVE_GRID
from neural_trader.markets.data import MarketData
from neural_trader.synthetic.report import comparison_markdown, market_markdown
from neural_trader.synthetic.sources import make_source

from .catalog import Workspace, atomic_write_bytes, load_tensors, read_json, write_json


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
    if cfg.markets.regimes and not sources:  # reruns re-draw synthetic seeds; the one price path is not pooled
        result["market"] = {m: _market(cfg, ws, m) for m in cfg.markets.regimes}
        report += "".join(market_markdown(m, r, (Path("..") / ws.rel(ws.market_plots(m))).as_posix())
                          for m, r in result["market"].items())
    write_json(ws.comparison_json, result)
    write_json(ws.comparison_tables / "headline.json", cmp.headline(result))
    atomic_write_bytes(ws.comparison_report, report.encode())
    return _summary(result)


def _market(cfg: StudyConfig, ws: Workspace, market: str) -> dict[str, Any]:
    """One market's section: the out-of-sample comparison, its verdicts and figures."""
    data = MarketData.from_arrays({k: v.numpy() for k, v in load_tensors(ws.market_series(market)).items()})
    evals = {m: load_tensors(ws.market_eval(cmp.cell_name(market, m))) for m in cfg.markets.models}
    positions = {m: e["positions"].double().numpy() for m, e in evals.items()}
    mk = cfg.markets
    result = mr.compare_market(data, positions, bps=cfg.costs.bps, reps=mk.reps, seed=mk.bootstrap_seed,
                               confidence=cfg.compare.confidence, alpha=cfg.compare.alpha)
    summary = read_json(ws.market_summary(market))
    result.update(oos_first=summary["oos_first"], oos_last=summary["oos_last"], source=summary["source"],
                  dropped=summary["dropped"])
    result["verdicts"] = mr.market_verdicts(market, result, summary["oos_first"], summary["oos_last"])
    dates, wealth = mr.oos_dates(data), mr.equity(data, positions, cfg.costs.bps)
    title = f"{market}, out of sample, net of {cfg.costs.bps:g} bp"
    figures = {
        "equity": plots.equity_png(dates, wealth, title=title, fold_starts=mr.fold_starts(data)),
        "drawdown": plots.drawdown_png(dates, wealth, title=f"{market}: drawdown, net"),
        "learned_position": plots.fold_curves_png(CURVE_GRID, {m: e["curve"].numpy() for m, e in evals.items()},
                                                  title=f"{market}: learned position"),
    }
    for name, png in figures.items():
        atomic_write_bytes(ws.market_plot(market, name), png)
    return result


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the task returns and the command line prints: the verdict table and each cell's test return."""
    keys = ("diff", "ci_lo", "ci_hi", "p_adj", "significant", "verdict")
    table = [{"contrast": r["name"], **{k: r[k] for k in keys}} for r in result["contrasts"]]
    return {"table": table, "replicas": result["replicas"], "runs": result["runs"],
            "cells": {cmp.cell_name(x["regime"], x["model"]): x["test_return"]["mean"] for x in result["cells"]},
            "market": {m: r["verdicts"] for m, r in result.get("market", {}).items()}}
