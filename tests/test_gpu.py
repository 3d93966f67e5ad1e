"""The CUDA path (`runtime.device: cuda`, or `auto` on a machine with a GPU), checked on a GPU.

Skipped, every test, where torch sees no CUDA device; none needs Prefect or DVC
except the last, which skips without Prefect (`benchmarks/gpu_check.sh` runs this
file on machines that have neither). The first checks are the CPU suite's
(tests/test_train.py) run on CUDA, on its data (`windows`) and sizes: the
hand-written step equals autograd, a batch of replicas equals each replica
trained alone, and a model trained on CUDA equals the same model trained on the
CPU: initial weights come from CPU generators and every epoch's permutation and
dropout mask from the counter-based streams, so both devices draw the same
bits (checked first), and only float sums differ.

Tolerance: 1e-4 where tests/test_train.py holds 1e-5 on the CPU. cuBLAS and
CUDA's reductions sum in other orders than the CPU kernels, and may pick
another order for another batch shape, and these differences grow over 8
epochs; the weights move more than 0.05 over those epochs, so 1e-4 still
tells a wrong step from reordered sums. TF32 stays off (torch's default for
float32 matmuls), and this module checks that it is.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from scipy import stats

from neural_trader.config import AR1Regime
from neural_trader.data import Windows
from neural_trader.models import TraderNet
from neural_trader.streams import DROPOUT
from neural_trader.train import TRADER_COLUMNS, fit, trader_loss, trader_stats
from tests.test_train import HIDDEN, L, gens, streams, windows

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

CUDA = torch.device("cuda")
ATOL = 1e-4


def train(device: torch.device, *, replicas: int = 3, offset: int = 0, dropout: float = 0.0,
          autograd: bool = False) -> tuple[TraderNet, torch.Tensor, dict[str, torch.Tensor]]:
    """8 epochs of replicas offset..offset+replicas-1 of a small problem, on `device`.

    60 series give 960 rows a replica, in batches of 250 (the last 210). The
    initial weights come from CPU generators, moved to `device`, as the study
    does; the streams are device independent. The loss `trader_loss` itself
    takes the hand-written step; a wrapper of it, autograd. Returns the trained
    model, its history values (S, epochs, 4) and best state.
    """
    sl = slice(offset, offset + replicas)
    tr, va = (windows(AR1Regime(rho=0.2), replicas + offset, n, split) for n, split in ((60, "train"), (20, "valid")))
    tr, va = Windows(tr.x[sl], tr.y[sl]).to(device), Windows(va.x[sl], va.y[sl]).to(device)
    model = TraderNet(gens("init", replicas, offset), L, HIDDEN, dropout).to(device)
    loss = (lambda out, y: trader_loss(out, y)) if autograd else trader_loss
    hist, best = fit(model, loss, tr.x, tr.y, streams("shuffle", replicas, offset), lr=0.01, epochs=8,
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


@pytest.mark.parametrize("dropout", [0.5, 0.3])  # packed bits, a byte a unit
def test_cuda_draws_the_same_permutations_and_masks_as_the_cpu(dropout):
    s = streams("shuffle", 5)
    for epoch in (0, 7):
        assert torch.equal(s.permutations(epoch, 960, CUDA).cpu(), s.permutations(epoch, 960))
        assert torch.equal(s.bytes(DROPOUT, epoch, 4000, CUDA).cpu(), s.bytes(DROPOUT, epoch, 4000))
    cpu_net = TraderNet(gens("init", 5), L, HIDDEN, dropout)
    cuda_net = TraderNet(gens("init", 5), L, HIDDEN, dropout).to(CUDA)
    assert torch.equal(cuda_net.layer0.weight.cpu(), cpu_net.layer0.weight)  # CPU generators: the same init
    noise = cuda_net.sample_noise(960, s, 3)
    assert noise.is_cuda and torch.equal(noise.cpu(), cpu_net.sample_noise(960, s, 3))
    assert torch.equal(cuda_net.dropout_mask(noise).cpu(), cpu_net.dropout_mask(noise.cpu()))


@pytest.mark.parametrize("dropout", [0.0, 0.5, 0.3])  # no noise, random bits, random bytes
def test_hand_written_step_equals_autograd_on_cuda(dropout):
    fast, slow = train(CUDA, dropout=dropout), train(CUDA, dropout=dropout, autograd=True)
    assert fast[0].layer0.weight.is_cuda and fast[1].device.type == "cpu"  # trained there, history brought back
    assert fast[0].layer0.weight.grad is None and slow[0].layer0.weight.grad is not None  # two paths really ran
    assert_same_training(fast, slow)
    first = TraderNet(gens("init", 3), L, HIDDEN, dropout)
    assert (fast[0].layer0.weight.cpu() - first.layer0.weight).abs().max() > 0.05  # moved far beyond ATOL


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
    """The same init, permutations and noise on both: only the arithmetic's device differs."""
    assert_same_training(train(CUDA, dropout=dropout), train(torch.device("cpu"), dropout=dropout))


