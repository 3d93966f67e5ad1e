"""Walk-forward folds over a daily return series, and the trader's inputs and targets.

Indices are positions in the returns array r (n_days,). A segment is a
half-open range [start, stop) of those indices. Each fold is, in time order:

    train | embargo gap | valid | embargo gap | test

Successive folds move forward by exactly one test length, so their test
segments tile the out-of-sample span [first test start, last test stop) with
no gap and no overlap; that span is the same for both schemes, which differ
only in where train starts (rolling: a fixed-length window sliding forward;
expanding: always at day 0).

A decision window at day t has inputs r[t-lag+1 .. t] (scaled by a volatility
known at t) and target r[t+1]. It belongs to a segment [a, b) when both t and
t+1 lie in it, i.e. a <= t <= b - 2, so a segment of length L holds at most
L - 1 windows, and the first return of each segment is never a target of that
segment (it is an input only).

What the embargo guarantees: the windows of a segment touch (as input or
target) only the days [a - lag + 1, b - 1]. With a gap g >= lag between one
segment's stop b and the next segment's start b + g, the next segment's
windows touch days from b + g - lag + 1 >= b + 1 on: no return is both an
input or target of one segment and an input or target of the next, and at
least one day between them (day b) is used by neither. The volatility scale
is not embargoed: it looks back `vol_window` days, possibly into the previous
segment, which is past information at decision time, not look-ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

__all__ = ["Fold", "FoldWindows", "Windows", "fold_windows", "make_folds", "scaled_inputs", "segment_windows"]

Scheme = Literal["rolling", "expanding"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: half-open day-index ranges into the returns array."""

    index: int
    train: range
    valid: range
    test: range


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def make_folds(n_days: int, *, train: int, valid: int, test: int, step: int, scheme: Scheme,
               embargo: int, lag: int) -> list[Fold]:
    """Every whole fold that fits in `n_days` returns.

    Args:
        n_days: length of the returns array.
        train, valid, test: segment lengths in days (for "expanding", `train` is the first fold's).
        step: days between successive folds; must equal `test` so test segments tile.
        scheme: "rolling" (fixed train length) or "expanding" (train starts at 0).
        embargo: days left out between train and valid and between valid and test; >= lag.
        lag: number of past returns in an input window.

    Returns:
        Folds 0..K-1 in time order; a shorter `n_days` gives a prefix of the same list.

    Raises:
        ValueError: a bad argument (named), or not even one fold fits.
    """
    _check_positive(n_days=n_days, train=train, valid=valid, test=test, step=step, lag=lag)
    if scheme not in ("rolling", "expanding"):
        raise ValueError(f"scheme must be 'rolling' or 'expanding', got {scheme!r}")
    if not isinstance(embargo, (int, np.integer)) or embargo < lag:
        raise ValueError(f"embargo must be an integer >= lag ({lag}) so no input window straddles two segments, "
                         f"got {embargo!r}")
    if step != test:
        raise ValueError(f"step must equal test ({test}) so test segments tile the out-of-sample span, got {step}")
    first_test = train + embargo + valid + embargo  # start of fold 0's test segment
    count = (n_days - first_test) // test
    if count < 1:
        raise ValueError(f"not even one fold fits: train + 2 * embargo + valid + test = {first_test + test} days "
                         f"needed, {n_days} available")
    return [_fold(k, train, valid, test, embargo, scheme) for k in range(count)]


def _fold(k: int, train: int, valid: int, test: int, embargo: int, scheme: Scheme) -> Fold:
    """Fold k: shifted by k test lengths; an expanding train keeps its start at 0."""
    shift = k * test
    train_stop = train + shift
    valid_start = train_stop + embargo
    test_start = valid_start + valid + embargo
    return Fold(index=k,
                train=range(0 if scheme == "expanding" else shift, train_stop),
                valid=range(valid_start, valid_start + valid),
                test=range(test_start, test_start + test))


# ---------------------------------------------------------------------- inputs
class Windows(NamedTuple):
    """Decision windows, aligned row by row."""

    x: np.ndarray  # (n, lag) float32 scaled past returns, oldest first
    y: np.ndarray  # (n,) float64 next return r[t + 1]
    t: np.ndarray  # (n,) int64 decision day: index into the returns array


def scaled_inputs(returns: np.ndarray, lag: int, vol_window: int) -> Windows:
    """The trader's inputs at every decision day with enough history, and the next return.

    The scale is the root mean square of the last `vol_window` returns
    r[t-vol_window+1 .. t] (zero-mean daily volatility, in return units): it
    uses nothing after t. Each day is computed from its own window alone, so a
    change to returns after t leaves row t bit-identical. Where that volatility
    is exactly 0 (a flat stretch) the inputs are set to 0 rather than divided.

    Args:
        returns: (n_days,) log returns.
        lag: past returns per input window.
        vol_window: returns in the volatility estimate.

    Returns:
        Windows for t = max(lag, vol_window) - 1 .. n_days - 2.
    """
    _check_positive(lag=lag, vol_window=vol_window)
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be 1-D, got shape {r.shape}")
    first = max(lag, vol_window) - 1  # first day with a full input and volatility window
    t = np.arange(first, len(r) - 1, dtype=np.int64)  # (n,) decision days with a next return
    if t.size == 0:
        empty = np.empty(0)
        return Windows(np.empty((0, lag), np.float32), empty, t)
    view = np.lib.stride_tricks.sliding_window_view
    past = view(r, lag)[t - lag + 1]  # (n, lag) r[t-lag+1 .. t]
    vol = np.sqrt(np.mean(np.square(view(r, vol_window)[t - vol_window + 1]), axis=1))  # (n,)
    safe = np.where(vol > 0, vol, 1.0)[:, None]
    x = np.where(vol[:, None] > 0, past / safe, 0.0).astype(np.float32)
    return Windows(x=x, y=r[t + 1].copy(), t=t)


def segment_windows(windows: Windows, segment: range) -> Windows:
    """The windows whose decision day t and target day t + 1 both lie in `segment`."""
    keep = (windows.t >= segment.start) & (windows.t + 1 < segment.stop)
    return Windows(windows.x[keep], windows.y[keep], windows.t[keep])


@dataclass(frozen=True)
class FoldWindows:
    """The windows of one fold, by segment."""

    fold: Fold
    train: Windows
    valid: Windows
    test: Windows


def fold_windows(folds: Sequence[Fold], windows: Windows) -> list[FoldWindows]:
    """Split the windows of `scaled_inputs` into each fold's train / valid / test segments."""
    return [FoldWindows(f, *(segment_windows(windows, s) for s in (f.train, f.valid, f.test))) for f in folds]
