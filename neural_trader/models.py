"""The study's models, each holding S independent replicas in stacked weights.

Replica s of every model is initialised from its own generator, so S replicas
trained together equal S models trained one at a time. Shapes use S for
replicas, B for rows in a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ReplicaLinear", "TraderNet", "LinearRegression1D", "Classifier"]


def _uniform(shape: tuple[int, ...], bound: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(S, *shape) draws from U(-bound, bound), replica s from generators[s]."""
    return torch.stack(
        [(torch.rand(shape, generator=g, device=g.device) * 2 - 1) * bound for g in generators]
    )


class ReplicaLinear(nn.Module):
    """S independent `nn.Linear(fan_in, fan_out)` layers applied in one batched matmul.

    Initialised like nn.Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, fan_in: int, fan_out: int, generators: Sequence[torch.Generator]):
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(_uniform((fan_in, fan_out), bound, generators))  # (S, in, out)
        self.bias = nn.Parameter(_uniform((1, fan_out), bound, generators))  # (S, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, B, in) -> (S, B, out)
        return torch.baddbmm(self.bias, x, self.weight)


def _check_generators(generators: Sequence[torch.Generator]) -> None:
    if len(generators) < 1:
        raise ValueError("generators must hold one torch.Generator per replica (>= 1)")


class TraderNet(nn.Module):
    """The seed's neural trader: lag returns -> hidden sigmoid -> dropout -> position in [0, 1].

    dropout=0 is the seed's NeuralTrader, dropout=0.5 its DropoutTrader. Dropout
    masks come from `sample_noise` (drawn per replica from the training
    generators) so that batched and one-at-a-time training draw the same masks.
    """

    def __init__(self, generators: Sequence[torch.Generator], lag: int = 4, hidden: int = 5, dropout: float = 0.0):
        super().__init__()
        _check_generators(generators)
        for name, value in (("lag", lag), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.lag, self.hidden, self.dropout = lag, hidden, float(dropout)
        self.layer0 = ReplicaLinear(lag, hidden, generators)
        self.layer1 = ReplicaLinear(hidden, 1, generators)

    @property
    def replicas(self) -> int:
        return self.layer0.weight.shape[0]

    def sample_noise(self, n: int, generators: Sequence[torch.Generator]) -> torch.Tensor | None:
        """(S, n, hidden) uniforms for n rows of dropout masks, or None without dropout."""
        if not (self.training and self.dropout > 0):
            return None
        return torch.stack([torch.rand(n, self.hidden, generator=g, device=g.device) for g in generators])

    def dropout_mask(self, noise: torch.Tensor) -> torch.Tensor:
        """Inverted-dropout multipliers from uniforms: 1/keep where noise < keep, else 0 (as nn.Dropout)."""
        keep = 1.0 - self.dropout
        return (noise < keep).to(noise.dtype).mul_(1.0 / keep)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(S, B, lag) past returns -> (S, B) positions; `noise` (S, B, hidden) drives dropout.

        Computes layer1(dropout(sigmoid(layer0(x)))) on the transposed layout,
        hidden units in rows and the batch along the contiguous axis: the same
        sums as `ReplicaLinear.forward`, about four times faster for hidden=5.
        """
        w0, b0, w1, b1 = self.layer0.weight, self.layer0.bias, self.layer1.weight, self.layer1.bias
        # sigmoid_ in place saves two (S, H, B)-sized allocations; autograd allows it
        # because baddbmm's backward does not need its output
        h = torch.baddbmm(b0.transpose(1, 2), w0.transpose(1, 2), x.transpose(1, 2)).sigmoid_()  # (S, H, B)
        if noise is not None:
            h = h * self.dropout_mask(noise).transpose(1, 2)
        return torch.baddbmm(b1, w1.transpose(1, 2), h).sigmoid_().squeeze(1)  # (S, B)

    def objective_grads(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Positions and, by hand, the gradient of the trading objective, without autograd.

        The objective is sum over replicas of -mean_b(position * y), the loss of
        `train.trader_loss` summed as the trainer sums it, so replica s only gets
        its own gradient. x (S, B, lag), y (S, B), noise (S, B, hidden) or None,
        exactly as `forward` takes them. Returns positions (S, B) (what
        `forward(x, noise)` returns) and the gradients for (layer0.weight,
        layer0.bias, layer1.weight, layer1.bias), the order of `parameters()`,
        shaped like those parameters.
        """
        mask_t = None if noise is None else self.dropout_mask(noise).transpose(1, 2)
        return self.objective_grads_t(x.transpose(1, 2), y, mask_t)

    def objective_grads_t(
        self, x_t: torch.Tensor, y: torch.Tensor, mask_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`objective_grads` on the transposed layout the trainer keeps its data in.

        x_t (S, lag, B) and mask_t (S, hidden, B) (from `dropout_mask`, or None):
        every elementwise step then runs along the contiguous batch axis, with
        hidden units in rows, and the four gradients come from two small batched
        matmuls and two row sums. Nothing here records an autograd graph.
        """
        w0, b0 = self.layer0.weight.detach(), self.layer0.bias.detach()  # (S, lag, H), (S, 1, H)
        w1, b1 = self.layer1.weight.detach(), self.layer1.bias.detach()  # (S, H, 1), (S, 1, 1)
        h = torch.baddbmm(b0.transpose(1, 2), w0.transpose(1, 2), x_t).sigmoid_()  # (S, H, B)
        hd = h if mask_t is None else h * mask_t  # hidden layer after dropout
        pos = torch.baddbmm(b1, w1.transpose(1, 2), hd).sigmoid_()  # (S, 1, B)
        py = pos * y.unsqueeze(1)
        # d/dz1 of -mean(pos * y), z1 the output pre-activation: -y * pos * (1 - pos) / B
        g1 = torch.addcmul(py, py, pos, value=-1.0).mul_(-1.0 / x_t.shape[-1])  # (S, 1, B)
        dw1 = torch.bmm(hd, g1.transpose(1, 2))  # (S, H, 1)
        db1 = g1.sum(dim=2, keepdim=True)  # (S, 1, 1)
        # d/dz0 = w1 * g1 * mask * h * (1 - h), and mask * h * (1 - h) = hd - hd * h
        g0 = torch.addcmul(hd, hd, h, value=-1.0).mul_(w1).mul_(g1)  # (S, H, B)
        dw0 = torch.bmm(x_t, g0.transpose(1, 2))  # (S, lag, H)
        db0 = g0.sum(dim=2).unsqueeze(1)  # (S, 1, H)
        return pos.squeeze(1), (dw0, db0, dw1, db1)


class LinearRegression1D(nn.Module):
    """The seed's warm-up: y = beta0 + beta1 * x, both starting at 0."""

    def __init__(self, replicas: int = 1):
        super().__init__()
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.beta0 = nn.Parameter(torch.zeros(replicas, 1))  # (S, 1)
        self.beta1 = nn.Parameter(torch.zeros(replicas, 1))

    def forward(self, x: torch.Tensor, noise: None = None) -> torch.Tensor:  # (S, B) -> (S, B)
        return self.beta0 + self.beta1 * x


class Classifier(nn.Module):
    """The seed's two-class network: dim -> hidden (sigmoid) -> 2 logits."""

    def __init__(self, generators: Sequence[torch.Generator], dim: int = 100, hidden: int = 2):
        super().__init__()
        _check_generators(generators)
        self.layer0 = ReplicaLinear(dim, hidden, generators)
        self.layer1 = ReplicaLinear(hidden, 2, generators)

    def forward(self, x: torch.Tensor, noise: None = None) -> torch.Tensor:  # (S, B, dim) -> (S, B, 2)
        return self.layer1(torch.sigmoid(self.layer0(x)))
