"""Policy evaluation on held-out windows: what a position earns, the baselines, the learned curve.

A policy holds `position` in [0, 1] of one unit (0 = cash, 1 = fully long)
over the next step and earns position * next return. Shapes: test windows x
are (n, lag) past returns shared by every replica, `ret` (n,) their next
returns; a trained model gives positions (S, n), one row per replica.

A law's Bayes oracle is the synthetic study's (`neural_trader.synthetic.sources`);
here `oracle_fraction` only relates a return to the oracle's.

Nothing here reads or writes a file; inputs may be numpy arrays or torch
tensors (copied to the CPU), outputs are numpy arrays and floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


__all__ = [
    "policy_metrics",
    "cash_position",
    "buy_and_hold_position",
    "oracle_fraction",
    "position_curve",
    "curve_grid",
    "replica_positions",
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
def curve_grid(grid: Any) -> np.ndarray:
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
    g = curve_grid(grid)
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
