"""Where a market's closes come from: a CSV in the workspace or a daily series shipped with arch.

No law is known for real prices, so a market's source has no oracle; it is tested walk-forward.
Adding a market kind touches this wing only: a config class in `neural_trader.markets.config` (its
`kind` tag joins `MarketConfig`; a kind that reads a workspace file names it in a `path` field, which
the stage key hashes), and a `PriceSource` subclass here registered in `SOURCES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neural_trader.markets.prices import PriceSeries, load_dataset, read_price_csv

__all__ = ["PriceSource", "CsvSource", "DatasetSource", "SOURCES", "make_source", "read_market"]


class PriceSource:
    """One real price path (`markets.regimes`): no law is known, so no oracle; it is tested walk-forward."""

    oracle = None  # no known law

    def __init__(self, config: Any):
        self.config = config

    def series(self, root: Path) -> PriceSeries:
        """Dates and closes, checked (`PriceDataError` names the file, line and problem)."""
        raise NotImplementedError

    def label(self) -> str:
        """Where the closes come from, the same on every machine (for the report)."""
        raise NotImplementedError


    def files(self, root: Path) -> list[Path]:
        """The workspace files the closes are read from (a changed file is read again)."""
        return []


class CsvSource(PriceSource):
    """A CSV of dates and closes in the workspace."""

    def series(self, root: Path) -> PriceSeries:
        return read_price_csv(Path(root) / self.config.path, self.config.date_column, self.config.price_column)

    def files(self, root: Path) -> list[Path]:
        return [Path(root) / self.config.path]

    def label(self) -> str:
        return self.config.path


class DatasetSource(PriceSource):
    """A daily series shipped inside the arch package (offline)."""

    def series(self, root: Path) -> PriceSeries:
        return load_dataset(self.config.name, self.config.price_column)

    def label(self) -> str:
        return f"arch.data.{self.config.name}"


#: kind tag of a market's config -> its source
SOURCES: dict[str, type[PriceSource]] = {"csv": CsvSource, "dataset": DatasetSource}


def make_source(market: Any) -> PriceSource:
    """The source of a market config."""
    kind = getattr(market, "kind", None)
    if kind not in SOURCES:
        raise ValueError(f"unknown market kind {kind!r} of {market!r} (allowed: {', '.join(SOURCES)})")
    return SOURCES[kind](market)


def read_market(market: Any, root: Path) -> PriceSeries:
    """A market's closes, read by its source from the workspace `root` (or from arch)."""
    return make_source(market).series(Path(root))
