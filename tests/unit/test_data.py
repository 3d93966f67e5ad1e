"""Return series, windowing and generator seeding (neural_trader.data).

Tolerances, in standard errors (se):
- lag-1 autocorrelation of AR(1): 200 series x 2000 steps pool N = 399,800
  pairs; the estimate's se is sqrt((1 - rho^2) / N), from 1.6e-3 at rho = 0
  down to 2.2e-4 at |rho| = 0.99. The bound is 4 se. Its bias is below 0.3 se
  (measured: the mean error over 60 draws was 0.1-0.2 se at rho = -0.99, 0, 0.5, 0.99).
- the variance of a time step over 20,000 series: a relative se of sqrt(2/n) = 1%;
  bound 5%. Its mean: bound 5 se.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from neural_trader.synthetic.config import AR1Regime, IIDRegime
from neural_trader.data import ar1_returns, iid_returns, make_generator, seed_from, window_returns
from neural_trader.synthetic.sources import generate_returns


def gen(*keys: object) -> torch.Generator:
    return make_generator("test_data", *keys)


# ------------------------------------------------------------------ windowing
@st.composite
def series_shapes(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    n = draw(st.integers(1, 6))
    length = draw(st.integers(2, 12))
    lag = draw(st.integers(1, length - 1))
    return lead, n, length, lag


def labelled(lead: tuple[int, ...], n: int, length: int) -> torch.Tensor:
    """Returns whose value names its place: 10000 * series + 100 * t + 0.5 (series counted over lead too)."""
    series = torch.arange(math.prod(lead) * n, dtype=torch.float64).view(*lead, n, 1)
    t = torch.arange(length, dtype=torch.float64)
    return 10000 * series + 100 * t + 0.5


@given(series_shapes())
def test_window_count_and_shapes(shape):
    lead, n, length, lag = shape
    w = window_returns(torch.zeros(*lead, n, length), lag)
    assert w.x.shape == (*lead, n * (length - lag), lag)
    assert w.y.shape == (*lead, n * (length - lag))
    assert w.x.is_contiguous() and w.y.is_contiguous()


@given(series_shapes())
def test_each_window_is_a_slice_of_its_own_series_and_target_is_next(shape):
    lead, n, length, lag = shape
    returns = labelled(lead, n, length)
    w = window_returns(returns, lag)
    k = length - lag
    flat_r = returns.reshape(-1, n, length)
    flat_x, flat_y = w.x.reshape(-1, n * k, lag), w.y.reshape(-1, n * k)
    for b in range(flat_r.shape[0]):
        for row in range(n * k):
            i, j = divmod(row, k)
            assert torch.equal(flat_x[b, row], flat_r[b, i, j : j + lag])
            assert flat_y[b, row] == flat_r[b, i, j + lag]


@given(series_shapes())
def test_series_never_mix(shape):
    lead, n, length, lag = shape
    w = window_returns(labelled(lead, n, length), lag)
    series_of_x = torch.div(w.x, 10000, rounding_mode="floor")  # (..., rows, lag)
    series_of_y = torch.div(w.y, 10000, rounding_mode="floor")  # (..., rows)
    assert torch.equal(series_of_x, series_of_y.unsqueeze(-1).expand_as(series_of_x))
    # inside a window time runs on by one step, and the target is the step after the last input
    t_x = torch.remainder(w.x, 10000)
    assert torch.all(t_x.diff(dim=-1) == 100)
    assert torch.all(torch.remainder(w.y, 10000) - t_x[..., -1] == 100)


@given(st.integers(1, 4), st.integers(1, 5), st.integers(3, 10), st.data())
@settings(max_examples=30)
def test_leading_replica_dim_windows_each_replica_alone(s, n, length, data):
    lag = data.draw(st.integers(1, length - 1))
    returns = torch.randn(s, n, length, generator=gen("lead", s, n, length))
    batched = window_returns(returns, lag)
    for r in range(s):
        alone = window_returns(returns[r], lag)
        assert torch.equal(batched.x[r], alone.x) and torch.equal(batched.y[r], alone.y)


def test_window_returns_seed_example():
    """The seed's T=20, L=4: 16 windows per series, window 0 of series 1 at row 16."""
    returns = torch.randn(3, 20, generator=gen("seed-example"))
    w = window_returns(returns, 4)
    assert w.x.shape == (48, 4)
    assert torch.equal(w.x[16], returns[1, :4]) and w.y[16] == returns[1, 4]
    assert torch.equal(w.x[15], returns[0, 15:19]) and w.y[15] == returns[0, 19]


