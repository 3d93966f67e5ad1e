"""How sweep points and their models are named: stable, filesystem- and DVC-safe, built from axis values."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

__all__ = ["model_name"]


def _number_text(x: float) -> str:
    """A float in positional notation, shortest round-trip digits: 0.1 -> '0.1', 1e-05 -> '0.00001'."""
    return np.format_float_positional(float(x) + 0.0, trim="-")  # + 0.0 turns -0.0 into 0.0


def _value_label(value: Any, where: str) -> str:
    """The part of a point name that spells one axis value: 0.1 -> '0p1', -2 -> 'm2', 'cpu' -> 'cpu'."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value).replace("-", "m")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return _number_text(value).replace("-", "m").replace(".", "p")
    if isinstance(value, str):
        return re.sub(r"[^A-Za-z0-9_]", "_", value) or "empty"
    raise ValueError(f"{where}: axis values must be numbers, strings, booleans or null, got {value!r}")


def model_name(dropout: float) -> str:
    """The point's model trained at `dropout`: 0.0 -> 'd0', 0.1 -> 'd0_1', 0.25 -> 'd0_25'."""
    return "d" + _number_text(dropout).replace(".", "_")


def _prefixes(keys: list[str]) -> dict[str, str]:
    """Each axis's name part: the shortest dotted suffix no other axis ends with ('n_train', 'train_epochs')."""
    parts = {k: tuple(k.split(".")) for k in keys}
    out = {}
    for key, p in parts.items():
        k = 1
        while k < len(p) and any(o != key and q[-k:] == p[-k:] for o, q in parts.items()):
            k += 1
        out[key] = "_".join(p[-k:])
    if len(set(out.values())) != len(out):  # e.g. 'a.b_c' next to 'b.c': spell the whole key
        out = {k: k.replace(".", "_") for k in keys}
    return out


def _point_name(values: dict[str, Any], prefixes: dict[str, str]) -> str:
    if not values:
        return "base"
    return "-".join(prefixes[k] + _value_label(v, f"sweep.axes.{k}") for k, v in values.items())
