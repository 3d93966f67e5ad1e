"""The study's models, each holding S independent replicas in stacked weights.

Replica s of every model is initialised from its own generator, so S replicas
trained together equal S models trained one at a time. The study keeps these
generators on the CPU and moves the weights to the training device, so every
device starts from the same bits. Shapes use S for
replicas, B for rows in a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from neural_trader.streams import DROPOUT, Streams

__all__ = ["ReplicaLinear", "TraderNet", "LinearTrader", "LinearRegression1D", "Classifier", "LANES", "lane_padded"]

#: The traders compute on batches padded to a multiple of this many rows. torch's vectorised CPU loops
#: take 2 vectors a turn (32 float32 with AVX-512, 16 with AVX2) and finish in scalar code, and sigmoid's
#: vector and scalar code round differently: measured here, sigmoid of a (3, 5, 1000) tensor differs in
#: the last bit from the same rows computed alone, while at 1024 columns every row agrees. With every
#: replica's block a multiple of 64 floats long, no replica's values fall into a scalar tail, so a
#: replica's bytes do not depend on how many replicas share its batch.
LANES = 64


def lane_padded(rows: int) -> int:
    """`rows` rounded up to a multiple of LANES."""
    return -(-rows // LANES) * LANES


def _padded_t(x: torch.Tensor) -> torch.Tensor:
    """(S, B, k) -> (S, k, lane_padded(B)): the transposed layout, zero columns after the B rows."""
    x_t = x.transpose(1, 2)
    pad = lane_padded(x_t.shape[-1]) - x_t.shape[-1]
    return torch.nn.functional.pad(x_t, (0, pad)) if pad else x_t


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
    masks come from `sample_noise` (each replica's counter-based stream) so that
    batched and one-at-a-time training, on any device, draw the same masks.

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
        # where unit j's dropout bit sits in a row's packed bytes (byte j // 8, bit j % 8): made once, moved with
        # the model, not saved (non-persistent), so a training step builds no index tensors
        units = torch.arange(hidden)
        self.register_buffer("_unit_byte", units // 8, persistent=False)
        self.register_buffer("_unit_shift", (units % 8).to(torch.uint8).view(1, hidden, 1), persistent=False)

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

    def sample_noise(self, n: int, streams: Streams, epoch: int) -> torch.Tensor | None:
        """(S, n, k) random bytes (uint8) for n rows of dropout masks, or None without dropout.

        The bytes are replica s's counter-based stream (DROPOUT, epoch)
        (`Streams.bytes`), on the model's device, the same bits on every
        device. Byte j of row i is stream byte j * n + i: the bytes lie
        plane-major ((S, k, n) in memory, returned as its (S, n, k) view), so
        a step's masks read each plane along its rows. Two forms, by `keep_bytes`:

        - keep_bytes 128 (dropout 0.5): packed bits, k = ceil(hidden / 8). Unit
          j of row i is kept where bit j % 8 of the row's byte j // 8 is 1:
          one random bit a unit, an eighth of the stream that a byte a unit takes.
        - otherwise: k = hidden bytes, unit j of row i kept where byte j < keep_bytes.

        `dropout_mask_t` and `dropout_mask` read either form.
        """
        if not (self.training and self.dropout > 0):
            return None
        if len(streams) != self.replicas:
            raise ValueError(f"need one stream seed per replica: {len(streams)} seeds for {self.replicas} replicas")
        k = -(-self.hidden // 8) if self.keep_bytes == 128 else self.hidden
        raw = streams.bytes(DROPOUT, epoch, n * k, self.layer0.weight.device)  # (S, k * n)
        return raw.view(len(streams), k, n).transpose(1, 2)

    def dropout_mask(self, noise: torch.Tensor) -> torch.Tensor:
        """(S, B, hidden) inverted-dropout multipliers from `sample_noise`'s rows: 1/keep where kept, else 0.

        The transpose of `dropout_mask_t`'s contiguous (S, hidden, B) tensor.
        """
        return self.dropout_mask_t(noise).transpose(1, 2)

    def dropout_mask_t(self, noise: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """`dropout_mask` on the transposed layout: noise (S, B, k) rows -> multipliers (S, hidden, B).

        The layout `objective_grads_t` takes. `out`, a float (S, hidden, B)
        tensor (or a view of one), is overwritten and returned: the trainer
        refills one small buffer each step, which stays in cache.
        """
        s, b, _ = noise.shape
        h = self.hidden
        if out is None:
            out = torch.empty(s, h, b, dtype=self.layer0.weight.dtype, device=noise.device)
        if self.keep_bytes == 128:
            planes = noise.transpose(1, 2)  # (S, k, B) byte planes, rows along the last axis
            one = planes.shape[1] == 1
            planes = planes[:, :1].expand(-1, h, -1) if one else planes.index_select(1, self._unit_byte)
            out.copy_(torch.bitwise_right_shift(planes, self._unit_shift).bitwise_and_(1))  # (S, hidden, B) 0/1
        else:
            # the comparison writes 0/1 straight into floats, four times faster than through bool
            torch.le(noise.transpose(1, 2), self.keep_bytes - 1, out=out)  # keep_bytes - 1 fits uint8, 256 not
        return out.mul_(1.0 / self.keep)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(S, B, lag) past returns -> (S, B) positions; `noise` (S, B, k) from `sample_noise` drives dropout.

        Computes layer1(dropout(sigmoid(layer0(x)))) on the transposed layout,
        hidden units in rows and the batch along the contiguous axis (about four
        times faster than `ReplicaLinear.forward` for hidden=5), with the batch
        padded to `lane_padded(B)` zero columns so a replica's positions do not
        depend on how many replicas are computed with it.
        """
        w0, b0, w1, b1 = self.layer0.weight, self.layer0.bias, self.layer1.weight, self.layer1.bias
        rows = x.shape[1]
        # sigmoid_ in place saves two (S, H, B)-sized allocations; autograd allows it
        # because baddbmm's backward does not need its output
        h = torch.baddbmm(b0.transpose(1, 2), w0.transpose(1, 2), _padded_t(x)).sigmoid_()  # (S, H, width)
        if noise is not None:
            mask = self.dropout_mask_t(noise)
            h = h * torch.nn.functional.pad(mask, (0, h.shape[-1] - rows))
        return torch.baddbmm(b1, w1.transpose(1, 2), h).sigmoid_().squeeze(1)[:, :rows]  # (S, B)

    def objective_grads(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Positions and, by hand, the gradient of the trading objective, without autograd.

        The objective is sum over replicas of -mean_b(position * y), the loss of
        `trader.trader_loss` summed as the trainer sums it, so replica s only gets
        its own gradient. x (S, B, lag), y (S, B), noise (S, B, k) rows of `sample_noise` or None,
        exactly as `forward` takes them. Returns positions (S, B) (what
        `forward(x, noise)` returns) and the gradients for (layer0.weight,
        layer0.bias, layer1.weight, layer1.bias), the order of `parameters()`,
        shaped like those parameters.
        """
        rows = x.shape[1]
        x_t, y_t = _padded_t(x), torch.nn.functional.pad(y, (0, lane_padded(rows) - rows))
        mask_t = None if noise is None else _padded_t(self.dropout_mask(noise))
        pos, grads = self.objective_grads_t(x_t, y_t, mask_t, rows=rows)
        return pos[:, :rows], grads

    def objective_grads_t(
        self, x_t: torch.Tensor, y: torch.Tensor, mask_t: torch.Tensor | None = None, rows: int | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`objective_grads` on the transposed layout the trainer keeps its data in.

        x_t (S, lag, W), y (S, W) and mask_t (S, hidden, W) (from `dropout_mask_t`:
        0 or 1/keep, nothing else, or None): every elementwise step then runs
        along the contiguous batch axis, with hidden units in rows, and the four
        gradients come from three small batched matmuls and two row sums.
        Columns past `rows` (default W) are padding: their x and y must be 0,
        so they add exact zeros to the gradients, and the mean divides by
        `rows`. With W a multiple of LANES the result of a replica does not
        depend on the other replicas. Returns positions (S, W), padding
        included. Nothing here records an autograd graph.
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
        g1 = torch.addcmul(py, py, pos, value=-1.0).mul_(-1.0 / (rows or x_t.shape[-1]))  # (S, 1, B)
        # (1, B) x (B, H), not (H, B) x (B, 1): torch runs the latter as a matrix-vector product whose
        # sums depend on how many replicas are in the batch
        dw1 = torch.bmm(g1, hd.transpose(1, 2)).transpose(1, 2)  # (S, H, 1)
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
        """(S, B, lag) past returns -> (S, B) positions; `noise` is ignored (no dropout).

        On the lane-padded transposed layout, as `TraderNet.forward`.
        """
        w, b = self.layer.weight, self.layer.bias  # (S, lag, 1), (S, 1, 1)
        return torch.baddbmm(b, w.transpose(1, 2), _padded_t(x)).sigmoid_().squeeze(1)[:, : x.shape[1]]

    def objective_grads_t(
        self, x_t: torch.Tensor, y: torch.Tensor, mask_t: torch.Tensor | None = None, rows: int | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Positions and the gradient of -mean(position * y) by hand, on the trainer's layout.

        x_t (S, lag, W), y (S, W), columns past `rows` zero padding, as for
        `TraderNet.objective_grads_t`; `mask_t` must be None (nothing to drop).
        Returns positions (S, W) and the gradients of (layer.weight,
        layer.bias), the order of `parameters()`, so the trainer's fast path
        (no autograd) applies.
        """
        if mask_t is not None:
            raise ValueError("the linear trader has no hidden layer to drop")
        w, b = self.layer.weight.detach(), self.layer.bias.detach()  # (S, lag, 1), (S, 1, 1)
        pos = torch.baddbmm(b, w.transpose(1, 2), x_t).sigmoid_()  # (S, 1, W)
        py = pos * y.unsqueeze(1)
        g = torch.addcmul(py, py, pos, value=-1.0).mul_(-1.0 / (rows or x_t.shape[-1]))  # d/dz of -mean(pos * y)
        dw = torch.bmm(g, x_t.transpose(1, 2)).transpose(1, 2)  # (S, lag, 1), not a matrix-vector product
        return pos.squeeze(1), (dw, g.sum(dim=2, keepdim=True))
