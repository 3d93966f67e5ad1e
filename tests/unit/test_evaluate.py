"""Policy evaluation, baselines and the oracle, on hand-made and simulated data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from neural_trader.synthetic.config import AR1Regime, IIDRegime
from neural_trader.evaluate import (METRICS, buy_and_hold_position, cash_position, oracle_fraction, policy_metrics, position_curve)
from neural_trader.synthetic.sources import baseline_positions, oracle_curve, oracle_expected_return, oracle_position

# four windows of lag 2; only the last column matters to the oracle
X = np.array([[9.0, 0.5], [9.0, -1.0], [-9.0, 2.0], [-9.0, -0.3]])
Y = np.array([1.0, 2.0, 3.0, -0.5])


# ------------------------------------------------------------------ metrics
def test_policy_metrics_hand_made():
    position = np.array([[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    ret = np.array([1.0, -2.0, 3.0, -0.5])
    m = policy_metrics(position, ret)
    assert set(m) == set(METRICS)
    assert all(v.shape == (3,) and v.dtype == np.float64 for v in m.values())
    # replica 0: pnl [1, 0, 3, 0], mean 1, population std sqrt(1.5)
    # replica 1: pnl [0.5, -1, 1.5, -0.25], mean 0.1875
    assert m["mean_return"] == pytest.approx([1.0, 0.1875, 0.0])
    assert m["mean_position"] == pytest.approx([0.5, 0.5, 0.0])
    pnl1 = np.array([0.5, -1.0, 1.5, -0.25])
    assert m["sharpe"] == pytest.approx([1 / math.sqrt(1.5), 0.1875 / pnl1.std(), 0.0])
    # replica 0 is long before every rise, out before every fall; 0.5 is a tie (miss);
    # cash is 'under half long' and so right before each of the two falls
    assert m["hit_rate"] == pytest.approx([1.0, 0.0, 0.5])


def test_policy_metrics_shapes_and_tensors():
    pos = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    one = policy_metrics(pos, torch.tensor(Y))
    vec = policy_metrics(np.array([1.0, 0.0, 1.0, 0.0]), Y)  # (n,) is one replica
    per = policy_metrics(pos.numpy(), Y[None, :])  # (S, n) returns
    for key in METRICS:
        assert one[key] == pytest.approx(vec[key]) and one[key] == pytest.approx(per[key])
    assert one["mean_return"] == pytest.approx([1.0])


def test_policy_metrics_flat_pnl_has_zero_sharpe():
    # buy and hold on a constant return: no variation, Sharpe 0 by convention
    m = policy_metrics(np.ones((1, 5)), np.full(5, 0.1))
    assert m["sharpe"] == pytest.approx([0.0]) and m["mean_return"] == pytest.approx([0.1])


def test_policy_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy_metrics(np.array([[0.2, 1.5]]), np.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy_metrics(np.array([[0.2, np.nan]]), np.zeros(2))
    with pytest.raises(ValueError, match="ret"):
        policy_metrics(np.zeros((2, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="ret"):
        policy_metrics(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="position"):
        policy_metrics(np.zeros((2, 0)), np.zeros(0))


# ---------------------------------------------------------------- baselines
def test_baselines_on_hand_made_windows():
    assert cash_position(X) == pytest.approx(np.zeros(4))
    assert buy_and_hold_position(X) == pytest.approx(np.ones(4))
    assert oracle_position(X, AR1Regime(rho=0.2)) == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert oracle_position(X, AR1Regime(rho=-0.5)) == pytest.approx([0.0, 1.0, 0.0, 1.0])
    assert oracle_position(X, IIDRegime()) == pytest.approx(np.zeros(4))
    assert oracle_position(X, AR1Regime(rho=0.0)) == pytest.approx(np.zeros(4))
    assert oracle_position(torch.tensor(X), {"kind": "ar1", "rho": 0.3}) == pytest.approx([1.0, 0.0, 1.0, 0.0])
    base = baseline_positions(X, AR1Regime(rho=0.2))
    assert set(base) == {"cash", "buy_and_hold", "oracle"}


def test_oracle_return_on_hand_made_series():
    # rho > 0: long after the rises 0.5 and 2.0 -> (1 + 3) / 4
    oracle = policy_metrics(oracle_position(X, AR1Regime(rho=0.2)), Y)
    assert oracle["mean_return"] == pytest.approx([1.0])
    # rho < 0: long after the falls -1.0 and -0.3 -> (2 - 0.5) / 4
    contrarian = policy_metrics(oracle_position(X, AR1Regime(rho=-0.5)), Y)
    assert contrarian["mean_return"] == pytest.approx([0.375])
    hold = policy_metrics(buy_and_hold_position(X), Y)
    assert hold["mean_return"] == pytest.approx([Y.mean()])
    assert policy_metrics(cash_position(X), Y)["mean_return"] == pytest.approx([0.0])


def test_bad_regime():
    with pytest.raises(ValueError, match="regime"):
        oracle_position(X, {"kind": "garch"})
    with pytest.raises(ValueError):
        oracle_expected_return({"kind": "ar1", "rho": 1.5})  # validated like params
    with pytest.raises(ValueError, match="windows"):
        oracle_position(np.zeros(3), AR1Regime())


# ------------------------------------------------------------ oracle return
def test_oracle_expected_return_closed_form():
    assert oracle_expected_return(IIDRegime(vol=2.0)) == 0.0
    assert oracle_expected_return(AR1Regime(rho=0.0)) == 0.0
    r = oracle_expected_return(AR1Regime(rho=0.2, vol=1.0))
    assert r == pytest.approx(0.2 / math.sqrt(0.96) / math.sqrt(2 * math.pi))
    assert oracle_expected_return(AR1Regime(rho=-0.2)) == pytest.approx(r)
    assert oracle_expected_return(AR1Regime(rho=0.2, vol=3.0)) == pytest.approx(3 * r)


@pytest.mark.parametrize("rho, vol", [(0.2, 1.0), (-0.4, 0.5)])
def test_oracle_expected_return_matches_monte_carlo(rho, vol):
    """The oracle's realised mean return on a simulated stationary AR(1) series."""
    rng = np.random.default_rng(2024)
    n, length, lag = 100_000, 41, 4
    shocks = rng.normal(size=(n, length))
    shocks[:, 0] /= math.sqrt(1 - rho * rho)  # start stationary
    r = vol * lfilter([1.0], [1.0, -rho], shocks, axis=1)
    x = np.lib.stride_tricks.sliding_window_view(r[:, :-1], lag, axis=1).reshape(-1, lag)
    y = r[:, lag:].reshape(-1)
    realised = policy_metrics(oracle_position(x, AR1Regime(rho=rho, vol=vol)), y)["mean_return"][0]
    expected = oracle_expected_return(AR1Regime(rho=rho, vol=vol))
    assert realised == pytest.approx(expected, rel=0.02)
    # the oracle beats both baselines on the same windows
    assert realised > policy_metrics(buy_and_hold_position(x), y)["mean_return"][0]
    assert realised > 0.0


