"""The sweep's figures: heatmaps of the dropout effect, and the oracle fraction against training series.

Each function takes the metrics/sweep.json dict's parts (see `sweep_report`) and returns PNG bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from neural_trader import plots
from neural_trader.sweep.points import REFERENCE
from neural_trader.sweep.verdicts import _LABELS, _phrase, _value_text

__all__ = ["heatmaps_png", "oracle_fraction_png", "sweep_figures"]


# ---------------------------------------------------------------- figures
_GRID_AXES = ("hidden", "data.n_train")  # heatmap rows, columns; every other axis makes panels


def _unique(items: Sequence[Any]) -> list[Any]:
    """Distinct items in order of first appearance (grid order keeps the sweep's value order)."""
    out: list[Any] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


def _group(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in values.items() if k not in _GRID_AXES)


def _group_title(group: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(_phrase(k, v) for k, v in group)


@plots.drawing
def _empty_png(title: str, text: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    fig.suptitle(title)
    return plots.figure_png(fig)


def _heatmap(ax: Any, rows: list[dict[str, Any]], hidden: list[Any], n_train: list[Any], norm: Normalize) -> Any:
    grid = np.full((len(hidden), len(n_train)), np.nan)  # (hidden, n_train)
    stars = np.zeros(grid.shape, dtype=bool)
    for r in rows:
        i, j = hidden.index(r["settings"]["hidden"]), n_train.index(r["settings"]["n_train"])
        grid[i, j], stars[i, j] = r["diff"], r["significant"]
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="lightgrey")  # grey: point missing or failed
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, origin="lower", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        text = "n/a" if math.isnan(v) else f"{v:+.3g}" + ("*" if stars[i, j] else "")
        dark = math.isfinite(v) and abs(v) > 0.6 * norm.vmax  # white text on the deep colours
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                fontweight="bold" if stars[i, j] else "normal")
        if stars[i, j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xticks(range(len(n_train)), [str(x) for x in n_train])
    ax.set_yticks(range(len(hidden)), [str(x) for x in hidden])
    return im


@plots.drawing
def heatmaps_png(records: Sequence[dict[str, Any]], metric: str) -> bytes:
    """The dropout effect on `metric` over (hidden x training series), a panel per (other axes, dropout).

    Colour: diff (dropout d minus 0, per step) on a diverging scale centred at
    0, shared by all panels; significant cells are starred and boxed. Axes the
    sweep lacks collapse to one row, column or panel row.
    """
    label = _LABELS.get(metric, metric)
    rows = [r for r in records if r["metric"] == metric]
    title = f"Effect of dropout on {label} (dropout d minus dropout 0, paired by seed; * significant)"
    if not rows:
        return _empty_png(title, "no contrasts: no point computed")
    hidden = _unique([r["settings"]["hidden"] for r in rows])
    n_train = _unique([r["settings"]["n_train"] for r in rows])
    groups = _unique([_group(r["values"]) for r in rows])
    drops = _unique([r["dropout"] for r in rows])
    finite = [abs(r["diff"]) for r in rows if math.isfinite(r["diff"])]
    vmax = max(finite, default=0.0) or 1e-12  # symmetric, so white is exactly 0
    norm = Normalize(-vmax, vmax)
    size = (1.2 + (0.9 * len(n_train) + 1.4) * len(drops), 0.8 + (0.5 * len(hidden) + 1.3) * len(groups))  # inches
    fig, axes = plt.subplots(len(groups), len(drops), squeeze=False, layout="constrained", figsize=size)
    im = None
    for gi, group in enumerate(groups):
        for di, d in enumerate(drops):
            ax = axes[gi][di]
            cell = [r for r in rows if r["dropout"] == d and _group(r["values"]) == group]
            im = _heatmap(ax, cell, hidden, n_train, norm)
            ax.set_title(", ".join(filter(None, [f"dropout {_value_text(d)}", _group_title(group)])), fontsize=9)
            ax.set_xlabel("training series")
            ax.set_ylabel("hidden units")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=f"change in {label} (per step)")
    fig.suptitle(title, fontsize=10)
    return plots.figure_png(fig)


@plots.drawing
def oracle_fraction_png(points: Sequence[dict[str, Any]], dropout: float = REFERENCE) -> bytes:
    """Oracle fraction (mean, CI over seeds) against training series (log x), a line per hidden size.

    One panel per combination of the axes other than hidden and training
    series (e.g. rho); `points` are the `points` entries of the summary.
    """
    title = f"Share of the oracle's return captured, dropout {_value_text(dropout)} (mean, CI over seeds)"
    if not points:
        return _empty_png(title, "no point computed")
    groups = _unique([_group(p["values"]) for p in points])
    fig, axes = plt.subplots(1, len(groups), squeeze=False, layout="constrained", sharex=True, sharey=True,
                             figsize=(0.8 + 4.2 * len(groups), 3.8))
    for ax, group in zip(axes[0], groups):
        members = [p for p in points if _group(p["values"]) == group]
        drawn = False
        for h in _unique([p["settings"]["hidden"] for p in members]):
            xs, ys, lo, hi = [], [], [], []
            line = sorted((p for p in members if p["settings"]["hidden"] == h), key=lambda p: p["settings"]["n_train"])
            for p in line:
                row = next((r for r in p["summary"] if r["dropout"] == dropout), None)
                frac = row and row["oracle_fraction"]
                if frac:
                    xs.append(p["settings"]["n_train"])
                    ys.append(frac["mean"])
                    lo.append(frac["mean"] - frac["ci_lo"])
                    hi.append(frac["ci_hi"] - frac["mean"])
            if xs:
                err = np.nan_to_num(np.array([lo, hi]))  # one seed: no interval
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{h} hidden")
                drawn = True
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set(title=_group_title(group) or "all points", xlabel="training series (log scale)")
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no signal: the oracle earns 0", transform=ax.transAxes, ha="center", va="center")
    axes[0][0].set_ylabel("test return / oracle return")
    fig.suptitle(title, fontsize=10)
    return plots.figure_png(fig)


def sweep_figures(summary: dict[str, Any]) -> dict[str, bytes]:
    """{name: PNG bytes} of FIGURES from the metrics/sweep.json dict."""
    return {"effect_test_return": heatmaps_png(summary["contrasts"], "test_return"),
            "effect_gap": heatmaps_png(summary["contrasts"], "gap"),
            "oracle_fraction": oracle_fraction_png(summary["points"])}
