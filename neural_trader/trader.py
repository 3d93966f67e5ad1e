"""The trader's task: its loss, its history columns, its hand-written step, and training a trader with them.

A trader (`models.TraderNet`, `models.LinearTrader`) maps the lag past returns
of each window to a position in [0, 1] and earns position x next return. It is
trained to maximise the mean of that, through the task-agnostic `train.fit`,
with one shortcut: a model that computes the gradient of `trader_loss` itself
(`objective_grads_t`) takes `TraderStepper`, which skips autograd and applies
the same RMSprop update with foreach ops, on data kept in a transposed layout.
A step is then about twice as fast at 64 replicas and three times at one;
tests hold both paths to the same history within float tolerance.
"""

from __future__ import annotations

import torch
from torch import nn

from neural_trader.data import Windows
from neural_trader.models import lane_padded
from neural_trader.steppers import AutogradStepper, Stats, Stepper
from neural_trader.streams import Streams
from neural_trader.train import History, OnEpoch, fit

__all__ = ["TRADER_COLUMNS", "trader_loss", "trader_stats", "TraderStepper", "train_trader"]

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
    streams: Streams,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    on_epoch: OnEpoch | None = None,
) -> tuple[History, dict[str, torch.Tensor]]:
    """Train a trader to maximise mean(position * next return), the seed's objective.

    train and valid hold (S, n, lag) windows on the model's device. Validation
    runs in eval mode (no dropout), unlike the seed, which validated with dropout on.
    A model with `objective_grads_t` takes the hand-written step (`TraderStepper`),
    any other autograd. Returns the history (columns TRADER_COLUMNS) and each
    replica's weights at its best validation epoch.
    """
    stepper = TraderStepper if callable(getattr(model, "objective_grads_t", None)) else AutogradStepper
    return fit(
        model,
        trader_loss,
        train.x,
        train.y,
        streams,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        batch_stats=trader_stats,
        valid_stats=lambda m: trader_stats(m(valid.x), valid.y),
        columns=TRADER_COLUMNS,
        keep_best=TRADER_COLUMNS.index("valid_return"),
        stepper=stepper,
        on_epoch=on_epoch,
    )


class TraderStepper(Stepper):
    """TraderNet or LinearTrader under `trader_loss`: hand-written gradients on a transposed, lane-padded layout.

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

    def __init__(self, model: nn.Module, loss_fn: Stats, x: torch.Tensor, y: torch.Tensor, lr: float,
                 bounds: list[tuple[int, int]]):
        if loss_fn is not trader_loss:  # the gradient below is trader_loss's, whatever loss was asked for
            raise ValueError(f"TraderStepper computes the gradient of trader_loss only, got {loss_fn!r}")
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
