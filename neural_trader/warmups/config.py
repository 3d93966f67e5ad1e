"""The warm-ups' sections (`warmups.regression`, `warmups.classifier`): data sizes, truths and training."""

from __future__ import annotations

from pydantic import Field

from neural_trader.config import Strict

__all__ = ["RegressionConfig", "ClassifierConfig", "WarmupsConfig"]


class RegressionConfig(Strict):
    n: int = Field(10000, ge=10)
    beta0: float = 1.0
    beta1: float = 2.0
    sigma: float = Field(0.5, gt=0)
    lr: float = Field(0.01, gt=0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1000, ge=1)


class ClassifierConfig(Strict):
    n: int = Field(10000, ge=10)
    n_test: int = Field(10000, ge=10)
    dim: int = Field(100, ge=1)
    hidden: int = Field(2, ge=1)
    lr: float = Field(0.01, gt=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(1000, ge=1)
    bayes_draws: int = Field(1_000_000, ge=1000, description="Monte Carlo draws for the Bayes rate")


class WarmupsConfig(Strict):
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
