"""Policy evaluation on held-out test windows, baselines and the Bayes oracle.

A policy holds `position` in [0, 1] of one unit (0 = cash, 1 = fully long)
over the next step and earns position * next return. Shapes: test windows x
are (n, lag) past returns shared by every replica, `ret` (n,) their next
returns; a trained model gives positions (S, n), one row per replica.

The oracle is the Bayes-optimal long-only policy given the regime's true law:
it goes long exactly when the conditional mean of the next return is positive.
For AR(1) returns that is E[r_next | r_last] = rho * r_last > 0. For i.i.d.
returns every policy has expected return 0, and the oracle holds cash.

Nothing here reads or writes a file; inputs may be numpy arrays or torch
tensors (copied to the CPU), outputs are numpy arrays and floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .sources import make_source

__all__ = [
    "evaluate_cell",
    "seed_metrics",
    "join_seed_metrics",
    "summarise_cell",
    "policy_metrics",
    "cash_position",
    "buy_and_hold_position",
    "oracle_position",
    "baseline_positions",
    "oracle_expected_return",
    "oracle_fraction",
    "position_curve",
    "oracle_curve",
    "evaluate_cell",
    "CURVE_GRID",
    "METRICS",
]

#: the keys of `policy_metrics`
METRICS = ("mean_return", "mean_position", "sharpe", "hit_rate")


def _array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _last_return(x: Any) -> np.ndarray:
    x = _array(x, "x")
    if x.ndim < 2 or x.shape[-1] < 1:
        raise ValueError(f"x must hold windows (..., n, lag) with lag >= 1, got shape {x.shape}")
    return x[..., -1]


# ------------------------------------------------------------------ metrics
def policy_metrics(position: Any, ret: Any) -> dict[str, np.ndarray]:
    """Per-replica performance of positions against the realised next returns.

    Args:
        position: (S, n) positions in [0, 1], one row per replica; a (n,) vector
            is one replica (S = 1).
        ret: (n,) next returns shared by all replicas, or (S, n).

    Returns a dict of float64 arrays of shape (S,):
        mean_return: mean over steps of the per-step P&L position * ret.
        mean_position: mean position (0 = always cash, 1 = always long).
        sharpe: per-step Sharpe ratio, mean / std of the per-step P&L (population
            std, ddof=0, not annualised); 0 when the P&L does not vary (e.g. cash).
        hit_rate: directional accuracy, the fraction of steps where
            sign(position - 0.5) equals sign(ret), i.e. more than half long (> 0.5)
            before a rise or less than half long (< 0.5) before a fall. Ties
            (position exactly 0.5, or ret exactly 0) count as misses. Always
            defined; a policy that ignores the data scores about the fraction of
            steps whose return has its favoured sign (~0.5 for symmetric returns).

    Raises ValueError for empty inputs, mismatched shapes, or a position outside
    [0, 1] (NaN included).
    """
    pos = _array(position, "position")
    r = _array(ret, "ret")
    if pos.ndim == 1:
        pos = pos[None, :]
    if pos.ndim != 2 or pos.shape[1] == 0:
        raise ValueError(f"position must be (S, n) with n >= 1, got shape {pos.shape}")
    if r.ndim not in (1, 2) or r.shape[-1] != pos.shape[1] or (r.ndim == 2 and r.shape[0] != pos.shape[0]):
        raise ValueError(f"ret must be (n,) or (S, n) matching position {pos.shape}, got shape {r.shape}")
    if not np.all((pos >= 0) & (pos <= 1)):
        bad = pos[~((pos >= 0) & (pos <= 1))]
        raise ValueError(f"positions must lie in [0, 1], found e.g. {bad.flat[0]!r}")
    r = np.broadcast_to(r, pos.shape)
    pnl = pos * r
    mean = pnl.mean(axis=1)
    std = pnl.std(axis=1)
    # a constant P&L leaves rounding-level std; treat it as exactly flat
    scale = np.sqrt((pnl**2).mean(axis=1))
    flat = std <= 1e-12 * scale
    sharpe = np.where(flat, 0.0, mean / np.where(flat, 1.0, std))
    hit = (np.sign(pos - 0.5) * np.sign(r)) > 0
    return {
        "mean_return": mean,
        "mean_position": pos.mean(axis=1),
        "sharpe": sharpe,
        "hit_rate": hit.mean(axis=1),
    }


# ---------------------------------------------------------------- baselines
def cash_position(x: Any) -> np.ndarray:
    """Never invest: position 0 on every window of x (..., n, lag) -> (..., n)."""
    return np.zeros_like(_last_return(x))


def buy_and_hold_position(x: Any) -> np.ndarray:
    """Always fully long: position 1 on every window of x (..., n, lag) -> (..., n)."""
    return np.ones_like(_last_return(x))


def oracle_position(x: Any, regime: Any) -> np.ndarray:
    """The Bayes-optimal long-only position on each window of x (..., n, lag) -> (..., n).

    AR(1): 1 where rho * x[..., -1] > 0 (the conditional mean of the next return
    is positive), else 0. i.i.d.: 0 everywhere, since no position has positive
    expected return (cash ties with every other policy; it is the zero-risk choice).
    The policy is the regime's source's oracle (`neural_trader.sources`).
    """
    return _oracle(regime).position(x)


def _oracle(regime: Any):
    source = make_source(regime)
    if source.oracle is None:
        raise ValueError(f"regime {regime!r} has no known law, so no oracle")
    return source.oracle


def baseline_positions(x: Any, regime: Any) -> dict[str, np.ndarray]:
    """{'cash', 'buy_and_hold', 'oracle'}: each baseline's (n,) positions on x."""
    return {
        "cash": cash_position(x),
        "buy_and_hold": buy_and_hold_position(x),
        "oracle": oracle_position(x, regime),
    }


