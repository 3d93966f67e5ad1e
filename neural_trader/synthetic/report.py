"""The comparison report in Markdown: verdicts, the table of cells and the table of contrasts."""

from __future__ import annotations

from typing import Any

import numpy as np

from neural_trader import stats
from neural_trader.synthetic.comparison import FIGURES

__all__ = ["comparison_markdown"]


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _p(p: float) -> str:
    return stats.format_p(p).removeprefix("= ")


def comparison_markdown(cfg: Any, comparison: dict[str, Any], figures_dir: str) -> str:
    """reports/comparison.md: verdicts, the cell table and the contrast table; figures under `figures_dir`.

    `cfg` is read for its seeds, data, train and compare sections (a `neural_trader.params.StudyConfig`).
    """
    cells, family = comparison["cells"], comparison["contrasts"]
    replicas, runs = comparison["replicas"], comparison["runs"]
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
        f"(family-wise alpha {cfg.compare.alpha}). A contrast is significant after that adjustment, equivalent "
        f"when its {pct} CI lies inside +- the effect of interest (`compare.effect_of_interest`), or undecided, "
        f"with the seeds that would detect that effect at {cfg.compare.power:.0%} power.",
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
        f"{cfg.compare.power:.0%} power | effect of interest | seeds needed: observed / of interest | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in family:
        lines.append(
            f"| {r['name'].replace('|', '/')} | {_fmt(r['diff'])} | {_fmt(r['ci_lo'])} to {_fmt(r['ci_hi'])} "
            f"| {_p(r['p'])} | {_p(r['p_adj'])} | {_fmt(r['mde'])} | {_fmt(r['effect_of_interest'])} "
            f"| {_seeds(r['seeds_needed'])} / {_seeds(r['seeds_needed_interest'])} | {r['state']} |"
        )
    lines += ["", "## Figures", ""]
    lines += [f"![{f}]({figures_dir}/{f}.png)" for f in FIGURES]
    return "\n".join(lines) + "\n"


def _seeds(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"
