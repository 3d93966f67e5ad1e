"""One real price path, walk-forward: the inputs, the folds as training batches, out-of-sample positions.

A market's data are its log returns r (n_days,), the trader's decision windows
(x: the last `lag` returns scaled by a volatility known at the decision day t,
y: the next return r[t+1]) and the folds. Folds are cut over the rows of the
windows (one row per decision day), so every fold of a rolling scheme holds
the same number of windows and the S seeds of all F folds train as F*S
replicas of one batched run. A segment owns the windows whose rows lie in it;
with an embargo of at least `lag` rows between segments, no day is an input
or target of two segments (see `neural_trader.markets.folds`). The test
segments tile the out-of-sample rows, so the joined out-of-sample series has
a position for every day from the first test day to the last.

Replica r = f * S + s is seed s on fold f. Nothing here reads or writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neural_trader.markets.config import MarketsConfig
from neural_trader.markets.prices import PriceSeries, log_returns
from neural_trader.markets.folds import Fold, make_folds, scaled_inputs

__all__ = ["MarketData", "prepare_market", "fold_groups", "oos_rows", "FOLD_COLUMNS"]

#: one row per fold in `MarketData.folds`: the half-open row ranges of its segments
FOLD_COLUMNS = ("train_start", "train_stop", "valid_start", "valid_stop", "test_start", "test_stop")


@dataclass(frozen=True)
class MarketData:
    """A market's series and windows; `folds` (F, 6) row ranges, see FOLD_COLUMNS."""

    dates: np.ndarray  # (n_days,) int64 days since 1970-01-01 of each return's end day
    returns: np.ndarray  # (n_days,) float64 log returns
    x: np.ndarray  # (n, lag) float32 scaled past returns at each decision day
    y: np.ndarray  # (n,) float64 next return
    t: np.ndarray  # (n,) int64 decision day (index into returns)
    folds: np.ndarray  # (F, 6) int64

    def fold(self, k: int) -> Fold:
        a, b, c, d, e, f = (int(v) for v in self.folds[k])
        return Fold(k, range(a, b), range(c, d), range(e, f))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"dates": self.dates, "returns": self.returns, "x": self.x, "y": self.y, "t": self.t,
                "folds": self.folds}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "MarketData":
        return cls(**{k: np.asarray(a[k]) for k in ("dates", "returns", "x", "y", "t", "folds")})


def prepare_market(series: PriceSeries, cfg: MarketsConfig) -> MarketData:
    """Log returns, scaled windows and walk-forward folds of one price series.

    Raises ValueError (naming the series) when the series is too short for one fold.
    """
    dates, r = log_returns(series)
    w = scaled_inputs(r, cfg.lag, cfg.vol_window)
    wf = cfg.walk_forward
    fold = wf.train + 2 * wf.embargo + wf.valid + wf.test  # decision days of one fold
    if len(w.t) < fold:
        need = fold + max(cfg.lag, cfg.vol_window) + 1  # prices: the volatility warm-up and the last target
        raise ValueError(f"{series.source}: too short for one walk-forward fold: {len(series)} prices, one fold "
                         f"needs {need} (markets.walk_forward train + 2 x embargo + valid + test, "
                         f"plus {cfg.vol_window} days of volatility warm-up)")
    try:
        folds = make_folds(len(w.t), train=wf.train, valid=wf.valid, test=wf.test, step=wf.test,
                           scheme=wf.scheme, embargo=wf.embargo, lag=cfg.lag)
    except ValueError as exc:
        raise ValueError(f"{series.source}: {len(series)} prices give {len(w.t)} decision days "
                         f"(after {cfg.vol_window} days of volatility warm-up): {exc}") from None
    table = np.array([[f.train.start, f.train.stop, f.valid.start, f.valid.stop, f.test.start, f.test.stop]
                      for f in folds], dtype=np.int64)
    days = dates.astype("datetime64[D]").astype(np.int64)
    return MarketData(days, r, w.x, w.y, w.t, table)


@dataclass(frozen=True)
class FoldGroup:
    """Folds whose segments have equal lengths, stacked as replicas: fold-major, seed-minor."""

    folds: tuple[int, ...]
    train_x: np.ndarray  # (G*S, n_train, lag) float32
    train_y: np.ndarray  # (G*S, n_train) float32
    valid_x: np.ndarray  # (G*S, n_valid, lag)
    valid_y: np.ndarray  # (G*S, n_valid)
    test_x: np.ndarray  # (G*S, n_test, lag)


def _stack(values: np.ndarray, segments: list[range], seeds: int) -> np.ndarray:
    """Each fold's rows of a segment, repeated for every seed: (G*S, n, ...)."""
    return np.repeat(np.stack([values[s.start:s.stop] for s in segments]), seeds, axis=0)


def fold_groups(data: MarketData, seeds: int) -> list[FoldGroup]:
    """The folds batched for training: one group for a rolling scheme, one per fold when expanding."""
    y = data.y.astype(np.float32)  # the trainer's precision; P&L is computed from data.y in float64
    by_shape: dict[tuple[int, int], list[Fold]] = {}
    for k in range(len(data.folds)):
        f = data.fold(k)
        by_shape.setdefault((len(f.train), len(f.valid)), []).append(f)
    return [FoldGroup(tuple(f.index for f in fs), _stack(data.x, [f.train for f in fs], seeds),
                      _stack(y, [f.train for f in fs], seeds), _stack(data.x, [f.valid for f in fs], seeds),
                      _stack(y, [f.valid for f in fs], seeds), _stack(data.x, [f.test for f in fs], seeds))
            for fs in by_shape.values()]


def oos_rows(data: MarketData) -> np.ndarray:
    """(n_oos,) the window rows of every test segment in order: the out-of-sample days."""
    return np.concatenate([np.arange(*data.folds[k, 4:6]) for k in range(len(data.folds))])


def fold_of_row(data: MarketData) -> np.ndarray:
    """(n_oos,) the fold whose test segment holds each out-of-sample row."""
    return np.concatenate([np.full(int(data.folds[k, 5] - data.folds[k, 4]), k) for k in range(len(data.folds))])
