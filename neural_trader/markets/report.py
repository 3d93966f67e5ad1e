"""The market section of the comparison: out-of-sample performance, gross and net, and inference on one path.

Every figure is computed on the same out-of-sample days for every variant and
baseline. A variant trades its ensemble (the mean position over its S seeds);
the seeds' own spread is reported as seed noise, never as evidence about the
market: seeds share one price path, so their spread says nothing about how
another path would have gone. Market uncertainty comes from the stationary
bootstrap of the daily P&L (`markets.stats`), and the many variants tried are
accounted for by Hansen's SPA test against buy-and-hold, net of costs. The
daily P&L net of costs is computed once (`net_pnl`) and handed to both the
comparison and the equity curves. Nothing here reads or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from neural_trader.inference import format_evidence
from neural_trader.markets import backtest as bt
from neural_trader.markets import stats as ms
from neural_trader.markets.data import MarketData, fold_of_row, oos_rows

__all__ = ["net_pnl", "compare_market", "equity", "market_verdicts", "BENCHMARK"]

BENCHMARK = "buy_and_hold"


def _finite(x: Any) -> Any:
    """JSON-ready: non-finite floats become None (break-even is infinite for a strategy that never trades)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _strategies(data: MarketData, positions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Out-of-sample positions (n,) of every ensemble (the mean over its seeds), then of every baseline."""
    rows = oos_rows(data)
    ensembles = {name: p.mean(axis=0) for name, p in positions.items()}
    return {**ensembles, **bt.baseline_positions(data.x[rows, -1])}  # the last return's sign survives the scaling


def net_pnl(data: MarketData, positions: Mapping[str, np.ndarray], bps: float) -> dict[str, np.ndarray]:
    """Daily P&L net of `bps` of every ensemble and baseline on the out-of-sample days: name -> (n,), log units."""
    y = data.y[oos_rows(data)]
    return {name: bt.pnl(pos, y, bps) for name, pos in _strategies(data, positions).items()}


def compare_market(data: MarketData, positions: Mapping[str, np.ndarray], net: Mapping[str, np.ndarray], *,
                   bps: float, reps: int, seed: int, confidence: float, alpha: float) -> dict[str, Any]:
    """One market's out-of-sample comparison.

    Args:
        data: the market's series, windows and folds.
        positions: variant -> (S, n_oos) out-of-sample positions of each seed, in params order;
            the first variant is the reference of the variant contrasts (e.g. dropout vs base).
        net: `net_pnl(data, positions, bps)`.
        bps: cost per unit of position change, in basis points.
        reps, seed: bootstrap resamples and their fixed seed (the same inputs give the same bytes).
        confidence: level of every interval; alpha: family-wise error rate of StepM.
    """
    y = data.y[oos_rows(data)]  # (n,) next-day log return
    boot = dict(reps=reps, confidence=confidence, seed=seed)
    out: dict[str, Any] = {"days": int(y.size), "folds": int(len(data.folds)), "cost_bps": bps,
                           "confidence": confidence, "alpha": alpha, "variants": {}, "baselines": {}}
    for name, pos in _strategies(data, positions).items():
        row = {kind: {k: _finite(v) for k, v in bt.metrics(pnl, pos, y).items()}
               for kind, pnl in (("gross", bt.pnl(pos, y)), ("net", net[name]))}
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
        out["variants" if name in positions else "baselines"][name] = row
    tried = {k: net[k] for k in (*positions, "sign")}
    spa = ms.spa_test(net[BENCHMARK], tried, reps=reps, seed=seed, size=alpha)
    out.update(spa_p=spa["pvalues"]["consistent"], spa=spa)
    reference = next(iter(positions))
    out["contrasts"] = {}
    for name in list(positions)[1:]:
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


def equity(net: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Net log wealth per day from `net_pnl`: name -> (n,) cumulative log P&L."""
    return {k: np.cumsum(v) for k, v in net.items()}


def oos_dates(data: MarketData) -> np.ndarray:
    """(n,) datetime64[D] of the day each out-of-sample position earns its return."""
    return (data.dates[data.t[oos_rows(data)] + 1]).astype("datetime64[D]")


def fold_starts(data: MarketData) -> np.ndarray:
    """The out-of-sample index where each fold's test segment begins."""
    f = fold_of_row(data)
    return np.flatnonzero(np.diff(f, prepend=-1))


def fold_periods(data: MarketData) -> list[str]:
    """Each fold's out-of-sample dates, 'fold k: YYYY-MM to YYYY-MM', in fold order."""
    dates, starts = oos_dates(data), fold_starts(data)
    ends = [*starts[1:], len(dates)]
    return [f"{k + 1}: {str(dates[a])[:7]} to {str(dates[b - 1])[:7]}" for k, (a, b) in enumerate(zip(starts, ends))]


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
                     + format_evidence(lo, hi, result["confidence"], fmt=_pct, interval="stationary-bootstrap CI"))
    for variant, row in result["variants"].items():
        s = row["seeds"]
        lines.append(f"{variant}: ensemble Sharpe {row['sharpe_net']:.2f} net; seed noise: single seeds range "
                     f"{s['sharpe_net_min']:.2f} to {s['sharpe_net_max']:.2f} (sd {s['sharpe_net_sd']:.2f}), "
                     "which measures initialisation, not the market")
    return lines