@pytest.mark.parametrize("lag", [20, 21, 100])
def test_lag_not_below_length_raises(lag):
    with pytest.raises(ValueError, match="lag"):
        window_returns(torch.zeros(2, 20), lag)


@pytest.mark.parametrize("lag", [0, -1])
def test_non_positive_lag_raises(lag):
    with pytest.raises(ValueError, match="lag"):
        window_returns(torch.zeros(2, 20), lag)


def test_one_dimensional_returns_raise():
    with pytest.raises(ValueError, match="returns"):
        window_returns(torch.zeros(20), 4)


# ------------------------------------------------------------------------ AR(1)
@pytest.mark.parametrize("rho", [-0.99, 0.5, 0.99])
def test_ar1_finite_on_long_series(rho):
    r = ar1_returns(4, 10_000, rho=rho, generator=gen("long", rho))
    assert r.shape == (4, 10_000) and r.dtype == torch.float32
    assert torch.isfinite(r).all()
    # and it does not blow up: the stationary std is 1/sqrt(1-rho^2) (~7.1 at |rho|=0.99)
    assert r.abs().max() < 10 / math.sqrt(1 - rho * rho)


def lag1_autocorrelation(r: torch.Tensor) -> float:
    """Pooled over series, mean known to be 0: sum r_t r_{t-1} / sum r_{t-1}^2."""
    r = r.double()
    return float((r[:, 1:] * r[:, :-1]).sum() / (r[:, :-1] ** 2).sum())


@pytest.mark.parametrize("rho", [-0.99, -0.3, 0.0, 0.2, 0.5, 0.99])
def test_ar1_lag1_autocorrelation_is_rho(rho):
    r = ar1_returns(200, 2000, rho=rho, generator=gen("acf", rho))
    se = math.sqrt((1 - rho * rho) / (200 * 1999))  # of the estimate, from N = 200 x 1999 pairs
    assert abs(lag1_autocorrelation(r) - rho) < 4 * se, (lag1_autocorrelation(r) - rho) / se


@pytest.mark.parametrize("rho,vol", [(0.9, 1.0), (-0.6, 1.0), (0.2, 2.5)])
def test_ar1_is_stationary_from_the_first_step(rho, vol):
    r = ar1_returns(20_000, 30, rho=rho, vol=vol, generator=gen("stationary", rho, vol)).double()
    expected = vol * vol / (1 - rho * rho)
    for t in (0, 1, 15, 29):
        assert abs(float(r[:, t].var()) / expected - 1) < 0.05, t
        assert abs(float(r[:, t].mean())) < 5 * math.sqrt(expected / 20_000)


def test_ar1_is_the_recursion():
    """r_t - rho r_{t-1} are the innovations: independent N(0, vol^2), uncorrelated with the past."""
    rho, vol = 0.7, 1.5
    r = ar1_returns(5000, 40, rho=rho, vol=vol, generator=gen("recursion")).double()
    e = r[:, 1:] - rho * r[:, :-1]
    assert abs(float(e.std()) - vol) < 0.02
    assert abs(float((e * r[:, :-1]).mean())) < 0.03


