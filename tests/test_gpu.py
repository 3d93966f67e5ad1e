"""The CUDA path (`runtime.device: cuda`, or `auto` on a machine with a GPU), checked on a GPU.

Skipped, every test, where torch sees no CUDA device. The first checks are the
CPU suite's (tests/test_train.py) run on CUDA, on its data (`windows`) and
sizes: the hand-written step equals autograd, a batch of replicas equals each
replica trained alone, and a model trained on CUDA from CPU generators equals
the same model trained on the CPU. The last runs the shrunk study end to end
with `runtime.device=cuda` against the session's Prefect server.

Tolerance: 1e-4 where tests/test_train.py holds 1e-5 on the CPU. cuBLAS and
CUDA's reductions sum in other orders than the CPU kernels, and may pick
another order for another batch shape, and these differences grow over 8
epochs; the weights move more than 0.05 over those epochs, so 1e-4 still
tells a wrong step from reordered sums. TF32 stays off (torch's default for
float32 matmuls), and this module checks that it is.
"""

from __future__ import annotations

import math

import pytest
import torch

from neural_trader.config import AR1Regime
from neural_trader.data import Windows, make_generator
from neural_trader.models import TraderNet
from neural_trader.train import TRADER_COLUMNS, fit, trader_loss, trader_stats
from tests.test_train import HIDDEN, L, windows

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

CUDA = torch.device("cuda")
ATOL = 1e-4


def gens(tag: str, replicas: int, offset: int, device: torch.device) -> list[torch.Generator]:
    return [make_generator("test_gpu", tag, s + offset, device=device) for s in range(replicas)]


def train(device: torch.device, *, replicas: int = 3, offset: int = 0, dropout: float = 0.0, autograd: bool = False,
          generators: torch.device | None = None) -> tuple[TraderNet, torch.Tensor, dict[str, torch.Tensor]]:
    """8 epochs of replicas offset..offset+replicas-1 of a small problem, on `device`.

    60 series give 960 rows a replica, in batches of 250 (the last 210). The
    generators (init, then shuffles and noise) live on `generators`, by
    default `device`: the study draws them on the training device. The loss
    `trader_loss` itself takes the hand-written step; a wrapper of it, autograd.
    Returns the trained model, its history values (S, epochs, 4) and best state.
    """
    generators = generators or device
    sl = slice(offset, offset + replicas)
    tr, va = (windows(AR1Regime(rho=0.2), replicas + offset, n, split) for n, split in ((60, "train"), (20, "valid")))
    tr, va = Windows(tr.x[sl], tr.y[sl]).to(device), Windows(va.x[sl], va.y[sl]).to(device)
    model = TraderNet(gens("init", replicas, offset, generators), L, HIDDEN, dropout).to(device)
    loss = (lambda out, y: trader_loss(out, y)) if autograd else trader_loss
    hist, best = fit(model, loss, tr.x, tr.y, gens("shuffle", replicas, offset, generators), lr=0.01, epochs=8,
                     batch_size=250, batch_stats=trader_stats, valid_stats=lambda m: trader_stats(m(va.x), va.y),
                     columns=TRADER_COLUMNS, keep_best=TRADER_COLUMNS.index("valid_return"), progress=False)
    return model, hist.values, best


def assert_same_training(a: tuple, b: tuple) -> None:
    """Histories, final weights and best-epoch weights within ATOL (compared on the CPU)."""
    (model_a, hist_a, best_a), (model_b, hist_b, best_b) = a, b
    assert torch.allclose(hist_a.cpu(), hist_b.cpu(), atol=ATOL)
    for (k, wa), wb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.allclose(wa.cpu(), wb.cpu(), atol=ATOL), k
        assert torch.allclose(best_a[k].cpu(), best_b[k].cpu(), atol=ATOL), k


def test_float32_matmuls_are_not_tf32():
    assert not torch.backends.cuda.matmul.allow_tf32  # TF32 would move the sums by ~1e-3: no tolerance above holds


@pytest.mark.parametrize("dropout", [0.0, 0.5, 0.3])  # no noise, random bits, random bytes
def test_hand_written_step_equals_autograd_on_cuda(dropout):
    fast, slow = train(CUDA, dropout=dropout), train(CUDA, dropout=dropout, autograd=True)
    assert fast[0].layer0.weight.is_cuda and fast[1].device.type == "cpu"  # trained there, history brought back
    assert fast[0].layer0.weight.grad is None and slow[0].layer0.weight.grad is not None  # two paths really ran
    assert_same_training(fast, slow)
    first = TraderNet(gens("init", 3, 0, CUDA), L, HIDDEN, dropout).to(CUDA)
    assert (fast[0].layer0.weight - first.layer0.weight).abs().max() > 0.05  # moved far beyond ATOL


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_batched_replicas_equal_one_at_a_time_on_cuda(dropout):
    model, hist, best = train(CUDA, replicas=3, dropout=dropout)
    for s in range(3):
        alone, hist_s, best_s = train(CUDA, replicas=1, offset=s, dropout=dropout)
        assert torch.allclose(hist[s], hist_s[0], atol=ATOL), s
        for k, w in model.state_dict().items():
            assert torch.allclose(w[s].cpu(), alone.state_dict()[k][0].cpu(), atol=ATOL), (s, k)
            assert torch.allclose(best[k][s].cpu(), best_s[k][0].cpu(), atol=ATOL), (s, k)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_cuda_trains_what_the_cpu_trains(dropout):
    """CPU generators draw the same init, permutations and noise for both: only the arithmetic's device differs."""
    cpu = torch.device("cpu")
    assert_same_training(train(CUDA, dropout=dropout, generators=cpu), train(cpu, dropout=dropout))


@pytest.mark.slow
def test_shrunk_study_runs_end_to_end_on_cuda(shrunk_params, tmp_path, prefect_server):
    from flows.experiment import run_experiment
    from stages.catalog import Workspace, load_params, read_json
    from stages.registry import cell_name

    overrides = ["runtime.device=cuda"]
    ws = Workspace(tmp_path / "ws")
    summary = run_experiment(str(shrunk_params), overrides, str(ws.root))
    assert summary["table"]
    cfg = load_params(shrunk_params, overrides)
    for regime, model in cfg.cells:
        trained = read_json(ws.stamp("train", cell_name(regime, model)))["summary"]
        assert trained["device"].startswith("cuda"), trained
    assert all(math.isfinite(v) for v in summary["cells"].values()), summary["cells"]
    assert summary["cells"]["momentum-base"] > 0.02, summary["cells"]  # learnable on shrunk data, as on the CPU
    for market, model in cfg.markets.cells:
        assert ws.market_eval(cell_name(market, model)).is_file()
