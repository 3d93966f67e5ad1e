"""Figures. Each function takes values and returns PNG bytes (no paths, no files)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless, and no GUI thread under a task runner
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["history_png", "figure_png", "mean_band"]


def figure_png(fig: "plt.Figure") -> bytes:
    """Render and close a figure; PNG bytes are stable for equal inputs (no timestamp)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def mean_band(values: np.ndarray, lo: float = 10, hi: float = 90) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the [lo, hi] percentile band over axis 0: (S, E) -> three (E,) arrays."""
    return values.mean(axis=0), np.percentile(values, lo, axis=0), np.percentile(values, hi, axis=0)


def history_png(values: np.ndarray, columns: Sequence[str], title: str) -> bytes:
    """The seed's 2x2 picture (position and return, train and validation, per epoch).

    values: (S, epochs, len(columns)) per-replica history; drawn as the mean over
    replicas with a 10-90% band.
    """
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    epochs = np.arange(1, values.shape[1] + 1)
    for ax, name in zip(axes.flat, columns):
        mean, lo, hi = mean_band(values[..., columns.index(name)])
        ax.fill_between(epochs, lo, hi, alpha=0.25, linewidth=0)
        ax.plot(epochs, mean, linewidth=1.5)
        if name.endswith("return"):
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(name)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{title}: mean over {values.shape[0]} seeds, band 10-90%")
    fig.tight_layout()
    return figure_png(fig)


def lines_png(
    curves: Mapping[str, np.ndarray], x: np.ndarray, *, title: str, xlabel: str, ylabel: str,
    reference: Mapping[str, np.ndarray] | None = None,
) -> bytes:
    """Several (S, len(x)) curves on one axis, mean and band each, plus optional reference lines."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, values in curves.items():
        mean, lo, hi = mean_band(values)
        (line,) = ax.plot(x, mean, label=name, linewidth=1.5)
        ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color(), linewidth=0)
    for name, values in (reference or {}).items():
        ax.plot(x, values, label=name, color="black", linewidth=1.2, linestyle="--")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def intervals_png(
    labels: Sequence[str], means: Sequence[float], los: Sequence[float], his: Sequence[float], *,
    title: str, ylabel: str, markers: Mapping[str, Sequence[float]] | None = None,
) -> bytes:
    """Point estimates with CI bars per label, plus optional per-label markers (e.g. oracle)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.5))
    pos = np.arange(len(labels))
    means, los, his = map(np.asarray, (means, los, his))
    ax.errorbar(pos, means, yerr=[means - los, his - means], fmt="o", capsize=5, label="mean, CI")
    for i, (name, vals) in enumerate((markers or {}).items()):
        ax.scatter(pos, vals, marker="_^vsx"[i % 5], s=200 if i == 0 else 60, label=name, zorder=3)
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(pos, labels, rotation=20, ha="right")
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def panels_png(
    panels: Mapping[str, Mapping[str, np.ndarray]], x: np.ndarray, refs: Mapping[str, np.ndarray], *,
    title: str, xlabel: str, ylabel: str, ref_label: str = "reference",
) -> bytes:
    """One panel per key: (S, len(x)) curves as mean and band, with that panel's reference line."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True, squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, values in curves.items():
            mean, lo, hi = mean_band(values)
            (line,) = ax.plot(x, mean, label=label, linewidth=1.5)
            ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color(), linewidth=0)
        if name in refs:
            ax.step(x, refs[name], where="mid", color="black", linestyle="--", linewidth=1.2, label=ref_label)
        ax.set(title=name, xlabel=xlabel)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def epochs_png(
    panels: Mapping[str, Mapping[str, np.ndarray]], refs: Mapping[str, tuple[str, float]], *, title: str,
) -> bytes:
    """One panel per key: (epochs,) series against epoch 1..E, plus that panel's reference line.

    The warm-ups' pictures: the regression's beta0, beta1 and loss next to the
    truth, the classifier's three rates next to the Bayes rate. refs maps a
    panel to (label, value) of a horizontal line.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items()):
        for label, values in series.items():
            ax.plot(np.arange(1, len(values) + 1), values, label=label, linewidth=1.5)
        if name in refs:
            label, value = refs[name]
            ax.axhline(value, color="black", linestyle="--", linewidth=1.0, label=label)
        ax.set(title=name, xlabel="epoch")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


# ---------------------------------------------------------------------- markets
def equity_png(dates: np.ndarray, log_wealth: Mapping[str, np.ndarray], *, title: str,
               fold_starts: Sequence[int] = ()) -> bytes:
    """Wealth of each strategy on a log scale (from cumulative log P&L), fold boundaries dotted."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, curve in log_wealth.items():
        ax.plot(dates, np.exp(curve), label=name, linewidth=1.2)
    for i in fold_starts:
        ax.axvline(dates[i], color="grey", linewidth=0.5, linestyle=":")
    ax.set_yscale("log")
    ax.set(title=title, ylabel="wealth (start = 1, log scale)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def drawdown_png(dates: np.ndarray, log_wealth: Mapping[str, np.ndarray], *, title: str) -> bytes:
    """Fall of each strategy's wealth from its running peak, as a fraction of the peak."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, curve in log_wealth.items():
        peak = np.maximum.accumulate(np.maximum(curve, 0.0))  # wealth starts at 1 (log 0)
        ax.plot(dates, -np.expm1(curve - peak), label=name, linewidth=1.0)
    ax.invert_yaxis()
    ax.set(title=title, ylabel="drawdown (fraction of peak)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def fold_curves_png(grid: np.ndarray, curves: Mapping[str, np.ndarray], *, title: str) -> bytes:
    """One panel per variant: its learned position against the last scaled return, one line per fold.

    curves: variant -> (F, S, grid) positions; each line is the mean over seeds of one fold.
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.6), sharey=True, squeeze=False)
    for ax, (name, values) in zip(axes[0], curves.items()):
        colours = plt.cm.viridis(np.linspace(0, 1, values.shape[0]))
        for f, colour in enumerate(colours):
            ax.plot(grid, values[f].mean(axis=0), color=colour, linewidth=1.0)
        ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
        ax.set(title=name, xlabel="last return / volatility", ylim=(0, 1))
    axes[0][0].set_ylabel("position (mean over seeds)")
    fig.suptitle(f"{title} (one line per fold, early dark to late light)")
    fig.tight_layout()
    return figure_png(fig)
