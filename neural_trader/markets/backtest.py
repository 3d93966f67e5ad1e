"""Daily P&L with trading costs, the baselines, performance metrics and the break-even cost.

A long-only trader holds position w_t in [0, 1] of one unit from the close of
day t to the close of day t+1 and earns w_t * r_{t+1}, with r the daily *log*
return. Log returns are used throughout so P&L adds over days and the
cumulative sum is log wealth; this is exact for w in {0, 1} and a first-order
approximation for fractional w (the error is about w(1-w) r^2 / 2 per day).

Costs: moving the position by |w_t - w_{t-1}| costs cost_bps / 1e4 times that
move, charged on day t; the first day's move is counted from cash (w_{-1} = 0),
so entering costs and buy-and-hold pays exactly once, on its first day.

Shapes: positions and returns are (..., n) with n days on the last axis;
leading axes (seeds, variants) broadcast. Metrics reduce the last axis and
return floats for a single series, arrays of the leading shape otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "PERIODS",
    "annualised_sharpe",
    "baseline_positions",
    "break_even_bps",
    "max_drawdown",
    "metrics",
    "pnl",
    "position_changes",
]

#: trading days per year, the annualisation factor
PERIODS = 252


def _array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one day on its last axis, got shape {arr.shape}")
    return arr


def _positions(values: Any) -> np.ndarray:
    w = _array(values, "positions")
    if not np.all((w >= 0) & (w <= 1)):  # NaN fails too
        raise ValueError(f"positions must lie in [0, 1], found e.g. {w[~((w >= 0) & (w <= 1))].flat[0]!r}")
    return w


def _out(x: np.ndarray) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else x


def position_changes(positions: Any) -> np.ndarray:
    """(..., n) |w_t - w_{t-1}|, the first day counted from cash (w_{-1} = 0)."""
    w = _positions(positions)
    return np.abs(np.diff(w, axis=-1, prepend=0.0))


def pnl(positions: Any, next_returns: Any, cost_bps: float = 0.0) -> np.ndarray:
    """Net daily P&L in log-return units, w_t * r_{t+1} - cost_bps / 1e4 * |w_t - w_{t-1}|.

    Args:
        positions: (..., n) positions in [0, 1] held over the next day.
        next_returns: (..., n) the next day's log return, broadcast against positions.
        cost_bps: cost per unit of position moved, in basis points (>= 0); 0 gives the gross P&L.

    Returns:
        (..., n) net daily P&L.
    """
    if not cost_bps >= 0:
        raise ValueError(f"cost_bps must be >= 0, got {cost_bps!r}")
    w = _positions(positions)
    r = _array(next_returns, "next_returns")
    return w * r - cost_bps / 1e4 * position_changes(w)


def baseline_positions(last_returns: Any) -> dict[str, np.ndarray]:
    """Positions (n,) of cash (0), buy_and_hold (1) and sign (1 when the last known return r_t > 0, else 0)."""
    last = _array(last_returns, "last_returns")
    return {
        "cash": np.zeros_like(last),
        "buy_and_hold": np.ones_like(last),
        "sign": (last > 0).astype(np.float64),
    }


# ---------------------------------------------------------------------- metrics
def annualised_sharpe(daily_pnl: Any, periods: int = PERIODS) -> float | np.ndarray:
    """mean / std * sqrt(periods) of daily P&L (population std); 0 when the P&L is flat."""
    p = _array(daily_pnl, "daily_pnl")
    mean, std = p.mean(axis=-1), p.std(axis=-1)
    flat = std <= 1e-12 * np.sqrt(np.mean(p**2, axis=-1))  # rounding-level spread of a constant P&L
    return _out(np.where(flat, 0.0, mean / np.where(flat, 1.0, std)) * math.sqrt(periods))


def max_drawdown(daily_pnl: Any) -> float | np.ndarray:
    """Largest fall of wealth from its running peak, as a fraction of the peak, in [0, 1].

    Wealth is exp(cumulative log P&L), starting at 1 before the first day, so a
    loss on day one counts: drawdown = 1 - exp(min_t(cum_t - max_{s<=t} cum_s)).
    """
    p = _array(daily_pnl, "daily_pnl")
    zero = np.zeros((*p.shape[:-1], 1))
    cum = np.concatenate([zero, np.cumsum(p, axis=-1)], axis=-1)  # (..., n + 1) log wealth
    worst = np.min(cum - np.maximum.accumulate(cum, axis=-1), axis=-1)  # <= 0, log units
    return _out(-np.expm1(worst))


def metrics(daily_pnl: Any, positions: Any, next_returns: Any, periods: int = PERIODS) -> dict[str, float | np.ndarray]:
    """Performance of one (or many) daily P&L series.

    Args:
        daily_pnl: (..., n) daily P&L in log units, usually net of costs (`pnl`).
        positions: (..., n) the positions that earned it.
        next_returns: (..., n) the next-day log returns they were held over.
        periods: trading days per year.

    Returns:
        ann_return: mean daily P&L * periods (log units per year).
        ann_vol: population std of daily P&L * sqrt(periods).
        sharpe: ann_return / ann_vol; 0 when the P&L is flat (e.g. cash).
        max_drawdown: largest fall from peak wealth, a fraction in [0, 1] (see `max_drawdown`).
        turnover: mean |w_t - w_{t-1}| per day, entry from cash included.
        turnover_annual: turnover * periods (units of position traded per year).
        hit_rate: among days with a nonzero position, the fraction whose gross
            P&L w_t * r_{t+1} is > 0 (costs ignored, so it measures direction);
            NaN when the position is never nonzero.
        exposure: mean position.
        days: n.
    """
    p = _array(daily_pnl, "daily_pnl")
    w = np.broadcast_to(_positions(positions), p.shape)
    r = np.broadcast_to(_array(next_returns, "next_returns"), p.shape)
    turnover = position_changes(w).mean(axis=-1)
    held = w > 0
    n_held = held.sum(axis=-1)
    wins = (held & (w * r > 0)).sum(axis=-1)
    return {
        "ann_return": _out(p.mean(axis=-1) * periods),
        "ann_vol": _out(p.std(axis=-1) * math.sqrt(periods)),
        "sharpe": annualised_sharpe(p, periods),
        "max_drawdown": max_drawdown(p),
        "turnover": _out(turnover),
        "turnover_annual": _out(turnover * periods),
        "hit_rate": _out(np.where(n_held > 0, wins / np.maximum(n_held, 1), np.nan)),
        "exposure": _out(w.mean(axis=-1)),
        "days": p.shape[-1],
    }


def break_even_bps(positions: Any, next_returns: Any, benchmark_positions: Any = None) -> float | np.ndarray:
    """The cost in bps at which the strategy's mean daily net excess over a benchmark is zero.

    Net P&L is linear in the cost c = bps / 1e4, so the excess is
    g - c * d, with g the mean daily gross excess (strategy minus benchmark) and
    d the strategy's turnover minus the benchmark's (both per day, entries
    from cash included; buy-and-hold's is its single entry, 1 / n). The strategy
    beats the benchmark exactly at costs below the returned value.

    Args:
        positions: (..., n) strategy positions.
        next_returns: (..., n) next-day log returns.
        benchmark_positions: (..., n) benchmark positions; None is buy-and-hold (all 1).

    Returns:
        g / d * 1e4 when d > 0; it is negative when g < 0 (the strategy trails even
        before costs, and would need that large a rebate). When d <= 0 (it trades
        no more than the benchmark) costs cannot put it behind: inf if g > 0,
        -inf if g < 0, NaN if g == 0 (the cost never decides).
    """
    w = _positions(positions)
    r = _array(next_returns, "next_returns")
    if benchmark_positions is None:
        b = np.ones(np.broadcast_shapes(w.shape, r.shape))
    else:
        b = _positions(benchmark_positions)
    g = (w * r).mean(axis=-1) - (b * r).mean(axis=-1)
    d = position_changes(w).mean(axis=-1) - position_changes(b).mean(axis=-1)
    tol = 1e-12  # d is a mean of |position moves|; below this it is rounding
    trades_more = d > tol
    never = np.where(g > 0, np.inf, np.where(g < 0, -np.inf, np.nan))
    return _out(np.where(trades_more, g / np.where(trades_more, d, 1.0) * 1e4, never))
