"""The synthetic study's sections: regimes of known law, data sizes, the trader variants, training, comparison."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from neural_trader.config import Strict, check_names

__all__ = ["IIDRegime", "AR1Regime", "RegimeConfig", "REGIME_KINDS", "DataConfig", "ModelConfig", "TrainConfig",
           "CompareConfig"]


class IIDRegime(Strict):
    """Pure noise: r_t ~ N(0, vol^2), independent over t. Nothing to learn."""

    kind: Literal["iid"] = "iid"
    vol: float = Field(1.0, gt=0, description="std of one return")


class AR1Regime(Strict):
    """Momentum: r_t = rho * r_{t-1} + e_t, e_t ~ N(0, vol^2), started stationary."""

    kind: Literal["ar1"] = "ar1"
    rho: float = Field(0.2, gt=-1, lt=1, description="lag-1 autocorrelation, |rho| < 1")
    vol: float = Field(1.0, gt=0, description="std of the innovation e_t")


#: every kind of source a regime can name; `neural_trader.synthetic.sources.SOURCES` maps each tag to its source
RegimeConfig = Annotated[Union[IIDRegime, AR1Regime], Field(discriminator="kind")]
REGIME_KINDS = ("iid", "ar1")


class DataConfig(Strict):
    n_train: int = Field(1000, ge=1, description="training series per replica (seed's N)")
    n_valid: int = Field(100, ge=1, description="validation series per replica (seed's M)")
    n_test: int = Field(4000, ge=1, description="held-out test series per replica, an independent draw for each")
    length: int = Field(20, ge=2, description="time steps per series (seed's T)")
    lag: int = Field(4, ge=1, description="returns the trader sees (seed's L); must be < length")
    regimes: dict[str, RegimeConfig] = Field(
        default_factory=lambda: {"random": IIDRegime(), "momentum": AR1Regime(rho=0.2)}
    )

    @field_validator("regimes")
    @classmethod
    def _names_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_names(v, "regime")


# -------------------------------------------------------------------------- models
class ModelConfig(Strict):
    """One trader variant: lag -> hidden (sigmoid) -> dropout -> 1 (sigmoid)."""

    hidden: int = Field(5, ge=1, le=4096, description="hidden units")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability on the hidden layer, [0, 1)")


class TrainConfig(Strict):
    """Minibatch RMSprop (torch's defaults: alpha 0.99, eps 1e-8), the seed's optimiser."""

    lr: float = Field(0.01, gt=0, le=10, description="learning rate")
    epochs: int = Field(250, ge=1, le=100_000, description="passes over the training windows")
    batch_size: int = Field(1000, ge=1, description="windows per step")


class CompareConfig(Strict):
    confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided CI level")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="family-wise error rate (Holm)")
    power: float = Field(0.8, gt=0.5, lt=1, description="power for the minimum detectable effect")
    effect_of_interest: dict[Literal["test_return", "gap"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {"test_return": 0.0001, "gap": 0.001},
        description="per metric, in its units: the smallest difference worth finding. A contrast whose CI lies "
        "inside ±this is called equivalent; an undecided one states the seeds that would detect it")