def test_oracle_fraction():
    assert oracle_fraction(0.04, 0.08) == pytest.approx(0.5)
    assert isinstance(oracle_fraction(0.04, 0.08), float)
    assert oracle_fraction(np.array([0.08, 0.0, -0.04]), 0.08) == pytest.approx([1.0, 0.0, -0.5])
    assert oracle_fraction(0.01, oracle_expected_return(IIDRegime())) is None
    assert oracle_fraction(0.01, 1e-15) is None
    assert oracle_fraction(0.01, math.nan) is None


# -------------------------------------------------------------------- curves
def test_oracle_curve():
    grid = np.linspace(-2, 2, 5)
    assert oracle_curve(AR1Regime(rho=0.2), grid) == pytest.approx([0, 0, 0, 1, 1])
    assert oracle_curve(AR1Regime(rho=-0.2), grid) == pytest.approx([1, 1, 0, 0, 0])
    assert oracle_curve(IIDRegime(), grid) == pytest.approx(np.zeros(5))


def test_position_curve_builds_last_lag_inputs():
    seen = []

    def model_fn(x):
        seen.append(x.clone())
        return torch.sigmoid(3.0 * x[..., -1] + x[..., :-1].sum(-1))

    grid = np.array([-1.0, 0.0, 2.0])
    out = position_curve(model_fn, 3, grid)
    assert seen[0].shape == (3, 3) and seen[0].dtype == torch.float32
    assert torch.equal(seen[0][:, :-1], torch.zeros(3, 2))
    assert seen[0][:, -1].tolist() == grid.tolist()
    assert out == pytest.approx(1 / (1 + np.exp(-3 * grid)), rel=1e-6)
    # with replicas, the (S, G, lag) layout a TraderNet takes
    out = position_curve(model_fn, 3, grid, replicas=2)
    assert seen[-1].shape == (2, 3, 3) and out.shape == (2, 3)


def test_position_curve_with_a_replica_module():
    class Net(torch.nn.Module):  # (S, B, lag) -> (S, B), like TraderNet
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))  # (S=2, lag=2)

        def forward(self, x):
            return torch.sigmoid(torch.einsum("sbl,sl->sb", x, self.w))

    net = Net()
    out = position_curve(net, 2, [-1.0, 0.0, 1.0], replicas=2)
    # replica 0 ignores the last lag; replica 1 looks only at the first lag too -> 0.5
    assert out == pytest.approx(np.full((2, 3), 0.5))
    net.w.data = torch.tensor([[0.0, 5.0], [0.0, -5.0]])
    out = position_curve(net, 2, [-1.0, 1.0], replicas=2)
    assert out[0, 1] > 0.99 and out[1, 1] < 0.01
    with pytest.raises(ValueError, match="lag"):
        position_curve(net, 0, [0.0])
    with pytest.raises(ValueError, match="grid"):
        position_curve(net, 2, [])
