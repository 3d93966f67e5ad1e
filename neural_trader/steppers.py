"""How the trainer takes a minibatch step for every replica at once (see `train.fit`).

`AutogradStepper` serves any model and loss. A task may bring a faster one
with the gradient written by hand (`trader.TraderStepper`). A stepper lays out
an epoch from every replica's permutation in one indexing op over the
replicas' stacked rows, with no loop over replicas.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Stats", "Stepper", "StepperFactory", "AutogradStepper"]

Stats = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (out, y) -> (S, k)


class Stepper:
    """One epoch's shuffled data and the minibatch update of every replica, step k on rows bounds[k]."""

    def shuffle(self, perm: torch.Tensor, noise: torch.Tensor | None) -> None:
        """Reorder each replica's rows by its permutation perm (S, n) (int32 or int64); noise (S, n, ...) or None."""
        raise NotImplementedError

    def step(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Update on the shuffled rows of batch k; return the detached train-mode output and targets."""
        raise NotImplementedError


class AutogradStepper(Stepper):
    """Any model and loss: autograd on the summed per-replica losses, torch.optim.RMSprop."""

    def __init__(self, model: nn.Module, loss_fn: Stats, x: torch.Tensor, y: torch.Tensor, lr: float,
                 bounds: list[tuple[int, int]]):
        self.model, self.loss_fn, self.bounds = model, loss_fn, bounds
        self.optim = torch.optim.RMSprop(model.parameters(), lr=lr)
        replicas, n = x.shape[0], x.shape[1]
        # rows of all replicas stacked, so one index_select shuffles every replica
        self.x_flat, self.y_flat = x.reshape(replicas * n, *x.shape[2:]), y.reshape(replicas * n, *y.shape[2:])
        self.offset = torch.arange(0, replicas * n, n, device=x.device).unsqueeze(1)  # (S, 1)
        self.x_shape, self.y_shape = x.shape, y.shape

    def shuffle(self, perm: torch.Tensor, noise: torch.Tensor | None) -> None:
        index = (perm + self.offset).view(-1)  # int64: replicas * n may pass 2**31
        self.xs = self.x_flat.index_select(0, index).view(self.x_shape)
        self.ys = self.y_flat.index_select(0, index).view(self.y_shape)
        self.noise = noise

    def step(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.bounds[k]
        yb = self.ys[:, lo:hi]
        out = self.model(self.xs[:, lo:hi], None if self.noise is None else self.noise[:, lo:hi])
        loss = self.loss_fn(out, yb)  # (S,)
        self.optim.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.optim.step()
        return out.detach(), yb


#: (model, loss_fn, x, y, lr, bounds) -> the Stepper of one `train.fit` call; a Stepper class itself.
StepperFactory = Callable[[nn.Module, Stats, torch.Tensor, torch.Tensor, float, list[tuple[int, int]]], Stepper]
