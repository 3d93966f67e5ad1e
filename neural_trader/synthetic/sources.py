"""Data sources: where a regime's returns come from, and what is known about their law.

A regime of the study (`data.regimes.<name>` in params.yaml) is a source. A
source says how it produces each replica's train / validation / test returns,
and whether it knows the law of those returns. A source that knows its law
offers an `Oracle`: the Bayes-optimal long-only policy and its expected return.
Evaluation, comparison and the report ask `source.oracle` and the oracle's
`signal`, never the type of the source.

Adding a kind of source: a config class in `neural_trader.synthetic.config` (its `kind`
tag joins `RegimeConfig`), a `Source` subclass here registered in `SOURCES`
under that tag, and, if it reads files, the catalog and the registry entries
for them.

Shapes: one replica's split is (n, T) returns; `replica_splits` stacks the S
replicas, (S, n, T). Every draw takes an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError

from neural_trader.config import ConfigError
from neural_trader.data import ar1_returns, iid_returns, make_generator
from neural_trader.evaluate import buy_and_hold_position, cash_position, curve_grid

from neural_trader.synthetic.config import AR1Regime, IIDRegime, RegimeConfig

__all__ = ["Oracle", "Source", "IIDSource", "AR1Source", "SOURCES", "make_source", "generate_returns", "oracle_position",
           "baseline_positions", "oracle_expected_return", "oracle_curve"]


def _last_return(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[-1] < 1:
        raise ValueError(f"x must hold windows (..., n, lag) with lag >= 1, got shape {x.shape}")
    return x[..., -1]


class Oracle(ABC):
    """The Bayes-optimal long-only policy of a known law, and what it earns."""

    #: False when every policy has the same expected return (pure noise): nothing to learn,
    #: so the oracle's curve is no reference and the regime is the contrasts' null.
    signal: bool = True

    @abstractmethod
    def position(self, x: Any) -> np.ndarray:
        """Positions in [0, 1] on windows x (..., n, lag) -> (..., n)."""

    @abstractmethod
    def expected_return(self) -> float:
        """The oracle's expected return per step, in closed form."""

    def curve(self, grid: Any) -> np.ndarray:
        """The oracle's position at each last return of a 1-D grid (other lags 0)."""
        g = np.asarray(grid, dtype=np.float64)
        if g.ndim != 1 or g.size == 0:
            raise ValueError(f"grid must be a non-empty 1-D array, got shape {g.shape}")
        return self.position(g[:, None])


class _CashOracle(Oracle):
    """i.i.d. returns: no position has positive expected return; cash is the zero-risk choice."""

    signal = False

    def position(self, x: Any) -> np.ndarray:
        return np.zeros_like(_last_return(x))

    def expected_return(self) -> float:
        return 0.0


class _AR1Oracle(Oracle):
    """AR(1): long exactly when E[r_next | r_last] = rho * r_last > 0."""

    def __init__(self, rho: float, vol: float):
        self.rho, self.vol = float(rho), float(vol)
        self.signal = self.rho != 0.0

    def position(self, x: Any) -> np.ndarray:
        if not self.signal:
            return np.zeros_like(_last_return(x))
        return (self.rho * _last_return(x) > 0).astype(np.float64)

    def expected_return(self) -> float:
        """E[max(rho r_last, 0)] = |rho| s / sqrt(2 pi), s = vol / sqrt(1 - rho^2) the stationary std."""
        return abs(self.rho) * self.vol / math.sqrt(1.0 - self.rho * self.rho) / math.sqrt(2.0 * math.pi)


