"""Replica models (neural_trader.models), and TraderNet's hand-written gradient against autograd."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_trader.data import make_generator
from neural_trader.models import Classifier, LinearRegression1D, ReplicaLinear, TraderNet
from neural_trader.streams import DROPOUT, Streams


def streams(n: int, tag: str = "streams") -> Streams:
    return Streams.keyed("test_models", tag, replicas=range(n))


def gens(n: int, tag: str = "init") -> list[torch.Generator]:
    return [make_generator("test_models", tag, s) for s in range(n)]


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("s,lag,hidden", [(1, 4, 5), (3, 2, 7), (5, 1, 1)])
def test_trader_shapes(s, lag, hidden):
    model = TraderNet(gens(s), lag, hidden)
    assert model.replicas == s
    assert model.layer0.weight.shape == (s, lag, hidden)
    assert model.layer0.bias.shape == (s, 1, hidden)
    assert model.layer1.weight.shape == (s, hidden, 1)
    assert model.layer1.bias.shape == (s, 1, 1)
    x = torch.randn(s, 11, lag, generator=make_generator("x"))
    out = model(x)
    assert out.shape == (s, 11)
    assert ((out > 0) & (out < 1)).all()


def test_trader_replica_is_an_independent_network():
    """Replica s maps its rows exactly as the seed's Linear-sigmoid-Linear-sigmoid with its own weights."""
    model = TraderNet(gens(3), 4, 5)
    x = torch.randn(3, 9, 4, generator=make_generator("x"))
    out = model(x)
    for s in range(3):
        h = torch.sigmoid(x[s] @ model.layer0.weight[s] + model.layer0.bias[s])
        ref = torch.sigmoid(h @ model.layer1.weight[s] + model.layer1.bias[s]).squeeze(-1)
        assert torch.allclose(out[s], ref, atol=1e-6)


def test_warmup_model_shapes():
    reg = LinearRegression1D(replicas=3)
    assert reg(torch.ones(3, 7)).shape == (3, 7)
    assert torch.equal(reg(torch.ones(3, 7)), torch.zeros(3, 7))  # both betas start at 0
    clf = Classifier(gens(2), dim=6, hidden=3)
    assert clf(torch.randn(2, 5, 6)).shape == (2, 5, 2)


# -------------------------------------------------------------------- init
@pytest.mark.parametrize("fan_in,fan_out", [(4, 5), (5, 1), (100, 50)])
def test_init_bounds_like_nn_linear(fan_in, fan_out):
    layer = ReplicaLinear(fan_in, fan_out, gens(8))
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert p.abs().max() <= bound
    # U(-bound, bound), not something narrower: with this many draws the extremes come close
    w = layer.weight.detach()
    if w.numel() >= 1000:
        assert w.max() > 0.95 * bound and w.min() < -0.95 * bound
        assert abs(float(w.mean())) < 0.05 * bound
        assert abs(float(w.var()) / (bound * bound / 3) - 1) < 0.1