def _se(interval: dict, n: int, confidence: float) -> float:
    """The standard error behind a t-interval over n seeds: half its width over the t quantile."""
    return (interval["ci_hi"] - interval["ci_lo"]) / (2 * stats.t.ppf(0.5 + confidence / 2, n - 1))


@pytest.mark.slow
def test_default_study_is_device_independent(tmp_path):
    """The default study on CUDA and on the CPU, stage by stage without Prefect: same verdicts, close means.

    Tolerance, derived: both devices draw the same initial weights, data,
    permutations and masks, so the two runs differ only by float summation
    order, about 1e-7 relative per operation, which training can grow but
    which has no direction. The study's statements rest on means over seeds
    whose uncertainty is their standard error across seeds (0.0002-0.0004
    per step for test return at 32 seeds). Each cell's and contrast's mean
    must agree within half its standard error: a difference that large would
    move a t-statistic by 0.5 and could flip a verdict near the threshold, so
    anything below it leaves the report's statements as they are, and the
    verdicts (significant or not, and which way) must then be identical.
    """
    from stages.catalog import load_params, read_json
    from tests.conftest import ROOT, run_study_stages

    results = {}
    for device in ("cpu", "cuda"):
        cfg = load_params(ROOT / "params.yaml", [f"runtime.device={device}"])
        run_study_stages(cfg, tmp_path / device)
        results[device] = read_json(tmp_path / device / "metrics" / "comparison.json")
    assert_same_findings(results["cpu"], results["cuda"])


def assert_same_findings(cpu: dict, gpu: dict) -> None:
    """Two comparison.json files state the same: means within half a standard error, the same verdicts."""
    n, confidence = cpu["replicas"], cpu["confidence"]
    for a, b in zip(cpu["cells"], gpu["cells"], strict=True):
        assert (a["regime"], a["model"]) == (b["regime"], b["model"])
        for metric in ("test_return", "gap"):
            se = _se(a[metric], n, confidence)
            assert abs(a[metric]["mean"] - b[metric]["mean"]) <= 0.5 * se, (a["regime"], a["model"], metric)
    for a, b in zip(cpu["contrasts"], gpu["contrasts"], strict=True):
        assert a["name"] == b["name"]
        assert abs(a["diff"] - b["diff"]) <= 0.5 * _se(a, n, confidence), a["name"]
        assert (a["significant"], math.copysign(1, a["diff"]) if a["significant"] else 0) == \
            (b["significant"], math.copysign(1, b["diff"]) if b["significant"] else 0), a["name"]
    for market, m in cpu["market"].items():  # SPA: some variant beats buy-and-hold, or none does
        assert (m["spa_p"] < m["alpha"]) == (gpu["market"][market]["spa_p"] < m["alpha"]), market


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("prefect") is None, reason="no Prefect on this machine")
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
