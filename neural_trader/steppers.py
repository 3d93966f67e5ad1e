"""The trainer's two ways to take a minibatch step for every replica at once (see `train.fit`).

`AutogradStepper` serves any model and loss; `TraderStepper` serves a trader
(TraderNet, LinearTrader) under the trading objective, with the gradient
written by hand. Both lay out an epoch from every replica's permutation in
one indexing op over the replicas' stacked rows, with no loop over replicas.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from neural_trader.models import lane_padded

__all__ = ["Stepper", "AutogradStepper", "TraderStepper"]

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


class TraderStepper(Stepper):
    """TraderNet or LinearTrader under trader_loss: hand-written gradients on a transposed, lane-padded layout.

    The data of every replica sit stacked as (lag + 1, S * (n + 1)): the lag
    inputs in rows 0..lag-1, the target in row lag, replica s in columns
    s * (n + 1) .. s * (n + 1) + n, the last of them all zeros. One
    index_select along the columns lays out every replica's whole epoch at
    once as (lag + 1, S, steps * width): batch k in columns k * width ..
    (k + 1) * width, its rows first and zero columns after them (the padding
    slots of the index point at the replica's zero column). A step reads its
    (S, lag, width) inputs as a view. width is the largest batch rounded up to
    `models.LANES`, so every per-replica block of every (S, ..., width)
    tensor a step computes on starts on a boundary of torch's vectorised CPU
    loops and none ends in their scalar tail: a replica's bytes do not depend
    on how many replicas share the batch (sigmoid's vector and scalar code
    round differently). A zero column adds exact zeros to the gradient (its
    target is 0) and is left out of the statistics.

    The RMSprop update is torch's (alpha 0.99, eps 1e-8, no momentum or
    weight decay), written with foreach ops.
    """

    ALPHA, EPS = 0.99, 1e-8

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float,
                 bounds: list[tuple[int, int]]):
        self.model, self.lr, self.bounds = model, lr, bounds
        s, n, self.lag = x.shape[0], x.shape[1], x.shape[-1]
        self.width = lane_padded(max(hi - lo for lo, hi in bounds))
        data = torch.zeros(self.lag + 1, s, n + 1, dtype=x.dtype, device=x.device)  # column n of each replica: 0
        data[: self.lag, :, :n].copy_(x.permute(2, 0, 1))
        data[self.lag, :, :n].copy_(y)
        self.data = data.view(self.lag + 1, s * (n + 1))
        steps, batch = len(bounds), bounds[0][1] - bounds[0][0]
        self.full = n // batch  # batches of `batch` rows; a last one holds the n % batch rows left
        self.offset = torch.arange(0, s * (n + 1), n + 1, device=x.device).view(s, 1, 1)  # each replica's first column
        self.index = (self.offset.view(s, 1) + n).expand(s, steps * self.width).contiguous()  # all padding at first
        self.shuffled = torch.empty(self.lag + 1, s, steps * self.width, dtype=x.dtype, device=x.device)
        self.params = [p.detach() for p in model.parameters()]  # the order objective_grads_t returns
        self.square_avg = [torch.zeros_like(p) for p in self.params]
        self.noise: torch.Tensor | None = None  # (S, n, k) dropout noise (`sample_noise`), redrawn each epoch
        self.mask_buf: torch.Tensor | None = None  # (S, hidden, width) dropout multipliers, refilled each step

    def shuffle(self, perm: torch.Tensor, noise: torch.Tensor | None) -> None:
        s, n = perm.shape
        batch, full = self.bounds[0][1] - self.bounds[0][0], self.full
        slots = self.index.view(s, -1, self.width)
        torch.add(perm[:, : full * batch].view(s, full, batch), self.offset, out=slots[:, :full, :batch])
        if full * batch < n:
            torch.add(perm[:, full * batch:], self.offset[:, 0], out=slots[:, full, : n - full * batch])
        torch.index_select(self.data, 1, self.index.view(-1), out=self.shuffled.view(self.lag + 1, -1))
        self.noise = noise

    def step(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.bounds[k]
        cols = slice(k * self.width, (k + 1) * self.width)
        x_t, yb = self.shuffled[: self.lag, :, cols].transpose(0, 1), self.shuffled[self.lag, :, cols]
        out, grads = self.model.objective_grads_t(x_t, yb, self._mask_t(lo, hi), rows=hi - lo)
        sq = self.square_avg
        torch._foreach_mul_(sq, self.ALPHA)
        torch._foreach_addcmul_(sq, grads, grads, value=1.0 - self.ALPHA)
        avg = torch._foreach_sqrt(sq)
        torch._foreach_add_(avg, self.EPS)
        torch._foreach_addcdiv_(self.params, grads, avg, value=-self.lr)
        return out[:, : hi - lo], yb[:, : hi - lo]

    def _mask_t(self, lo: int, hi: int) -> torch.Tensor | None:
        """(S, hidden, width) dropout multipliers, rows lo:hi of the epoch in the first hi - lo columns, or None.

        Built per step into one reused buffer, which stays in cache: an epoch's
        float mask built at once (20 MB at S=64, n=16000) cost 2-3 ms more per
        epoch, read back from memory by the steps, and up to 7 ms more in page
        faults when freshly allocated each epoch. Columns past hi - lo keep
        what an earlier step left (0 at first): they meet zero columns only.
        """
        if self.noise is None:
            return None
        if self.mask_buf is None:
            self.mask_buf = torch.zeros(self.noise.shape[0], self.model.hidden, self.width, dtype=self.params[0].dtype, device=self.noise.device)
        self.model.dropout_mask_t(self.noise[:, lo:hi], out=self.mask_buf[:, :, : hi - lo])
        return self.mask_buf
