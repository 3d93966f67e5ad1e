"""Seed blocks: a train cell's replicas kept in blocks of SHARD_ALIGN under .nt/blocks/, reused as seeds.count grows.

Replica r's initial weights, data rows and streams are keyed on r alone, so a
block of replicas trains to the same bytes whatever else is in the study. A
block is filed under `seed_block_key`: the train stage's params other than
seeds.count, its code, and a digest of the block's own rows of the windows. A
run of 48 seeds after one of 32 reads replicas 0-31 back and trains 32-47.
The folder is a cache: deleting it only costs retraining.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from neural_trader.params import StudyConfig

from .catalog import load_tensors, save_tensors
from .registry import ALL_STAGES, Item, code_digest

__all__ = ["seed_block_key", "rows_digest", "runs", "write_block", "read_block"]


def seed_block_key(cfg: StudyConfig, item: Item, lo: int, hi: int, digest: str) -> str:
    """What determines replicas lo..hi-1 of a train cell: train's key without seeds.count or the whole windows file.

    Replica r's weights, data rows and streams are keyed on r alone, so its
    training depends on the train stage's params other than the count, its
    code, and its own rows of the windows (`digest`, from `rows_digest`): a larger
    seeds.count reuses the blocks a smaller one trained.
    """
    spec = ALL_STAGES["train"]
    params = {k: cfg.section(k) for k in spec.params(cfg, item) if k != "seeds"}
    params["seeds.base"] = cfg.seeds.base
    payload = {"stage": "train-block", "item": item, "replicas": [lo, hi], "params": params, "rows": digest,
               "code": code_digest(spec)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def runs(blocks: list[tuple[int, int, Any]]) -> list[list[tuple[int, int, Any]]]:
    """Consecutive blocks (each starting where the one before ends) grouped together."""
    groups: list[list[tuple[int, int, Any]]] = []
    for block in blocks:
        if groups and groups[-1][-1][1] == block[0]:
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups


def rows_digest(rows: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(rows):
        h.update(k.encode() + str(tuple(rows[k].shape)).encode() + rows[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def write_block(path: Path, last: dict[str, torch.Tensor], best: dict[str, torch.Tensor], values: torch.Tensor) -> None:
    save_tensors(path, {**{f"last/{k}": v for k, v in last.items()}, **{f"best/{k}": v for k, v in best.items()},
                        "values": values})


def read_block(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    tensors = load_tensors(path)
    last = {k[5:]: v for k, v in tensors.items() if k.startswith("last/")}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    return last, best, tensors["values"]
