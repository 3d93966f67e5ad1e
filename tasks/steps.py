"""The study's stages as plain functions: read inputs from the workspace, call the core, write outputs.

A stage is identified by its name and item (a regime, or a regime-model cell).
Both front doors run these same functions: the Prefect tasks in
`tasks.pipeline` and the DVC stage commands (`neural-trader stage ...`), so
both produce the same bytes.

`run_stage` makes every stage resumable. Its key hashes what determines the
output: the stage's params sections, the content of its input files and the
source of its code. After a successful step a stamp records the key and the
digest of every output; a later call with the same key and intact outputs
returns the recorded summary without recomputing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neural_trader import evaluate as ev
from neural_trader import plots
from neural_trader.config import StudyConfig
from neural_trader.data import generate_returns, make_generator, window_returns, Windows
from neural_trader.models import TraderNet
from neural_trader.train import TRADER_COLUMNS, resolve_device, train_trader

from .workspace import (
    Workspace,
    atomic_write_bytes,
    file_digest,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)

log = logging.getLogger("neural_trader")

Item = dict[str, str]


def cell_name(regime: str, model: str) -> str:
    return f"{regime}-{model}"


def item_id(item: Item) -> str:
    return "-".join(item[k] for k in ("regime", "model") if k in item)


# ----------------------------------------------------------------------- stages
def generate(cfg: StudyConfig, ws: Workspace, regime: str) -> dict[str, Any]:
    """Draw train/valid returns per replica and one large shared test set, for one regime."""
    reg, d, s = cfg.data.regimes[regime], cfg.data, cfg.seeds

    def draw(n: int, split: str, replica: int | None) -> torch.Tensor:
        gen = make_generator(s.base, "data", regime, split, "shared" if replica is None else replica)
        return generate_returns(reg, n, d.length, generator=gen)

    train = torch.stack([draw(d.n_train, "train", r) for r in range(s.count)])  # (S, N, T)
    valid = torch.stack([draw(d.n_valid, "valid", r) for r in range(s.count)])  # (S, M, T)
    test = draw(d.n_test, "test", None)  # (n_test, T)
    save_tensors(ws.returns(regime), {"train": train, "valid": valid, "test": test},
                 metadata={"regime": json.dumps(reg.model_dump(mode="json"))})
    lag1 = float(np.corrcoef(test[:, 1:].reshape(-1).numpy(), test[:, :-1].reshape(-1).numpy())[0, 1])
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
    """(n, lag) shared test windows -> (S, n) positions of every replica."""
    parts = []
    for lo in range(0, x.shape[0], chunk):
        xb = x[lo:lo + chunk].unsqueeze(0).expand(net.replicas, -1, -1)
        parts.append(net(xb))
    return torch.cat(parts, dim=1)


CURVE_GRID = np.linspace(-3.0, 3.0, 61)


def evaluate(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """Held-out test metrics per replica, the baselines on the same draws, and the learned curve."""
    cell, reg = cell_name(regime, model), cfg.data.regimes[regime]
    windows = load_tensors(ws.windows(regime))
    test = _split(windows, "test")
    history = load_tensors(ws.model_dir(cell) / "history.safetensors")["values"].numpy()
    per_seed: dict[str, list[float]] = {}
    for which in ("last", "best"):
        net = _load_net(cfg, ws, cell, model, which)
        metrics = ev.policy_metrics(_positions(net, test.x), test.y)
        suffix = "" if which == "last" else "_best"
        for k, v in metrics.items():
            per_seed[f"test_{k}{suffix}"] = np.asarray(v, dtype=float).tolist()
    last_net = _load_net(cfg, ws, cell, model, "last")
    curve_x = torch.zeros(len(CURVE_GRID), cfg.data.lag)
    curve_x[:, -1] = torch.as_tensor(CURVE_GRID, dtype=torch.float32)
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
    baselines = {}
    for name, pos in (("cash", ev.cash_position(test.x)), ("buy_and_hold", ev.buy_and_hold_position(test.x)),
                      ("oracle", ev.oracle_position(test.x, reg))):
        m = ev.policy_metrics(torch.as_tensor(pos).reshape(1, -1), test.y)
        baselines[name] = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()}
    oracle_expected = ev.oracle_expected_return(reg)
    mean_test = float(np.mean(per_seed["test_mean_return"]))
    result = {
        "regime": regime,
        "model": model,
        "replicas": cfg.seeds.count,
        "test_windows": int(test.x.shape[0]),
        "per_seed": per_seed,
        "baselines": baselines,
        "oracle_expected_return": oracle_expected,
        "oracle_fraction": ev.oracle_fraction(mean_test, baselines["oracle"]["mean_return"]),
        "curve": {"last_return": CURVE_GRID.tolist(), "position": curve.tolist()},
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


# --------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Stage:
    """What a stage reads, writes and depends on; dvc.yaml declares the same."""

    name: str
    fn: Callable[..., dict[str, Any]]
    params: Callable[[StudyConfig, Item], list[str]]
    code: tuple[str, ...]  # modules whose source is part of the key
    inputs: Callable[[StudyConfig, Workspace, Item], list[Path]]
    outputs: Callable[[StudyConfig, Workspace, Item], list[Path]]


def _cells_eval(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    return [p for r, m in cfg.cells
            for p in (ws.eval_metrics(cell_name(r, m)), ws.model_dir(cell_name(r, m)) / "history.safetensors")]


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("generate", generate,
              lambda c, i: ["seeds", "data.n_train", "data.n_valid", "data.n_test", "data.length",
                            f"data.regimes.{i['regime']}"],
              ("neural_trader.data", "neural_trader.config"),
              lambda c, w, i: [],
              lambda c, w, i: [w.returns(i["regime"])]),
        Stage("window", window,
              lambda c, i: ["data.lag"],
              ("neural_trader.data",),
              lambda c, w, i: [w.returns(i["regime"])],
              lambda c, w, i: [w.windows(i["regime"])]),
        Stage("train", train,
              lambda c, i: ["seeds", "data.lag", "train", f"models.{i['model']}"],
              ("neural_trader.models", "neural_trader.train", "neural_trader.data"),
              lambda c, w, i: [w.windows(i["regime"])],
              lambda c, w, i: [w.weights(cell_name(**i), "last"), w.weights(cell_name(**i), "best"),
                               w.model_dir(cell_name(**i)) / "history.safetensors",
                               w.train_metrics(cell_name(**i)) / "summary.json",
                               w.train_metrics(cell_name(**i)) / "history.tsv"]),
        Stage("evaluate", evaluate,
              lambda c, i: ["seeds.count", "data.lag", f"models.{i['model']}", f"data.regimes.{i['regime']}"],
              ("neural_trader.evaluate", "neural_trader.models"),
              lambda c, w, i: [w.windows(i["regime"]), w.weights(cell_name(**i), "last"),
                               w.weights(cell_name(**i), "best"), w.model_dir(cell_name(**i)) / "history.safetensors"],
              lambda c, w, i: [w.eval_metrics(cell_name(**i))]),
        Stage("plot", plot,
              lambda c, i: [],
              ("neural_trader.plots",),
              lambda c, w, i: [w.model_dir(cell_name(**i)) / "history.safetensors"],
              lambda c, w, i: [w.history_plot(cell_name(**i))]),
        Stage("compare", compare,
              lambda c, i: ["compare", "data", "models", "seeds", "train"],
              ("neural_trader.stats", "neural_trader.plots", "tasks.report"),
              lambda c, w, i: _cells_eval(c, w),
              lambda c, w, i: _comparison_outputs(c, w)),
    )
}


def _comparison_outputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    from .report import comparison_outputs

    return comparison_outputs(cfg, ws)


def _code_digest(modules: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in sorted({*modules, __name__}):
        path = importlib.import_module(name).__file__
        h.update(name.encode() + b"\0" + Path(path).read_bytes())
    return h.hexdigest()


def stage_key(stage: str, cfg: StudyConfig, ws: Workspace, item: Item) -> str:
    """Hash of everything that determines a stage's outputs (not the workspace's history)."""
    spec = STAGES[stage]
    payload = {
        "stage": stage,
        "item": item,
        "params": {k: cfg.section(k) for k in spec.params(cfg, item)},
        "inputs": {ws.rel(p): file_digest(p) for p in spec.inputs(cfg, ws, item)},
        "code": _code_digest(spec.code),
        "workspace": str(ws.root),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def outputs_valid(stage: str, cfg: StudyConfig, ws: Workspace, item: Item, key: str) -> dict[str, Any] | None:
    """The recorded summary if the stamp matches `key` and every output is intact, else None."""
    stamp_path = ws.stamp(stage, item_id(item))
    try:
        stamp = read_json(stamp_path)
    except (OSError, ValueError):
        return None
    if stamp.get("key") != key:
        return None
    outputs = STAGES[stage].outputs(cfg, ws, item)
    recorded = stamp.get("outputs", {})
    if set(recorded) != {ws.rel(p) for p in outputs}:
        return None
    if any(file_digest(p) != recorded[ws.rel(p)] for p in outputs):
        return None
    return stamp.get("summary")


def run_stage(stage: str, cfg: StudyConfig, ws: Workspace | str | Path, **item: str) -> dict[str, Any]:
    """Run one stage unless its outputs are already up to date; return its summary."""
    ws = ws if isinstance(ws, Workspace) else Workspace(Path(ws))
    spec = STAGES[stage]
    missing = [ws.rel(p) for p in spec.inputs(cfg, ws, item) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"stage {stage}@{item_id(item) or '-'} needs {', '.join(missing)}: run the upstream stages first")
    key = stage_key(stage, cfg, ws, item)
    if (summary := outputs_valid(stage, cfg, ws, item, key)) is not None:
        log.info("%s@%s is up to date", stage, item_id(item) or "-")
        return {**summary, "reused": True}
    summary = spec.fn(cfg, ws, **item)
    outputs = {ws.rel(p): file_digest(p) for p in spec.outputs(cfg, ws, item)}
    if missing_out := [p for p, d in outputs.items() if d == "missing"]:
        raise RuntimeError(f"stage {stage} did not write {missing_out}")
    write_json(ws.stamp(stage, item_id(item)), {"key": key, "outputs": outputs, "summary": summary})
    return {**summary, "reused": False}
