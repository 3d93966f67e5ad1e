"""A task-agnostic minibatch trainer over S replicas, and the trader's use of it.

The trainer knows nothing about trading: it takes a replica model, a loss that
returns one value per replica, and per-replica generators that drive the epoch
shuffle and any dropout noise. Summing the per-replica losses keeps each
replica's gradient its own, and RMSprop is elementwise, so S replicas trained in
one batched computation equal S runs of one replica with the same generators.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Windows

__all__ = ["resolve_device", "History", "fit", "trader_loss", "trader_stats", "train_trader", "TRADER_COLUMNS"]

Stats = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (out, y) -> (S, k)


def resolve_device(device: str | torch.device) -> torch.device:
    """'cpu', 'cuda' (or 'cuda:N') or 'auto' (cuda when available) as a torch.device."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but no CUDA device is available (allowed here: auto, cpu)")
        return torch.device(name)
    raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N; got {name!r}")


@dataclass(frozen=True)
class History:
    """Per-epoch statistics: values (S, epochs, len(columns)), train columns first."""

    values: torch.Tensor
    columns: tuple[str, ...]

    def column(self, name: str) -> torch.Tensor:  # (S, epochs)
        return self.values[..., self.columns.index(name)]


def _check_fit_args(lr: float, epochs: int, batch_size: int, n: int, replicas: int, gens: int) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if n < 1:
        raise ValueError("training data must hold at least one row per replica")
    if gens != replicas:
        raise ValueError(f"need one generator per replica: {gens} generators for {replicas} replicas")


def fit(
    model: nn.Module,
    loss_fn: Stats,
    x: torch.Tensor,
    y: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    batch_stats: Stats | None = None,
    valid_stats: Callable[[nn.Module], torch.Tensor] | None = None,
    columns: Sequence[str] = (),
    keep_best: int | None = None,
    progress: bool | None = None,
    desc: str = "train",
) -> tuple[History, dict[str, torch.Tensor] | None]:
    """Train every replica of `model` with RMSprop on minibatches reshuffled each epoch.

    Args:
        model: replica model; `model(xb, noise)` maps (S, B, ...) to (S, B, ...).
            It may offer `sample_noise(n, generators)` for per-row dropout noise.
        loss_fn: (out, y) -> (S,) loss per replica, averaged over the batch.
        x, y: (S, n, ...) training rows of each replica, on the training device.
        generators: one per replica, on the training device; each draws its
            replica's epoch permutation and noise, in that order.
        batch_stats: (out, y) -> (S, k) statistics averaged over an epoch's batches.
        valid_stats: model -> (S, m), called after each epoch in eval mode without gradients.
        columns: names of the k + m statistics.
        keep_best: index of a column to maximise; the weights of each replica's
            best epoch are returned alongside the history.
        progress: tqdm bar over epochs; None shows it only on a terminal.

    Returns:
        The history and, with `keep_best`, each replica's best-epoch state dict.
    """
    replicas, n = x.shape[0], x.shape[1]
    _check_fit_args(lr, epochs, batch_size, n, replicas, len(generators))
    optim = torch.optim.RMSprop(model.parameters(), lr=lr)
    rows = torch.arange(replicas, device=x.device).unsqueeze(1)  # (S, 1)
    starts = range(0, n, batch_size)
    sample_noise = getattr(model, "sample_noise", None)
    history: list[torch.Tensor] = []
    best_score = best_state = None
    show = sys.stderr.isatty() if progress is None else progress
    for _ in tqdm(range(epochs), desc=desc, disable=not show, leave=False):
        model.train()
        perm = torch.stack([torch.randperm(n, generator=g, device=g.device) for g in generators])  # (S, n)
        xs, ys = x[rows, perm], y[rows, perm]  # contiguous, shuffled per replica
        noise = sample_noise(n, generators) if sample_noise else None
        totals = None
        for lo in starts:
            hi = lo + batch_size
            out = model(xs[:, lo:hi], None if noise is None else noise[:, lo:hi])
            loss = loss_fn(out, ys[:, lo:hi])  # (S,)
            optim.zero_grad(set_to_none=True)
            loss.sum().backward()
            optim.step()
            if batch_stats is not None:
                step = batch_stats(out.detach(), ys[:, lo:hi])
                totals = step if totals is None else totals + step
        parts = [] if totals is None else [totals / len(starts)]
        if valid_stats is not None:
            model.eval()
            with torch.no_grad():
                parts.append(valid_stats(model))
        row = torch.cat(parts, dim=1) if parts else torch.zeros(replicas, 0, device=x.device)
        history.append(row)
        if keep_best is not None:
            score = row[:, keep_best]
            if best_state is None:
                best_score = score.clone()
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                better = score > best_score
                best_score = torch.where(better, score, best_score)
                for k, v in model.state_dict().items():
                    mask = better.view(-1, *([1] * (v.dim() - 1)))
                    best_state[k] = torch.where(mask, v.detach(), best_state[k])
    model.eval()
    values = torch.stack(history, dim=1).cpu()  # (S, epochs, k + m)
    return History(values, tuple(columns)), best_state


# ------------------------------------------------------------------------ trader
TRADER_COLUMNS = ("train_recom", "train_return", "valid_recom", "valid_return")


def trader_loss(position: torch.Tensor, ret: torch.Tensor) -> torch.Tensor:
    """-mean(position * next return) per replica: (S, B), (S, B) -> (S,)."""
    return -(position * ret).mean(dim=1)


def trader_stats(position: torch.Tensor, ret: torch.Tensor) -> torch.Tensor:
    """Mean position and mean return per replica: (S, B), (S, B) -> (S, 2)."""
    return torch.stack([position.mean(dim=1), (position * ret).mean(dim=1)], dim=1)


def train_trader(
    model: nn.Module,
    train: Windows,
    valid: Windows,
    generators: Sequence[torch.Generator],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    progress: bool | None = None,
    desc: str = "trader",
) -> tuple[History, dict[str, torch.Tensor]]:
    """Train a TraderNet to maximise mean(position * next return), the seed's objective.

    train and valid hold (S, n, lag) windows on the model's device. Validation
    runs in eval mode (no dropout), unlike the seed, which validated with dropout on.
    Returns the history (columns TRADER_COLUMNS) and each replica's weights at
    its best validation epoch.
    """
    return fit(
        model,
        trader_loss,
        train.x,
        train.y,
        generators,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        batch_stats=trader_stats,
        valid_stats=lambda m: trader_stats(m(valid.x), valid.y),
        columns=TRADER_COLUMNS,
        keep_best=TRADER_COLUMNS.index("valid_return"),
        progress=progress,
        desc=desc,
    )
