"""The comparison report in Markdown: verdicts, the table of cells and the table of contrasts.

`comparison_markdown` is reports/comparison.md; `comparison_artifact` is the
same report for the Prefect UI: figures inlined, each wide table split into a
headline table and narrow diagnostics (`neural_trader.artifacts`), and
`verdicts_artifact` the contrasts alone, rounded, their sentences below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neural_trader.artifacts import markdown_table
from neural_trader.inference import format_fixed, format_p
from neural_trader.synthetic.comparison import FIGURES

__all__ = ["comparison_markdown", "comparison_artifact", "verdicts_artifact"]


def _head(cfg: Any, comparison: dict[str, Any]) -> list[str]:
    """The title, the design in one paragraph and the verdicts, one a line."""
    family, replicas, runs = comparison["contrasts"], comparison["replicas"], comparison["runs"]
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
        f"when its {pct} CI lies inside ± the effect of interest (`compare.effect_of_interest`), or undecided, "
        f"with the seeds that would detect that effect at {cfg.compare.power:.0%} power.",
        "",
        "## Verdicts",
        "",
    ]
    lines += [f"- {'**' if r['significant'] else ''}{r['verdict']}{'**' if r['significant'] else ''}" for r in family]
    return lines


def comparison_markdown(cfg: Any, comparison: dict[str, Any], figures_dir: str) -> str:
    """reports/comparison.md: verdicts, the cell table and the contrast table; figures under `figures_dir`.

    `cfg` is read for its seeds, data, train and compare sections (a `neural_trader.params.StudyConfig`).
    """
    cells, family = comparison["cells"], comparison["contrasts"]
    pct = f"{cfg.compare.confidence:.0%}"
    lines = _head(cfg, comparison)
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
        "| contrast | diff | 95% CI (unadjusted) | p | Holm-adjusted p | detectable at "
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


def _ci(x: Mapping[str, float], digits: int = 4) -> str:
    mean, lo, hi = (format_fixed(x[k], digits) for k in ("mean", "ci_lo", "ci_hi"))
    return f"{mean} ({lo} to {hi})"


def _contrast_table(family: list[dict[str, Any]], confidence: float) -> list[str]:
    """contrast | diff | CI | Holm p | state: the contrasts, rounded as the report rounds them, and a key."""
    rows = [[r["name"], format_fixed(r["diff"]), f"{format_fixed(r['ci_lo'])} to {format_fixed(r['ci_hi'])}",
             format_p(r["p_adj"], relation=False), r["state"]] for r in family]
    return [*markdown_table(["contrast", "diff", f"unadjusted {confidence:.0%} CI", "Holm p", "verdict"], rows), "",
            "Holm p: the p-value Holm-adjusted across the family; the CI is not adjusted."]


def verdicts_artifact(comparison: dict[str, Any]) -> str:
    """The contrasts as the UI's verdicts artifact: a narrow table of rounded numbers and states, sentences below."""
    lines = _contrast_table(comparison["contrasts"], comparison["confidence"])
    return "\n".join([*lines, "", *(f"- {r['verdict']}" for r in comparison["contrasts"])]) + "\n"


def comparison_artifact(cfg: Any, comparison: dict[str, Any], figures: Mapping[str, str]) -> str:
    """reports/comparison.md for the Prefect UI: its words, tables that fit a 700 px column, figures inlined.

    `figures`: figure name -> image source (a data URI), in the order to show them.
    The cells table becomes a headline (test return, oracle fraction, gap) and
    two diagnostics tables; the contrasts table a decision and a power table.
    """
    cells, family = comparison["cells"], comparison["contrasts"]
    pct, power = f"{cfg.compare.confidence:.0%}", f"{cfg.compare.power:.0%}"
    name = [f"{x['regime']}-{x['model']}" for x in cells]
    lines = [*_head(cfg, comparison), "", "## Cells", ""]
    lines += markdown_table(["cell", f"test return ({pct} CI)", "of oracle", f"gap, train - test ({pct} CI)"],
                            [[n, _ci(x["test_return"]), format_fixed(x["oracle_fraction"], 2), _ci(x["gap"])]
                             for n, x in zip(name, cells)])
    lines += ["", "Returns per step; of oracle: test return / the Bayes-optimal policy's return on the same draws.",
              "", "### Diagnostics: baselines", ""]
    lines += markdown_table(["cell", "best-epoch weights", "oracle", "buy & hold"],
                            [[n, format_fixed(x["test_return_best"]["mean"]), format_fixed(x["oracle_return"]),
                              format_fixed(x["buy_and_hold_return"])] for n, x in zip(name, cells)])
    lines += ["", "### Diagnostics: trading", ""]
    lines += markdown_table(["cell", "Sharpe/step", "hit rate", "mean position", "best epoch"],
                            [[n, format_fixed(x["sharpe"], 3), format_fixed(x["hit_rate"], 3),
                              format_fixed(x["mean_position"], 3), f"{x['best_epoch']:.0f}"]
                             for n, x in zip(name, cells)])
    lines += ["", "## Contrasts", "", *_contrast_table(family, cfg.compare.confidence)]
    margins = ", ".join(f"{k} ±{format_fixed(v)}" for k, v in comparison.get("effect_of_interest", {}).items())
    lines += ["", f"### Power at {power}", "",
              f"p: unadjusted; detectable: the effect found at {power} power at the family's level alpha / m; "
              f"seeds needed to detect the observed difference / the effect of interest ({margins or 'none'}).", ""]
    lines += markdown_table(["contrast", "p", "detectable", "seeds needed"],
                            [[r["name"], format_p(r["p"], relation=False), format_fixed(r["mde"]),
                              f"{_seeds(r['seeds_needed'])} / {_seeds(r['seeds_needed_interest'])}"] for r in family])
    lines += ["", "## Figures", ""]
    for f, src in figures.items():
        lines += [f"![{f}]({src})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
