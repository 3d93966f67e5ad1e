"""The study's stage bodies: load from the catalog, call the core, save.

generate -> window -> train -> evaluate -> plot, per regime or per
(regime, model) cell; compare is `stages.compare`. The flow may train a cell as
seed shards (`train_shard`, then `join_shards` writes train's outputs). What each reads and writes
is declared in `stages.registry`; `stages.run.run_stage` runs them for both
front doors.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import numpy as np
import torch

from neural_trader.synthetic import metrics as cm
from neural_trader import plots
from neural_trader.params import StudyConfig
from neural_trader.data import Windows, lag1_autocorrelation, make_generator, window_returns
from neural_trader.history import final_summary, replica_table
from neural_trader.memory import batch_budget, evaluation_bytes, replica_blocks, trainer_bytes
from neural_trader.models import TraderNet
from neural_trader.seeding import SHARD_ALIGN, shard_names, shard_range
from neural_trader.synthetic.sources import make_source
from neural_trader.streams import Streams
from neural_trader.trader import TRADER_COLUMNS, train_trader
from neural_trader.train import History, resolve_device

from .catalog import Workspace, atomic_write_bytes, load_rows, load_tensors, save_tensors, write_json
from .blocks import read_block, runs, rows_digest, seed_block_key, write_block
from .progress import bar_label, epoch_bar
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
    lag1 = lag1_autocorrelation(test)
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
    weights, sees the same data and the same epoch permutations (its counter-based
    streams): contrasts pair by replica, and a dropout variant differs from the
    dropout-free one by its masks alone.
    """
    last, best, values, run = _train_replicas(cfg, ws, regime, model, 0, cfg.seeds.count, device)
    return {**_save_cell(cfg, ws, regime, model, last, best, values), **run}


