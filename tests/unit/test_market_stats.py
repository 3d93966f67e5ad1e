"""Block-bootstrap intervals and SPA / StepM wiring (neural_trader.markets.stats), on series with a known answer.

The returns are i.i.d. normal with a 1% daily spread, so the bootstrap
interval of a mean must be close to the normal one (+-1.96 sd / sqrt(n)).
A strategy that holds tomorrow's sign earns max(r, 0) >= r every day: it beats
buy-and-hold by about 0.4% a day, dozens of standard errors, so any working
test finds it with p near 0; a strategy equal to buy-and-hold must never be
found superior. 200 resamples suffice for answers that clear.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neural_trader.markets.backtest import annualised_sharpe, pnl
from neural_trader.markets.stats import block_length, bootstrap_ci, mean_difference_ci, sharpe_ci, spa_test

N = 1000
R = np.random.default_rng(20240611).normal(0.0003, 0.01, N)  # next-day log returns
HOLD = pnl(np.ones(N), R)  # buy-and-hold, gross
ORACLE = pnl((R > 0).astype(float), R)  # long exactly before a rise: max(r, 0)
NOISE = pnl((np.random.default_rng(3).random(N) > 0.5).astype(float), R)  # a coin-flip trader


def test_block_length():
    assert 1.0 <= block_length(R) < 5  # i.i.d.: no dependence to carry
    ar = np.zeros(N)
    for i, e in enumerate(np.random.default_rng(1).normal(size=N)):
        ar[i] = 0.9 * ar[i - 1] + e
    assert block_length(ar) > 10  # strong persistence wants long blocks
    assert block_length(np.full(50, 0.01)) == 1.0


def test_bootstrap_ci_of_a_mean_is_close_to_the_normal_interval():
    x = np.random.default_rng(5).normal(0.5, 1.0, 500)
    ci = bootstrap_ci(x, np.mean, reps=400, confidence=0.95, seed=0)
    assert ci.estimate == pytest.approx(x.mean()) and ci.low < ci.estimate < ci.high
    half = 1.96 / math.sqrt(500)
    assert 0.7 * half < (ci.high - ci.low) / 2 < 1.3 * half
    assert ci.block >= 1


def test_given_block_is_used_and_narrower_confidence_is_narrower():
    wide = bootstrap_ci(R, np.mean, reps=300, confidence=0.95, seed=1, block=4.0)
    narrow = bootstrap_ci(R, np.mean, reps=300, confidence=0.5, seed=1, block=4.0)
    assert wide.block == 4.0
    assert wide.low < narrow.low < narrow.high < wide.high


def test_sharpe_ci():
    ci = sharpe_ci(ORACLE, reps=200, confidence=0.95, seed=2)
    assert ci.estimate == pytest.approx(annualised_sharpe(ORACLE))
    assert 0 < ci.low < ci.estimate < ci.high


def test_mean_difference_ci():
    ci = mean_difference_ci(ORACLE, HOLD, reps=200, confidence=0.95, seed=3)
    assert ci.estimate == pytest.approx(np.mean(ORACLE - HOLD)) and ci.low > 0
    same = mean_difference_ci(HOLD, HOLD, reps=200, confidence=0.95, seed=3)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)


def test_intervals_are_deterministic_given_the_seed():
    a = sharpe_ci(NOISE, reps=200, confidence=0.9, seed=11)
    assert a == sharpe_ci(NOISE, reps=200, confidence=0.9, seed=11)
    assert a != sharpe_ci(NOISE, reps=200, confidence=0.9, seed=12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="aligned"):
        mean_difference_ci(R, R[:-1], reps=10, confidence=0.9, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(R, np.mean, reps=10, confidence=95, seed=0)
    with pytest.raises(ValueError, match="finite 1-D"):
        block_length(np.array([1.0, np.nan, 2.0]))


# ------------------------------------------------------------------ SPA / StepM
def test_spa_finds_the_oracle_and_not_its_copy_of_the_benchmark():
    out = spa_test(HOLD, {"same": HOLD, "noise": NOISE, "oracle": ORACLE}, reps=200, seed=0)
    assert out["superior"] == ["oracle"]
    assert out["pvalues"]["consistent"] < 0.01
    assert out["pvalues"]["lower"] <= out["pvalues"]["consistent"] <= out["pvalues"]["upper"]
    assert out["block"] >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_superior_variant_without_an_edge(seed):
    out = spa_test(HOLD, {"same": HOLD, "noise": NOISE}, reps=200, seed=seed)
    assert out["superior"] == []
    assert out["pvalues"]["consistent"] > 0.05


def test_a_copy_of_the_benchmark_alone_has_p_one():
    out = spa_test(HOLD, {"same": HOLD}, reps=200, seed=0)
    assert out == {"pvalues": {"lower": 1.0, "consistent": 1.0, "upper": 1.0}, "superior": [], "block": 1.0}


def test_spa_is_deterministic_given_the_seed():
    variants = {"noise": NOISE, "oracle": ORACLE}
    assert spa_test(HOLD, variants, reps=200, seed=4, block=5) == spa_test(HOLD, variants, reps=200, seed=4, block=5)


def test_spa_bad_inputs():
    with pytest.raises(ValueError, match="at least one variant"):
        spa_test(HOLD, {}, reps=10, seed=0)
    with pytest.raises(ValueError, match="aligned"):
        spa_test(HOLD, {"short": HOLD[:-1]}, reps=10, seed=0)
