"""Typed, validated configuration for the whole study.

`params.yaml` is parsed once into `StudyConfig`. Anything unknown, mistyped or
out of range raises `ConfigError`, naming the key path (`train.lr`) and what is
allowed, before any work starts. This module never touches a file: it takes
plain dicts (see `stages.catalog.load_params` for reading YAML).
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .market_config import MARKET_KINDS, CostsConfig, MarketsConfig, check_names as _check_names
from .memory import TrainShape, evaluation_bytes, parse_bytes, replica_blocks, trainer_bytes
from .seeding import SHARD_ALIGN, max_shards

__all__ = [
    "ConfigError",
    "StudyConfig",
    "RegimeConfig",
    "IIDRegime",
    "AR1Regime",
    "ModelConfig",
    "TrainConfig",
    "parse_config",
    "apply_overrides",
]


class ConfigError(ValueError):
    """A parameter is unknown, mistyped or out of range."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data
class IIDRegime(_Strict):
    """Pure noise: r_t ~ N(0, vol^2), independent over t. Nothing to learn."""

    kind: Literal["iid"] = "iid"
    vol: float = Field(1.0, gt=0, description="std of one return")


class AR1Regime(_Strict):
    """Momentum: r_t = rho * r_{t-1} + e_t, e_t ~ N(0, vol^2), started stationary."""

    kind: Literal["ar1"] = "ar1"
    rho: float = Field(0.2, gt=-1, lt=1, description="lag-1 autocorrelation, |rho| < 1")
    vol: float = Field(1.0, gt=0, description="std of the innovation e_t")


#: every kind of source a regime can name; `neural_trader.sources.SOURCES` maps each tag to its source
RegimeConfig = Annotated[Union[IIDRegime, AR1Regime], Field(discriminator="kind")]
REGIME_KINDS = ("iid", "ar1")


class DataConfig(_Strict):
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
        return _check_names(v, "regime")


# -------------------------------------------------------------------------- models
class ModelConfig(_Strict):
    """One trader variant: lag -> hidden (sigmoid) -> dropout -> 1 (sigmoid)."""

    hidden: int = Field(5, ge=1, le=4096, description="hidden units")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability on the hidden layer, [0, 1)")


class TrainConfig(_Strict):
    """Minibatch RMSprop (torch's defaults: alpha 0.99, eps 1e-8), the seed's optimiser."""

    lr: float = Field(0.01, gt=0, le=10, description="learning rate")
    epochs: int = Field(250, ge=1, le=100_000, description="passes over the training windows")
    batch_size: int = Field(1000, ge=1, description="windows per step")


class SeedsConfig(_Strict):
    count: int = Field(16, ge=2, le=4096, description="independent replicas per variant (batched)")
    base: int = Field(0, ge=0, lt=2**63, description="root of every generator seed")


class CompareConfig(_Strict):
    confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided CI level")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="family-wise error rate (Holm)")
    power: float = Field(0.8, gt=0.5, lt=1, description="power for the minimum detectable effect")
    effect_of_interest: dict[Literal["test_return", "gap"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {"test_return": 0.0001, "gap": 0.001},
        description="per metric, in its units: the smallest difference worth finding. A contrast whose CI lies "
        "inside +-this is called equivalent; an undecided one states the seeds that would detect it")


class RuntimeConfig(_Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    task_runner: Literal["threads", "dask", "sequential"] = "threads"
    max_workers: int = Field(2, ge=1, le=256, description="stage bodies computing at once (threads), or local Dask worker processes")
    dask_address: str | None = Field(None, description="scheduler address for task_runner=dask; None starts a local cluster")
    torch_threads: int = Field(1, ge=1, le=256, description="intra-op threads per process (1 keeps CPU numbers identical)")
    progress: bool = Field(False, description="tqdm bar per training task")
    seed_shards: int = Field(1, ge=1, le=256, description="train each cell's seeds as this many shards (tasks), "
                             "joined into the bytes of one batch; the Prefect flow's scheduling only")
    max_batch_bytes: int | None = Field(
        None, description="memory for one training batch, in bytes or with a unit ('2GiB'); a cell trains its "
        "replicas in blocks of 16 or more that fit. None: half the memory free when a cell starts, "
        "shared by max_workers")

    @field_validator("max_batch_bytes", mode="before")
    @classmethod
    def _bytes(cls, v: Any) -> int | None:
        return None if v is None else parse_bytes(v)


class RegressionConfig(_Strict):
    n: int = Field(10000, ge=10)
    beta0: float = 1.0
    beta1: float = 2.0
    sigma: float = Field(0.5, gt=0)
    lr: float = Field(0.01, gt=0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1000, ge=1)


class ClassifierConfig(_Strict):
    n: int = Field(10000, ge=10)
    n_test: int = Field(10000, ge=10)
    dim: int = Field(100, ge=1)
    hidden: int = Field(2, ge=1)
    lr: float = Field(0.01, gt=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(1000, ge=1)
    bayes_draws: int = Field(1_000_000, ge=1000, description="Monte Carlo draws for the Bayes rate")


class WarmupsConfig(_Strict):
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)


class StudyConfig(_Strict):
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

    @field_validator("models")
    @classmethod
    def _models_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_names(v, "model")

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




# ------------------------------------------------------------------------ parsing
def parse_config(raw: dict[str, Any] | None) -> StudyConfig:
    """Validate a params dict; raise ConfigError naming the first bad key path."""
    try:
        return StudyConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # discriminated unions put the tag in the location ("ar1"); drop it
        loc = [str(p) for p in err["loc"] if p not in (*REGIME_KINDS, *MARKET_KINDS)]
        key = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = (err.get("ctx") or {}).get("tag")
            got = f"unknown source kind {tag!r}" if err["type"] == "union_tag_invalid" else "missing source kind"
            kinds = MARKET_KINDS if loc[:1] == ["markets"] else REGIME_KINDS
            lines.append(f"{key}.kind: {got} (allowed: {', '.join(kinds)})")
            continue
        if not key or msg.startswith(f"{key}."):  # cross-field checks name their own keys
            lines.append(msg)
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] != "missing" and not err["type"].startswith("value_error"):
            msg = f"{msg}, got {err['input']!r}"
        if (hint := _field_hint(loc)) and err["type"] != "extra_forbidden":
            msg = f"{msg} (allowed: {hint})"
        elif loc and loc[-1] == "rho":
            msg = f"{msg} (allowed: > -1 and < 1)"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def _field_hint(loc: list[str]) -> str | None:
    """The allowed range of the field at `loc`, from its constraints, e.g. '> 0 and <= 10'."""
    model: Any = StudyConfig
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields and part in fields:
            info = fields[part]
            model = info.annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]  # the key is a user-chosen name
            if typing.get_origin(model) is typing.Annotated:  # a union of regimes
                model = None
            info = None
        else:
            return None
    if info is None:
        return None
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = [
        f"{sym} {getattr(m, op)}" for m in info.metadata for op, sym in ops.items() if hasattr(m, op)
    ]
    return " and ".join(bounds) or None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with `key.path=value` overrides applied.

    Values are parsed as JSON when they parse (numbers, true/false, null, lists,
    objects) and kept as strings otherwise.
    """
    out = json.loads(json.dumps(raw or {}))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key in {path!r}")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out