class Source(ABC):
    """How a regime produces every replica's returns; `oracle` is None when its law is unknown."""

    oracle: Oracle | None = None

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def draw(self, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """(n, length) returns of one replica's split."""

    def replica_splits(self, name: str, base_seed: int, replicas: int, sizes: Mapping[str, int],
                       length: int) -> dict[str, torch.Tensor]:
        """{split: (S, n_split, length)}: replica r's split drawn from its own generator.

        The generator is keyed on (base seed, regime name, split, replica), so
        every replica's test draw is independent of its train and validation
        draws and of the other replicas' draws, and replica r of every model
        variant sees the same data.
        """
        splits = {}
        for split, n in sizes.items():
            splits[split] = out = torch.empty(replicas, n, length)  # filled in place: no list of S tensors to stack
            for r in range(replicas):
                out[r] = self.draw(n, length, make_generator(base_seed, "data", name, split, r))
        return splits


class IIDSource(Source):
    """r_t ~ N(0, vol^2), independent over t: nothing to learn."""

    oracle = _CashOracle()

    def draw(self, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
        return iid_returns(n, length, vol=self.config.vol, generator=generator)


class AR1Source(Source):
    """r_t = rho r_{t-1} + e_t, stationary start: momentum (rho > 0) or reversal (rho < 0)."""

    def __init__(self, config: AR1Regime):
        super().__init__(config)
        self.oracle = _AR1Oracle(config.rho, config.vol)

    def draw(self, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
        return ar1_returns(n, length, rho=self.config.rho, vol=self.config.vol, generator=generator)


#: kind tag of a regime's config -> its source
SOURCES: dict[str, type] = {"iid": IIDSource, "ar1": AR1Source}

_REGIME = TypeAdapter(RegimeConfig)


def make_source(regime: Any) -> Any:
    """The source of a regime config (or of an equivalent regime mapping, validated and defaulted)."""
    if isinstance(regime, Mapping):
        try:
            regime = _REGIME.validate_python(dict(regime))
        except ValidationError as exc:
            raise ConfigError(f"regime {dict(regime)!r}: {exc.errors()[0]['msg']}") from None
    kind = getattr(regime, "kind", None)
    if kind not in SOURCES:
        raise ValueError(f"unknown source kind {kind!r} of {regime!r} (allowed: {', '.join(SOURCES)})")
    return SOURCES[kind](regime)


def generate_returns(regime: IIDRegime | AR1Regime, n: int, length: int, *,
                     generator: torch.Generator) -> torch.Tensor:
    """(n, length) returns of the given regime's source."""
    return make_source(regime).draw(n, length, generator)


# ------------------------------------------------------------- the oracle of a regime
def oracle_position(x: Any, regime: Any) -> np.ndarray:
    """The Bayes-optimal long-only position on each window of x (..., n, lag) -> (..., n).

    AR(1): 1 where rho * x[..., -1] > 0 (the conditional mean of the next return
    is positive), else 0. i.i.d.: 0 everywhere, since no position has positive
    expected return (cash ties with every other policy; it is the zero-risk choice).
    The policy is the regime's source's oracle.
    """
    return _oracle(regime).position(x)


def _oracle(regime: Any):
    source = make_source(regime)
    if source.oracle is None:
        raise ValueError(f"regime {regime!r} has no known law, so no oracle")
    return source.oracle


def baseline_positions(x: Any, regime: Any) -> dict[str, np.ndarray]:
    """{'cash', 'buy_and_hold', 'oracle'}: each baseline's (n,) positions on x."""
    return {
        "cash": cash_position(x),
        "buy_and_hold": buy_and_hold_position(x),
        "oracle": oracle_position(x, regime),
    }


def oracle_expected_return(regime: Any) -> float:
    """The oracle's expected return per step, E[max(rho * r_last, 0)], in closed form.

    For the stationary AR(1) with innovation std vol, r_last ~ N(0, s^2) with
    s = vol / sqrt(1 - rho^2), so rho * r_last ~ N(0, (rho s)^2) and
    E[max(rho r_last, 0)] = |rho| * s / sqrt(2 pi). For i.i.d. returns it is 0.
    """
    return _oracle(regime).expected_return()


def oracle_curve(regime: Any, grid: Any) -> np.ndarray:
    """The oracle's position at each last return in grid: a 0/1 step at 0 (all 0 for i.i.d.)."""
    return _oracle(regime).curve(curve_grid(grid))
