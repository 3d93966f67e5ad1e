"""The study's stage bodies: read inputs from the workspace, call the core, write outputs.

Both front doors run these same functions through `tasks.stages.run_stage`:
the Prefect tasks in `tasks.pipeline` and the DVC stage commands
(`neural-trader stage ...`), so both produce the same bytes. The registry of
what each stage reads and writes is `tasks.stages.STAGES`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import torch

from neural_trader import evaluate as ev
from neural_trader import plots
from neural_trader.config import StudyConfig
from neural_trader.data import generate_returns, make_generator, window_returns, Windows
from neural_trader.models import TraderNet
from neural_trader.train import TRADER_COLUMNS, resolve_device, train_trader

from .stages import cell_name
from .workspace import Workspace, atomic_write_bytes, load_tensors, save_tensors, write_json

log = logging.getLogger("neural_trader")

# ----------------------------------------------------------------------- stages
def generate(cfg: StudyConfig, ws: Workspace, regime: str) -> dict[str, Any]:
    """Draw train, validation and test returns for every replica of one regime.

    Each replica gets its own independent test draw, so test-set noise enters
    the spread across seeds and the paired tests over seeds stay honest.
    """
    reg, d, s = cfg.data.regimes[regime], cfg.data, cfg.seeds

    def draw(n: int, split: str, replica: int) -> torch.Tensor:
        gen = make_generator(s.base, "data", regime, split, replica)
        return generate_returns(reg, n, d.length, generator=gen)

    train = torch.stack([draw(d.n_train, "train", r) for r in range(s.count)])  # (S, N, T)
    valid = torch.stack([draw(d.n_valid, "valid", r) for r in range(s.count)])  # (S, M, T)
    test = torch.stack([draw(d.n_test, "test", r) for r in range(s.count)])  # (S, n_test, T)
    save_tensors(ws.returns(regime), {"train": train, "valid": valid, "test": test},
                 metadata={"regime": json.dumps(reg.model_dump(mode="json"))})
    lag1 = float(np.corrcoef(test[..., 1:].reshape(-1).numpy(), test[..., :-1].reshape(-1).numpy())[0, 1])
    return {"regime": regime, "train": list(train.shape), "test": list(test.shape), "test_lag1_autocorr": lag1}


def window(cfg: StudyConfig, ws: Workspace, regime: str) -> dict[str, Any]:
    """Cut every split into (lag returns -> next return) windows."""
    returns = load_tensors(ws.returns(regime))
    out: dict[str, torch.Tensor] = {}
    for split in ("train", "valid", "test"):
        w = window_returns(returns[split], cfg.data.lag)
        out[f"{split}_x"], out[f"{split}_y"] = w.x, w.y
    save_tensors(ws.windows(regime), out)
    return {"regime": regime, "windows": {k: list(v.shape) for k, v in out.items() if k.endswith("_x")}}


def _split(tensors: dict[str, torch.Tensor], split: str) -> Windows:
    return Windows(tensors[f"{split}_x"], tensors[f"{split}_y"])


def train(cfg: StudyConfig, ws: Workspace, regime: str, model: str, device: str | None = None) -> dict[str, Any]:
    """Train the S replicas of one model variant on one regime in one batched run.

    Replica r of every variant with the same architecture starts from the same
    weights and sees the same data and shuffles: contrasts pair by replica.
    """
    mcfg, t, s = cfg.models[model], cfg.train, cfg.seeds
    dev = resolve_device(device or cfg.runtime.device)
    torch.set_num_threads(cfg.runtime.torch_threads)  # process-wide; every stage sets the same value
    windows = load_tensors(ws.windows(regime))
    init = [make_generator(s.base, "init", r, device=dev) for r in range(s.count)]
    gens = [make_generator(s.base, "train", r, device=dev) for r in range(s.count)]
    net = TraderNet(init, lag=cfg.data.lag, hidden=mcfg.hidden, dropout=mcfg.dropout).to(dev)
    start = time.perf_counter()
    history, best = train_trader(
        net, _split(windows, "train").to(dev), _split(windows, "valid").to(dev), gens,
        lr=t.lr, epochs=t.epochs, batch_size=t.batch_size, progress=cfg.runtime.progress,
        desc=cell_name(regime, model),
    )
    seconds = time.perf_counter() - start
    cell = cell_name(regime, model)
    meta = {"lag": str(cfg.data.lag), "hidden": str(mcfg.hidden), "dropout": str(mcfg.dropout),
            "replicas": str(s.count)}
    save_tensors(ws.weights(cell, "last"), net.state_dict(), metadata=meta)
    save_tensors(ws.weights(cell, "best"), best, metadata=meta)
    save_tensors(ws.model_dir(cell) / "history.safetensors", {"values": history.values},
                 metadata={"columns": json.dumps(history.columns)})
    values = history.values.numpy()  # (S, E, 4)
    mean, sd = values.mean(axis=0), values.std(axis=0)
    lines = ["epoch\t" + "\t".join(f"{c}\t{c}_sd" for c in history.columns)]
    for e in range(values.shape[1]):
        lines.append(f"{e + 1}\t" + "\t".join(f"{mean[e, j]:.6g}\t{sd[e, j]:.6g}" for j in range(len(history.columns))))
    atomic_write_bytes(ws.train_metrics(cell) / "history.tsv", ("\n".join(lines) + "\n").encode())
    valid_return = history.column("valid_return").numpy()
    summary = {
        "cell": cell,
        "replicas": s.count,
        "epochs": t.epochs,
        "final": {c: float(mean[-1, j]) for j, c in enumerate(history.columns)},
        "best_epoch_mean": float((valid_return.argmax(axis=1) + 1).mean()),
    }
    write_json(ws.train_metrics(cell) / "summary.json", summary)
    log.info("trained %s: %d replicas x %d epochs on %s in %.1f s", cell, s.count, t.epochs, dev, seconds)
    return {**summary, "device": str(dev), "seconds": round(seconds, 2)}


def _load_net(cfg: StudyConfig, ws: Workspace, cell: str, model: str, which: str) -> TraderNet:
    mcfg = cfg.models[model]
    gens = [torch.Generator() for _ in range(cfg.seeds.count)]  # weights are overwritten below
    net = TraderNet(gens, lag=cfg.data.lag, hidden=mcfg.hidden, dropout=mcfg.dropout)
    net.load_state_dict(load_tensors(ws.weights(cell, which)))
    return net.eval()


@torch.no_grad()
def _positions(net: TraderNet, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """(S, n, lag) windows, replica s on its own rows -> (S, n) positions (eval mode, chunked)."""
    return torch.cat([net(x[:, lo:lo + chunk]) for lo in range(0, x.shape[1], chunk)], dim=1)


CURVE_GRID = np.linspace(-3.0, 3.0, 61)


def evaluate(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """Held-out test metrics per replica, the baselines on the same draws, and the learned curve."""
    cell, reg = cell_name(regime, model), cfg.data.regimes[regime]
    torch.set_num_threads(cfg.runtime.torch_threads)
    windows = load_tensors(ws.windows(regime))
    test = _split(windows, "test")
    history = load_tensors(ws.model_dir(cell) / "history.safetensors")["values"].numpy()
    per_seed: dict[str, list[float]] = {}
    nets = {which: _load_net(cfg, ws, cell, model, which) for which in ("last", "best")}
    for which, net in nets.items():
        metrics = ev.policy_metrics(_positions(net, test.x), test.y)
        suffix = "" if which == "last" else "_best"
        for k, v in metrics.items():
            per_seed[f"test_{k}{suffix}"] = np.asarray(v, dtype=float).tolist()
    last_net = nets["last"]
    curve_x = torch.zeros(cfg.seeds.count, len(CURVE_GRID), cfg.data.lag)
    curve_x[..., -1] = torch.as_tensor(CURVE_GRID, dtype=torch.float32)
    curve = _positions(last_net, curve_x).numpy()  # (S, grid)
    # In-sample return of the final weights in eval mode (no dropout), so the gap
    # compares like with like; the history's train_return is taken with dropout on.
    train_w = _split(windows, "train")
    with torch.no_grad():
        in_sample = (last_net(train_w.x) * train_w.y).mean(dim=1).numpy()  # (S,)
    valid = history[:, :, TRADER_COLUMNS.index("valid_return")]
    per_seed["train_return"] = in_sample.tolist()
    per_seed["train_return_train_mode"] = history[:, -1, TRADER_COLUMNS.index("train_return")].tolist()
    per_seed["gap"] = (in_sample - np.asarray(per_seed["test_mean_return"])).tolist()
    per_seed["best_epoch"] = (valid.argmax(axis=1) + 1).astype(float).tolist()
    per_seed["valid_return_last"] = valid[:, -1].tolist()
    per_seed["valid_return_best"] = valid.max(axis=1).tolist()
    baselines = {}  # the same test draws, per seed
    for name, pos in ev.baseline_positions(test.x, reg).items():
        m = ev.policy_metrics(pos, test.y)
        baselines[name] = {k: float(np.mean(v)) for k, v in m.items()}
        per_seed[f"{name}_return"] = np.asarray(m["mean_return"], dtype=float).tolist()
    oracle_expected = ev.oracle_expected_return(reg)
    mean_test = float(np.mean(per_seed["test_mean_return"]))
    result = {
        "regime": regime,
        "model": model,
        "replicas": cfg.seeds.count,
        "test_windows_per_seed": int(test.x.shape[1]),
        "per_seed": per_seed,
        "baselines": baselines,
        "oracle_expected_return": oracle_expected,
        "oracle_fraction": ev.oracle_fraction(mean_test, baselines["oracle"]["mean_return"]),
        "curve": {"last_return": CURVE_GRID.tolist(), "position": curve.tolist()},
        "valid_return_curve": np.round(valid, 7).tolist(),  # (S, epochs): compare reads evaluations only
    }
    write_json(ws.eval_metrics(cell), result)
    return {"cell": cell, "test_return": mean_test, "oracle_return": baselines["oracle"]["mean_return"],
            "gap": float(np.mean(per_seed["gap"]))}


def plot(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """The seed's 2x2 training picture for one cell, over all replicas."""
    cell = cell_name(regime, model)
    stored = load_tensors(ws.model_dir(cell) / "history.safetensors")["values"].numpy()
    atomic_write_bytes(ws.history_plot(cell), plots.history_png(stored, list(TRADER_COLUMNS), cell))
    return {"cell": cell, "plot": ws.rel(ws.history_plot(cell))}


def compare(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """The study's verdicts: see tasks.report."""
    from .report import build_comparison

    return build_comparison(cfg, ws)


