"""The market section of the comparison: out-of-sample performance, gross and net, and inference on one path.

Every figure is computed on the same out-of-sample days for every variant and
baseline. A variant trades its ensemble (the mean position over its S seeds);
the seeds' own spread is reported as seed noise, never as evidence about the
market: seeds share one price path, so their spread says nothing about how
another path would have gone. Market uncertainty comes from the stationary
bootstrap of the daily P&L (`markets.stats`), and the many variants tried are
accounted for by Hansen's SPA test against buy-and-hold, net of costs.
Nothing here reads or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from neural_trader.markets import backtest as bt
from neural_trader.markets import stats as ms
from neural_trader.markets.data import MarketData, fold_of_row, oos_rows

__all__ = ["compare_market", "market_verdicts", "BENCHMARK"]

BENCHMARK = "buy_and_hold"


def _finite(x: Any) -> Any:
    """JSON-ready: non-finite floats become None (break-even is infinite for a strategy that never trades)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _metrics(pos: np.ndarray, y: np.ndarray, bps: float) -> dict[str, dict[str, Any]]:
    out = {}
    for kind, cost in (("gross", 0.0), ("net", bps)):
        m = bt.metrics(bt.pnl(pos, y, cost), pos, y)
        out[kind] = {k: _finite(v) for k, v in m.items()}
    return out


def compare_market(data: MarketData, positions: Mapping[str, np.ndarray], *, bps: float, reps: int, seed: int,
                   confidence: float, alpha: float) -> dict[str, Any]:
    """One market's out-of-sample comparison.

    Args:
        data: the market's series, windows and folds.
        positions: variant -> (S, n_oos) out-of-sample positions of each seed, in params order;
            the first variant is the reference of the variant contrasts (e.g. dropout vs base).
        bps: cost per unit of position change, in basis points.
        reps, seed: bootstrap resamples and their fixed seed (the same inputs give the same bytes).
        confidence: level of every interval; alpha: family-wise error rate of StepM.
    """
    rows = oos_rows(data)
    y = data.y[rows]  # (n,) next-day log return
    strategies = {name: p.mean(axis=0) for name, p in positions.items()}  # ensembles, (n,)
    baselines = bt.baseline_positions(data.x[rows, -1])  # the last return's sign survives the scaling
    net = {k: bt.pnl(p, y, bps) for k, p in {**strategies, **baselines}.items()}
    boot = dict(reps=reps, confidence=confidence, seed=seed)
    out: dict[str, Any] = {"days": int(y.size), "folds": int(len(data.folds)), "cost_bps": bps,
                           "confidence": confidence, "alpha": alpha, "variants": {}, "baselines": {}}
    for name, pos in {**strategies, **baselines}.items():
        row = _metrics(pos, y, bps)
        sharpe = ms.sharpe_ci(net[name], **boot)
        excess = ms.mean_difference_ci(net[name], net[BENCHMARK], **boot)
        be = float(bt.break_even_bps(pos, y))
        row.update(sharpe_net=row["net"]["sharpe"], sharpe_net_ci=[_finite(sharpe.low), _finite(sharpe.high)],
                   break_even_bps=_finite(be), break_even_note=_break_even_note(be),
                   excess_net_annual={"mean": _finite(excess.estimate * bt.PERIODS),
                                      "ci": [_finite(excess.low * bt.PERIODS), _finite(excess.high * bt.PERIODS)]})
        if name in positions:  # seed (initialisation) noise: the spread of each seed's own Sharpe
            seeds = bt.annualised_sharpe(bt.pnl(positions[name], y, bps))
            row["seeds"] = {"sharpe_net_mean": float(np.mean(seeds)), "sharpe_net_sd": float(np.std(seeds, ddof=1)),
                            "sharpe_net_min": float(np.min(seeds)), "sharpe_net_max": float(np.max(seeds)),
                            "count": int(seeds.size)}
        out["variants" if name in strategies else "baselines"][name] = row
    tried = {k: net[k] for k in (*strategies, "sign")}
    spa = ms.spa_test(net[BENCHMARK], tried, reps=reps, seed=seed, size=alpha)
    out.update(spa_p=spa["pvalues"]["consistent"], spa=spa)
    reference = next(iter(strategies))
    out["contrasts"] = {}
    for name in list(strategies)[1:]:
        d = ms.mean_difference_ci(net[name], net[reference], **boot)
        out["contrasts"][f"{name} - {reference}"] = {
            "mean_annual": d.estimate * bt.PERIODS, "ci": [d.low * bt.PERIODS, d.high * bt.PERIODS], "block": d.block}
    return out


def _break_even_note(bps: float) -> str:
    """What a break-even cost means in words: negative is behind buy-and-hold before any cost."""
    if math.isnan(bps):
        return "trades like buy-and-hold: no excess at any cost"
    if math.isinf(bps):
        return "ahead at any cost (trades no more than buy-and-hold)" if bps > 0 else \
            "behind at any cost (trades no more than buy-and-hold)"
    return "behind buy-and-hold before costs" if bps < 0 else "ahead of buy-and-hold up to this cost"


def equity(data: MarketData, positions: Mapping[str, np.ndarray], bps: float) -> dict[str, np.ndarray]:
    """Net log wealth per day of every ensemble and baseline: name -> (n,) cumulative log P&L."""
    rows = oos_rows(data)
    y = data.y[rows]
    pos = {**{k: p.mean(axis=0) for k, p in positions.items()}, **bt.baseline_positions(data.x[rows, -1])}
    return {k: np.cumsum(bt.pnl(p, y, bps)) for k, p in pos.items()}


def oos_dates(data: MarketData) -> np.ndarray:
    """(n,) datetime64[D] of the day each out-of-sample position earns its return."""
    return (data.dates[data.t[oos_rows(data)] + 1]).astype("datetime64[D]")


def fold_starts(data: MarketData) -> np.ndarray:
    """The out-of-sample index where each fold's test segment begins."""
    f = fold_of_row(data)
    return np.flatnonzero(np.diff(f, prepend=-1))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def market_verdicts(name: str, result: dict[str, Any], first: str, last: str) -> list[str]:
    """The market's findings in plain words, whatever the numbers say."""
    spa, bps, alpha = result["spa"], result["cost_bps"], result["alpha"]
    where = f"On {name}, out of sample {first[:4]}-{last[:4]} ({result['folds']} folds), net of {bps:g} bp"
    if spa["superior"]:
        beaten = f"{', '.join(spa['superior'])} beat{'s' if len(spa['superior']) == 1 else ''} buy-and-hold"
    else:
        beaten = "no variant beats buy-and-hold"
    lines = [f"{where}: {beaten} (SPA p = {result['spa_p']:.2f}; StepM at {alpha:g})"]
    for label, c in result["contrasts"].items():
        lo, hi = c["ci"]
        lines.append(f"{label}: {_pct(c['mean_annual'])} a year net "
                     f"({result['confidence']:.0%} CI {_pct(lo)} to {_pct(hi)}, stationary bootstrap)")
    for variant, row in result["variants"].items():
        s = row["seeds"]
        lines.append(f"{variant}: ensemble Sharpe {row['sharpe_net']:.2f} net; seed noise: single seeds range "
                     f"{s['sharpe_net_min']:.2f} to {s['sharpe_net_max']:.2f} (sd {s['sharpe_net_sd']:.2f}), "
                     "which measures initialisation, not the market")
    return lines
