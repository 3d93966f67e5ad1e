"""Per-epoch training histories as tables: the mean and spread over replicas, and the final summary."""

from __future__ import annotations

from typing import Any

import numpy as np

from neural_trader.train import History

__all__ = ["replica_table", "single_table", "read_table", "final_summary"]


def replica_table(history: History) -> str:
    """TSV with one row per epoch: each column's mean and sd over replicas (what DVC plots)."""
    values = history.values.numpy()  # (S, E, k)
    mean, sd = values.mean(axis=0), values.std(axis=0)
    lines = ["epoch\t" + "\t".join(f"{c}\t{c}_sd" for c in history.columns)]
    for e in range(values.shape[1]):
        lines.append(f"{e + 1}\t" + "\t".join(f"{mean[e, j]:.6g}\t{sd[e, j]:.6g}" for j in range(len(history.columns))))
    return "\n".join(lines) + "\n"


def single_table(history: History) -> str:
    """TSV with one row per epoch of replica 0's values (the warm-ups train one replica)."""
    lines = ["\t".join(("epoch", *history.columns))]
    for e, row in enumerate(history.values[0].tolist()):  # (epochs, columns)
        lines.append("\t".join((str(e + 1), *(f"{v:.6g}" for v in row))))
    return "\n".join(lines) + "\n"


def read_table(text: str) -> dict[str, np.ndarray]:
    """A history TSV as column name -> (epochs,) array."""
    header, *rows = text.splitlines()
    values = np.array([[float(v) for v in row.split("\t")] for row in rows])  # (epochs, 1 + columns)
    return {c: values[:, j] for j, c in enumerate(header.split("\t"))}


def final_summary(history: History, select: str) -> dict[str, Any]:
    """The last epoch's mean over replicas per column, and the mean best epoch by column `select`."""
    values = history.values.numpy()
    mean = values.mean(axis=0)
    best = history.column(select).numpy().argmax(axis=1) + 1
    return {"final": {c: float(mean[-1, j]) for j, c in enumerate(history.columns)},
            "best_epoch_mean": float(best.mean())}
