"""Synthetic return series, windowing and generator seeding.

Shapes: returns are (N, T) for one replica or (S, N, T) for S replicas; windows
are (..., N*(T-L), L) with targets (..., N*(T-L)). Every random draw takes an
explicit `torch.Generator`: tasks run in threads, so the global RNG is off limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from neural_trader.seeding import seed_from

__all__ = [
    "seed_from",
    "make_generator",
    "iid_returns",
    "ar1_returns",
    "window_returns",
    "Windows",
    "lag1_autocorrelation",
    "check_positive",
]


def check_positive(**sizes: int) -> None:
    """Raise ValueError naming the first size that is not a positive integer."""
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def make_generator(*keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh generator on `device`, seeded from `keys` (see `seed_from`)."""
    return torch.Generator(device=device).manual_seed(seed_from(*keys))


def iid_returns(n: int, length: int, *, generator: torch.Generator, vol: float = 1.0) -> torch.Tensor:
    """(n, length) i.i.d. N(0, vol^2) returns: the 'random' regime."""
    check_positive(n=n, length=length)
    if not vol > 0:
        raise ValueError(f"vol must be > 0, got {vol!r}")
    return vol * torch.randn(n, length, generator=generator)


def ar1_returns(
    n: int, length: int, *, rho: float, generator: torch.Generator, vol: float = 1.0
) -> torch.Tensor:
    """(n, length) AR(1) returns r_t = rho * r_{t-1} + e_t, e_t ~ N(0, vol^2).

    Each series starts from the stationary law, r_0 ~ N(0, vol^2 / (1 - rho^2)),
    so every t has the same distribution. The recursion runs exactly in float64
    (a linear filter over t, vectorised over series) and is finite for any length.
    """
    check_positive(n=n, length=length)
    if not -1 < rho < 1:
        raise ValueError(f"rho must satisfy |rho| < 1 (allowed: > -1 and < 1), got {rho!r}")
    if not vol > 0:
        raise ValueError(f"vol must be > 0, got {vol!r}")
    from scipy.signal import lfilter  # imported here: scipy costs ~0.7 s and only AR(1) needs it

    shocks = torch.randn(n, length, generator=generator, dtype=torch.float64).numpy()
    shocks[:, 0] /= math.sqrt(1.0 - rho * rho)
    values = lfilter([1.0], [1.0, -rho], shocks, axis=1)
    return torch.from_numpy(vol * values).to(torch.float32)


@dataclass(frozen=True)
class Windows:
    """History/outcome pairs: x (..., n, lag) past returns, y (..., n) the next return."""

    x: torch.Tensor
    y: torch.Tensor

    def to(self, device: str | torch.device) -> "Windows":
        return Windows(self.x.to(device), self.y.to(device))


def window_returns(returns: torch.Tensor, lag: int) -> Windows:
    """Cut (..., N, T) returns into N*(T-lag) windows of `lag` returns and their next return.

    Windows never cross from one series into another. Window k of series i sits
    at row i*(T-lag) + k and holds returns[i, k:k+lag]; its target is returns[i, k+lag].
    """
    if returns.dim() < 2:
        raise ValueError(f"returns must be (..., N, T), got shape {tuple(returns.shape)}")
    length = returns.shape[-1]
    check_positive(lag=lag)
    if lag >= length:
        raise ValueError(f"lag must be < series length T={length} (allowed: 1..{length - 1}), got {lag}")
    lead = returns.shape[:-2]
    n, k = returns.shape[-2], length - lag
    x = returns[..., :-1].unfold(-1, lag, 1)  # (..., N, K, lag)
    y = returns[..., lag:]  # (..., N, K)
    return Windows(x.reshape(*lead, n * k, lag).contiguous(), y.reshape(*lead, n * k).contiguous())


def lag1_autocorrelation(returns: torch.Tensor, chunk: int = 64) -> float:
    """Pearson correlation of (r_t, r_{t-1}) pooled over every series of (S, N, T) returns.

    np.corrcoef on the pooled pairs, computed from float64 sums over `chunk`
    replicas at a time: the pairs of a 4096-replica test split would take
    10 GB as np.corrcoef's float64 copies.
    """
    sums = torch.zeros(5, dtype=torch.float64)  # a, b, aa, bb, ab
    count = 0
    for block in returns.split(chunk):
        a, b = block[..., 1:].double(), block[..., :-1].double()
        sums += torch.stack([a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum()])
        count += a.numel()
    sa, sb, saa, sbb, sab = (float(v) for v in sums)
    cov = sab - sa * sb / count
    return cov / ((saa - sa * sa / count) * (sbb - sb * sb / count)) ** 0.5