def test_same_generator_same_init_and_replicas_match_single_models():
    a, b = TraderNet(gens(3), 4, 5), TraderNet(gens(3), 4, 5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    # replica s of a 3-replica model is the 1-replica model built from generator s alone
    for s in range(3):
        single = TraderNet([gens(3)[s]], 4, 5)
        for pa, p1 in zip(a.parameters(), single.parameters()):
            assert torch.equal(pa[s], p1[0])
    # and different generators give different weights, replicas differ from each other
    c = TraderNet(gens(3, "other"), 4, 5)
    assert not torch.equal(a.layer0.weight, c.layer0.weight)
    assert not torch.equal(a.layer0.weight[0], a.layer0.weight[1])


# ----------------------------------------------------------------- dropout
@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_dropout_outside_unit_interval_raises(dropout):
    with pytest.raises(ValueError, match="dropout"):
        TraderNet(gens(1), 4, 5, dropout)


@pytest.mark.parametrize("name,kwargs", [("lag", {"lag": 0}), ("hidden", {"hidden": 0}), ("hidden", {"hidden": 2.5})])
def test_bad_sizes_raise(name, kwargs):
    with pytest.raises(ValueError, match=name):
        TraderNet(gens(1), **kwargs)


def test_no_generators_raises():
    with pytest.raises(ValueError, match="generator"):
        TraderNet([], 4, 5)


def test_eval_mode_has_no_dropout():
    model = TraderNet(gens(2), 4, 5, dropout=0.5)
    x = torch.randn(2, 50, 4, generator=make_generator("x"))
    noise_streams = streams(2, "noise")
    model.train()
    noise = model.sample_noise(50, noise_streams, 0)
    assert noise is not None and noise.shape == (2, 50, 1)  # dropout 0.5: five units' bits packed in a byte
    assert not torch.allclose(model(x, noise), model(x))  # dropout acts in train mode
    model.eval()
    assert model.sample_noise(50, noise_streams, 0) is None
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # deterministic
    without = TraderNet(gens(2), 4, 5, dropout=0.0)
    without.train()
    assert without.sample_noise(50, noise_streams, 0) is None  # nothing to drop


@pytest.mark.parametrize(
    "dropout,keep_bytes", [(0.5, 128), (0.25, 192), (0.3, 179), (0.1, 230), (0.001, 256), (0.999, 1)]
)
def test_keep_probability_is_within_1_256_of_one_minus_dropout(dropout, keep_bytes):
    """A unit is kept when its byte is < keep_bytes = round(256 * (1 - dropout)), clamped to 1..256."""
    model = TraderNet(gens(1), 4, 5, dropout)
    assert model.keep_bytes == keep_bytes and model.keep == keep_bytes / 256
    assert abs(model.keep - (1 - dropout)) <= 1 / 256
    if (256 * dropout).is_integer():
        assert model.keep == 1 - dropout  # exact on the 1/256 grid, the study's 0.5 included
    every = torch.arange(256, dtype=torch.uint8)
    if keep_bytes == 128:  # packed bits: unit j of a row is kept where bit j of its byte is set
        mask = model.dropout_mask(every.view(1, 256, 1))
        for j in range(5):
            assert torch.equal(mask[0, :, j] > 0, (every >> j) & 1 == 1)
    else:  # a byte a unit: kept where it is < keep_bytes
        mask = model.dropout_mask(every.view(1, 256, 1).expand(1, 256, 5))
        assert torch.equal(mask[0, :, 0] > 0, torch.arange(256) < keep_bytes)
    assert torch.all(mask[mask > 0] == 1 / model.keep)
    assert float(mask[0, :, 0].mean()) == pytest.approx(1.0)  # exactly: 256 * keep values of 1/keep, over 256


def test_dropout_mask_is_inverted_dropout():
    model = TraderNet(gens(1), 4, 5, dropout=0.3)
    noise = model.sample_noise(20_000, streams(1, "noise"), 0)
    assert noise.dtype == torch.uint8 and noise.shape == (1, 20_000, 5)
    mask = model.dropout_mask(noise)
    assert mask.dtype == torch.float32 and mask.shape == noise.shape
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / model.keep)]
    assert abs(float((mask == 0).float().mean()) - (1 - model.keep)) < 0.01
    assert abs(float(mask.mean()) - 1.0) < 0.02  # the expected hidden activation is unchanged


def test_dropout_mask_t_is_the_transposed_mask_written_into_out():
    model = TraderNet(gens(2), 4, 5, dropout=0.5)
    noise = model.sample_noise(33, streams(2, "noise"), 0)
    mask = model.dropout_mask(noise)  # (2, 33, 5)
    mask_t = model.dropout_mask_t(noise)
    assert mask_t.shape == (2, 5, 33) and mask_t.is_contiguous()
    assert torch.equal(mask_t, mask.transpose(1, 2))
    buf = torch.full((2, 5, 40), float("nan"))
    got = model.dropout_mask_t(noise[:, 3:30], out=buf[:, :, :27])
    assert got.data_ptr() == buf.data_ptr() and torch.equal(got, mask_t[:, :, 3:30])
    assert torch.equal(model.dropout_mask(noise.contiguous()), mask)  # any layout of the bytes


def test_sample_noise_draws_each_replica_from_its_own_stream():
    model = TraderNet(gens(3), 4, 5, dropout=0.5)
    batched = model.sample_noise(7, streams(3, "noise"), 2)
    for s in range(3):
        alone = TraderNet(gens(1), 4, 5, dropout=0.5).sample_noise(7, streams(3, "noise")[s:s + 1], 2)
        assert torch.equal(batched[s], alone[0])
    assert not torch.equal(batched[0], batched[1])
    assert not torch.equal(batched, model.sample_noise(7, streams(3, "noise"), 3))  # another epoch, other bits


def test_sample_noise_is_the_dropout_streams_bytes_hidden_major():
    """n * hidden bytes per replica, stream byte j * n + row for unit j of a row, uniform on 0..255."""
    model = TraderNet(gens(1), 4, 3, dropout=0.3)
    noise = model.sample_noise(7, streams(1, "noise"), 4)
    stream = streams(1, "noise").bytes(DROPOUT, 4, 21)
    assert torch.equal(noise[0], stream[0].view(3, 7).T)
    lanes = model.sample_noise(40_000, streams(1, "many"), 0)[0].transpose(0, 1).reshape(-1, 8).float()
    assert lanes.min() == 0 and lanes.max() == 255
    assert torch.allclose(lanes.mean(0), torch.full((8,), 127.5), atol=2.0)  # sd of a lane mean ~0.6


