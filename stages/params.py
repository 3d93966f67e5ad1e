"""Reading params.yaml, once and strictly: the study, its sweep, and the market files it names.

Part of the catalog (`stages.catalog` re-exports these): the only place that
reads the params file. An empty file, a duplicate key, invalid YAML, an
unknown or out-of-range key, or a bad price file raises ConfigError or
ValueError naming the file (and key, line), or the `--set` override at
fault, before any work starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from neural_trader.config import ConfigError, apply_overrides, merge_params
from neural_trader.params import StudyConfig, parse_config

if TYPE_CHECKING:
    from neural_trader.sweep.points import Point

__all__ = ["read_params", "load_params", "load_sweep", "check_inputs"]

T = TypeVar("T")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict[str, Any]:
    """The params file as a dict; ConfigError naming the file (and line) when it is not a usable mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it needs the study's sections (seeds, data, models, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    if "extends" in raw:  # an overlay: the file it names (relative to this one), then these keys over it
        base = raw.pop("extends")
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: extends: expected the path of a params file, got {base!r}")
        if (path.parent / base).resolve() == path.resolve():
            raise ConfigError(f"{path}: extends: a params file cannot extend itself")
        return merge_params(read_params(path.parent / base), raw)
    return raw


def load_params(path: str | Path, overrides: Iterable[str] = ()) -> StudyConfig:
    """Read, override and validate a params file; ConfigError names the file, or the --set items, and the key.

    The `sweep` section is validated as a section (`cfg.sweep`); its points' studies by `load_sweep`.
    """
    return _validated(path, list(overrides), parse_config)


def load_sweep(path: str | Path, overrides: Iterable[str] = ()) -> tuple[StudyConfig, list[tuple[Point, StudyConfig]]]:
    """The study with its `sweep` section, and every grid point with its study, each validated once, before any work."""
    from neural_trader.sweep.points import SweepConfig, validate_sweep

    def parse(raw: dict[str, Any]) -> tuple[StudyConfig, list[tuple[Point, StudyConfig]]]:
        cfg = parse_config(raw)
        return cfg, validate_sweep(raw, cfg.sweep or SweepConfig(), parse_config)

    return _validated(path, list(overrides), parse)


def _validated(path: str | Path, overrides: list[str], parse: Callable[[dict[str, Any]], T]) -> T:
    """`parse` of the file with `overrides` on it; ConfigError naming the file, or the --set items, as its source."""
    raw = read_params(path)
    merged = apply_overrides(raw, overrides)  # a malformed --set names itself
    try:
        return parse(merged)
    except ConfigError as exc:
        problem = str(exc)
    try:
        parse(raw)
    except ConfigError as exc:  # the file is wrong by itself (an override cannot be the cause)
        raise ConfigError(f"{path}: {exc}") from None
    # the file alone is fine: the overrides that the message names are to blame (all of them if it names none)
    said = problem.split(" (did you mean")[0]  # a suggested key is not a key the user set
    named = [o for o in overrides if re.search(rf"(?<![\w.]){re.escape(o.split('=', 1)[0])}(?![\w])", said)]
    raise ConfigError(f"--set {' --set '.join(named or overrides)}: {problem}")


def check_inputs(cfg: StudyConfig, root: str | Path) -> None:
    """Read every market's price file and cut its folds, writing nothing.

    A bad file (named with its line and problem) or a series too short for one
    fold raises ValueError before any work starts. Light: no torch. The result
    is kept (`prepared_market`), so the market_data stage of the same process
    does not read the file again.
    """
    for market, spec in cfg.markets.regimes.items():
        try:
            prepared_market(spec, root, cfg.markets)
        except ValueError as exc:
            raise ValueError(f"markets.regimes.{market}: {exc}") from None


_PREPARED: dict[str, Any] = {}


def prepared_market(spec: Any, root: str | Path, markets: Any) -> tuple[Any, Any]:
    """(PriceSeries, MarketData) of one market: its closes read and checked, its windows and folds cut.

    Kept per process under what determines them: the market's spec, the markets
    section, and the resolved path, size and modification time of each file its
    source reads (a file changed on disk is read again). The checks before a run and the market_data
    stage then read and cut a price file once, not three times.
    """
    from neural_trader.markets import sources
    from neural_trader.markets.data import prepare_market

    key = [spec.model_dump(mode="json"), markets.model_dump(mode="json", exclude={"regimes"})]
    for path in sources.make_source(spec).files(Path(root)):
        stat = path.stat() if path.is_file() else None
        key.append([str(path.resolve()), stat and stat.st_size, stat and stat.st_mtime_ns])
    cache_key = json.dumps(key, sort_keys=True)
    if cache_key not in _PREPARED:
        series = sources.read_market(spec, Path(root))
        _PREPARED[cache_key] = (series, prepare_market(series, markets))
    return _PREPARED[cache_key]
