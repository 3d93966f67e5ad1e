"""The seed's noisy-hyperplane classifier and its Bayes rate (simulated and by quadrature)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from scipy import integrate
from scipy.special import expit

from neural_trader.warmups.config import ClassifierConfig
from neural_trader.models import Classifier
from neural_trader.train import History, OnEpoch, fit
from neural_trader.warmups._common import Seeds, _as_streams, _init_generators, _replicate

CLASSIFIER_COLUMNS = ("accuracy", "false_pos", "false_neg")
TEST_COLUMNS = tuple(f"test_{c}" for c in CLASSIFIER_COLUMNS)

CLASSIFIER_BETA0 = 0.0  # the seed's hyperplane offset


def classifier_beta1(dim: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """The seed's hyperplane normal: ones(dim)."""
    return torch.ones(dim, device=device)


# ---------------------------------------------------------------------- classifier
def _logistic(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) float64 standard logistic draws, log(u) - log(1 - u) for u ~ U(0, 1)."""
    u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    u = u.clamp_min(torch.finfo(torch.float64).tiny)  # rand is [0, 1): keep log(u) finite
    return torch.log(u) - torch.log1p(-u)


def classifier_data(
    cfg: ClassifierConfig, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n, dim) float32, label (n,) int64): label = 1{beta0 + x @ beta1 + logistic noise > 0}.

    x ~ N(0, I_dim) is drawn first, then the noise, both from `generator`.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    dev = generator.device
    x = torch.randn(n, cfg.dim, generator=generator, device=dev)
    z = CLASSIFIER_BETA0 + (x @ classifier_beta1(cfg.dim, dev)).double()
    label = (z + _logistic(n, generator) > 0).long()
    return x, label


def classifier_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per replica: (S, B, 2), (S, B) -> (S,)."""
    s, b = label.shape
    return F.cross_entropy(logits.reshape(s * b, 2), label.reshape(s * b), reduction="none").view(s, b).mean(dim=1)