def test_sample_noise_at_dropout_half_is_one_random_bit_per_unit():
    """keep_bytes 128 packs a row's units into bits: unit j of row i is bit j % 8 of stream byte (j // 8) * n + i."""
    model = TraderNet(gens(1), 4, 11, dropout=0.5)  # 11 units: two bytes a row
    noise = model.sample_noise(30, streams(1, "noise"), 1)
    assert noise.shape == (1, 30, 2)
    raw = streams(1, "noise").bytes(DROPOUT, 1, 60)[0]
    assert torch.equal(noise[0], raw.view(2, 30).T)
    mask = model.dropout_mask(noise)[0]  # (30, 11)
    for i in range(30):
        for j in range(11):
            assert bool(mask[i, j] > 0) == bool((int(raw[(j // 8) * 30 + i]) >> (j % 8)) & 1), (i, j)
    five = TraderNet(gens(1), 4, 5, dropout=0.5)
    many = five.dropout_mask(five.sample_noise(40_000, streams(1, "many"), 0))
    kept = (many[0] > 0).float().mean(0)  # per unit, 40,000 rows: sd of the fraction 0.0025
    assert torch.allclose(kept, torch.full((5,), 0.5), atol=0.015)


# ------------------------------------------------- hand-written gradient
def autograd_grads(model: TraderNet, x, y, noise):
    model.zero_grad(set_to_none=True)
    out = model(x, noise)
    (-(out * y).mean(dim=1)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]  # the order objective_grads promises


@given(
    s=st.integers(1, 4),
    b=st.integers(1, 60),
    lag=st.integers(1, 6),
    hidden=st.integers(1, 8),
    dropout=st.sampled_from([0.0, 0.2, 0.5]),
    seed=st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_objective_grads_match_autograd(s, b, lag, hidden, dropout, seed):
    g = torch.Generator().manual_seed(seed)
    model = TraderNet([make_generator("grad", seed, r) for r in range(s)], lag, hidden, dropout)
    with torch.no_grad():  # spread the weights beyond the init range, so sigmoids saturate some
        for p in model.parameters():
            p.mul_(3.0)
    model.train()
    x = torch.randn(s, b, lag, generator=g)
    y = torch.randn(s, b, generator=g)
    noise = model.sample_noise(b, Streams.keyed("noise", seed, replicas=range(s)), 0)
    assert (noise is None) == (dropout == 0.0)
    out_ref, grads_ref = autograd_grads(model, x, y, noise)
    out, grads = model.objective_grads(x, y, noise)
    assert torch.allclose(out, out_ref, atol=1e-6)
    assert len(grads) == 4
    for got, ref in zip(grads, grads_ref):
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6), (got - ref).abs().max()


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_objective_grads_on_the_transposed_layout(dropout):
    """objective_grads_t on (S, lag, B) data equals objective_grads on the same rows, and records no graph."""
    model = TraderNet(gens(3), 4, 5, dropout)
    x = torch.randn(3, 40, 4, generator=make_generator("xt"))
    y = torch.randn(3, 40, generator=make_generator("yt"))
    noise = model.sample_noise(40, streams(3, "noise"), 0)
    out, grads = model.objective_grads(x, y, noise)
    mask_t = None if noise is None else model.dropout_mask(noise).transpose(1, 2).contiguous()
    out_t, grads_t = model.objective_grads_t(x.transpose(1, 2).contiguous(), y, mask_t)
    assert torch.allclose(out, out_t, atol=1e-7)
    for a, b in zip(grads, grads_t):
        assert torch.allclose(a, b, atol=1e-7)
        assert not a.requires_grad
    _, grads_ref = autograd_grads(model, x, y, noise)
    assert not torch.allclose(grads_ref[0], torch.zeros_like(grads_ref[0]))
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_objective_grads_drops_the_same_units_as_forward():
    """A unit dropped for a row gives its input weights no gradient from that row."""
    model = TraderNet(gens(1), 3, 4, dropout=0.5)
    x = torch.randn(1, 1, 3, generator=make_generator("one-row"))
    y = torch.ones(1, 1)
    noise = torch.tensor([[[0b0101]]], dtype=torch.uint8)  # dropout 0.5, packed bits: keep units 0 and 2
    _, (dw0, db0, dw1, _) = model.objective_grads(x, y, noise)
    assert torch.all(dw0[0, :, [1, 3]] == 0) and torch.all(db0[0, 0, [1, 3]] == 0)
    assert torch.all(dw1[0, [1, 3], 0] == 0)
    assert torch.all(db0[0, 0, [0, 2]] != 0) and torch.all(dw1[0, [0, 2], 0] != 0)


def test_linear_trader_hand_written_gradient_equals_autograd():
    from neural_trader.models import LinearTrader
    from neural_trader.trader import trader_loss

    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    net = LinearTrader(gens, lag=4)
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(3, 50, 4, generator=g), torch.randn(3, 50, generator=g)
    pos, grads = net.objective_grads_t(x.transpose(1, 2), y)
    assert torch.allclose(pos, net(x), atol=1e-6)
    trader_loss(net(x), y).sum().backward()
    for got, param in zip(grads, net.parameters()):
        assert torch.allclose(got, param.grad, atol=1e-6, rtol=1e-5)
