"""Costs, baselines, metrics and break-even cost (neural_trader.markets.backtest), against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neural_trader.markets.backtest import (annualised_sharpe, baseline_positions, break_even_bps, max_drawdown, metrics, pnl, position_changes)

# a hand-made week: positions held over the next day, and those next-day log returns
W = np.array([0.0, 1.0, 1.0, 0.5, 0.0, 1.0])
R = np.array([0.01, 0.02, -0.01, 0.04, -0.03, 0.01])


# ------------------------------------------------------------------ costs
def test_cost_accounting_by_hand():
    np.testing.assert_allclose(position_changes(W), [0, 1, 0, 0.5, 0.5, 1])
    gross = [0, 0.02, -0.01, 0.02, 0, 0.01]
    np.testing.assert_allclose(pnl(W, R), gross)
    # 10 bp per unit moved: 0.001 on day 1, 0.0005 on days 3 and 4, 0.001 on day 5
    np.testing.assert_allclose(pnl(W, R, cost_bps=10), [0, 0.019, -0.01, 0.0195, -0.0005, 0.009])


def test_entering_costs_from_cash_and_buy_and_hold_pays_once():
    net = pnl(np.ones(4), np.zeros(4), cost_bps=25)
    np.testing.assert_allclose(net, [-0.0025, 0, 0, 0])
    assert pnl([0.4], [0.0], cost_bps=100)[0] == pytest.approx(-0.004)


def test_many_series_at_once_match_one_by_one():
    w = np.stack([W, W[::-1], np.ones(6)])  # (3, 6)
    both = pnl(w, R, cost_bps=7)
    for i in range(3):
        np.testing.assert_array_equal(both[i], pnl(w[i], R, cost_bps=7))
    m = metrics(both, w, R)
    assert m["sharpe"].shape == (3,) and m["sharpe"][1] == metrics(both[1], w[1], R)["sharpe"]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0, 100))
def test_net_is_gross_minus_cost_times_moves(w, bps):
    w = np.array(w)
    r = np.linspace(-0.02, 0.03, len(w))
    np.testing.assert_allclose(pnl(w, r) - pnl(w, r, bps), bps / 1e4 * position_changes(w), atol=1e-15)


@pytest.mark.parametrize("bad", [[0.5, 1.2], [-0.1, 0.0], [np.nan, 1.0]])
def test_positions_outside_unit_interval_fail(bad):
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 1\]"):
        pnl(bad, [0.0, 0.0])


def test_negative_cost_fails():
    with pytest.raises(ValueError, match="cost_bps must be >= 0"):
        pnl(W, R, cost_bps=-1)


def test_baselines():
    b = baseline_positions([0.01, -0.02, 0.0, 0.03])
    np.testing.assert_array_equal(b["cash"], [0, 0, 0, 0])
    np.testing.assert_array_equal(b["buy_and_hold"], [1, 1, 1, 1])
    np.testing.assert_array_equal(b["sign"], [1, 0, 0, 1])  # a zero return is not > 0


# ------------------------------------------------------------------ metrics
def test_metrics_by_hand():
    net = pnl(W, R, cost_bps=10)  # [0, 0.019, -0.01, 0.0195, -0.0005, 0.009]
    m = metrics(net, W, R)
    mean = 0.037 / 6
    std = math.sqrt(np.mean((net - mean) ** 2))
    assert m["ann_return"] == pytest.approx(mean * 252)
    assert m["ann_vol"] == pytest.approx(std * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    # log wealth 0, 0, .019, .009, .0285, .028, .037: worst fall .01 from the .019 peak
    assert m["max_drawdown"] == pytest.approx(1 - math.exp(-0.01))
    assert m["turnover"] == pytest.approx(3 / 6) and m["turnover_annual"] == pytest.approx(126)
    # held on days 1, 2, 3, 5; gross P&L .02, -.01, .02, .01: three wins of four
    assert m["hit_rate"] == pytest.approx(0.75)
    assert m["exposure"] == pytest.approx(3.5 / 6)
    assert m["days"] == 6


def test_cash_is_flat():
    m = metrics(pnl(np.zeros(6), R), np.zeros(6), R)
    assert m["sharpe"] == 0 and m["ann_vol"] == 0 and m["max_drawdown"] == 0 and m["turnover"] == 0
    assert math.isnan(m["hit_rate"])  # never in the market


def test_drawdown_counts_a_first_day_loss():
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(1 - math.exp(-0.1))
    assert max_drawdown([0.01, 0.02]) == 0
    assert max_drawdown([-5.0]) == pytest.approx(1 - math.exp(-5))


def test_constant_pnl_has_zero_sharpe():
    assert annualised_sharpe(np.full(10, 0.001)) == 0.0


# ------------------------------------------------------------------ break-even
def test_break_even_by_hand():
    # strategy: long on days 0-1, out on days 2-3; buy-and-hold long throughout
    w = np.array([1.0, 1.0, 0.0, 0.0])
    r = np.array([0.01, 0.02, -0.02, -0.03])
    # gross excess = mean(w r) - mean(r) = 0.03/4 - (-0.02/4) = 0.0125; turnover 2/4 vs 1/4
    be = break_even_bps(w, r)
    assert be == pytest.approx(0.0125 / 0.25 * 1e4)  # 500 bp
    bh = pnl(np.ones(4), r, be)
    assert pnl(w, r, be).mean() == pytest.approx(bh.mean())  # net excess is zero there
    assert pnl(w, r, be - 1).mean() > pnl(np.ones(4), r, be - 1).mean()


def test_break_even_negative_when_behind_before_costs():
    r = np.array([0.01, 0.02, -0.02, -0.03])
    w = np.array([0.0, 1.0, 0.0, 1.0])  # in on day 1, out on day 2, in on day 3: turnover 3/4 vs 1/4
    # gross excess = (0.02 - 0.03) / 4 - (-0.02 / 4) = 0.0025 per day, over a turnover gap of 0.5
    assert break_even_bps(w, r) == pytest.approx(50)
    assert break_even_bps(w, -r) == pytest.approx(-50)  # behind before costs: it would need a 50 bp rebate


def test_break_even_edges():
    r = np.array([0.01, -0.02, 0.03])
    assert math.isnan(break_even_bps(np.ones(3), r))  # the benchmark itself: cost never decides
    assert break_even_bps(np.zeros(3), r) == -math.inf  # cash trails a rising market and trades less
    assert break_even_bps(np.zeros(3), -r) == math.inf  # cash beats a falling one at any cost
    cash = np.zeros(3)
    assert break_even_bps([1.0, 0.0, 1.0], r, benchmark_positions=cash) == pytest.approx(
        (0.01 + 0.03) / 3 / (3 / 3) * 1e4)


def test_break_even_many_at_once():
    r = np.array([0.01, 0.02, -0.02, -0.03])
    w = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    np.testing.assert_allclose(break_even_bps(w, r), [break_even_bps(w[0], r), break_even_bps(w[1], r)])
