"""What the markets' comparison publishes: reports/markets.md, and the flat headline `dvc exp show` lists.

`market_artifact` is a market's section for the Prefect UI: figures inlined,
the wide out-of-sample table split into a headline (net) table, diagnostics
and the figures before costs (`neural_trader.artifacts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neural_trader.artifacts import markdown_table

__all__ = ["market_markdown", "market_artifact", "markets_headline", "FIGURES"]

#: a market's figures, plots/market/<market>/<name>.png
FIGURES = ("equity", "drawdown", "learned_position")


def markets_headline(markets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each strategy's net Sharpe ratio and each market's SPA p-value, as flat maps (no lists)."""
    return {
        "market_sharpe_net": {f"{m}-{v}": row["sharpe_net"] for m, r in markets.items()
                              for v, row in {**r["variants"], **r["baselines"]}.items()},
        "market_spa_p": {m: r["spa_p"] for m, r in markets.items()},
    }


_COLUMNS = (("ann_return", "return/yr", "{:+.1%}"), ("ann_vol", "vol/yr", "{:.1%}"), ("sharpe", "Sharpe", "{:.2f}"),
            ("max_drawdown", "max DD", "{:.0%}"), ("turnover_annual", "turnover/yr", "{:.1f}"),
            ("hit_rate", "hit rate", "{:.3f}"), ("exposure", "exposure", "{:.2f}"))


def _cell(fmt: str, value: Any) -> str:
    return "n/a" if value is None else fmt.format(value)


def _head(name: str, result: dict[str, Any]) -> list[str]:
    """A market's title, its design in one paragraph and its verdicts."""
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
    return lines + [f"- {v}" for v in result["verdicts"]]


def market_markdown(name: str, result: dict[str, Any], figures_dir: str) -> str:
    """The report's section on one market: verdicts, the table gross and net, SPA, seed noise, figures."""
    conf = f"{result['confidence']:.0%}"
    lines = _head(name, result)
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
    lines += _tail(result)
    lines += ["", "## Figures", ""]
    lines += [f"![{f}]({figures_dir}/{f}.png)" for f in FIGURES]
    return "\n".join(lines) + "\n"


def _tail(result: dict[str, Any]) -> list[str]:
    """The SPA paragraph and the seed-noise table."""
    spa = result["spa"]
    p = spa["pvalues"]
    lines = ["", "## Many variants tried: SPA against buy-and-hold, net", "",
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
    return lines


def market_artifact(name: str, result: dict[str, Any], figures: Mapping[str, str]) -> str:
    """A market's section for the Prefect UI: its words, tables that fit a 700 px column, figures inlined.

    `figures`: figure name -> image source (a data URI). The out-of-sample
    table becomes a headline (net: return, Sharpe with its CI, excess over
    buy-and-hold with its CI), diagnostics (net) and the figures before costs
    with the break-even cost, whose notes are listed below it, not written in a cell.
    """
    conf = f"{result['confidence']:.0%}"
    rows = {**result["variants"], **result["baselines"]}
    lines = [*_head(name, result), "", "## Out of sample, net of costs", ""]
    lines += markdown_table(["strategy", "return/yr", f"Sharpe ({conf} CI)", f"excess over B&H/yr ({conf} CI)"],
                            [[s, _cell("{:+.1%}", r["net"]["ann_return"]),
                              f"{_cell('{:.2f}', r['sharpe_net'])} ({_range('{:.2f}', r['sharpe_net_ci'])})",
                              f"{_cell('{:+.1%}', r['excess_net_annual']['mean'])} "
                              f"({_range('{:+.1%}', r['excess_net_annual']['ci'])})"] for s, r in rows.items()])
    lines += ["", "### Diagnostics, net", ""]
    lines += markdown_table(["strategy", "vol/yr", "max DD", "turnover/yr", "hit rate", "exposure"],
                            [[s, _cell("{:.1%}", r["net"]["ann_vol"]), _cell("{:.0%}", abs(r["net"]["max_drawdown"])),
                              _cell("{:.1f}", r["net"]["turnover_annual"]), _cell("{:.3f}", r["net"]["hit_rate"]),
                              _cell("{:.2f}", r["net"]["exposure"])] for s, r in rows.items()])
    lines += ["", "### Before costs, and the cost that breaks even", ""]
    lines += markdown_table(["strategy", "return/yr", "vol/yr", "Sharpe", "break-even (bp)"],
                            [[s, *(_cell(f, r["gross"][k]) for k, _, f in _COLUMNS[:3]),
                              _cell("{:.1f}", r["break_even_bps"])] for s, r in rows.items()])
    notes = [f"- {s}: {r['break_even_note']}" for s, r in rows.items() if r["break_even_bps"] is None]
    lines += ["", "Break-even cost: the cost at which the strategy's net excess over buy-and-hold is zero; "
              "negative when it is behind before any cost."]
    if notes:
        lines += ["", "Where it is n/a:", "", *notes]
    lines += [*_tail(result), "", "## Figures", ""]
    for f, src in figures.items():
        lines += [f"![{f}]({src})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _range(fmt: str, bounds: list[float | None]) -> str:
    return f"{_cell(fmt, bounds[0])} to {_cell(fmt, bounds[1])}"