def oracle_expected_return(regime: Any) -> float:
    """The oracle's expected return per step, E[max(rho * r_last, 0)], in closed form.

    For the stationary AR(1) with innovation std vol, r_last ~ N(0, s^2) with
    s = vol / sqrt(1 - rho^2), so rho * r_last ~ N(0, (rho s)^2) and
    E[max(rho r_last, 0)] = |rho| * s / sqrt(2 pi). For i.i.d. returns it is 0.
    """
    return _oracle(regime).expected_return()


def oracle_fraction(variant_return: Any, oracle_return: float, *, tol: float = 1e-12) -> Any:
    """The share of the oracle's return a variant captures: variant_return / oracle_return.

    `variant_return` may be a scalar (returns a float) or per-seed values
    (returns an array). Returns None when |oracle_return| <= tol or it is not
    finite: in the i.i.d. regime the oracle earns 0 and the ratio is meaningless.
    """
    oracle = float(oracle_return)
    if not math.isfinite(oracle) or abs(oracle) <= tol:
        return None
    value = _array(variant_return, "variant_return") / oracle
    return float(value) if value.ndim == 0 else value


# ------------------------------------------------------------------- curves
def _grid(grid: Any) -> np.ndarray:
    g = _array(grid, "grid")
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"grid must be a non-empty 1-D array, got shape {g.shape}")
    return g


def position_curve(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    lag: int,
    grid: Any,
    *,
    replicas: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The learned position as a function of the last return, other lags held at 0.

    Builds inputs (G, lag), G = len(grid), whose last column is the grid and
    other columns 0, and returns model_fn(inputs) as a float64 array, evaluated
    without gradients. With `replicas` = S the inputs are expanded to
    (S, G, lag), the shape a TraderNet takes, so
    `position_curve(net, lag, grid, replicas=net.replicas)` gives (S, G).
    The inputs are float32 on `device`; None uses the device of model_fn's
    first parameter when it has one, else the CPU. Put an nn.Module in eval
    mode first if it behaves differently in training.
    """
    if not isinstance(lag, int) or lag < 1:
        raise ValueError(f"lag must be an integer >= 1, got {lag!r}")
    g = _grid(grid)
    if device is None:
        params = getattr(model_fn, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        device = first.device if first is not None else "cpu"
    inputs = torch.zeros(g.size, lag, dtype=torch.float32, device=device)
    inputs[:, -1] = torch.as_tensor(g, dtype=torch.float32, device=device)
    if replicas is not None:
        if not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        inputs = inputs.unsqueeze(0).expand(replicas, -1, -1).contiguous()
    with torch.no_grad():
        out = model_fn(inputs)
    return _array(out, "model output")


def oracle_curve(regime: Any, grid: Any) -> np.ndarray:
    """The oracle's position at each last return in grid: a 0/1 step at 0 (all 0 for i.i.d.)."""
    return _oracle(regime).curve(_grid(grid))


# ---------------------------------------------------------------- one cell
#: last returns at which the learned position curve is read (other lags 0)
CURVE_GRID = np.linspace(-3.0, 3.0, 61)


#: rows of windows a forward pass of `replica_positions` takes at once
REPLICA_CHUNK = 65536


@torch.no_grad()
def replica_positions(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      chunk: int = REPLICA_CHUNK) -> torch.Tensor:
    """(S, n, lag) windows, replica s on its own rows -> (S, n) positions, in chunks of rows."""
    return torch.cat([net(x[:, lo:lo + chunk]) for lo in range(0, x.shape[1], chunk)], dim=1)


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
