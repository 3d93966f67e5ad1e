"""One cell's held-out evaluation: every replica's metrics, the baselines on the same draws, the curves.

`seed_metrics` computes each replica's numbers from its own rows, so a cell
can be evaluated in blocks of replicas (`join_seed_metrics`) and summarised
once (`summarise_cell`), with the bytes of one pass over every replica
(`evaluate_cell`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neural_trader.evaluate import (CURVE_GRID, buy_and_hold_position, cash_position, oracle_fraction, policy_metrics, position_curve, replica_positions)

__all__ = ["evaluate_cell", "seed_metrics", "join_seed_metrics", "summarise_cell"]


def evaluate_cell(nets: dict[str, Any], train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                  test_y: torch.Tensor, valid_return: np.ndarray, train_return: np.ndarray,
                  oracle: Any) -> dict[str, Any]:
    """Held-out metrics of every replica of one cell, baselines on the same draws, the learned curve.

    Args:
        nets: {"last": final weights, "best": best-validation-epoch weights}, each
            an eval-mode module (S, n, lag) -> (S, n) positions.
        train_x, train_y, test_x, test_y: (S, n, lag) windows and (S, n) next returns.
        valid_return, train_return: (S, epochs) per-epoch history (train return in train mode).
        oracle: the source's `Oracle`, or None when its law is unknown.

    Returns a JSON-ready dict: per_seed lists (S,), baselines (means over seeds),
    the oracle's expected and realised return and the fraction of it captured,
    the learned position curve (S, grid) and the validation curves (S, epochs).
    The in-sample return is taken with the final weights in eval mode (no
    dropout), so the gap compares like with like. `seed_metrics` on blocks of
    replicas, joined by `join_seed_metrics`, then `summarise_cell` give the
    same bytes with less memory.
    """
    per, curve = seed_metrics(nets, train_x, train_y, test_x, test_y, oracle)
    return summarise_cell(per, curve, valid_return, train_return, oracle, int(test_x.shape[1]))


def seed_metrics(nets: dict[str, Any], train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, oracle: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every per-replica number of `evaluate_cell` ({name: (S,) array}) and the learned curve (S, grid).

    Each replica's numbers come from its own rows alone, so a block of
    replicas gets the values it gets in the whole cell. Baselines keep every
    metric per replica (keys "baseline:NAME:METRIC") for `summarise_cell`'s means.
    """
    per: dict[str, np.ndarray] = {}
    for which, net in nets.items():
        suffix = "" if which == "last" else f"_{which}"
        for k, v in policy_metrics(replica_positions(net, test_x), test_y).items():
            per[f"test_{k}{suffix}"] = np.asarray(v, dtype=float)
    last = nets["last"]
    replicas, lag = test_x.shape[0], test_x.shape[-1]
    curve = position_curve(last, lag, CURVE_GRID, replicas=replicas)  # (S, grid)
    with torch.no_grad():
        per["train_return"] = (last(train_x) * train_y).mean(dim=1).numpy()  # (S,), eval mode
    positions = {"cash": cash_position(test_x), "buy_and_hold": buy_and_hold_position(test_x)}
    if oracle is not None:
        positions["oracle"] = oracle.position(test_x)
    for name, pos in positions.items():
        for k, v in policy_metrics(pos, test_y).items():
            per[f"baseline:{name}:{k}"] = np.asarray(v)
    return per, curve


def join_seed_metrics(parts: list[tuple[dict[str, np.ndarray], np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`seed_metrics` of consecutive blocks of replicas, joined in order: those of the whole cell."""
    per = {k: np.concatenate([p[k] for p, _ in parts]) for k in parts[0][0]}
    return per, np.concatenate([c for _, c in parts])


def summarise_cell(per: dict[str, np.ndarray], curve: np.ndarray, valid_return: np.ndarray,
                   train_return: np.ndarray, oracle: Any, test_windows: int) -> dict[str, Any]:
    """`evaluate_cell`'s dict from `seed_metrics` of every replica and the (S, epochs) history."""
    per_seed: dict[str, list[float]] = {k: v.tolist() for k, v in per.items() if not k.startswith("baseline:")}
    in_sample = per["train_return"]
    per_seed["train_return_train_mode"] = train_return[:, -1].tolist()
    per_seed["gap"] = (in_sample - per["test_mean_return"]).tolist()
    per_seed["best_epoch"] = (valid_return.argmax(axis=1) + 1).astype(float).tolist()
    per_seed["valid_return_last"] = valid_return[:, -1].tolist()
    per_seed["valid_return_best"] = valid_return.max(axis=1).tolist()
    baselines: dict[str, dict[str, float]] = {}
    for key, v in per.items():
        if key.startswith("baseline:"):
            _, name, metric = key.split(":")
            baselines.setdefault(name, {})[metric] = float(np.mean(v))
            if metric == "mean_return":
                per_seed[f"{name}_return"] = np.asarray(v, dtype=float).tolist()
    mean_test = float(np.mean(per_seed["test_mean_return"]))
    realised = baselines["oracle"]["mean_return"] if oracle is not None else None
    return {
        "test_windows_per_seed": test_windows,
        "per_seed": per_seed,
        "baselines": baselines,
        "oracle_expected_return": oracle.expected_return() if oracle is not None else None,
        "oracle_fraction": oracle_fraction(mean_test, realised) if oracle is not None else None,
        "curve": {"last_return": CURVE_GRID.tolist(), "position": curve.tolist()},
        "valid_return_curve": np.round(valid_return, 7).tolist(),  # (S, epochs)
    }
