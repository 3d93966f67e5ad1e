"""The seed's 1-D linear regression: y = beta0 + beta1 x + sigma eps, fitted by MSE."""

from __future__ import annotations

import dataclasses
import math

import torch

from neural_trader.warmups.config import RegressionConfig
from neural_trader.models import LinearRegression1D
from neural_trader.train import History, OnEpoch, fit
from neural_trader.warmups._common import Seeds, _as_streams, _replicate

REGRESSION_COLUMNS = ("beta0", "beta1", "loss")


def regression_data(cfg: RegressionConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n,), y (n,)) with y = beta0 + beta1 * x + sigma * eps; x then eps drawn from `generator`."""
    dev = generator.device
    x = torch.randn(cfg.n, generator=generator, device=dev)
    eps = torch.randn(cfg.n, generator=generator, device=dev)
    return x, cfg.beta0 + cfg.beta1 * x + cfg.sigma * eps


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (S, B), (S, B) -> (S,)
    return ((out - y) ** 2).mean(dim=1)


def fit_regression(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: RegressionConfig,
    seeds: Seeds,
    on_epoch: OnEpoch | None = None,
    device: str | torch.device = "cpu",
) -> tuple[LinearRegression1D, History]:
    """Fit y ~ beta0 + beta1 * x by minibatch RMSprop on the MSE, both betas starting at 0.

    Uses cfg.lr, cfg.epochs and cfg.batch_size; `seeds`, one 63-bit int per
    replica (an int for one), key each replica's epoch shuffles (`Streams`). History columns REGRESSION_COLUMNS: beta0 and beta1
    at the end of each epoch, and loss, the mean over the epoch's batches of the
    batch MSE (each taken before that batch's update).
    """
    streams = _as_streams(seeds)
    if x.dim() != 1 or y.shape != x.shape:
        raise ValueError(f"x and y must be (n,) of equal length, got {tuple(x.shape)} and {tuple(y.shape)}")
    dev, s = torch.device(device), len(streams)
    model = LinearRegression1D(replicas=s).to(dev)
    hist, _ = fit(
        model,
        _mse,
        _replicate(x, s, dev),
        _replicate(y, s, dev),
        streams,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        batch_stats=lambda out, yb: _mse(out, yb).unsqueeze(1),
        valid_stats=lambda m: torch.cat([m.beta0, m.beta1], dim=1),  # (S, 2)
        columns=("loss", "beta0", "beta1"),
        on_epoch=on_epoch,
    )
    order = [hist.columns.index(c) for c in REGRESSION_COLUMNS]
    return model, dataclasses.replace(hist, values=hist.values[..., order], columns=REGRESSION_COLUMNS)


def regression_report(
    model: LinearRegression1D,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: RegressionConfig,
    *,
    ddof: int = 0,
    replica: int = 0,
) -> dict[str, float]:
    """Recovered beta0, beta1 and sigma of one replica next to the truth, with absolute errors.

    sigma is backed out from the residuals r = y - beta0 - beta1 * x as
    sqrt(sum(r^2) / (n - ddof)). The default ddof=0 is the Gaussian maximum
    likelihood estimate given the fitted betas (sqrt of the mean squared
    residual); ddof=2 gives the usual unbiased-variance version for a
    two-parameter fit. At the seed's n=10000 they differ by 1e-4 relative.
    """
    n = x.shape[0]
    if not 0 <= ddof < n:
        raise ValueError(f"ddof must be in [0, n), got {ddof}")
    with torch.no_grad():
        b0 = float(model.beta0[replica, 0])
        b1 = float(model.beta1[replica, 0])
        resid = y.double().cpu() - b0 - b1 * x.double().cpu()
        sigma = math.sqrt(float((resid**2).sum()) / (n - ddof))
    out: dict[str, float] = {}
    for name, got, true in (("beta0", b0, cfg.beta0), ("beta1", b1, cfg.beta1), ("sigma", sigma, cfg.sigma)):
        out[name] = got
        out[f"{name}_true"] = float(true)
        out[f"{name}_error"] = abs(got - true)
    return out

