"""params.yaml whole: one section per study, assembled from the wings' own sections and validated at once.

`parse_config` is the one door from a plain dict to a `StudyConfig`; cross-section
checks (the lag against the series length, seed shards, the memory budget) live
here. Nothing in the shared base or in a wing imports this module: stages and
flows hand each wing its sections.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from neural_trader.config import ConfigError, RuntimeConfig, SeedsConfig, Strict, check_names, describe_error
from neural_trader.markets.config import MARKET_KINDS, CostsConfig, MarketsConfig
from neural_trader.memory import TrainShape, evaluation_bytes, replica_blocks, trainer_bytes
from neural_trader.seeding import SHARD_ALIGN, max_shards
from neural_trader.sweep.points import Point, SweepConfig, expand, parse_sweep
from neural_trader.synthetic.config import REGIME_KINDS, CompareConfig, DataConfig, ModelConfig, TrainConfig
from neural_trader.warmups.config import WarmupsConfig

__all__ = ["StudyConfig", "parse_config", "sweep_points"]


class StudyConfig(Strict):
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    models: dict[str, ModelConfig] = Field(
        default_factory=lambda: {"base": ModelConfig(), "dropout": ModelConfig(dropout=0.5)}
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    warmups: WarmupsConfig = Field(default_factory=WarmupsConfig)
    markets: MarketsConfig = Field(default_factory=MarketsConfig)  # real prices, walk-forward
    costs: CostsConfig = Field(default_factory=CostsConfig)
    sweep: SweepConfig | None = None  # the grid over this study (`neural-trader run sweep`); None at a grid point

    @field_validator("models")
    @classmethod
    def _models_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_names(v, "model")

    @model_validator(mode="after")
    def _lag_fits(self) -> "StudyConfig":
        if self.data.lag >= self.data.length:
            raise ValueError(
                f"data.lag: must be < data.length ({self.data.length}), got {self.data.lag}"
            )
        if self.runtime.seed_shards > (most := max_shards(self.seeds.count)):
            raise ValueError(f"runtime.seed_shards: must be <= {most} (seeds.count {self.seeds.count} in shards of "
                             f"{SHARD_ALIGN} replicas or more, for one batch's bytes), got {self.runtime.seed_shards}")
        if (budget := self.runtime.max_batch_bytes) is not None:
            d, windows = self.data, self.data.length - self.data.lag
            for shape in self.train_shapes():
                replica_blocks(self.seeds.count, trainer_bytes(shape), budget)
                replica_blocks(self.seeds.count, evaluation_bytes(d.n_test * windows, shape.rows, d.lag, shape.hidden),
                               budget)
        return self

    def train_shapes(self, model: str | None = None) -> list[TrainShape]:
        """What one replica of each synthetic cell's training holds (or of `model`'s), for the memory budget."""
        d, windows = self.data, self.data.length - self.data.lag
        return [TrainShape(d.n_train * windows, d.n_valid * windows, d.lag, m.hidden, self.train.batch_size, m.dropout)
                for name, m in self.models.items() if model in (None, name)]

    @property
    def cells(self) -> list[tuple[str, str]]:
        """Every (regime, model) pair of the grid, in params order."""
        return [(r, m) for r in self.data.regimes for m in self.models]

    def section(self, path: str) -> Any:
        """The JSON-ready value at a dotted key path, e.g. `data.regimes.momentum`."""
        node: Any = self.model_dump(mode="json")
        for part in path.split("."):
            node = node[part]
        return node


def parse_config(raw: dict[str, Any] | None) -> StudyConfig:
    """Validate a params dict; raise ConfigError naming the first bad key path."""
    raw = dict(raw or {})
    if raw.get("sweep") is not None:  # first, in the sweep's own words (`sweep.dropout: ...`)
        raw["sweep"] = parse_sweep(raw["sweep"])
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, StudyConfig, {"data": REGIME_KINDS, "markets": MARKET_KINDS})) from None


def sweep_points(cfg: StudyConfig) -> list[Point]:
    """The grid points of the study's `sweep` section (the defaults without one): names, models, regime.

    Each point's study is not validated again (`load_sweep` did, before the flow ran).
    """
    return expand(cfg.model_dump(mode="json"), cfg.sweep or SweepConfig(), parse_config)
