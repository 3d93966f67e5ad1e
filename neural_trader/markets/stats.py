"""Inference on one dependent daily path: block-bootstrap intervals and Hansen's SPA / StepM.

A real market gives a single path, so the replicas of `inference` (one per seed)
say nothing about the market's own randomness. Here the days are resampled in
blocks by `arch.bootstrap` (no hand-written resampling), which keeps the
serial dependence (volatility clustering) of daily P&L.

Conventions:

* The stationary bootstrap (Politis & Romano) with expected block length from
  `optimal_block_length` (its `stationary` column, Politis & White), at least 1.
* Intervals are percentile intervals: the quantiles of the statistic over the
  resamples. Chosen over arch's default "basic" (reflected) interval because it
  stays inside the range the statistic can take and reads directly as "where
  the resampled Sharpe ratios fell".
* SPA and StepM take losses (lower is better), so they are given -P&L.
* Every bootstrap is seeded by the caller's integer seed: identical inputs give
  identical outputs; the global NumPy RNG is never used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from arch.bootstrap import SPA, StationaryBootstrap, StepM, optimal_block_length

from neural_trader.markets.backtest import PERIODS, annualised_sharpe

__all__ = ["Interval", "block_length", "bootstrap_ci", "mean_difference_ci", "sharpe_ci", "spa_test"]


class Interval(NamedTuple):
    """A point estimate and its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    block: float  # expected block length used, in days


def _series(values: Any, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be a finite 1-D series of at least 2 days, got shape {x.shape}")
    return x


def _aligned(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _series(a, "first series"), _series(b, "second series")
    if a.shape != b.shape:
        raise ValueError(f"series must be aligned day by day, got lengths {a.size} and {b.size}")
    return a, b


def block_length(x: Any) -> float:
    """Expected block length (days) for the stationary bootstrap of `x`, at least 1; 1 for a constant series."""
    x = _series(x, "x")
    if np.ptp(x) == 0:  # no autocorrelation to estimate; arch would divide by zero
        return 1.0
    b = float(optimal_block_length(x)["stationary"].iloc[0])
    return max(b, 1.0) if np.isfinite(b) else 1.0


def bootstrap_ci(x: Any, stat: Callable[[np.ndarray], float], *, reps: int, confidence: float, seed: int,
                 block: float | None = None) -> Interval:
    """Percentile interval of `stat(x)` under the stationary bootstrap.

    Args:
        x: (n,) one daily series.
        stat: maps a (n,) resample to a number.
        reps: bootstrap resamples.
        confidence: two-sided level in (0, 1), e.g. 0.95.
        seed: seeds the bootstrap's own generator.
        block: expected block length in days; None estimates it with `block_length`.

    Returns:
        stat(x), the interval's bounds and the block length used.
    """
    x = _series(x, "x")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    block = block_length(x) if block is None else float(block)
    bs = StationaryBootstrap(block, x, seed=seed)
    ci = bs.conf_int(lambda s: np.atleast_1d(stat(s)), reps=reps, method="percentile", size=confidence)  # (2, 1)
    return Interval(float(stat(x)), float(ci[0, 0]), float(ci[1, 0]), block)


def sharpe_ci(daily_pnl: Any, *, reps: int, confidence: float, seed: int, block: float | None = None,
              periods: int = PERIODS) -> Interval:
    """Interval of the annualised Sharpe ratio of a daily P&L series (as `backtest.annualised_sharpe`)."""
    return bootstrap_ci(daily_pnl, lambda s: annualised_sharpe(s, periods), reps=reps, confidence=confidence,
                        seed=seed, block=block)


def mean_difference_ci(a: Any, b: Any, *, reps: int, confidence: float, seed: int,
                       block: float | None = None) -> Interval:
    """Interval of the mean daily difference a - b of two aligned series (e.g. strategy minus buy-and-hold).

    Days are resampled jointly (the difference series is resampled), so the
    pairing of the two series on each day is kept.
    """
    a, b = _aligned(a, b)
    return bootstrap_ci(a - b, np.mean, reps=reps, confidence=confidence, seed=seed, block=block)


def spa_test(benchmark_pnl: Any, variant_pnls: Mapping[str, Any], *, reps: int, seed: int,
             block: float | None = None, size: float = 0.05) -> dict[str, Any]:
    """Hansen's test of superior predictive ability of the best variant over a benchmark, and StepM.

    Null hypothesis: no variant has a higher expected daily P&L than the
    benchmark. StepM (Romano & Wolf) then names the variants found superior
    while controlling the family-wise error rate at `size`. Note that arch
    8.0's SPA compares the raw mean differentials: its `studentize` flag only
    sets the threshold behind the consistent p-value, so a volatile variant
    weighs more in the maximum than in Hansen's studentized statistic.

    Args:
        benchmark_pnl: (n,) daily P&L of the benchmark (e.g. buy-and-hold, net).
        variant_pnls: name -> (n,) daily P&L on the same days.
        reps: bootstrap resamples.
        seed: seeds both bootstraps.
        block: expected block length in days; None takes the mean of `block_length`
            over the variants' daily P&L minus the benchmark's (copies of the benchmark left out).
        size: family-wise error rate for StepM.

    Returns:
        pvalues: {"lower", "consistent", "upper"} SPA p-values (consistent is Hansen's).
        superior: names StepM finds superior, in the order given.
        block: the block length used.
        If every variant equals the benchmark on every day there is nothing to
        test: p-values are 1 and none is superior (arch would report p = 0 there,
        its test counts strict exceedances of a zero statistic).
    """
    bench = _series(benchmark_pnl, "benchmark_pnl")
    if not variant_pnls:
        raise ValueError("variant_pnls is empty: give at least one variant")
    names = list(variant_pnls)
    models = pd.DataFrame({k: _aligned(variant_pnls[k], bench)[0] for k in names})  # (n, k)
    diff = models.to_numpy() - bench[:, None]  # (n, k) P&L above the benchmark
    differs = np.any(diff != 0, axis=0)  # (k,) a copy of the benchmark has no dependence to measure
    if block is None:
        block = float(np.mean([block_length(d) for d in diff.T[differs]])) if differs.any() else 1.0
    if not differs.any():
        return {"pvalues": {"lower": 1.0, "consistent": 1.0, "upper": 1.0}, "superior": [], "block": block}
    spa = SPA(-bench, -models, block_size=block, reps=reps, seed=seed)
    spa.compute()
    stepm = StepM(-bench, -models, size=size, block_size=block, reps=reps, seed=seed)
    stepm.compute()
    chosen = set(stepm.superior_models)
    return {
        "pvalues": {k: float(v) for k, v in spa.pvalues.items()},
        "superior": [k for k in names if k in chosen],
        "block": block,
    }
