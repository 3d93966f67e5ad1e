"""The CUDA path (`runtime.device: cuda`, or `auto` on a machine with a GPU), checked on a GPU.

Skipped, every test, where torch sees no CUDA device; none needs Prefect or DVC
except the last, which skips without Prefect (`benchmarks/gpu_check.sh` runs this
file on machines that have neither): the default study runs through the stage
layer (`stages.run.run_stage`), as `neural-trader stage` does. The first checks are the CPU suite's
(tests/unit/test_train.py) run on CUDA, on its data (`windows`) and sizes: the
hand-written step equals autograd, a batch of replicas equals each replica
trained alone, and a model trained on CUDA equals the same model trained on the
CPU: initial weights come from CPU generators and every epoch's permutation and
dropout mask from the counter-based streams, so both devices draw the same
bits (checked first), and only float sums differ.

Tolerance: 1e-4 where tests/unit/test_train.py holds 1e-5 on the CPU. cuBLAS and
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

from neural_trader.synthetic.config import AR1Regime
from neural_trader.data import Windows
from neural_trader.models import TraderNet
from neural_trader.streams import DROPOUT
from neural_trader.steppers import AutogradStepper
from neural_trader.trader import TRADER_COLUMNS, TraderStepper, trader_loss, trader_stats
from neural_trader.train import fit
from stages.catalog import Workspace
from tests.conftest import ROOT
from tests.unit.test_train import HIDDEN, L, gens, streams, windows

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

CUDA = torch.device("cuda")
ATOL = 1e-4


def train(device: torch.device, *, replicas: int = 3, offset: int = 0, dropout: float = 0.0,
          autograd: bool = False) -> tuple[TraderNet, torch.Tensor, dict[str, torch.Tensor]]:
    """8 epochs of replicas offset..offset+replicas-1 of a small problem, on `device`.

    60 series give 960 rows a replica, in batches of 250 (the last 210). The
    initial weights come from CPU generators, moved to `device`, as the study
    does; the streams are device independent. `TraderStepper` takes the
    hand-written step; `AutogradStepper`, autograd. Returns the trained
    model, its history values (S, epochs, 4) and best state.
    """
    sl = slice(offset, offset + replicas)
    tr, va = (windows(AR1Regime(rho=0.2), replicas + offset, n, split) for n, split in ((60, "train"), (20, "valid")))
    tr, va = Windows(tr.x[sl], tr.y[sl]).to(device), Windows(va.x[sl], va.y[sl]).to(device)
    model = TraderNet(gens("init", replicas, offset), L, HIDDEN, dropout).to(device)
    hist, best = fit(model, trader_loss, tr.x, tr.y, streams("shuffle", replicas, offset), lr=0.01, epochs=8,
                     batch_size=250, batch_stats=trader_stats, valid_stats=lambda m: trader_stats(m(va.x), va.y),
                     columns=TRADER_COLUMNS, keep_best=TRADER_COLUMNS.index("valid_return"),
                     stepper=AutogradStepper if autograd else TraderStepper)
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


def test_cuda_draws_the_same_permutations_words_and_bytes_as_the_cpu():
    """Every kind of draw, bit for bit: permutations from tiny to past the int64 switch, words, bytes."""
    s = streams("shuffle", 33)
    for epoch in (0, 7):
        for n in (1, 7, 960, 16_000):
            assert torch.equal(s.permutations(epoch, n, CUDA).cpu(), s.permutations(epoch, n)), (epoch, n)
        big = 2**20 + 1  # past the int32 arithmetic; two replicas keep the CPU's side short
        assert torch.equal(s[:2].permutations(epoch, big, CUDA).cpu(), s[:2].permutations(epoch, big)), epoch
        assert torch.equal(s.words(DROPOUT, epoch, 999, CUDA).cpu(), s.words(DROPOUT, epoch, 999))
        assert torch.equal(s.bytes(DROPOUT, epoch, 4001, CUDA).cpu(), s.bytes(DROPOUT, epoch, 4001))
    on_cuda, on_cpu = s.permuter(960, CUDA), s.permuter(960)  # the trainer's reused buffers, epoch after epoch
    for epoch in range(4):
        out = on_cuda(epoch)
        assert out.is_cuda and torch.equal(out.cpu(), on_cpu(epoch)), epoch


@pytest.mark.parametrize("dropout", [0.5, 0.3])  # packed bits, a byte a unit
def test_cuda_draws_the_same_dropout_masks_as_the_cpu(dropout):
    s = streams("shuffle", 5)
    cpu_net = TraderNet(gens("init", 5), L, HIDDEN, dropout)
    cuda_net = TraderNet(gens("init", 5), L, HIDDEN, dropout).to(CUDA)
    assert torch.equal(cuda_net.layer0.weight.cpu(), cpu_net.layer0.weight)  # CPU generators: the same init
    for epoch in (0, 3):
        noise = cuda_net.sample_noise(960, s, epoch)
        assert noise.is_cuda and torch.equal(noise.cpu(), cpu_net.sample_noise(960, s, epoch))
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


# ------------------------------------------------------------------ the default study on both devices
def run_study(cfg, ws: Workspace) -> dict[str, dict]:
    """Every stage of the study in registry order (`STUDY_STAGES`: generate ... compare), without Prefect or DVC.

    Each stage through `stages.run.run_stage`, the function both front doors
    call, for every item of its grid. Returns {"stage@item": its summary}.
    """
    from stages.registry import STUDY_STAGES, item_id
    from stages.run import run_stage

    return {f"{stage.name}@{item_id(item)}": run_stage(stage.name, cfg, ws, **item)
            for stage in STUDY_STAGES for item in stage.grid(cfg)}


@pytest.mark.slow
def test_default_study_is_device_independent(tmp_path):
    """The default study (params.yaml) on CUDA and on the CPU, stage by stage: same verdicts, close means.

    Tolerance, derived. Both devices draw the same data, initial weights
    (CPU generators), permutations and dropout masks (counter-based streams,
    checked bit for bit above), so the two runs differ only in the order of
    float32 sums: about 1e-7 relative per operation, which training can
    grow over epochs but which has no direction across seeds. Every statement
    of the report rests on a mean over seeds, and the uncertainty of that
    mean is its standard error across seeds (about 0.0003 per step for a
    cell's test return at 32 seeds). Each reported mean must therefore agree
    within half its standard error (taken from its interval: half-width over
    the Student t quantile for the intervals over seeds, over the normal one
    for the markets' bootstrap intervals over days). A difference that large
    would shift a t statistic by 0.5 and could move a verdict near its
    threshold; a device's reordered sums stay orders of magnitude below it,
    so the verdicts (each contrast's state, the direction of a significant
    one, the SPA test's decision and StepM's set, each break-even note)
    must be identical, and the data-only numbers (buy-and-hold, the oracle,
    the markets' baselines) equal to the last bit.
    """
    from stages.catalog import load_params, read_json

    results = {}
    for device in ("cpu", "cuda"):
        cfg = load_params(ROOT / "params.yaml", [f"runtime.device={device}"])
        ws = Workspace(tmp_path / device)
        summaries = run_study(cfg, ws)
        assert not any(s["reused"] for s in summaries.values())  # a fresh workspace: every stage ran
        trained = [s["device"] for k, s in summaries.items() if k.startswith("train@")]
        assert trained and all(d.startswith(device) for d in trained), trained  # cuda really trained on CUDA
        results[device] = {**read_json(ws.comparison_json), "market": read_json(ws.markets_json)}
    assert_same_findings(results["cpu"], results["cuda"])


def standard_errors(doc: dict) -> dict[tuple, tuple[float | None, float | None]]:
    """{path: (estimate, its standard error)} of every estimate comparison.json reports with an interval.

    The intervals: a cell's `{mean, ci_lo, ci_hi}` (Student t over the
    seeds), a contrast's `{diff, ci_lo, ci_hi, n}` (paired t over n seeds),
    a market's `{mean, ci}`, `{mean_annual, ci}` and `sharpe_net` with
    `sharpe_net_ci` (stationary bootstrap over days: normal quantile), and
    each market variant's seed spread `{sharpe_net_mean, sharpe_net_sd,
    count}`. An interval key of any other name fails: it is a mean this
    check does not cover yet.
    """
    level = doc["confidence"]
    z = float(stats.norm.ppf(0.5 + level / 2))
    out: dict[tuple, tuple[float | None, float | None]] = {}

    def width(lo, hi) -> float | None:
        return None if lo is None or hi is None else hi - lo

    def walk(node, path: tuple) -> None:
        if isinstance(node, list):
            for i, v in enumerate(node):
                name = (f"{v['regime']}-{v['model']}" if "regime" in v else v.get("name", i)) \
                    if isinstance(v, dict) else i
                walk(v, (*path, name))
            return
        if not isinstance(node, dict):
            return
        unknown = [k for k in node if ("ci" in k.split("_")) and k not in ("ci", "ci_lo", "ci_hi", "sharpe_net_ci")]
        assert not unknown, f"{path}: intervals {unknown} not checked by standard_errors"
        if "ci_lo" in node:  # a t interval over seeds
            t = float(stats.t.ppf(0.5 + level / 2, node.get("n", doc["replicas"]) - 1))
            w = width(node["ci_lo"], node["ci_hi"])
            out[path] = (node["mean"] if "mean" in node else node["diff"], None if w is None else w / (2 * t))
        if isinstance(node.get("ci"), list):  # a bootstrap interval over days
            w = width(*node["ci"])
            out[path] = (node["mean"] if "mean" in node else node["mean_annual"], None if w is None else w / (2 * z))
        if "sharpe_net_ci" in node:
            w = width(*node["sharpe_net_ci"])
            out[(*path, "sharpe_net")] = (node["sharpe_net"], None if w is None else w / (2 * z))
        if "sharpe_net_sd" in node:  # the spread of single seeds' Sharpe ratios
            out[(*path, "sharpe_net_mean")] = (node["sharpe_net_mean"], node["sharpe_net_sd"] / node["count"] ** 0.5)
        for k, v in node.items():
            walk(v, (*path, k))

    walk(doc, ())
    return out


def verdicts(doc: dict) -> dict[tuple, object]:
    """Every categorical statement of comparison.json: contrast states and directions, SPA, StepM, break-even."""
    out: dict[tuple, object] = {}
    for c in doc["contrasts"]:
        direction = math.copysign(1, c["diff"]) if c["state"] == "significant" else 0
        out[("contrast", c["name"])] = (c["state"], c["significant"], direction)
    for market, m in doc["market"].items():
        out[("spa", market)] = (m["spa_p"] < m["alpha"], tuple(m["spa"]["superior"]))
        for name, row in {**m["variants"], **m["baselines"]}.items():
            out[("break_even", market, name)] = row["break_even_note"]
    return out


DATA_ONLY = ("buy_and_hold_return", "oracle_return", "oracle_expected_return")  # a cell's numbers without a model


def assert_same_findings(cpu: dict, gpu: dict, tolerance: float = 0.5) -> float:
    """Two comparison.json files state the same; returns the largest |difference of means| / standard error.

    Means within `tolerance` standard errors (the first file's), the same
    verdicts, the data-only numbers equal. Lists every offender, not the first.
    """
    assert [(c["regime"], c["model"]) for c in cpu["cells"]] == [(c["regime"], c["model"]) for c in gpu["cells"]]
    assert [c["name"] for c in cpu["contrasts"]] == [c["name"] for c in gpu["contrasts"]]
    assert (cpu["replicas"], cpu["confidence"], sorted(cpu["market"])) == \
        (gpu["replicas"], gpu["confidence"], sorted(gpu["market"]))
    a, b = standard_errors(cpu), standard_errors(gpu)
    assert a.keys() == b.keys(), set(a) ^ set(b)
    assert len(a) >= 3 * len(cpu["cells"]) + len(cpu["contrasts"]), sorted(a)  # the walk found the intervals
    worst, far = 0.0, []
    for path, (mean, se) in a.items():
        other = b[path][0]
        if mean is None or other is None or not se:  # no spread (a baseline held flat): the same number
            if mean != other:
                far.append((path, mean, other, se))
            continue
        ratio = abs(mean - other) / se
        worst = max(worst, ratio)
        if not ratio <= tolerance:
            far.append((path, mean, other, se))
    assert not far, f"means more than {tolerance} standard errors apart (path, cpu, cuda, se): {far}"
    va, vb = verdicts(cpu), verdicts(gpu)
    assert va == vb, {k: (v, vb.get(k)) for k, v in va.items() if vb.get(k) != v}
    for x, y in zip(cpu["cells"], gpu["cells"]):
        assert [x[k] for k in DATA_ONLY] == [y[k] for k in DATA_ONLY], (x["regime"], x["model"])
    for market, m in cpu["market"].items():
        assert m["baselines"] == gpu["market"][market]["baselines"], market
    return worst


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("prefect") is None, reason="no Prefect on this machine")
def test_shrunk_study_runs_end_to_end_on_cuda(shrunk_params, tmp_path, prefect_server):
    from flows.study import run_study
    from stages.catalog import Workspace, load_params, read_json
    from stages.registry import cell_name

    overrides = ["runtime.device=cuda"]
    ws = Workspace(tmp_path / "ws")
    summary = run_study(str(shrunk_params), overrides, str(ws.root))
    assert summary["table"]
    cfg = load_params(shrunk_params, overrides)
    for regime, model in cfg.cells:
        trained = read_json(ws.stamp("train", cell_name(regime, model)))["summary"]
        assert trained["device"].startswith("cuda"), trained
    assert all(math.isfinite(v) for v in summary["cells"].values()), summary["cells"]
    assert summary["cells"]["momentum-base"] > 0.02, summary["cells"]  # learnable on shrunk data, as on the CPU
    for market, model in cfg.markets.cells:
        assert ws.market_eval(cell_name(market, model)).is_file()
