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

__all__ = ["ReplicaLinear", "TraderNet", "LinearTrader", "LinearRegression1D", "Classifier"]


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


_TOP_BITS = -0x7F7F7F7F7F7F7F80  # 0x8080808080808080 as an int64: the top bit of each of its bytes


def _check_generators(generators: Sequence[torch.Generator]) -> None:
    if len(generators) < 1:
        raise ValueError("generators must hold one torch.Generator per replica (>= 1)")


class TraderNet(nn.Module):
    """The seed's neural trader: lag returns -> hidden sigmoid -> dropout -> position in [0, 1].

    dropout=0 is the seed's NeuralTrader, dropout=0.5 its DropoutTrader. Dropout
    masks come from `sample_noise` (drawn per replica from the training
    generators) so that batched and one-at-a-time training draw the same masks.

    A unit is kept when its random byte is below `keep_bytes` = round(256 *
    (1 - dropout)), clamped to 1..256, so it is kept with probability `keep` =
    keep_bytes / 256: exactly 1 - dropout when that is a multiple of 1/256 (0.5,
    0.25, ...), otherwise within 1/512 of it, and within 1/256 at the clamped
    ends (keep is at least 1/256; dropout below 1/512 keeps every unit). Kept
    units are scaled by 1 / keep, so the expected hidden activation is exact.
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

    @property
    def keep_bytes(self) -> int:
        """How many of the 256 byte values keep a unit: round(256 * (1 - dropout)), clamped to 1..256."""
        return min(256, max(1, round(256 * (1.0 - self.dropout))))

    @property
    def keep(self) -> float:
        """The probability that dropout keeps a unit: keep_bytes / 256, within 1/256 of 1 - dropout."""
        return self.keep_bytes / 256

    def sample_noise(self, n: int, generators: Sequence[torch.Generator]) -> torch.Tensor | None:
        """(S, n, hidden) random bytes (uint8) for n rows of dropout masks, or None without dropout.

        A unit is kept where its byte is < keep_bytes. Replica s fills int64
        words with 64 random bits each from generators[s] and reads them as
        bytes (in the machine's byte order): 8 uniform bytes per word. At
        dropout 0.5 (keep_bytes 128) only a byte's top bit decides, so each
        word gives 64 units one random bit each, as the top bit of a byte 0 or
        128. Either is far cheaper than `torch.rand`'s one float per unit: at
        S=64, n=16000 about 1.8 ms (bytes) or 0.45 ms (bits) against 18. The
        bytes lie hidden-major ((S, hidden, n) in memory, returned as its
        transposed view), the layout the trainer's masks take.
        """
        if not (self.training and self.dropout > 0):
            return None
        size = n * self.hidden
        bits = 1 if self.keep_bytes == 128 else 8  # random bits per unit
        words = torch.empty(len(generators), -(-size * bits // 64), dtype=torch.int64, device=generators[0].device)
        for g, row in zip(generators, words):
            row.random_(-(2**63), None, generator=g)  # the full int64 range: every bit uniform
        if bits == 1:  # bit 8i + k of a word becomes the top bit of byte i of its k-th output word
            shifts = torch.arange(7, -1, -1, dtype=torch.int64, device=words.device)
            words = (words.unsqueeze(-1) << shifts).bitwise_and_(_TOP_BITS).view(len(generators), -1)
        return words.view(torch.uint8)[:, :size].view(-1, self.hidden, n).transpose(1, 2)

    def dropout_mask(self, noise: torch.Tensor) -> torch.Tensor:
        """(S, B, hidden) inverted-dropout multipliers from bytes: 1/keep where noise < keep_bytes, else 0.

        The transpose of `dropout_mask_t`'s contiguous (S, hidden, B) tensor.
        """
        return self.dropout_mask_t(noise).transpose(1, 2)

    def dropout_mask_t(self, noise: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """`dropout_mask` on the transposed layout: noise (S, B, hidden) -> multipliers (S, hidden, B).

        The layout `objective_grads_t` takes. `out`, a float (S, hidden, B)
        tensor (or a view of one), is overwritten and returned: the trainer
        refills one small buffer each step, which stays in cache.
        """
        s, b, h = noise.shape
        if out is None:
            out = torch.empty(s, h, b, dtype=self.layer0.weight.dtype, device=noise.device)
        # the comparison writes 0/1 straight into floats, four times faster than through bool,
        # and six times faster on the (S, hidden, B) views than through the transposed ones
        torch.le(noise.transpose(1, 2), self.keep_bytes - 1, out=out)  # keep_bytes - 1 fits uint8, 256 not
        return out.mul_(1.0 / self.keep)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(S, B, lag) past returns -> (S, B) positions; `noise` (S, B, hidden) bytes drive dropout.

        Computes layer1(dropout(sigmoid(layer0(x)))) on the transposed layout,
        hidden units in rows and the batch along the contiguous axis: the same
        sums as `ReplicaLinear.forward`, about four times faster for hidden=5.
        """
        w0, b0, w1, b1 = self.layer0.weight, self.layer0.bias, self.layer1.weight, self.layer1.bias
        # sigmoid_ in place saves two (S, H, B)-sized allocations; autograd allows it
        # because baddbmm's backward does not need its output
        h = torch.baddbmm(b0.transpose(1, 2), w0.transpose(1, 2), x.transpose(1, 2)).sigmoid_()  # (S, H, B)
        if noise is not None:
            h = h * self.dropout_mask_t(noise)
        return torch.baddbmm(b1, w1.transpose(1, 2), h).sigmoid_().squeeze(1)  # (S, B)

    def objective_grads(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Positions and, by hand, the gradient of the trading objective, without autograd.

        The objective is sum over replicas of -mean_b(position * y), the loss of
        `train.trader_loss` summed as the trainer sums it, so replica s only gets
        its own gradient. x (S, B, lag), y (S, B), noise (S, B, hidden) bytes or None,
        exactly as `forward` takes them. Returns positions (S, B) (what
        `forward(x, noise)` returns) and the gradients for (layer0.weight,
        layer0.bias, layer1.weight, layer1.bias), the order of `parameters()`,
        shaped like those parameters.
        """
        mask_t = None if noise is None else self.dropout_mask_t(noise)
        return self.objective_grads_t(x.transpose(1, 2), y, mask_t)

    def objective_grads_t(
        self, x_t: torch.Tensor, y: torch.Tensor, mask_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`objective_grads` on the transposed layout the trainer keeps its data in.

        x_t (S, lag, B) and mask_t (S, hidden, B) (from `dropout_mask_t`: 0 or
        1/keep, nothing else, or None): every elementwise step then runs along
        the contiguous batch axis, with hidden units in rows, and the four
        gradients come from two small batched matmuls and two row sums. Nothing
        here records an autograd graph.
        """
        w0, b0 = self.layer0.weight.detach(), self.layer0.bias.detach()  # (S, lag, H), (S, 1, H)
        w1, b1 = self.layer1.weight.detach(), self.layer1.bias.detach()  # (S, H, 1), (S, 1, 1)
        hd = torch.baddbmm(b0.transpose(1, 2), w0.transpose(1, 2), x_t).sigmoid_()  # (S, H, B), sigmoid a
        keep = 1.0
        if mask_t is not None:
            hd.mul_(mask_t)  # after dropout, in place: a / keep where kept, else 0
            keep = self.keep
        pos = torch.baddbmm(b1, w1.transpose(1, 2), hd).sigmoid_()  # (S, 1, B)
        py = pos * y.unsqueeze(1)
        # d/dz1 of -mean(pos * y), z1 the output pre-activation: -y * pos * (1 - pos) / B
        g1 = torch.addcmul(py, py, pos, value=-1.0).mul_(-1.0 / x_t.shape[-1])  # (S, 1, B)
        dw1 = torch.bmm(hd, g1.transpose(1, 2))  # (S, H, 1)
        db1 = g1.sum(dim=2, keepdim=True)  # (S, 1, 1)
        # d/dz0 = w1 * g1 * mask * a * (1 - a); where kept a = keep * hd, so mask * a * (1 - a)
        # = hd - keep * hd * hd (and 0 = 0 where dropped): no need to keep a beside hd
        g0 = torch.addcmul(hd, hd, hd, value=-keep).mul_(w1).mul_(g1)  # (S, H, B)
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


class LinearTrader(nn.Module):
    """The linear rule: position = sigmoid(x . w + b), per replica; the trader without a hidden layer.

    Trained with the same objective, optimiser and shuffles as TraderNet (through
    autograd), so the report can say whether the hidden layer adds anything.
    """

    def __init__(self, generators: Sequence[torch.Generator], lag: int = 4):
        super().__init__()
        _check_generators(generators)
        if not isinstance(lag, int) or lag < 1:
            raise ValueError(f"lag must be an integer >= 1, got {lag!r}")
        self.lag = lag
        self.layer = ReplicaLinear(lag, 1, generators)

    @property
    def replicas(self) -> int:
        return self.layer.weight.shape[0]

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(S, B, lag) past returns -> (S, B) positions; `noise` is ignored (no dropout)."""
        return self.layer(x).sigmoid().squeeze(-1)

    def objective_grads_t(
        self, x_t: torch.Tensor, y: torch.Tensor, mask_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Positions and the gradient of -mean(position * y) by hand, on the trainer's layout.

        x_t (S, lag, B), y (S, B); `mask_t` must be None (nothing to drop). Returns
        positions (S, B) and the gradients of (layer.weight, layer.bias), the order
        of `parameters()`, so the trainer's fast path (no autograd) applies.
        """
        if mask_t is not None:
            raise ValueError("the linear trader has no hidden layer to drop")
        w, b = self.layer.weight.detach(), self.layer.bias.detach()  # (S, lag, 1), (S, 1, 1)
        pos = torch.baddbmm(b, w.transpose(1, 2), x_t).sigmoid_()  # (S, 1, B)
        py = pos * y.unsqueeze(1)
        g = torch.addcmul(py, py, pos, value=-1.0).mul_(-1.0 / x_t.shape[-1])  # d/dz of -mean(pos * y)
        return pos.squeeze(1), (torch.bmm(x_t, g.transpose(1, 2)), g.sum(dim=2, keepdim=True))
