"""The study's stage bodies: load from the catalog, call the core, save.

generate -> window -> train -> evaluate -> plot, per regime or per
(regime, model) cell; compare is `stages.compare`. What each reads and writes
is declared in `stages.registry`; `stages.run.run_stage` runs them for both
front doors.
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
from neural_trader.data import Windows, make_generator, window_returns
from neural_trader.history import final_summary, replica_table
from neural_trader.models import TraderNet
from neural_trader.sources import make_source
from neural_trader.train import TRADER_COLUMNS, History, resolve_device, train_trader

from .catalog import Workspace, atomic_write_bytes, load_tensors, save_tensors, write_json
from .registry import cell_name

log = logging.getLogger("neural_trader")

SPLITS = ("train", "valid", "test")


def generate(cfg: StudyConfig, ws: Workspace, regime: str) -> dict[str, Any]:
    """Draw every replica's train, validation and test returns from the regime's source.

    Each replica gets its own independent test draw, so test-set noise enters
    the spread across seeds and the paired tests over seeds stay honest.
    """
    reg, d = cfg.data.regimes[regime], cfg.data
    sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
    splits = make_source(reg).replica_splits(regime, cfg.seeds.base, cfg.seeds.count, sizes, d.length)
    save_tensors(ws.returns(regime), splits, metadata={"regime": json.dumps(reg.model_dump(mode="json"))})
    test = splits["test"]  # (S, n_test, T)
    lag1 = float(np.corrcoef(test[..., 1:].reshape(-1).numpy(), test[..., :-1].reshape(-1).numpy())[0, 1])
    return {"regime": regime, "train": list(splits["train"].shape), "test": list(test.shape),
            "test_lag1_autocorr": lag1}


def window(cfg: StudyConfig, ws: Workspace, regime: str) -> dict[str, Any]:
    """Cut every split into (lag returns -> next return) windows."""
    returns = load_tensors(ws.returns(regime))
    out: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        w = window_returns(returns[split], cfg.data.lag)
        out[f"{split}_x"], out[f"{split}_y"] = w.x, w.y
    save_tensors(ws.windows(regime), out)
    return {"regime": regime, "windows": {k: list(v.shape) for k, v in out.items() if k.endswith("_x")}}


def _split(tensors: dict[str, torch.Tensor], split: str) -> Windows:
    return Windows(tensors[f"{split}_x"], tensors[f"{split}_y"])


def _net(cfg: StudyConfig, model: str, generators: list[torch.Generator]) -> TraderNet:
    m = cfg.models[model]
    return TraderNet(generators, lag=cfg.data.lag, hidden=m.hidden, dropout=m.dropout)


def train(cfg: StudyConfig, ws: Workspace, regime: str, model: str, device: str | None = None) -> dict[str, Any]:
    """Train the S replicas of one model variant on one regime in one batched run.

    Replica r of every variant with the same architecture starts from the same
    weights and sees the same data: contrasts pair by replica. (Its generator also
    draws the shuffles, then the dropout masks, so a dropout variant's later
    shuffles differ from the dropout-free variant's.)
    """
    t, s, cell = cfg.train, cfg.seeds, cell_name(regime, model)
    dev = resolve_device(device or cfg.runtime.device)
    torch.set_num_threads(cfg.runtime.torch_threads)  # process-wide; every stage sets the same value
    windows = load_tensors(ws.windows(regime))
    net = _net(cfg, model, [make_generator(s.base, "init", r, device=dev) for r in range(s.count)]).to(dev)
    start = time.perf_counter()
    history, best = train_trader(
        net, _split(windows, "train").to(dev), _split(windows, "valid").to(dev),
        [make_generator(s.base, "train", r, device=dev) for r in range(s.count)],
        lr=t.lr, epochs=t.epochs, batch_size=t.batch_size, progress=cfg.runtime.progress, desc=cell)
    seconds = time.perf_counter() - start
    mcfg = cfg.models[model]
    meta = {"lag": str(cfg.data.lag), "hidden": str(mcfg.hidden), "dropout": str(mcfg.dropout),
            "replicas": str(s.count)}
    save_tensors(ws.weights(cell, "last"), net.state_dict(), metadata=meta)
    save_tensors(ws.weights(cell, "best"), best, metadata=meta)
    save_tensors(ws.model_dir(cell) / "history.safetensors", {"values": history.values},
                 metadata={"columns": json.dumps(history.columns)})
    atomic_write_bytes(ws.train_metrics(cell) / "history.tsv", replica_table(history).encode())
    summary = {"cell": cell, "replicas": s.count, "epochs": t.epochs, **final_summary(history, "valid_return")}
    write_json(ws.train_metrics(cell) / "summary.json", summary)
    log.info("trained %s: %d replicas x %d epochs on %s in %.1f s", cell, s.count, t.epochs, dev, seconds)
    return {**summary, "device": str(dev), "seconds": round(seconds, 2)}


def _load_history(ws: Workspace, cell: str) -> History:
    return History(load_tensors(ws.model_dir(cell) / "history.safetensors")["values"], TRADER_COLUMNS)


def evaluate(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """Held-out test metrics per replica, the baselines on the same draws, and the learned curve."""
    cell = cell_name(regime, model)
    torch.set_num_threads(cfg.runtime.torch_threads)
    windows, history = load_tensors(ws.windows(regime)), _load_history(ws, cell).values.numpy()
    nets = {}
    for which in ("last", "best"):  # the generators only shape the net: its weights are loaded
        nets[which] = _net(cfg, model, [torch.Generator() for _ in range(cfg.seeds.count)])
        nets[which].load_state_dict(load_tensors(ws.weights(cell, which)))
        nets[which].eval()
    train_w, test_w = _split(windows, "train"), _split(windows, "test")
    col = TRADER_COLUMNS.index
    result = ev.evaluate_cell(nets, train_w.x, train_w.y, test_w.x, test_w.y, history[:, :, col("valid_return")],
                              history[:, :, col("train_return")], make_source(cfg.data.regimes[regime]).oracle)
    write_json(ws.eval_metrics(cell), {"regime": regime, "model": model, "replicas": cfg.seeds.count, **result})
    oracle = result["baselines"].get("oracle", {}).get("mean_return")
    return {"cell": cell, "test_return": float(np.mean(result["per_seed"]["test_mean_return"])),
            "oracle_return": oracle, "gap": float(np.mean(result["per_seed"]["gap"]))}


def plot(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """The seed's 2x2 training picture for one cell, over all replicas."""
    cell = cell_name(regime, model)
    values = _load_history(ws, cell).values.numpy()
    atomic_write_bytes(ws.history_plot(cell), plots.history_png(values, list(TRADER_COLUMNS), cell))
    return {"cell": cell, "plot": ws.rel(ws.history_plot(cell))}