def classifier_stats(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """(S, 3) accuracy, false_pos, false_neg: the seed's stats, shares of all rows.

    predict = logit1 >= logit0; false_pos = mean(predict & ~target), false_neg =
    mean(~predict & target), so accuracy + false_pos + false_neg = 1.
    """
    predict = logits[..., 1] >= logits[..., 0]
    target = label == 1
    return torch.stack(
        [
            (predict == target).float().mean(dim=1),
            (predict & ~target).float().mean(dim=1),
            (~predict & target).float().mean(dim=1),
        ],
        dim=1,
    )


def fit_classifier(
    x: torch.Tensor,
    label: torch.Tensor,
    cfg: ClassifierConfig,
    seeds: Seeds,
    valid: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_epoch: OnEpoch | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Classifier, History]:
    """Train the seed's dim -> cfg.hidden -> 2 classifier with cross-entropy and minibatch RMSprop.

    `seeds`, one 63-bit int per replica (an int for one), seed the replica's
    initial weights (a CPU generator) and key its epoch shuffles (`Streams`). History columns: CLASSIFIER_COLUMNS, each the mean
    over the epoch's batches of the batch statistic (taken before that batch's
    update, as in the seed), then, when `valid` = (x_test, label_test) is given,
    TEST_COLUMNS on that set after the epoch.
    """
    streams = _as_streams(seeds)
    if x.dim() != 2 or x.shape[1] != cfg.dim or label.shape != x.shape[:1]:
        raise ValueError(
            f"x must be (n, {cfg.dim}) and label (n,), got {tuple(x.shape)} and {tuple(label.shape)}"
        )
    dev, s = torch.device(device), len(streams)
    model = Classifier(_init_generators(streams), dim=cfg.dim, hidden=cfg.hidden).to(dev)
    columns, valid_stats = CLASSIFIER_COLUMNS, None
    if valid is not None:
        vx, vy = _replicate(valid[0], s, dev), _replicate(valid[1], s, dev)
        valid_stats = lambda m: classifier_stats(m(vx), vy)  # noqa: E731
        columns = CLASSIFIER_COLUMNS + TEST_COLUMNS
    hist, _ = fit(
        model,
        classifier_loss,
        _replicate(x, s, dev),
        _replicate(label, s, dev),
        streams,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        batch_stats=classifier_stats,
        valid_stats=valid_stats,
        columns=columns,
        on_epoch=on_epoch,
    )
    return model, hist


def bayes_rate(cfg: ClassifierConfig, draws: int, generator: torch.Generator, chunk: int = 100_000) -> float:
    """Monte Carlo accuracy of the Bayes classifier (predict 1 iff beta0 + x @ beta1 > 0).

    Simulates `draws` fresh rows with `classifier_data` (in chunks of `chunk` rows
    to bound memory) and scores the Bayes rule against their labels. The
    standard error is about sqrt(p (1 - p) / draws): 2e-4 at 10^6 draws.
    """
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    beta1 = classifier_beta1(cfg.dim, generator.device)
    correct, left = 0, draws
    while left > 0:
        n = min(chunk, left)
        x, label = classifier_data(cfg, n, generator)
        predict = (CLASSIFIER_BETA0 + x @ beta1 > 0).long()
        correct += int((predict == label).sum())
        left -= n
    return correct / draws


def bayes_rate_integral(cfg: ClassifierConfig) -> float:
    """The Bayes accuracy E[sigmoid(|z|)], z ~ N(beta0, |beta1|^2), by numerical quadrature.

    With u ~ N(0, 1) and z = beta0 + s u (s = |beta1| = sqrt(dim) here) this is
    the integral of sigmoid(|beta0 + s u|) phi(u) du, split at the kink u = -beta0 / s.
    """
    s = math.sqrt(float((classifier_beta1(cfg.dim) ** 2).sum()))
    m = CLASSIFIER_BETA0
    kink = -m / s

    def f(u: float) -> float:
        return expit(abs(m + s * u)) * math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)

    lo, _ = integrate.quad(f, -math.inf, kink, epsabs=1e-12, epsrel=1e-10)
    hi, _ = integrate.quad(f, kink, math.inf, epsabs=1e-12, epsrel=1e-10)
    return lo + hi


def classifier_report(
    model: Classifier,
    x_test: torch.Tensor,
    label_test: torch.Tensor,
    cfg: ClassifierConfig,
    bayes: float,
    *,
    replica: int = 0,
) -> dict[str, Any]:
    """Test accuracy, false_pos and false_neg of one replica, the Bayes rate and the gap to it.

    gap = bayes - accuracy: how much accuracy the network leaves on the table
    relative to the best possible classifier. `bayes` is the population rate
    (`bayes_rate` or `bayes_rate_integral`), so the gap carries the test set's
    sampling noise (std about 0.002 at 10^4 rows) and can be slightly negative.
    bayes_test, the Bayes rule's accuracy on this very test set, and gap_test =
    bayes_test - accuracy remove most of that noise: both rules face the same rows.
    """
    dev = next(model.parameters()).device
    s = model.layer0.weight.shape[0]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        stats = classifier_stats(model(_replicate(x_test, s, dev)), _replicate(label_test, s, dev))
    model.train(was_training)
    acc, fp, fn = (float(v) for v in stats[replica])
    z = CLASSIFIER_BETA0 + x_test @ classifier_beta1(cfg.dim, x_test.device)
    bayes_test = float(((z > 0).long() == label_test).double().mean())
    return {
        "accuracy": acc,
        "false_pos": fp,
        "false_neg": fn,
        "bayes": float(bayes),
        "gap": float(bayes) - acc,
        "bayes_test": bayes_test,
        "gap_test": bayes_test - acc,
        "n_test": int(x_test.shape[0]),
        "dim": cfg.dim,
        "hidden": cfg.hidden,
    }
