"""The sweep's verdicts in plain words: one line per significant contrast, then a closing line per metric.

A closing line never says "no difference": contrasts that are not significant
are counted as equivalent (their CI inside +- the effect of interest) or
undecided, with the seeds that would detect the effect of interest
(`inference.adjust_family` sets each record's state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neural_trader.inference import format_evidence, format_number, format_p

__all__ = ["verdicts", "METRIC_NAMES"]

#: the contrasts' metrics, in verdict order
METRIC_NAMES = ("test_return", "gap")
_LABELS = {"test_return": "test return", "gap": "the overfitting gap"}
#: how an axis value reads in a sentence; other keys read 'key = value'
_PHRASES = {"hidden": "{} hidden units", "data.n_train": "{} training series", "rho": "rho {}",
            "train.epochs": "{} epochs", "seeds.count": "{} seeds", "data.length": "series of length {}",
            "data.lag": "lag {}", "train.lr": "learning rate {}"}


def _value_text(value: Any) -> str:
    """An axis or dropout value as given: 0.1 -> '0.1', 10000.0 -> '10000' (no exponent, no padding)."""
    if isinstance(value, float) and math.isfinite(value):
        return np.format_float_positional(value + 0.0, trim="-")
    return str(value)


def _phrase(key: str, value: Any) -> str:
    text = _value_text(value)
    if key == "hidden" and value == 1:
        return "1 hidden unit"
    return _PHRASES.get(key, key + " = {}").format(text)


def _where(values: Mapping[str, Any]) -> str:
    """' at 128 hidden units with 100 training series and rho 0.1', or '' for a grid of one point."""
    parts = [_phrase(k, v) for k, v in values.items()]
    if not parts:
        return ""
    rest = parts[1:]
    tail = "" if not rest else " with " + (rest[0] if len(rest) == 1 else ", ".join(rest[:-1]) + " and " + rest[-1])
    return f" at {parts[0]}{tail}"


def _signed(x: float) -> str:
    return ("+" if x > 0 else "") + format_number(x)


def _qname(method: str) -> str:
    return "q" if method == "bh" else "Holm-adjusted p"


def _verdict(rec: dict[str, Any], confidence: float, method: str) -> str:
    d, diff = _value_text(rec["dropout"]), rec["diff"]
    if rec["metric"] == "test_return":
        what = f"{'raises' if diff > 0 else 'lowers'} test return"
    else:
        what = f"{'widens' if diff > 0 else 'narrows'} the overfitting gap"
    evidence = format_evidence(rec["ci_lo"], rec["ci_hi"], confidence, lead=f"{_signed(diff)} per step",
                               tail=f"{_qname(method)} {format_p(rec['q'])}")
    return f"dropout {d} {what}{_where(rec['values'])} {evidence}"


def _closing(metric: str, rows: list[dict[str, Any]], hits: int, alpha: float, method: str) -> str:
    label, level = _LABELS[metric], f"{_qname(method)} < {alpha:g}"
    count = f"{len(rows)} contrast{'s' if len(rows) != 1 else ''}"
    untestable = sum(math.isnan(r["p"]) for r in rows)
    note = f"; {untestable} not testable (fewer than 2 seeds)" if untestable else ""
    if hits and hits == len(rows) - untestable:
        return f"on {label}, significant at every point and dropout value of the grid at {level} ({count}{note})"
    rest = [r for r in rows if not r["significant"] and not math.isnan(r["p"])]
    equivalent = [r for r in rest if r.get("state") == "equivalent"]
    undecided = [r for r in rest if r.get("state", "undecided") == "undecided"]
    parts = []
    if equivalent:
        parts.append(f"{len(equivalent)} equivalent within ±{format_number(equivalent[0]['effect_of_interest'])}")
    if undecided:
        needs = [r.get("seeds_needed_interest") or r.get("seeds_needed") for r in undecided]
        known = [n for n in needs if n]
        most = f" (up to about {max(known):,} seeds would detect the effect of interest)" if known else ""
        parts.append(f"{len(undecided)} undecided{most}")
    tail = ": " + ", ".join(parts) if parts else ""
    where = "anywhere in the grid" if not hits else "anywhere else"
    return (f"on {label}, {hits} of {count} significant at {level}; not significant {where}{tail}{note}"
            if hits else f"on {label}, no contrast significant {where} at {level} ({count}){tail}{note}")


def verdicts(records: Sequence[dict[str, Any]], alpha: float = 0.05, *, method: str = "bh",
             confidence: float = 0.95) -> list[str]:
    """Plain words: one line per significant contrast, then a closing line per metric, whatever the data say."""
    lines = []
    for metric in METRIC_NAMES:
        rows = [r for r in records if r["metric"] == metric]
        if not rows:
            continue
        hits = [r for r in rows if r["significant"]]
        lines += [_verdict(r, confidence, method) for r in hits]
        lines.append(_closing(metric, rows, len(hits), alpha, method))
    return lines
