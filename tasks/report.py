"""The compare stage: per-cell summaries, the contrast family, the report and its figures.

`metrics/comparison.json` schema (version 1), every number of the report:

    schema: 1
    replicas: S seeds per cell;  confidence, alpha, power: from params `compare`
    cells: [ {regime, model,
              test_return: {mean, ci_lo, ci_hi},        # last-epoch weights, held-out test split
              test_return_best: {mean, ci_lo, ci_hi},   # weights of each seed's best validation epoch
              gap: {mean, ci_lo, ci_hi},                # final train return - test return
              train_return, sharpe, hit_rate, mean_position, best_epoch: mean over seeds,
              oracle_return, buy_and_hold_return,       # on the same test draws, mean over seeds
              oracle_expected_return,                   # analytic, from the regime's law
              oracle_fraction}, ... ]                   # test_return.mean / oracle_return (null for i.i.d.)
    contrasts: [ {name, kind, a, b, within, metric, mean_a, mean_b, diff, ci_lo, ci_hi,
                  t, p, p_adj, significant, mde, n, verdict}, ... ]   # see neural_trader.stats.contrasts

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

from neural_trader import plots, stats
from neural_trader.config import IIDRegime, StudyConfig
from neural_trader.evaluate import oracle_curve

from .stages import COMPARISON_FIGURES  # the registry owns the layout
from .workspace import Workspace, atomic_write_bytes, read_json, write_json

SCHEMA = 1
FIGURES = COMPARISON_FIGURES


def _cell(regime: str, model: str) -> str:
    return f"{regime}-{model}"


def _ci(values: list[float], confidence: float) -> dict[str, float]:
    mean, lo, hi = stats.mean_ci(np.asarray(values), confidence)
    return {"mean": mean, "ci_lo": lo, "ci_hi": hi}


def _summarise(ev: dict[str, Any], confidence: float) -> dict[str, Any]:
    ps = ev["per_seed"]
    oracle = ev["baselines"]["oracle"]["mean_return"]
    test = _ci(ps["test_mean_return"], confidence)
    return {
        "regime": ev["regime"],
        "model": ev["model"],
        "test_return": test,
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


def build_comparison(cfg: StudyConfig, ws: Workspace, sources: Sequence[Workspace] = ()) -> dict[str, Any]:
    """Read every cell's evaluation, run the contrasts, write JSON, report and figures into `ws`.

    With `sources` (workspaces of independent reruns of the same params with
    different base seeds), each cell's per-seed values are pooled across them:
    pairs stay aligned because every source contributes its seeds in the same
    order to every cell.
    """
    c = cfg.compare
    sources = list(sources) or [ws]
    evals = {key: _pool([read_json(src.eval_metrics(_cell(*key))) for src in sources]) for key in cfg.cells}
    valid = {_cell(*key): np.asarray(ev["valid_return_curve"]) for key, ev in evals.items()}  # (S, epochs)
    cells = [_summarise(evals[key], c.confidence) for key in cfg.cells]
    per_seed = {
        key: {"test_return": ev["per_seed"]["test_mean_return"], "gap": ev["per_seed"]["gap"]}
        for key, ev in evals.items()
    }
    regimes, models = list(cfg.data.regimes), list(cfg.models)
    null = next((r for r, reg in cfg.data.regimes.items() if isinstance(reg, IIDRegime)), None)
    family = stats.contrasts(per_seed, regimes, models, null_regime=null, **c.model_dump())
    replicas = len(next(iter(per_seed.values()))["test_return"])
    result = {"schema": SCHEMA, "replicas": replicas, "runs": len(sources), **c.model_dump(),
              "cells": cells, "contrasts": family}
    write_json(ws.comparison_json, result)
    write_json(ws.comparison_tables / "headline.json", _headline(cells, family))
    _figures(cfg, ws, evals, cells, valid)
    atomic_write_bytes(ws.comparison_report, _markdown(cfg, ws, cells, family, replicas, len(sources)).encode())
    table = [
        {"contrast": r["name"], "diff": r["diff"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"],
         "p_adj": r["p_adj"], "significant": r["significant"], "verdict": r["verdict"]}
        for r in family
    ]
    return {"table": table, "replicas": replicas, "runs": len(sources),
            "cells": {_cell(x["regime"], x["model"]): x["test_return"]["mean"] for x in cells}}


def _pool(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's evaluations from several runs as one: per-seed values and curves concatenated."""
    if len(evals) == 1:
        return evals[0]
    first = evals[0]
    per_seed = {k: [v for ev in evals for v in ev["per_seed"][k]] for k in first["per_seed"]}
    baselines = {
        name: {k: float(np.mean(per_seed[f"{name}_return"])) if k == "mean_return"
               else float(np.mean([ev["baselines"][name][k] for ev in evals])) for k in first["baselines"][name]}
        for name in first["baselines"]
    }
    oracle = baselines["oracle"]["mean_return"]
    test = float(np.mean(per_seed["test_mean_return"]))
    return {
        **first,
        "replicas": sum(ev["replicas"] for ev in evals),
        "per_seed": per_seed,
        "baselines": baselines,
        "oracle_fraction": test / oracle if abs(oracle) > 1e-12 else None,
        "curve": {"last_return": first["curve"]["last_return"],
                  "position": [row for ev in evals for row in ev["curve"]["position"]]},
        "valid_return_curve": [row for ev in evals for row in ev["valid_return_curve"]],
    }


