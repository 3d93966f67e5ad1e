"""The replica trainer (neural_trader.train) and the trader's use of it (neural_trader.trader): reproducibility,
batching, the two step paths, learning.

Tolerances:
- batched vs one replica at a time, hand-written vs autograd step: 1e-5. The
  computations differ only in float32 summation order (batched matmuls over S
  replicas, the transposed layout), measured at ~1e-7 after 8 epochs.
- learning: on AR(1) rho=0.2 the Bayes-optimal long-only return is
  0.2 * sd(r) / sqrt(2 pi) ~ 0.081 per step; 60 epochs of the seed's workload
  reach 0.081-0.083 on a held-out draw, so > 0.06 is clear of noise (a
  constant position earns 0). On iid returns any rule earns 0 in expectation:
  each replica's mean P&L over 320k held-out windows is held to 4 of its
  standard errors (1e-4 to 1.4e-3: a replica whose position hugs 0 has a
  small one; measured z at these seeds: -2.4, 0.7, -0.7, -1.1). A window that
  saw its own target would earn ~0.4, hundreds of standard errors away.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from neural_trader.synthetic.config import AR1Regime, IIDRegime
from neural_trader.data import Windows, make_generator, window_returns
from neural_trader.models import LinearRegression1D, TraderNet
from neural_trader.synthetic.sources import generate_returns
from neural_trader.streams import Streams
from neural_trader.steppers import AutogradStepper
from neural_trader.trader import TRADER_COLUMNS, TraderStepper, trader_loss, trader_stats, train_trader
from neural_trader.train import History, fit, resolve_device

T, L, HIDDEN = 20, 4, 5


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def windows(regime, replicas: int, n: int, split: str) -> Windows:
    """(S, n*(T-L), L) windows, replica s drawn from its own generator."""
    returns = torch.stack(
        [generate_returns(regime, n, T, generator=make_generator("test_train", split, s)) for s in range(replicas)]
    )
    return window_returns(returns, L)


def gens(tag: str, replicas: int, offset: int = 0) -> list[torch.Generator]:
    """Initial-weight generators, replica s keyed on s + offset."""
    return [make_generator("test_train", tag, s + offset) for s in range(replicas)]


def streams(tag: str, replicas: int, offset: int = 0) -> Streams:
    """Training streams (permutations, dropout), replica s keyed on s + offset."""
    return Streams.keyed("test_train", tag, replicas=range(offset, offset + replicas))


def run(replicas=3, dropout=0.0, epochs=8, batch_size=250, offset=0, n=60, regime=AR1Regime(rho=0.2), stepper=None):
    """Train replicas offset..offset+replicas-1 of a small problem; n=60 series give 960 rows (last batch 210)."""
    train = windows(regime, replicas + offset, n, "train")
    valid = windows(regime, replicas + offset, 20, "valid")
    sl = slice(offset, offset + replicas)
    train, valid = Windows(train.x[sl], train.y[sl]), Windows(valid.x[sl], valid.y[sl])
    model = TraderNet(gens("init", replicas, offset), L, HIDDEN, dropout)
    if stepper is None:
        hist, best = train_trader(
            model, train, valid, streams("shuffle", replicas, offset), lr=0.01, epochs=epochs, batch_size=batch_size,
        )
    else:  # the generic entry point, with a stepper of our choosing
        hist, best = fit(
            model, trader_loss, train.x, train.y, streams("shuffle", replicas, offset), lr=0.01, epochs=epochs,
            batch_size=batch_size, batch_stats=trader_stats,
            valid_stats=lambda m: trader_stats(m(valid.x), valid.y), columns=TRADER_COLUMNS,
            keep_best=TRADER_COLUMNS.index("valid_return"), stepper=stepper,
        )
    return model, hist, best, train, valid


# ------------------------------------------------------------------ history
def test_history_layout():
    model, hist, best, train, _ = run(epochs=5)
    assert isinstance(hist, History)
    assert hist.columns == TRADER_COLUMNS
    assert hist.values.shape == (3, 5, 4) and hist.values.device.type == "cpu"
    assert torch.isfinite(hist.values).all()
    for col in ("train_recom", "valid_recom"):
        assert ((hist.column(col) > 0) & (hist.column(col) < 1)).all()
    assert set(best) == set(model.state_dict())
    assert model.layer0.weight.grad is None  # train_trader took the hand-written step
    assert not model.training  # left in eval mode


def test_train_stats_come_from_the_training_forward_pass():
    """One epoch of one batch: the train columns are the initial model's positions, valid uses the updated model."""
    train = windows(AR1Regime(rho=0.2), 2, 30, "train")
    valid = windows(AR1Regime(rho=0.2), 2, 10, "valid")
    model = TraderNet(gens("init", 2), L, HIDDEN)
    with torch.no_grad():
        pos0 = model(train.x)
    hist, _ = train_trader(model, train, valid, streams("shuffle", 2), lr=0.01, epochs=1, batch_size=10_000)
    assert torch.allclose(hist.column("train_recom")[:, 0], pos0.mean(1), atol=1e-6)
    assert torch.allclose(hist.column("train_return")[:, 0], (pos0 * train.y).mean(1), atol=1e-6)
    with torch.no_grad():
        pos1 = model(valid.x)
    assert not torch.allclose(pos0, model(train.x))  # the step moved the weights
    assert torch.allclose(hist.column("valid_recom")[:, 0], pos1.mean(1), atol=1e-6)
    assert torch.allclose(hist.column("valid_return")[:, 0], (pos1 * valid.y).mean(1), atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_train_stats_are_means_of_batch_means_in_train_mode(dropout):
    """Epoch 0 reorders the rows by its stream permutation and drops units by its stream noise;
    the train columns average the batch means (unequal batches count equally), with dropout on."""
    train = windows(AR1Regime(rho=0.2), 2, 20, "train")  # 320 rows: batches of 300 and 20
    valid = windows(AR1Regime(rho=0.2), 2, 10, "valid")
    model = TraderNet(gens("init", 2), L, HIDDEN, dropout)
    model.train()
    # replay the draws; lr is tiny, so the weights stay put
    perm = streams("shuffle", 2).permutations(0, 320)
    noise = model.sample_noise(320, streams("shuffle", 2), 0)  # (2, 320, HIDDEN) bytes, or None
    rows = torch.arange(2).unsqueeze(1)
    with torch.no_grad():
        pos = model(train.x[rows, perm], noise)  # (2, 320)
    ret = pos * train.y[rows, perm]
    expected = torch.stack(
        [(pos[:, :300].mean(1) + pos[:, 300:].mean(1)) / 2, (ret[:, :300].mean(1) + ret[:, 300:].mean(1)) / 2], 1
    )
    assert ((pos.mean(1) - expected[:, 0]).abs() > 1e-5).all()  # the row mean would be another number
    hist, _ = train_trader(model, train, valid, streams("shuffle", 2), lr=1e-12, epochs=1, batch_size=300)
    got = hist.values[:, 0, :2]
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_best_state_is_each_replicas_best_validation_epoch(dropout):
    model, hist, best, _, valid = run(dropout=dropout, epochs=12)
    model.load_state_dict(best)
    model.eval()
    with torch.no_grad():
        stats = trader_stats(model(valid.x), valid.y)
    vret = hist.column("valid_return")
    epoch = vret.argmax(dim=1)
    assert torch.allclose(stats[:, 1], vret.max(dim=1).values, atol=1e-6)
    assert torch.allclose(stats[:, 0], hist.column("valid_recom")[torch.arange(3), epoch], atol=1e-6)


# ------------------------------------------------------- reproducibility
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_same_seeds_same_history(dropout):
    _, h1, b1, _, _ = run(dropout=dropout)
    _, h2, b2, _, _ = run(dropout=dropout)
    assert torch.equal(h1.values, h2.values)
    for k in b1:
        assert torch.equal(b1[k], b2[k])


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_an_epochs_draws_do_not_depend_on_the_epochs_that_follow(dropout):
    """Epoch e draws from the streams of epoch e alone: 3 epochs are the first 3 of 5, byte for byte."""
    _, h3, _, _, _ = run(dropout=dropout, epochs=3)
    _, h5, _, _, _ = run(dropout=dropout, epochs=5)
    assert torch.equal(h3.values, h5.values[:, :3])


def test_other_shuffle_seeds_other_history():
    train, valid = windows(AR1Regime(rho=0.2), 2, 60, "train"), windows(AR1Regime(rho=0.2), 2, 20, "valid")
    out = []
    for tag in ("shuffle", "reshuffle"):
        model = TraderNet(gens("init", 2), L, HIDDEN)
        out.append(train_trader(model, train, valid, streams(tag, 2), lr=0.01, epochs=3, batch_size=250)[0].values)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_batched_replicas_equal_one_at_a_time(dropout):
    _, batched, best, _, _ = run(replicas=3, dropout=dropout)
    for s in range(3):
        _, alone, best_s, _, _ = run(replicas=1, offset=s, dropout=dropout)
        assert torch.allclose(batched.values[s], alone.values[0], atol=1e-5), s
        for k in best:
            assert torch.allclose(best[k][s], best_s[k][0], atol=1e-5), (s, k)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_hand_written_step_equals_autograd_step(dropout):
    """TraderStepper's hand-written gradient + foreach RMSprop == autograd + torch.optim.RMSprop."""
    fast_model, fast, fast_best, _, _ = run(dropout=dropout, stepper=TraderStepper)
    slow_model, slow, slow_best, _, _ = run(dropout=dropout, stepper=AutogradStepper)
    # the two really took different paths: only autograd leaves .grad behind
    assert fast_model.layer0.weight.grad is None and slow_model.layer0.weight.grad is not None
    assert torch.allclose(fast.values, slow.values, atol=1e-5)
    for (k, a), b in zip(fast_model.state_dict().items(), slow_model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k
        assert torch.allclose(fast_best[k], slow_best[k], atol=1e-5), k
    # and the weights moved a lot further than that tolerance over these 8 epochs
    first = TraderNet(gens("init", 3), L, HIDDEN, dropout)
    assert (fast_model.layer0.weight - first.layer0.weight).abs().max() > 0.05


@pytest.mark.parametrize("dropout", [0.3, 0.5])  # random bytes, random bits
def test_hand_written_step_equals_autograd_step_on_odd_sizes(dropout):
    """Dropout noise that does not fill whole 32-bit words (101 rows x 3 units) and a short last batch."""
    train = windows(AR1Regime(rho=0.2), 2, 10, "train")
    train = Windows(train.x[:, :101], train.y[:, :101])  # batches of 40, 40 and 21
    out = []
    for stepper in (TraderStepper, AutogradStepper):
        model = TraderNet(gens("init", 2), L, 3, dropout)
        hist, _ = fit(model, trader_loss, train.x, train.y, streams("shuffle", 2), lr=0.01, epochs=4, batch_size=40,
                      batch_stats=trader_stats, stepper=stepper)
        out.append((hist.values, [p.detach() for p in model.parameters()]))
    (fast, fast_params), (slow, slow_params) = out
    assert torch.allclose(fast, slow, atol=1e-5)
    for a, b in zip(fast_params, slow_params):
        assert torch.allclose(a, b, atol=1e-5)


def test_generic_model_trains_through_autograd():
    """fit is task-agnostic: a one-parameter-pair regression on y = 1 + 2x, three replicas."""
    g = make_generator("test_train", "reg")
    x = torch.randn(3, 2000, generator=g)
    y = 1 + 2 * x + 0.1 * torch.randn(3, 2000, generator=g)
    model = LinearRegression1D(replicas=3)
    hist, best = fit(model, lambda out, yb: ((out - yb) ** 2).mean(dim=1), x, y, streams("reg", 3), lr=0.05,
                     epochs=60, batch_size=200)
    assert hist.values.shape == (3, 60, 0) and best is None
    assert torch.allclose(model.beta0, torch.ones(3, 1), atol=0.1)
    assert torch.allclose(model.beta1, 2 * torch.ones(3, 1), atol=0.1)


def test_on_epoch_sees_every_epochs_row():
    """Progress is the caller's: on_epoch gets (epoch, epochs, row) after each epoch, the row the history keeps."""
    seen = []
    model, train, valid = small_problem()
    hist, _ = train_trader(model, train, valid, streams("shuffle", 2), lr=0.01, epochs=3, batch_size=40,
                           on_epoch=lambda e, n, row: seen.append((e, n, row.clone())))
    assert [(e, n) for e, n, _ in seen] == [(0, 3), (1, 3), (2, 3)]
    assert torch.equal(torch.stack([row for _, _, row in seen], dim=1), hist.values)


def test_the_trader_stepper_takes_no_other_loss():
    model, train, _ = small_problem()
    with pytest.raises(ValueError, match="trader_loss"):
        fit(model, lambda o, y: trader_loss(o, y), train.x, train.y, streams("shuffle", 2), lr=0.01, epochs=1,
            batch_size=10, stepper=TraderStepper)


def test_the_trainer_knows_no_task_and_draws_no_bar():
    """train and steppers import neither the trader nor tqdm: the task and the progress bar are the caller's."""
    for module in ("train", "steppers"):
        tree = ast.parse((Path(__file__).parents[2] / "neural_trader" / f"{module}.py").read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"tqdm", "tqdm.auto", "neural_trader.trader", "sys"}, (module, names)


# --------------------------------------------------------------- learning
def seed_workload(regime, replicas=4, epochs=60):
    """The seed's workload: N=1000 training and M=100 validation series, T=20, L=4, hidden 5, batch 1000.

    Returns the history and each replica's P&L on every held-out window, (S, 320k).
    """
    train, valid = windows(regime, replicas, 1000, "train"), windows(regime, replicas, 100, "valid")
    model = TraderNet(gens("init", replicas), L, HIDDEN)
    hist, best = train_trader(model, train, valid, streams("shuffle", replicas), lr=0.01, epochs=epochs,
                              batch_size=1000)
    model.load_state_dict(best)
    model.eval()
    test = window_returns(generate_returns(regime, 20_000, T, generator=make_generator("test_train", "test")), L)
    with torch.no_grad():
        pnl = model(test.x.expand(replicas, *test.x.shape)) * test.y  # (S, n_windows)
    return hist, pnl.double()


def test_learns_momentum():
    rho = 0.2
    bayes = rho * math.sqrt(1 / (1 - rho * rho)) / math.sqrt(2 * math.pi)
    hist, pnl = seed_workload(AR1Regime(rho=rho))
    test_return = pnl.mean(dim=1)
    assert float(hist.column("valid_return")[:, -10:].mean()) > 0.04
    assert (test_return > 0.06).all(), test_return
    assert (test_return < bayes + 0.005).all(), test_return  # nobody beats the Bayes rule on 320k windows
    assert float(hist.column("train_return")[:, -1].mean()) > float(hist.column("train_return")[:, 0].mean())


def test_nothing_to_learn_from_iid_returns():
    """Out of sample, every replica earns 0 within 4 standard errors of its own mean P&L.

    A position depends on past returns only and the next return is independent
    of them, so the P&L of the windows is uncorrelated and its mean has se =
    sd / sqrt(n). The replicas trade the same test draw, so
    they are not averaged as if independent.
    """
    _, pnl = seed_workload(IIDRegime())
    z = pnl.mean(dim=1) / (pnl.std(dim=1) / math.sqrt(pnl.shape[1]))  # (S,)
    assert (z.abs() < 4).all(), z


# ----------------------------------------------------------------- errors
def small_problem(replicas=2):
    train, valid = windows(AR1Regime(rho=0.2), replicas, 10, "train"), windows(AR1Regime(rho=0.2), replicas, 5, "valid")
    return TraderNet(gens("init", replicas), L, HIDDEN), train, valid


@pytest.mark.parametrize("lr", [0.0, -0.01, float("nan")])
def test_non_positive_lr_raises(lr):
    model, train, valid = small_problem()
    with pytest.raises(ValueError, match="lr"):
        train_trader(model, train, valid, streams("shuffle", 2), lr=lr, epochs=1, batch_size=10)


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_bad_epochs_raise(epochs):
    model, train, valid = small_problem()
    with pytest.raises(ValueError, match="epochs"):
        train_trader(model, train, valid, streams("shuffle", 2), lr=0.01, epochs=epochs, batch_size=10)


def test_bad_batch_size_raises():
    model, train, valid = small_problem()
    with pytest.raises(ValueError, match="batch_size"):
        train_trader(model, train, valid, streams("shuffle", 2), lr=0.01, epochs=1, batch_size=0)


@pytest.mark.parametrize("count", [1, 3])
def test_stream_seed_count_must_match_replicas(count):
    model, train, valid = small_problem()
    with pytest.raises(ValueError, match="one stream seed per replica"):
        train_trader(model, train, valid, streams("shuffle", count), lr=0.01, epochs=1, batch_size=10)


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", ""])
def test_unknown_device_raises(name):
    with pytest.raises(ValueError, match="device"):
        resolve_device(name)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
