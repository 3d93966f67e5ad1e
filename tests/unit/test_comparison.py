"""The core's per-cell evaluation and cross-cell comparison, on tiny hand-made inputs (milliseconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neural_trader.synthetic import comparison as cmp
from neural_trader.synthetic.config import AR1Regime, IIDRegime
from neural_trader.synthetic.metrics import evaluate_cell
from neural_trader.evaluate import CURVE_GRID, policy_metrics
from neural_trader.synthetic.sources import make_source


class _Const(torch.nn.Module):
    """A stand-in trader: replica s always holds position p[s]."""

    def __init__(self, p: list[float]):
        super().__init__()
        self.p = torch.tensor(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, n, lag) -> (S, n)
        return self.p[:, None].expand(x.shape[0], x.shape[1]).clone()


def _windows(replicas: int, n: int, lag: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(replicas, n, lag, generator=g), torch.randn(replicas, n, generator=g)


@pytest.mark.parametrize("regime", [AR1Regime(rho=0.3), IIDRegime(), None])
def test_evaluate_cell_numbers(regime):
    S, E = 2, 5
    train_x, train_y = _windows(S, 40, 4, 1)
    test_x, test_y = _windows(S, 60, 4, 2)
    valid = np.array([[0.1, 0.3, 0.2, 0.0, 0.1], [0.5, 0.1, 0.1, 0.2, 0.6]])
    train_return = np.arange(S * E, dtype=float).reshape(S, E)
    oracle = None if regime is None else make_source(regime).oracle
    nets = {"last": _Const([1.0, 0.25]), "best": _Const([0.0, 1.0])}
    out = evaluate_cell(nets, train_x, train_y, test_x, test_y, valid, train_return, oracle)
    ps = out["per_seed"]
    # the core computes in float64 what the net gives in float32
    expected_test = (torch.tensor([1.0, 0.25])[:, None] * test_y).double().mean(dim=1).numpy()
    assert ps["test_mean_return"] == pytest.approx(expected_test.tolist())
    assert ps["test_mean_return_best"] == pytest.approx([0.0, float(test_y[1].double().mean())])
    in_sample = (torch.tensor([1.0, 0.25])[:, None] * train_y).mean(dim=1).numpy()
    assert ps["gap"] == pytest.approx((in_sample - expected_test).tolist(), rel=1e-5)
    assert ps["best_epoch"] == [2.0, 5.0] and ps["valid_return_best"] == [0.3, 0.6]
    assert ps["train_return_train_mode"] == [4.0, 9.0]
    assert ps["buy_and_hold_return"] == pytest.approx(test_y.double().mean(dim=1).tolist())
    assert np.asarray(out["curve"]["position"]).shape == (S, len(CURVE_GRID))
    assert out["curve"]["position"][1] == pytest.approx([0.25] * len(CURVE_GRID))
    if oracle is None:  # a law nobody knows: no oracle baseline, no fraction
        assert "oracle" not in out["baselines"] and out["oracle_fraction"] is None
        assert out["oracle_expected_return"] is None
    else:
        realised = policy_metrics(oracle.position(test_x), test_y)["mean_return"].mean()
        assert out["baselines"]["oracle"]["mean_return"] == pytest.approx(realised)
        assert out["oracle_expected_return"] == pytest.approx(oracle.expected_return())


def _evaluation(regime: str, model: str, test: list[float], gap: list[float], oracle: float | None) -> dict:
    n = len(test)
    per_seed = {"test_mean_return": test, "test_mean_return_best": test, "gap": gap,
                "train_return": [t + g for t, g in zip(test, gap)], "test_sharpe": [0.1] * n,
                "test_hit_rate": [0.5] * n, "test_mean_position": [0.5] * n, "best_epoch": [3.0] * n,
                "buy_and_hold_return": [0.0] * n, "cash_return": [0.0] * n}
    baselines = {"cash": {"mean_return": 0.0}, "buy_and_hold": {"mean_return": 0.0}}
    if oracle is not None:
        per_seed["oracle_return"] = [oracle] * n
        baselines["oracle"] = {"mean_return": oracle}
    return {"regime": regime, "model": model, "replicas": n, "per_seed": per_seed, "baselines": baselines,
            "oracle_expected_return": oracle, "oracle_fraction": None if not oracle else float(np.mean(test)) / oracle,
            "curve": {"last_return": [0.0], "position": [[0.5]] * n}, "valid_return_curve": [[0.0, 0.1]] * n}


def test_compare_cells_pairs_by_seed_against_the_null_regime():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.001, 8)
    evals = {
        ("random", "base"): _evaluation("random", "base", list(noise), list(noise + 0.01), 0.0),
        ("momentum", "base"): _evaluation("momentum", "base", list(noise + 0.05), list(noise + 0.01), 0.06),
    }
    oracles = {"momentum": make_source(AR1Regime(rho=0.2)).oracle, "random": make_source(IIDRegime()).oracle}
    assert cmp.null_regime(oracles) == "random"  # not the first listed: the one with nothing to learn
    result = cmp.compare_cells(evals, ["momentum", "random"], ["base"], oracles,
                               {"confidence": 0.95, "alpha": 0.05, "power": 0.8})
    (contrast,) = result["contrasts"]
    assert contrast["name"] == "momentum - random | base"
    assert contrast["diff"] == pytest.approx(0.05) and contrast["significant"]  # paired: the noise cancels
    assert result["replicas"] == 8 and result["runs"] == 1
    head = cmp.headline(result)
    assert head["test_return"]["momentum-base"] == pytest.approx(float(np.mean(noise + 0.05)))
    assert head["diff"] == {"test_return:momentum-random@base": contrast["diff"]}


def test_pooling_concatenates_seeds_in_order():
    a = _evaluation("momentum", "base", [0.01, 0.02], [0.0, 0.0], 0.04)
    b = _evaluation("momentum", "base", [0.03, 0.04], [0.0, 0.0], 0.04)
    pooled = cmp.pool_evaluations([a, b])
    assert pooled["per_seed"]["test_mean_return"] == [0.01, 0.02, 0.03, 0.04]
    assert pooled["replicas"] == 4 and len(pooled["valid_return_curve"]) == 4
    assert pooled["oracle_fraction"] == pytest.approx(0.025 / 0.04)
    assert cmp.pool_evaluations([a]) is a


def test_valid_return_table_is_long_format():
    table = cmp.valid_return_table({"x-base": np.array([[1.0, 2.0], [3.0, 4.0]])}, np.arange(1, 3))
    assert table == "epoch\tcell\tvalid_return\n1\tx-base\t2\n2\tx-base\t3\n"