def _headline(cells: list[dict[str, Any]], family: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers `dvc exp show` lists: flat maps, no lists."""
    keys = [f"{r['metric']}:{r['a']}-{r['b']}@{r['within']}" for r in family]
    return {
        "test_return": {_cell(x["regime"], x["model"]): x["test_return"]["mean"] for x in cells},
        "gap": {_cell(x["regime"], x["model"]): x["gap"]["mean"] for x in cells},
        "diff": {k: r["diff"] for k, r in zip(keys, family)},
        "p_adj": {k: r["p_adj"] for k, r in zip(keys, family)},
    }


# ---------------------------------------------------------------------- figures
def _figures(cfg: StudyConfig, ws: Workspace, evals: dict, cells: list[dict[str, Any]],
             valid: dict[str, np.ndarray]) -> None:
    out = ws.comparison_plots
    labels = [_cell(x["regime"], x["model"]) for x in cells]
    atomic_write_bytes(out / "test_return.png", plots.intervals_png(
        labels, [x["test_return"]["mean"] for x in cells], [x["test_return"]["ci_lo"] for x in cells],
        [x["test_return"]["ci_hi"] for x in cells], title="Test return per step (mean over seeds, CI)",
        ylabel="mean position x next return",
        markers={"oracle": [x["oracle_return"] for x in cells],
                 "buy and hold": [x["buy_and_hold_return"] for x in cells]}))
    atomic_write_bytes(out / "gap.png", plots.intervals_png(
        labels, [x["gap"]["mean"] for x in cells], [x["gap"]["ci_lo"] for x in cells],
        [x["gap"]["ci_hi"] for x in cells], title="Overfitting gap: final train return - test return",
        ylabel="return per step"))
    panels, refs = {}, {}
    for regime, reg in cfg.data.regimes.items():
        grid = np.asarray(evals[(regime, next(iter(cfg.models)))]["curve"]["last_return"])
        title = f"{regime} (i.i.d.: every position earns 0)" if isinstance(reg, IIDRegime) else regime
        panels[title] = {m: np.asarray(evals[(regime, m)]["curve"]["position"]) for m in cfg.models}
        if not isinstance(reg, IIDRegime):  # under i.i.d. returns no position is better than another
            refs[title] = oracle_curve(reg, grid)
    atomic_write_bytes(out / "learned_position.png", plots.panels_png(
        panels, grid, refs, title="Learned position vs last return (other lags 0), band 10-90% over seeds",
        xlabel="last return", ylabel="position", ref_label="oracle"))
    epochs = np.arange(1, cfg.train.epochs + 1)
    rows = ["epoch\tcell\tvalid_return"] + [
        f"{e}\t{cell}\t{v:.6g}" for cell, values in valid.items() for e, v in zip(epochs, values.mean(axis=0))
    ]
    atomic_write_bytes(ws.comparison_tables / "valid_return.tsv", ("\n".join(rows) + "\n").encode())
    atomic_write_bytes(out / "valid_return.png", plots.lines_png(
        valid, epochs, title="Validation return per epoch, every cell", xlabel="epoch", ylabel="return per step"))


# ---------------------------------------------------------------------- report
def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _p(p: float) -> str:
    return stats.format_p(p).removeprefix("= ")


def _markdown(cfg: StudyConfig, ws: Workspace, cells: list[dict[str, Any]], family: list[dict[str, Any]],
              replicas: int, runs: int) -> str:
    pct = f"{cfg.compare.confidence:.0%}"
    lines = [
        "# Comparison study",
        "",
        (f"Pooled over {runs} reruns with independent base seeds: {replicas} seeds per cell, "
         if runs > 1 else f"{replicas} seeds per cell (base seed {cfg.seeds.base}), ")
        + f"{cfg.train.epochs} epochs, "
        f"{cfg.data.n_train} training series of length {cfg.data.length}, lag {cfg.data.lag}; "
        f"test split: {cfg.data.n_test} fresh series per seed, drawn independently for each seed, "
        f"so test noise is part of the spread across seeds. Intervals are {pct} t-intervals over seeds; "
        f"p-values are paired t-tests, Holm-adjusted across all {len(family)} contrasts "
        f"(family-wise alpha {cfg.compare.alpha}).",
        "",
        "## Verdicts",
        "",
    ]
    lines += [f"- {'**' if r['significant'] else ''}{r['verdict']}{'**' if r['significant'] else ''}" for r in family]
    lines += [
        "",
        "## Cells",
        "",
        f"| cell | test return ({pct} CI) | best-epoch weights | oracle | oracle fraction | buy & hold "
        "| gap (train - test) | Sharpe/step | hit rate | mean position | best epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in cells:
        t, b, g = x["test_return"], x["test_return_best"], x["gap"]
        lines.append(
            f"| {x['regime']}-{x['model']} | {_fmt(t['mean'])} ({_fmt(t['ci_lo'])} to {_fmt(t['ci_hi'])}) "
            f"| {_fmt(b['mean'])} | {_fmt(x['oracle_return'])} | {_fmt(x['oracle_fraction'], 2)} "
            f"| {_fmt(x['buy_and_hold_return'])} | {_fmt(g['mean'])} ({_fmt(g['ci_lo'])} to {_fmt(g['ci_hi'])}) "
            f"| {_fmt(x['sharpe'], 3)} | {_fmt(x['hit_rate'], 3)} | {_fmt(x['mean_position'], 3)} "
            f"| {x['best_epoch']:.0f} |"
        )
    lines += [
        "",
        "## Contrasts",
        "",
        "| contrast | diff | CI | p | adjusted p | detectable at "
        f"{cfg.compare.power:.0%} power | significant |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in family:
        lines.append(
            f"| {r['name'].replace('|', '/')} | {_fmt(r['diff'])} | {_fmt(r['ci_lo'])} to {_fmt(r['ci_hi'])} "
            f"| {_p(r['p'])} | {_p(r['p_adj'])} | {_fmt(r['mde'])} "
            f"| {'yes' if r['significant'] else 'no'} |"
        )
    rel = Path("..") / ws.rel(ws.comparison_plots)
    lines += ["", "## Figures", ""]
    lines += [f"![{f}]({(rel / f'{f}.png').as_posix()})" for f in FIGURES]
    return "\n".join(lines) + "\n"
