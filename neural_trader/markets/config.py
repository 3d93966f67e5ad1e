"""Typed config of the real-prices study: price sources, walk-forward folds, variants, costs, bootstrap.

Sections `markets` and `costs` of params.yaml (`neural_trader.params` assembles them);
`neural_trader.config` says how errors name their key. Lengths are in trading days (rows of the price
series); costs are in basis points (1 bp = 0.01%) per unit of position change.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from neural_trader.config import Strict, check_names

__all__ = ["CsvMarket", "DatasetMarket", "MarketConfig", "WalkForwardConfig", "MarketModel", "MarketsConfig",
           "CostsConfig", "PRICES_DIR", "MARKET_KINDS"]

#: where CSV price files live in the workspace: dvc.yaml tracks this folder as a dependency
PRICES_DIR = "prices"


class CsvMarket(Strict):
    """A CSV of dates and closes in the workspace's prices/ folder."""

    kind: Literal["csv"] = "csv"
    path: str = Field(description="relative to the workspace, inside prices/, e.g. prices/mine.csv")
    date_column: str = Field("Date", min_length=1)
    price_column: str | None = Field(None, description="None: 'Adj Close' if present, else 'Close'")

    @field_validator("path")
    @classmethod
    def _inside_prices(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or p.parts[:1] != (PRICES_DIR,) or len(p.parts) < 2:
            raise ValueError(f"must be a file inside {PRICES_DIR}/ (dvc.yaml tracks that folder), got {v!r}")
        return p.as_posix()


class DatasetMarket(Strict):
    """A daily series shipped inside the arch package: works offline, no download."""

    kind: Literal["dataset"] = "dataset"
    name: Literal["sp500", "nasdaq", "wti"] = "sp500"
    price_column: str | None = Field(None, description="None: Adj Close (sp500, nasdaq), DCOILWTICO (wti)")


MarketConfig = Annotated[Union[CsvMarket, DatasetMarket], Field(discriminator="kind")]
MARKET_KINDS = ("csv", "dataset")


class WalkForwardConfig(Strict):
    """Folds in trading days: train | embargo | valid | embargo | test, moved forward by `test` each fold."""

    train: int = Field(1000, ge=20, description="days of the training window (expanding: of the first fold)")
    valid: int = Field(250, ge=5, description="days of the validation window that picks each replica's best epoch")
    test: int = Field(250, ge=5, description="days of each out-of-sample segment; also the step between folds")
    scheme: Literal["rolling", "expanding"] = "rolling"
    embargo: int = Field(5, ge=1, le=1000, description="days left out between segments; at least markets.lag")


class MarketModel(Strict):
    """A variant traded on real prices: lag -> hidden sigmoid -> dropout -> position; hidden 0 is linear."""

    hidden: int = Field(5, ge=0, le=4096, description="hidden units; 0: the linear trader sigmoid(w.x + b)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the hidden layer, [0, 1)")

    @model_validator(mode="after")
    def _linear_has_no_dropout(self) -> "MarketModel":
        if self.hidden == 0 and self.dropout > 0:
            raise ValueError("dropout: the linear trader (hidden 0) has no hidden layer to drop, set dropout 0")
        return self


def _default_models() -> dict[str, MarketModel]:
    return {"base": MarketModel(), "dropout": MarketModel(dropout=0.5), "linear": MarketModel(hidden=0)}


class MarketsConfig(Strict):
    regimes: dict[str, MarketConfig] = Field(default_factory=lambda: {"sp500": DatasetMarket()})
    lag: int = Field(4, ge=1, le=250, description="past daily returns the trader sees")
    vol_window: int = Field(60, ge=2, le=2000, description="days in the volatility that scales the inputs")
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    models: dict[str, MarketModel] = Field(default_factory=_default_models)
    epochs: int = Field(100, ge=1, le=100_000, description="passes over each fold's training window "
                        "(with batch_size >= train, one step each); the best is picked on validation")
    lr: float = Field(0.01, gt=0, le=10, description="RMSprop learning rate of the market traders")
    batch_size: int = Field(1000, ge=1, description="rows a step; at least the training window: one step an epoch")
    reps: int = Field(1000, ge=100, le=100_000, description="stationary-bootstrap resamples (CIs and SPA)")
    bootstrap_seed: int = Field(0, ge=0, lt=2**32, description="seed of every bootstrap: same params, same bytes")

    @field_validator("regimes")
    @classmethod
    def _markets_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_names(v, "market", required=False)  # no market: the synthetic study alone

    @field_validator("models")
    @classmethod
    def _models_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_names(v, "model")

    @model_validator(mode="after")
    def _embargo_covers_the_lag(self) -> "MarketsConfig":
        if self.walk_forward.embargo < self.lag:
            raise ValueError(f"markets.walk_forward.embargo: must be >= markets.lag ({self.lag}) so no input window "
                             f"straddles two segments, got {self.walk_forward.embargo}")
        return self

    @property
    def cells(self) -> list[tuple[str, str]]:
        """Every (market, model) pair, in params order."""
        return [(r, m) for r in self.regimes for m in self.models]


class CostsConfig(Strict):
    bps: float = Field(5.0, ge=0, le=1000, description="cost per unit of position change, in basis points")
