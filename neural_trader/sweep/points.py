"""The sweep: a grid of study points over named axes, each point one study run with a few keys overridden.

params.yaml spelling (its own `sweep` section, parsed by `parse_sweep`)::

    sweep:
      dropout: [0.0, 0.1, 0.3, 0.5]   # the contrast axis: each point trains one model per value, paired by seed
      axes:                           # the grid: any other key of the study, values in the order given
        hidden: [5, 32, 128]          # shorthand: the hidden units of every model of the point
        data.n_train: [100, 1000, 10000]
        rho: [0.0, 0.1, 0.2]          # shorthand: the rho of the point's single AR(1) regime (0: pure noise)
      fdr: bh                         # bh (Benjamini-Hochberg false discovery rate) | holm (family-wise)
      alpha: 0.05                     # q threshold (bh) or family-wise level (holm)

A point is defined by the non-dropout axes. Its study has:

* one model per dropout value, named by `model_name` (`d0`, `d0_1`, `d0_5`),
  the reference `d0` first, all with the point's hidden units (the study's
  first model's when `hidden` is not an axis), so replica s of every model
  shares its data draw and initial weights: contrasts pair by seed;
* a single regime: the study's first `ar1` regime (name and vol kept) with the
  point's rho (the study's when `rho` is not an axis);
* every other axis key set to the point's value.

Keys under `models.` are not axes (use `hidden` and `sweep.dropout`), nor is
`data.regimes.<name>.rho` (use `rho`); `data.regimes.<name>.vol` is.

Point names are built from the axis values (`hidden32-n_train100-rho0p1`,
letters, digits, '_' and '-' only), so appending a value to an axis only adds
points: existing points keep their names and patches (their position in the
list may shift). Appending a dropout value renames nothing and adds one model
to every point; existing models keep their names and settings. Adding a new
axis necessarily renames every point (each name gains a part).

Nothing here reads a file or imports the study's config: functions take the
study's raw params dict (the `sweep` key, if present, is ignored), a
`SweepConfig` and the caller's parser (`neural_trader.params.parse_config`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from neural_trader.config import ConfigError, merge_params, suggest_key

from neural_trader.sweep.names import _point_name, _prefixes, _value_label, model_name

__all__ = ["SweepConfig", "Point", "SHORTHANDS", "REFERENCE", "parse_sweep", "model_name", "expand",
           "validate_sweep"]

#: axis names that are not study keys, and what they set
SHORTHANDS = {"hidden": "the hidden units of every model of the point",
              "rho": "the rho of the point's single AR(1) regime"}
#: the dropout value every other one is compared against
REFERENCE = 0.0


# ------------------------------------------------------------------ config
#: a dropout probability, as the synthetic study's models bound it
_DROPOUT = TypeAdapter(Annotated[float, Field(ge=0.0, lt=1.0)])

#: params dict -> the validated study (`neural_trader.params.parse_config`), handed in by the caller
Parse = Callable[[dict[str, Any]], Any]


class SweepConfig(BaseModel):
    """The `sweep` section: the contrast axis, the grid axes and the multiplicity control."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: list[float] = Field(default_factory=lambda: [0.0, 0.5],
                                 description="dropout values trained at every point; must hold 0.0, the reference")
    axes: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="dotted study key (or a shorthand) -> values, in grid order")
    fdr: Literal["bh", "holm"] = Field("bh", description="bh: Benjamini-Hochberg FDR; holm: family-wise")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="q threshold (bh) or family-wise level (holm)")

    @field_validator("dropout")
    @classmethod
    def _dropout_ok(cls, v: list[float]) -> list[float]:
        for d in v:
            try:
                _DROPOUT.validate_python(d)  # a model's own bounds, [0, 1)
            except ValidationError as exc:
                raise ValueError(f"sweep.dropout: {d!r} is not allowed: {exc.errors()[0]['msg']} "
                                 "(allowed: >= 0 and < 1)") from None
        if len(set(v)) != len(v):
            raise ValueError(f"sweep.dropout: duplicate values in {v}")
        if REFERENCE not in v:
            raise ValueError(f"sweep.dropout: must hold {REFERENCE}, the reference every value is compared with, "
                             f"got {v}")
        if len(v) < 2:
            raise ValueError("sweep.dropout: needs at least one value besides the reference 0.0")
        return v

    @field_validator("axes")
    @classmethod
    def _axes_ok(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            _check_axis(key, values)
        return v


def _check_axis(key: str, values: list[Any]) -> None:
    where = f"sweep.axes.{key}"
    if key == "dropout":
        raise ValueError(f"{where}: dropout is the contrast axis; list its values under sweep.dropout")
    if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
        raise ValueError(f"{where}: not a dotted key of the study")
    if not values:
        raise ValueError(f"{where}: needs at least one value")
    labels: dict[str, Any] = {}
    for value in values:
        label = _value_label(value, where)
        if label in labels:
            raise ValueError(f"{where}: values {labels[label]!r} and {value!r} give the same point name "
                             "(duplicate values?)")
        labels[label] = value


def parse_sweep(raw: dict[str, Any] | None) -> SweepConfig:
    """Validate the `sweep` section; raise ConfigError naming the first bad key path (`sweep.dropout`)."""
    try:
        return SweepConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("sweep."):  # our validators name their own key
            lines.append(msg)
            continue
        key = ".".join(["sweep", *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            msg = "unknown key (allowed: dropout, axes, fdr, alpha)"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg}, got {err['input']!r}"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


# ------------------------------------------------------------------ points
@dataclass(frozen=True)
class Point:
    """One grid point: its name, axis values, the patch that makes its study, and its models.

    name: unique and safe as a folder or DVC stage key (letters, digits, '_', '-').
    values: {axis: value}, axes in sweep order.
    patch: nested dict laid on the sweep's base study by `config.merge_params`: each axis value at its
        key, `hidden` at every model, `rho` at the single regime.
    models: {model name: dropout}, the reference first.
    settings: the point's effective hidden units, training series and rho, swept or not.
    regime: the name of the point's single AR(1) regime (its cells are `<regime>-<model>`).
    """

    name: str
    values: dict[str, Any]
    patch: dict[str, Any]
    models: dict[str, float]
    settings: dict[str, Any]
    regime: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "values": dict(self.values), "settings": dict(self.settings)}


@dataclass(frozen=True)
class _Base:
    """The study every point patches, and what the points take from it."""

    raw: dict[str, Any]        # the study's params with one model per dropout value, one AR(1) regime, no market
    hidden: int                # the study's first model's hidden units
    n_train: int
    regime_name: str
    rho: float
    models: dict[str, float]   # {model name: dropout}, the reference first
    keys: frozenset[str]       # dotted leaf keys an axis may name


def _study_only(raw: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (raw or {}).items() if k != "sweep"}


def _dropouts(sweep: SweepConfig) -> list[float]:
    """The reference first, then the others in the order given."""
    return [REFERENCE] + [float(d) for d in sweep.dropout if d != REFERENCE]


def _base(raw: dict[str, Any], sweep: SweepConfig, parse: Parse) -> _Base:
    study = parse(raw)  # the study itself is checked first, naming its own keys
    ar1 = [(n, r) for n, r in study.data.regimes.items() if r.kind == "ar1"]
    if ar1:
        name, regime = ar1[0][0], ar1[0][1].model_dump(mode="json")
    elif "rho" in sweep.axes:
        name, regime = "momentum", {"kind": "ar1", "rho": 0.0, "vol": 1.0}
    else:
        raise ConfigError("sweep.axes.rho: the study has no ar1 regime to take rho from; add a rho axis")
    hidden = next(iter(study.models.values())).hidden
    models = {model_name(d): d for d in _dropouts(sweep)}
    shaped = {**raw, "models": {m: {"hidden": hidden, "dropout": d} for m, d in models.items()},
              "data": {**raw.get("data", {}), "regimes": {name: regime}},
              "markets": {**raw.get("markets", {}), "regimes": {}}}  # markets are not swept
    keys = frozenset(_leaves(parse(shaped)))  # valid here, so a point's error is its axis values'
    return _Base(shaped, hidden, study.data.n_train, name, regime["rho"], models, keys)


def _leaves(cfg: Any) -> list[str]:
    """Every dotted key of a study whose value is not a section."""
    out: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        else:
            out.append(path)

    walk(cfg.model_dump(mode="json", exclude={"sweep"}), "")  # the grid is not a key of its own points
    return out


def _check_key(key: str, base: _Base) -> None:
    where = f"sweep.axes.{key}"
    regime = f"data.regimes.{base.regime_name}"
    if key in SHORTHANDS:
        return
    if key == "models" or key.startswith("models."):
        raise ConfigError(f"{where}: each point trains one model per value of sweep.dropout; "
                          "sweep the hidden units with the `hidden` axis")
    if key == f"{regime}.rho":
        raise ConfigError(f"{where}: sweep the regime's rho with the `rho` axis")
    if key == f"{regime}.kind":
        raise ConfigError(f"{where}: each point's regime is AR(1); rho 0 in the `rho` axis is pure noise")
    if key.startswith("data.regimes") and not key.startswith(f"{regime}."):
        raise ConfigError(f"{where}: each point's study has the single regime {base.regime_name!r}; "
                          f"name its keys as {regime}.<key>")
    if key in base.keys:
        return
    under = sorted(k for k in base.keys if k.startswith(f"{key}."))
    if under:
        raise ConfigError(f"{where}: a section, not a key; name one of its keys, e.g. {under[0]}")
    choices = sorted(k for k in base.keys if not k.startswith(("models.", f"{regime}.rho", f"{regime}.kind")))
    choices += list(SHORTHANDS)
    raise ConfigError(f"{where}: not a key of the study{suggest_key(key, choices)}")


def _axis_patch(key: str, value: Any, base: _Base) -> dict[str, Any]:
    """The nested patch that sets one axis value on the base study."""
    if key == "hidden":
        return {"models": {m: {"hidden": value} for m in base.models}}
    path = f"data.regimes.{base.regime_name}.rho" if key == "rho" else key
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def _grid(study_raw: dict[str, Any], sweep: SweepConfig, parse: Parse) -> tuple[_Base, list[Point]]:
    base = _base(_study_only(study_raw), sweep, parse)
    keys = list(sweep.axes)
    for key in keys:
        _check_key(key, base)
    prefixes = _prefixes(keys)
    points = []
    for combo in itertools.product(*(sweep.axes[k] for k in keys)):
        values = dict(zip(keys, combo))
        patch: dict[str, Any] = {}
        for key, value in values.items():
            patch = merge_params(patch, _axis_patch(key, value, base))
        settings = {"hidden": values.get("hidden", base.hidden),
                    "n_train": values.get("data.n_train", base.n_train),
                    "rho": values.get("rho", base.rho)}
        points.append(Point(_point_name(values, prefixes), values, patch, dict(base.models), settings,
                            base.regime_name))
    return base, points


def expand(study_raw: dict[str, Any], sweep: SweepConfig, parse: Parse) -> list[Point]:
    """Every grid point, in a fixed order: the product of the axes, first axis slowest.

    Checks the study and that each axis names a key of it (ConfigError naming
    `sweep.axes.<key>`, with a close match as a hint); values are checked by
    `validate_sweep`.
    """
    return _grid(study_raw, sweep, parse)[1]


def validate_sweep(study_raw: dict[str, Any], sweep: SweepConfig, parse: Parse) -> list[tuple[Point, Any]]:
    """Every grid point with its study (what `parse` returns), each validated once, before any work.

    The first bad point raises ConfigError naming `sweep.axes.<key>` and the value.
    """
    base, points = _grid(study_raw, sweep, parse)
    return [(point, _point_config(base, point, parse)) for point in points]


def _point_config(base: _Base, point: Point, parse: Parse) -> Any:
    try:
        return parse(merge_params(base.raw, point.patch))
    except ConfigError as exc:
        raise ConfigError(_blame(base, point, parse, exc)) from None


def _blame(base: _Base, point: Point, parse: Parse, exc: ConfigError) -> str:
    """The point's error, pinned on the first axis whose value alone breaks the (valid) base study."""
    for axis, value in point.values.items():
        try:
            parse(merge_params(base.raw, _axis_patch(axis, value, base)))
        except ConfigError:
            return f"sweep.axes.{axis}: value {value!r} is invalid (point {point.name}): {exc}"
    return f"sweep point {point.name}: {exc}"  # each value is fine alone: their combination is not
