"""Walk-forward folds, scaled inputs and segment membership (neural_trader.markets.folds).

The fold arithmetic is checked by property over random sizes; the inputs by a
hand-computed case; the absence of look-ahead by changing every price after a
date and checking that nothing dated before it moves by a single bit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_trader.markets.prices import PriceSeries, load_dataset, log_returns
from neural_trader.markets.folds import Fold, fold_windows, make_folds, scaled_inputs, segment_windows


@st.composite
def fold_args(draw):
    lag = draw(st.integers(1, 5))
    test = draw(st.integers(1, 20))
    args = {"train": draw(st.integers(1, 40)), "valid": draw(st.integers(1, 20)), "test": test, "step": test,
            "embargo": draw(st.integers(lag, lag + 5)), "lag": lag,
            "scheme": draw(st.sampled_from(["rolling", "expanding"]))}
    need = args["train"] + 2 * args["embargo"] + args["valid"] + args["test"]
    return draw(st.integers(need, need + 200)), args


# ------------------------------------------------------------------ folds
@given(fold_args())
def test_segments_in_order_with_embargo(case):
    n_days, a = case
    for k, f in enumerate(make_folds(n_days, **a)):
        assert f.index == k
        assert len(f.valid) == a["valid"] and len(f.test) == a["test"]
        assert f.valid.start - f.train.stop == a["embargo"] >= a["lag"]
        assert f.test.start - f.valid.stop == a["embargo"]
        assert 0 <= f.train.start < f.train.stop and f.test.stop <= n_days


@given(fold_args())
def test_test_segments_tile_and_last_fold_is_the_last_that_fits(case):
    n_days, a = case
    folds = make_folds(n_days, **a)
    first = a["train"] + 2 * a["embargo"] + a["valid"]
    assert folds[0].test.start == first
    for prev, nxt in itertools.pairwise(folds):
        assert nxt.test.start == prev.test.stop  # no gap, no overlap
    assert folds[-1].test.stop <= n_days < folds[-1].test.stop + a["test"]
    covered = np.concatenate([np.arange(f.test.start, f.test.stop) for f in folds])
    np.testing.assert_array_equal(covered, np.arange(first, folds[-1].test.stop))


@given(fold_args())
def test_rolling_slides_and_expanding_grows(case):
    n_days, a = case
    rolling = make_folds(n_days, **{**a, "scheme": "rolling"})
    expanding = make_folds(n_days, **{**a, "scheme": "expanding"})
    assert len(rolling) == len(expanding)
    for k, (r, e) in enumerate(zip(rolling, expanding)):
        assert r.train == range(k * a["test"], k * a["test"] + a["train"])
        assert e.train == range(a["train"] + k * a["test"])
        assert (r.valid, r.test) == (e.valid, e.test)  # the schemes differ only in train's start


@given(fold_args(), st.integers(0, 100))
def test_more_days_only_add_folds(case, extra):
    n_days, a = case
    assert make_folds(n_days + extra, **a)[: len(make_folds(n_days, **a))] == make_folds(n_days, **a)


def test_hand_made_folds():
    folds = make_folds(30, train=10, valid=3, test=4, step=4, scheme="rolling", embargo=2, lag=2)
    assert folds == [Fold(0, range(10), range(12, 15), range(17, 21)),
                     Fold(1, range(4, 14), range(16, 19), range(21, 25)),
                     Fold(2, range(8, 18), range(20, 23), range(25, 29))]


@pytest.mark.parametrize(("change", "match"), [
    ({"embargo": 1}, r"embargo must be an integer >= lag \(2\)"),
    ({"step": 3}, r"step must equal test \(4\)"),
    ({"scheme": "anchored"}, "scheme must be 'rolling' or 'expanding'"),
    ({"train": 0}, "train must be an integer >= 1"),
    ({"lag": 0}, "lag must be an integer >= 1"),
])
def test_bad_fold_arguments(change, match):
    args = {"train": 10, "valid": 3, "test": 4, "step": 4, "scheme": "rolling", "embargo": 2, "lag": 2} | change
    with pytest.raises(ValueError, match=match):
        make_folds(100, **args)


def test_too_few_days_says_how_many():
    args = {"train": 10, "valid": 3, "test": 4, "step": 4, "scheme": "expanding", "embargo": 2, "lag": 2}
    assert len(make_folds(21, **args)) == 1
    with pytest.raises(ValueError, match="21 days needed, 20 available"):
        make_folds(20, **args)


# ------------------------------------------------------------------ inputs
def test_scaled_inputs_by_hand():
    r = np.array([0.01, -0.02, 0.02, 0.01, -0.01])
    w = scaled_inputs(r, lag=2, vol_window=3)
    np.testing.assert_array_equal(w.t, [2, 3])  # t = 2 is the first day with 3 returns; t = 4 has no next return
    vol = np.sqrt([(1 + 4 + 4) / 3 * 1e-4, (4 + 4 + 1) / 3 * 1e-4])
    np.testing.assert_allclose(w.x, np.array([[-0.02, 0.02], [0.02, 0.01]]) / vol[:, None], rtol=1e-6)
    np.testing.assert_array_equal(w.y, [0.01, -0.01])
    assert w.x.dtype == np.float32 and w.y.dtype == np.float64 and w.t.dtype == np.int64


def test_zero_volatility_gives_zero_inputs():
    r = np.array([0.0, 0.0, 0.0, 0.0, 0.03, 0.01])
    w = scaled_inputs(r, lag=2, vol_window=3)
    assert np.all(np.isfinite(w.x))
    np.testing.assert_array_equal(w.x[:2], 0.0)  # t = 2, 3: the last three returns are all 0
    assert w.x[2, 1] > 0


def test_too_short_series_gives_no_windows():
    w = scaled_inputs(np.zeros(3), lag=2, vol_window=3)
    assert w.x.shape == (0, 2) and w.y.shape == (0,) and w.t.shape == (0,)


@given(st.integers(20, 80), st.integers(1, 4), st.integers(1, 8), st.integers(1, 10), st.integers(0, 3))
@settings(max_examples=50)
def test_segments_hold_whole_windows_and_embargo_separates_them(n_days, lag, vol_window, test, spare):
    embargo = lag + spare
    try:
        folds = make_folds(n_days, train=8, valid=4, test=test, step=test, scheme="rolling", embargo=embargo, lag=lag)
    except ValueError:
        return
    w = scaled_inputs(np.random.default_rng(n_days).normal(size=n_days), lag, vol_window)
    for fw in fold_windows(folds, w):
        touched = []  # days used as an input or target by each segment, in time order
        for seg, win in zip((fw.fold.train, fw.fold.valid, fw.fold.test), (fw.train, fw.valid, fw.test)):
            assert np.all((win.t >= seg.start) & (win.t + 1 < seg.stop))
            np.testing.assert_array_equal(win.x, w.x[np.isin(w.t, win.t)])
            days = set()
            for t in win.t:
                days.update(range(t - lag + 1, t + 2))
            touched.append(days)
        for earlier, later in itertools.pairwise(touched):
            assert not earlier & later
            if earlier and later:
                assert min(later) - max(earlier) >= 2  # at least one day used by neither


def test_segment_windows_membership():
    w = scaled_inputs(np.arange(1.0, 13.0), lag=1, vol_window=1)  # t = 0 .. 10
    np.testing.assert_array_equal(segment_windows(w, range(3, 7)).t, [3, 4, 5])  # t = 6 has its target outside


# ------------------------------------------------------------------ no look-ahead
def perturbed(series: PriceSeries, cut: np.datetime64, seed: int) -> PriceSeries:
    """The same series with every price dated on or after `cut` changed."""
    prices = series.prices.copy()
    after = series.dates >= cut
    prices[after] *= np.exp(np.random.default_rng(seed).normal(0, 0.05, after.sum()))
    return PriceSeries(series.dates, prices, series.dropped, series.source)


def study_inputs(series: PriceSeries, lag: int = 5, vol_window: int = 20):
    dates, r = log_returns(series)
    w = scaled_inputs(r, lag, vol_window)
    folds = make_folds(len(r), train=750, valid=250, test=250, step=250, scheme="rolling", embargo=lag, lag=lag)
    return dates, w, folds, fold_windows(folds, w)


@pytest.mark.parametrize("cut", ["2003-06-02", "2010-03-15", "2018-12-03"])
def test_changing_prices_after_a_date_leaves_the_past_bit_identical(cut):
    cut = np.datetime64(cut)
    base = load_dataset("sp500")
    dates, w0, folds0, fw0 = study_inputs(base)
    dates1, w1, folds1, fw1 = study_inputs(perturbed(base, cut, seed=1))
    np.testing.assert_array_equal(dates, dates1)
    known = dates[w0.t] < cut  # decision day before the change: its inputs and scale must not move
    assert known.sum() > 0 and not np.array_equal(w0.y, w1.y)
    assert w0.x[known].tobytes() == w1.x[known].tobytes()
    seen = dates[w0.t + 1] < cut  # target before the change too
    assert w0.y[seen].tobytes() == w1.y[seen].tobytes()
    assert folds0 == folds1
    for a, b in zip(fw0, fw1):
        for seg in ("train", "valid", "test"):
            sa, sb = getattr(a, seg), getattr(b, seg)
            np.testing.assert_array_equal(sa.t, sb.t)
            before = dates[sa.t] < cut
            assert sa.x[before].tobytes() == sb.x[before].tobytes()


def test_truncating_after_a_date_keeps_the_past_and_the_early_folds():
    base = load_dataset("sp500")
    cut = np.datetime64("2012-01-03")
    keep = base.dates < cut
    short = PriceSeries(base.dates[keep], base.prices[keep], base.dropped, base.source)
    _, w0, folds0, _ = study_inputs(base)
    _, w1, folds1, _ = study_inputs(short)
    n = len(w1.t)
    assert w0.x[:n].tobytes() == w1.x.tobytes() and np.array_equal(w0.t[:n], w1.t)
    assert folds0[: len(folds1)] == folds1
