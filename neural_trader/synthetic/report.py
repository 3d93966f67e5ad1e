"""The comparison report in Markdown: verdicts, the table of cells and the table of contrasts."""

from __future__ import annotations

from typing import Any

from neural_trader.inference import format_fixed, format_p
from neural_trader.synthetic.comparison import FIGURES

__all__ = ["comparison_markdown"]


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
        t, g = ({k: format_fixed(v) for k, v in x[m].items()} for m in ("test_return", "gap"))
        lines.append(
            f"| {x['regime']}-{x['model']} | {t['mean']} ({t['ci_lo']} to {t['ci_hi']}) "
            f"| {format_fixed(x['test_return_best']['mean'])} | {format_fixed(x['oracle_return'])} "
            f"| {format_fixed(x['oracle_fraction'], 2)} | {format_fixed(x['buy_and_hold_return'])} "
            f"| {g['mean']} ({g['ci_lo']} to {g['ci_hi']}) | {format_fixed(x['sharpe'], 3)} "
            f"| {format_fixed(x['hit_rate'], 3)} | {format_fixed(x['mean_position'], 3)} | {x['best_epoch']:.0f} |"
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
        diff, lo, hi, mde, margin = (format_fixed(r[k]) for k in ("diff", "ci_lo", "ci_hi", "mde", "effect_of_interest"))
        lines.append(
            f"| {r['name']} | {diff} | {lo} to {hi} "
            f"| {format_p(r['p'], relation=False)} | {format_p(r['p_adj'], relation=False)} | {mde} | {margin} "
            f"| {_seeds(r['seeds_needed'])} / {_seeds(r['seeds_needed_interest'])} | {r['state']} |"
        )
    lines += ["", "## Figures", ""]
    lines += [f"![{f}]({figures_dir}/{f}.png)" for f in FIGURES]
    return "\n".join(lines) + "\n"


def _seeds(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"