def test_iid_returns_are_standard_normal():
    r = iid_returns(200, 50, generator=gen("iid"))
    assert r.shape == (200, 50) and r.dtype == torch.float32
    flat = r.double().flatten()
    assert abs(float(flat.mean())) < 0.02 and abs(float(flat.std()) - 1) < 0.02
    assert stats.kstest(flat.numpy(), "norm").pvalue > 0.01
    assert abs(lag1_autocorrelation(r)) < 0.02


def test_iid_vol_scales():
    a = iid_returns(100, 20, generator=gen("vol"))
    b = iid_returns(100, 20, generator=gen("vol"), vol=3.0)
    assert torch.allclose(b, 3.0 * a)


def test_generate_returns_dispatches_on_regime():
    assert torch.equal(
        generate_returns(IIDRegime(vol=2.0), 5, 8, generator=gen("g")),
        iid_returns(5, 8, vol=2.0, generator=gen("g")),
    )
    assert torch.equal(
        generate_returns(AR1Regime(rho=0.4), 5, 8, generator=gen("g")),
        ar1_returns(5, 8, rho=0.4, generator=gen("g")),
    )


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", [iid_returns, lambda n, length, **kw: ar1_returns(n, length, rho=0.2, **kw)])
@pytest.mark.parametrize("n,length,name", [(0, 5, "n"), (-3, 5, "n"), (5, 0, "length"), (5, -1, "length"), (2.5, 5, "n")])
def test_non_positive_sizes_raise_naming_the_size(fn, n, length, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        fn(n, length, generator=gen("err"))


@pytest.mark.parametrize("rho", [1.0, -1.0, 1.5, -2.0, float("nan")])
def test_rho_outside_unit_interval_raises(rho):
    with pytest.raises(ValueError, match="rho"):
        ar1_returns(3, 5, rho=rho, generator=gen("err"))


@pytest.mark.parametrize("vol", [0.0, -1.0, float("nan")])
def test_non_positive_vol_raises(vol):
    with pytest.raises(ValueError, match="vol"):
        iid_returns(3, 5, vol=vol, generator=gen("err"))
    with pytest.raises(ValueError, match="vol"):
        ar1_returns(3, 5, rho=0.2, vol=vol, generator=gen("err"))


# --------------------------------------------------------------------- seeding
@given(st.lists(st.one_of(st.integers(), st.text(max_size=8)), min_size=1, max_size=4))
def test_seed_from_is_deterministic_and_63_bit(keys):
    seed = seed_from(*keys)
    assert seed == seed_from(*keys)
    assert 0 <= seed < 2**63


def test_seed_from_separates_keys():
    seeds = {seed_from("a", "b"), seed_from("ab"), seed_from("b", "a"), seed_from("a", "b", 0), seed_from("a")}
    assert len(seeds) == 5


def test_make_generator_is_deterministic():
    a = torch.rand(100, generator=make_generator("x", 1))
    b = torch.rand(100, generator=make_generator("x", 1))
    c = torch.rand(100, generator=make_generator("x", 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert make_generator("x", 1).initial_seed() == seed_from("x", 1)
    assert make_generator("x", 1).device == torch.device("cpu")


def test_same_generator_same_series():
    for draw in (
        lambda g: ar1_returns(10, 30, rho=0.5, generator=g),
        lambda g: iid_returns(10, 30, generator=g),
    ):
        assert torch.equal(draw(gen("same")), draw(gen("same")))
        assert not torch.equal(draw(gen("same")), draw(gen("other")))
        assert np.isfinite(draw(gen("same")).numpy()).all()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_pooled_lag1_autocorrelation_in_chunks_is_numpys_corrcoef(chunk):
    from neural_trader.data import lag1_autocorrelation as pooled

    r = ar1_returns(130, 20, rho=0.3, generator=gen("pooled")).view(13, 10, 20)  # (S, N, T)
    pairs = r[..., 1:].reshape(-1).numpy(), r[..., :-1].reshape(-1).numpy()
    assert pooled(r, chunk=chunk) == pytest.approx(float(np.corrcoef(*pairs)[0, 1]), abs=1e-12)
