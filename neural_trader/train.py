"""A task-agnostic minibatch trainer over S replicas.

The trainer knows no task: it takes a replica model, a loss that returns one
value per replica, statistics to record and the replicas' counter-based
streams (`neural_trader.streams`), which give each epoch's permutation and any
dropout noise as pure functions of (replica seed, epoch, index), the same bits
on every device. Summing the per-replica losses keeps each replica's gradient
its own, and RMSprop is elementwise, so S replicas trained in one batched
computation equal S runs of one replica with the same seeds. An epoch draws
every replica's permutation in a few tensor ops and reorders every replica's
rows in one gather: no Python loop over replicas.

How a step is taken is the caller's choice of `Stepper` (autograd by
default); a task may bring its own, as the trader does (`neural_trader.trader`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from neural_trader.steppers import AutogradStepper, Stats, StepperFactory
from neural_trader.streams import Streams

__all__ = ["resolve_device", "History", "OnEpoch", "fit"]

#: Called after each epoch with (epoch from 0, epochs, that epoch's (S, k + m) row of statistics).
OnEpoch = Callable[[int, int, torch.Tensor], None]


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


def _check_fit_args(lr: float, epochs: int, batch_size: int, n: int, replicas: int, streams: Streams) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if n < 1:
        raise ValueError("training data must hold at least one row per replica")
    if not isinstance(streams, Streams):
        raise TypeError(f"streams must be a neural_trader.streams.Streams (one seed per replica), got {type(streams)}")
    if len(streams) != replicas:
        raise ValueError(f"need one stream seed per replica: {len(streams)} seeds for {replicas} replicas")


def fit(
    model: nn.Module,
    loss_fn: Stats,
    x: torch.Tensor,
    y: torch.Tensor,
    streams: Streams,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    batch_stats: Stats | None = None,
    valid_stats: Callable[[nn.Module], torch.Tensor] | None = None,
    columns: Sequence[str] = (),
    keep_best: int | None = None,
    stepper: StepperFactory = AutogradStepper,
    on_epoch: OnEpoch | None = None,
) -> tuple[History, dict[str, torch.Tensor] | None]:
    """Train every replica of `model` with RMSprop on minibatches reshuffled each epoch.

    Args:
        model: replica model; `model(xb, noise)` maps (S, B, ...) to (S, B, ...).
            It may offer `sample_noise(n, streams, epoch)` for per-row dropout noise.
        loss_fn: (out, y) -> (S,) loss per replica, averaged over the batch.
        x, y: (S, n, ...) training rows of each replica, on the training device.
        streams: one seed per replica; epoch e's permutation and noise are
            its streams (PERMUTATION, e) and (DROPOUT, e).
        batch_stats: (out, y) -> (S, k) statistics averaged over an epoch's batches.
        valid_stats: model -> (S, m), called after each epoch in eval mode without gradients.
        columns: names of the k + m statistics.
        keep_best: index of a column to maximise; the weights of each replica's
            best epoch are returned alongside the history.
        stepper: builds the step, `stepper(model, loss_fn, x, y, lr, bounds)`;
            the default, `AutogradStepper`, serves any model and loss.
        on_epoch: called after each epoch (progress reporting).

    Returns:
        The history and, with `keep_best`, each replica's best-epoch state dict.

    Epochs are numbered from 0 in the streams.
    """
    replicas, n = x.shape[0], x.shape[1]
    _check_fit_args(lr, epochs, batch_size, n, replicas, streams)
    bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    steps = stepper(model, loss_fn, x, y, lr, bounds)
    sample_noise = getattr(model, "sample_noise", None)
    permutations = streams.permuter(n, x.device)
    history: list[torch.Tensor] = []
    best_score = best_state = None
    for epoch in range(epochs):
        model.train()
        noise = sample_noise(n, streams, epoch) if sample_noise else None
        steps.shuffle(permutations(epoch), noise)
        totals = None
        for k in range(len(bounds)):
            out, yb = steps.step(k)
            if batch_stats is not None:
                step = batch_stats(out, yb)
                totals = step if totals is None else totals + step
        parts = [] if totals is None else [totals / len(bounds)]
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
        if on_epoch is not None:
            on_epoch(epoch, epochs, row)
    model.eval()
    values = torch.stack(history, dim=1).cpu()  # (S, epochs, k + m)
    return History(values, tuple(columns)), best_state