def train_shard(cfg: StudyConfig, ws: Workspace, regime: str, model: str, shard: str,
                device: str | None = None) -> dict[str, Any]:
    """Train one seed shard of a cell (replicas lo..hi of `shard_range`) into .nt/shards/; `join_shards` joins them.

    Replica r's generator and streams are keyed on r alone and the batched kernels never
    mix replicas, so the shards' rows, joined in order, are one batch's bytes.
    """
    lo, hi = shard_range(cfg.seeds.count, shard)
    last, best, values, run = _train_replicas(cfg, ws, regime, model, lo, hi, device)
    folder = ws.seed_shard(cell_name(regime, model), shard)
    save_tensors(folder / "last.safetensors", last)
    save_tensors(folder / "best.safetensors", best)
    save_tensors(folder / "history.safetensors", {"values": values})
    return {"cell": cell_name(regime, model), "shard": shard, "replicas": [lo, hi], **run,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def join_shards(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """The train stage's outputs from a cell's `runtime.seed_shards` shards, byte for byte those of one batch."""
    cell = cell_name(regime, model)
    folders = [ws.seed_shard(cell, shard) for shard in shard_names(cfg.runtime.seed_shards)]
    if missing := [ws.rel(f) for f in folders if not (f / "history.safetensors").is_file()]:
        raise FileNotFoundError(f"train@{cell} joins {len(folders)} seed shards; missing {', '.join(missing)}: "
                                "run their train_shard tasks first")
    parts = {which: [load_tensors(f / f"{which}.safetensors") for f in folders] for which in ("last", "best")}
    joined = {which: {k: torch.cat([p[k] for p in ps]) for k in ps[0]} for which, ps in parts.items()}
    values = torch.cat([load_tensors(f / "history.safetensors")["values"] for f in folders])
    return {**_save_cell(cfg, ws, regime, model, joined["last"], joined["best"], values), "shards": len(folders)}


def _train_replicas(cfg: StudyConfig, ws: Workspace, regime: str, model: str, lo: int, hi: int,
                    device: str | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, dict]:
    """Replicas lo..hi of a cell: last and best weights, history values and run facts.

    Replicas come in seed blocks of SHARD_ALIGN, each kept under .nt/blocks/
    by what determines it (`registry.seed_block_key`: train's params but
    seeds.count, its code, its own rows of the windows). A block kept from an
    earlier run is read back; the others train together, in batches that fit
    the memory budget, each reading only its rows. So raising seeds.count
    trains only the new replicas, and any grouping gives one batch's bytes.
    """
    cell, item = cell_name(regime, model), {"regime": regime, "model": model}
    dev = resolve_device(device or cfg.runtime.device)
    torch.set_num_threads(cfg.runtime.torch_threads)  # process-wide; every stage sets the same value
    kept, missing = {}, []
    for a in range(lo, hi, SHARD_ALIGN):
        b = min(a + SHARD_ALIGN, hi)
        rows = load_rows(ws.windows(regime), _TRAIN_ROWS, slice(a, b))
        path = ws.seed_block(cell, a, b, seed_block_key(cfg, item, a, b, rows_digest(rows)))
        if path.is_file():
            kept[a] = read_block(path)
        else:
            missing.append((a, b, path))
    start, batches, trained = time.perf_counter(), 0, 0
    for group in runs(missing):  # consecutive blocks to train, one range at a time
        last, best, values, batches_here = _train_range(cfg, ws, regime, model, group[0][0], group[-1][1], dev)
        batches, trained = batches + batches_here, trained + group[-1][1] - group[0][0]
        for a, b, path in group:
            part = slice(a - group[0][0], b - group[0][0])
            block = ({k: v[part] for k, v in last.items()}, {k: v[part] for k, v in best.items()}, values[part])
            write_block(path, *block)
            kept[a] = block
    seconds = time.perf_counter() - start
    # the seconds last: tests/flows/test_concurrency.py reads them from the record's args
    log.info("trained %s replicas %d-%d (%d trained, %d reused) on %s in %.1f s", cell, lo, hi - 1, trained,
             hi - lo - trained, dev, seconds)
    last, best, values = _joined([kept[a] for a in sorted(kept)])
    return last, best, values, {"device": str(dev), "seconds": round(seconds, 2), "blocks": batches,
                                "trained_replicas": trained, "reused_replicas": hi - lo - trained}


_TRAIN_ROWS = ("train_x", "train_y", "valid_x", "valid_y")


def _train_range(cfg: StudyConfig, ws: Workspace, regime: str, model: str, lo: int, hi: int,
                 dev: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, int]:
    """Replicas lo..hi trained in batches that fit the memory budget; also the number of batches."""
    t, s, cell = cfg.train, cfg.seeds, cell_name(regime, model)
    (shape,) = cfg.train_shapes(model)
    batches = [(lo + a, lo + b) for a, b in replica_blocks(hi - lo, trainer_bytes(shape), batch_budget(cfg.runtime, dev))]
    parts = []
    for b_lo, b_hi in batches:
        rows = load_rows(ws.windows(regime), _TRAIN_ROWS, slice(b_lo, b_hi))
        # initial weights from CPU generators, the epochs' draws from counter-based streams: the same bits on any device
        net = _net(cfg, model, [make_generator(s.base, "init", r) for r in range(b_lo, b_hi)]).to(dev)
        history, best = train_trader(
            net, _split(rows, "train").to(dev), _split(rows, "valid").to(dev),
            Streams.keyed(s.base, "train", replicas=range(b_lo, b_hi)),
            lr=t.lr, epochs=t.epochs, batch_size=t.batch_size,
            on_epoch=epoch_bar(cfg.runtime.progress, bar_label(ws, cell)))
        parts.append(({k: v.cpu() for k, v in net.state_dict().items()}, {k: v.cpu() for k, v in best.items()},
                      history.values))
    return (*_joined(parts), len(batches))


def _joined(parts: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]]
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """(last, best, history values) of consecutive blocks of replicas, joined along the replica axis."""
    last, best = ({k: torch.cat([p[i][k] for p in parts]) for k in parts[0][i]} for i in (0, 1))
    return last, best, torch.cat([p[2] for p in parts])


def _save_cell(cfg: StudyConfig, ws: Workspace, regime: str, model: str, last: dict[str, torch.Tensor],
               best: dict[str, torch.Tensor], values: torch.Tensor) -> dict[str, Any]:
    """Write the train stage's outputs of one cell; its summary over every replica."""
    cell, mcfg, history = cell_name(regime, model), cfg.models[model], History(values, TRADER_COLUMNS)
    meta = {"lag": str(cfg.data.lag), "hidden": str(mcfg.hidden), "dropout": str(mcfg.dropout),
            "replicas": str(cfg.seeds.count)}
    save_tensors(ws.weights(cell, "last"), last, metadata=meta)
    save_tensors(ws.weights(cell, "best"), best, metadata=meta)
    save_tensors(ws.model_dir(cell) / "history.safetensors", {"values": values},
                 metadata={"columns": json.dumps(history.columns)})
    atomic_write_bytes(ws.train_metrics(cell) / "history.tsv", replica_table(history).encode())
    summary = {"cell": cell, "replicas": cfg.seeds.count, "epochs": cfg.train.epochs,
               **final_summary(history, "valid_return")}
    write_json(ws.train_metrics(cell) / "summary.json", summary)
    return summary


def _load_history(ws: Workspace, cell: str) -> History:
    return History(load_tensors(ws.model_dir(cell) / "history.safetensors")["values"], TRADER_COLUMNS)


def evaluate(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """Held-out test metrics per replica, the baselines on the same draws, and the learned curve.

    Replicas are evaluated in blocks that fit the memory budget, as they train,
    each reading its own rows: the result is the same bytes for any blocks.
    """
    cell, d = cell_name(regime, model), cfg.data
    torch.set_num_threads(cfg.runtime.torch_threads)
    history = _load_history(ws, cell).values.numpy()
    weights = {which: load_tensors(ws.weights(cell, which)) for which in ("last", "best")}
    per_series = d.length - d.lag  # windows a series gives
    per_replica = evaluation_bytes(d.n_test * per_series, d.n_train * per_series, d.lag, cfg.models[model].hidden)
    oracle = make_source(d.regimes[regime]).oracle
    parts = []
    for lo, hi in replica_blocks(cfg.seeds.count, per_replica, batch_budget(cfg.runtime, torch.device("cpu"))):
        rows = load_rows(ws.windows(regime), ("train_x", "train_y", "test_x", "test_y"), slice(lo, hi))
        nets = {}
        for which, state in weights.items():  # the generators only shape the net: its weights are loaded
            nets[which] = _net(cfg, model, [torch.Generator() for _ in range(hi - lo)])
            nets[which].load_state_dict({k: v[lo:hi] for k, v in state.items()})
            nets[which].eval()
        train_w, test_w = _split(rows, "train"), _split(rows, "test")
        parts.append(cm.seed_metrics(nets, train_w.x, train_w.y, test_w.x, test_w.y, oracle))
    col = TRADER_COLUMNS.index
    result = cm.summarise_cell(*cm.join_seed_metrics(parts), history[:, :, col("valid_return")],
                               history[:, :, col("train_return")], oracle, d.n_test * per_series)
    write_json(ws.eval_metrics(cell), {"regime": regime, "model": model, "replicas": cfg.seeds.count, **result})
    oracle_return = result["baselines"].get("oracle", {}).get("mean_return")
    return {"cell": cell, "test_return": float(np.mean(result["per_seed"]["test_mean_return"])),
            "oracle_return": oracle_return, "gap": float(np.mean(result["per_seed"]["gap"])), "blocks": len(parts)}


def plot(cfg: StudyConfig, ws: Workspace, regime: str, model: str) -> dict[str, Any]:
    """The seed's 2x2 training picture for one cell, over all replicas."""
    cell = cell_name(regime, model)
    values = _load_history(ws, cell).values.numpy()
    atomic_write_bytes(ws.history_plot(cell), plots.history_png(values, list(TRADER_COLUMNS), cell))
    return {"cell": cell, "plot": ws.rel(ws.history_plot(cell))}
