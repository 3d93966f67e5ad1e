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


# ---------------------------------------------------------------------- markets
_COLUMNS = (("ann_return", "return/yr", "{:+.1%}"), ("ann_vol", "vol/yr", "{:.1%}"), ("sharpe", "Sharpe", "{:.2f}"),
            ("max_drawdown", "max DD", "{:.0%}"), ("turnover_annual", "turnover/yr", "{:.1f}"),
            ("hit_rate", "hit rate", "{:.3f}"), ("exposure", "exposure", "{:.2f}"))


def _cell(fmt: str, value: Any) -> str:
    return "n/a" if value is None else fmt.format(value)


def market_markdown(name: str, result: dict[str, Any], figures_dir: str) -> str:
    """The report's section on one market: verdicts, the table gross and net, SPA, seed noise, figures."""
    conf = f"{result['confidence']:.0%}"
    lines = [
        "", f"# Market: {name}", "",
        f"Real closes ({result['source']}; {result['dropped']} rows with a missing price dropped), "
        f"walk-forward over {result['folds']} folds, out of sample {result['oos_first']} to {result['oos_last']} "
        f"({result['days']} days). Each variant trades its ensemble, the mean position of its seeds; costs "
        f"{result['cost_bps']:g} bp per unit of position change. Intervals are {conf} stationary-bootstrap "
        "intervals over days (one price path: seeds do not measure market uncertainty).", "",
        "## Verdicts", "",
    ]
    lines += [f"- {v}" for v in result["verdicts"]]
    head = " | ".join(f"{label} gross | {label} net" for _, label, _ in _COLUMNS[:3])
    lines += ["", "## Out of sample", "",
              f"| strategy | {head} | Sharpe net ({conf} CI) | max DD net | turnover/yr | hit rate | exposure "
              "| break-even cost (bp) | excess over buy & hold, net/yr (CI) |",
              "|---|" + "---|" * 13]
    for kind in ("variants", "baselines"):
        for strategy, row in result[kind].items():
            g, n = row["gross"], row["net"]
            pairs = " | ".join(f"{_cell(f, g[k])} | {_cell(f, n[k])}" for k, _, f in _COLUMNS[:3])
            lo, hi = row["sharpe_net_ci"]
            ex = row["excess_net_annual"]
            be = row["break_even_bps"]
            lines.append(
                f"| {strategy} | {pairs} | {_cell('{:.2f}', lo)} to {_cell('{:.2f}', hi)} "
                f"| {_cell('{:.0%}', abs(n['max_drawdown']))} | {_cell('{:.1f}', n['turnover_annual'])} "
                f"| {_cell('{:.3f}', n['hit_rate'])} | {_cell('{:.2f}', n['exposure'])} "
                f"| {row['break_even_note'] if be is None else f'{be:.1f}'} "
                f"| {_cell('{:+.1%}', ex['mean'])} ({_cell('{:+.1%}', ex['ci'][0])} to {_cell('{:+.1%}', ex['ci'][1])}) |")
    lines += ["", "Break-even cost: the cost at which the strategy's net excess over buy-and-hold is zero; "
              "negative when it is behind before any cost."]
    spa = result["spa"]
    p = spa["pvalues"]
    lines += ["", "## Many variants tried: SPA against buy-and-hold, net", "",
              f"Hansen's SPA (arch, stationary bootstrap, block {spa['block']:.1f} days) over "
              f"{', '.join(list(result['variants']) + ['sign'])}: p = {p['consistent']:.3f} (consistent; lower "
              f"{p['lower']:.3f}, upper {p['upper']:.3f}). StepM at {result['alpha']:g} finds superior: "
              f"{', '.join(spa['superior']) or 'none'}.", "",
              "## Seed noise (initialisation, not market evidence)", "",
              "| variant | seeds | Sharpe net: mean | sd | min | max |", "|---|---|---|---|---|---|"]
    for strategy, row in result["variants"].items():
        s = row["seeds"]
        lines.append(f"| {strategy} | {s['count']} | {s['sharpe_net_mean']:.2f} | {s['sharpe_net_sd']:.2f} "
                     f"| {s['sharpe_net_min']:.2f} | {s['sharpe_net_max']:.2f} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{f}]({figures_dir}/{f}.png)" for f in ("equity", "drawdown", "learned_position")]
    return "\n".join(lines) + "\n"
