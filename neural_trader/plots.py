"""Figures. Each function takes values and returns PNG bytes (no paths, no files)."""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # headless, and no GUI thread under a task runner
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["history_png", "figure_png", "mean_band", "Interval", "ForestRow", "forest_figure", "forest_png",
           "intervals_png", "grid_curves_png", "HISTORY_LABELS"]


#: matplotlib is not thread-safe (pyplot's list of figures, the mathtext parser of tick labels such as
#: $\mathdefault{10^{-4}}$), and stage tasks draw in threads: every figure is drawn under this lock
_DRAWING = threading.RLock()


def drawing(draw: Callable) -> Callable:
    """`draw`, run while holding the drawing lock: one figure at a time in a process."""
    @functools.wraps(draw)
    def locked(*args, **kwargs):
        with _DRAWING:
            return draw(*args, **kwargs)
    return locked


def figure_png(fig: "plt.Figure") -> bytes:
    """Render and close a figure; PNG bytes are stable for equal inputs (no timestamp)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def mean_band(values: np.ndarray, lo: float = 10, hi: float = 90) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the [lo, hi] percentile band over axis 0: (S, E) -> three (E,) arrays."""
    return values.mean(axis=0), np.percentile(values, lo, axis=0), np.percentile(values, hi, axis=0)


#: panel title and y-label of each column of the trader's history (`recom` is the seed's name for the position)
HISTORY_LABELS: dict[str, tuple[str, str]] = {
    "train_recom": ("mean position, training windows", "position (0 = flat, 1 = long)"),
    "train_return": ("return per step, training windows", "position x next return"),
    "valid_recom": ("mean position, validation windows", "position (0 = flat, 1 = long)"),
    "valid_return": ("return per step, validation windows", "position x next return"),
}


@drawing
def history_png(values: np.ndarray, columns: Sequence[str], title: str,
                labels: Mapping[str, tuple[str, str]] = HISTORY_LABELS) -> bytes:
    """The seed's 2x2 picture (position and return, train and validation, per epoch).

    values: (S, epochs, len(columns)) per-replica history; drawn as the mean over
    replicas with a 10-90% band. labels: column -> (panel title, y-label); a
    column without one is titled by its name.
    """
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    epochs = np.arange(1, values.shape[1] + 1)
    for ax, name in zip(axes.flat, columns):
        mean, lo, hi = mean_band(values[..., columns.index(name)])
        ax.fill_between(epochs, lo, hi, alpha=0.25, linewidth=0, label="10-90% of seeds")
        ax.plot(epochs, mean, linewidth=1.5, label="mean over seeds")
        if name.endswith("return"):
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        panel, ylabel = labels.get(name, (name, ""))
        ax.set(title=panel, ylabel=ylabel)
    axes[0][0].legend(fontsize=8, loc="lower right")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{title}: mean over {values.shape[0]} seeds, band 10-90%")
    fig.tight_layout()
    return figure_png(fig)


class Interval(NamedTuple):
    """An estimate and its confidence interval, as a figure draws it."""

    label: str
    mean: float
    lo: float
    hi: float


#: how intervals_png draws its references, in order: the first (e.g. the oracle) black and dashed
_REF_STYLES = ({"color": "black", "linestyle": "--"}, {"color": "tab:orange", "linestyle": ":"},
               {"color": "tab:green", "linestyle": "-."})


def _span(values: Sequence[float]) -> tuple[float, float]:
    """Axis limits around `values`, 12% of their range (or of their size) on each side."""
    lo, hi = min(values), max(values)
    pad = 0.12 * ((hi - lo) or abs(hi) or 1.0)
    return lo - pad, hi + pad


def _off_scale(name: str, values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{name} {lo:.4f}, off scale" if lo == hi else f"{name} {lo:.4f} to {hi:.4f}, off scale"


@drawing
def intervals_png(
    panels: Mapping[str, Sequence[Interval]], *, title: str, ylabel: str,
    references: Mapping[str, Mapping[str, Sequence[float | None]]] | None = None, scale_with: Sequence[str] = (),
) -> bytes:
    """One panel per key, each at its own scale: every label's estimate with its CI, and reference levels.

    references: name -> panel -> one value per label of that panel (e.g. the oracle's
    return), drawn as a segment wider than the CI caps. A panel's axis spans its CIs and
    the references named in `scale_with`; another reference outside it is written under
    the panel's title instead of squeezing the intervals.
    """
    refs = references or {}
    width = max(len(rows) for rows in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 1.6 * width + 1.5) * len(panels), 4.5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], panels.items()):
        pos = np.arange(len(rows))
        means, los, his = (np.array([getattr(r, k) for r in rows]) for k in ("mean", "lo", "hi"))
        ax.errorbar(pos, means, yerr=[means - los, his - means], fmt="o", capsize=5, color="tab:blue",
                    label="mean over seeds, CI", zorder=3)
        scaled = [v for r in scale_with for v in refs.get(r, {}).get(name, ()) if v is not None]
        ylim = _span([*los, *his, *scaled])
        notes = []
        for (ref, per_panel), style in zip(refs.items(), _REF_STYLES):
            vals = [(p, v) for p, v in zip(pos, per_panel.get(name, ())) if v is not None]
            inside = [(p, v) for p, v in vals if ylim[0] <= v <= ylim[1]]
            if inside:
                ax.hlines([v for _, v in inside], [p - 0.4 for p, _ in inside], [p + 0.4 for p, _ in inside],
                          linewidth=1.6, label=ref, zorder=2, **style)
            if len(inside) < len(vals):
                notes.append(_off_scale(ref, [v for p, v in vals if (p, v) not in inside]))
        if ylim[0] < 0 < ylim[1]:
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_ylim(*ylim)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xticks(pos, [r.label for r in rows])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(name + "".join(f"\n({n})" for n in notes), fontsize=10)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return figure_png(fig)


class ForestRow(NamedTuple):
    """One contrast of a forest plot: its difference, CI, decision and what is written beside it."""

    label: str
    diff: float
    lo: float
    hi: float
    state: str  # significant | equivalent | undecided: colours the point
    note: str  # written right of the panel, e.g. the state and the adjusted p


STATE_COLOURS = {"significant": "tab:red", "equivalent": "tab:green", "undecided": "tab:grey"}


@drawing
def forest_figure(
    panels: Mapping[str, Sequence[ForestRow]], *, title: str, xlabels: Mapping[str, str] | None = None,
    margins: Mapping[str, float | None] | None = None, ci_label: str = "CI",
) -> "plt.Figure":
    """A forest plot, one panel per key at its own scale: a row per contrast, the zero line, the margin band.

    margins: panel -> the effect of interest; +- it is shaded (inside it a difference is
    too small to matter, and a CI wholly inside it is called equivalent).
    """
    xlabels, margins = xlabels or {}, margins or {}
    heights = [len(rows) + 1.6 for rows in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 0.45 * sum(heights) + 1.2), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (name, rows) in zip(axes[:, 0], panels.items()):
        y = np.arange(len(rows))[::-1]  # first row on top
        margin = margins.get(name)
        if margin:
            ax.axvspan(-margin, margin, color="tab:green", alpha=0.15, linewidth=0)
        ax.axvline(0.0, color="black", linewidth=1.0)
        for yi, r in zip(y, rows):
            ax.errorbar(r.diff, yi, xerr=[[r.diff - r.lo], [r.hi - r.diff]], fmt="o", capsize=4,
                        color=STATE_COLOURS.get(r.state, "tab:blue"), zorder=3)
            ax.annotate(r.note, xy=(1.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
        ax.set_xlim(*_span([0.0, *(v for r in rows for v in (r.lo, r.hi)), *((-margin, margin) if margin else ())]))
        ax.set_yticks(y, [r.label for r in rows])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3), useMathText=True)
        ax.set_title(name, fontsize=10, loc="left")
        ax.set_xlabel(xlabels.get(name, ""), fontsize=9)
    states = dict.fromkeys(r.state for rows in panels.values() for r in rows)
    handles = [Line2D([], [], color=STATE_COLOURS.get(s, "tab:blue"), marker="o", label=f"{s} ({ci_label})")
               for s in states]
    handles += [Line2D([], [], color="black", linewidth=1.0, label="zero: no difference")]
    if any(margins.get(name) for name in panels):
        handles.append(plt.Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.15,
                                     label="\u00b1 effect of interest"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 0.8, 1))
    return fig


@drawing
def forest_png(panels: Mapping[str, Sequence[ForestRow]], **kwargs) -> bytes:
    """forest_figure as PNG bytes."""
    return figure_png(forest_figure(panels, **kwargs))


@drawing
def panels_png(
    panels: Mapping[str, Mapping[str, np.ndarray]], x: np.ndarray, refs: Mapping[str, np.ndarray], *,
    title: str, xlabel: str, ylabel: str, ref_label: str = "reference", sharey: bool = True,
    band: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] = mean_band,
) -> bytes:
    """One panel per key: (S, len(x)) curves as mean and band, with that panel's reference line.

    band: (S, len(x)) -> mean, lower and upper edge; by default the 10-90% percentiles of seeds.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=sharey, squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, values in curves.items():
            mean, lo, hi = band(values)
            (line,) = ax.plot(x, mean, label=label, linewidth=1.5)
            ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color(), linewidth=0)
        if name in refs:
            ax.step(x, refs[name], where="mid", color="black", linestyle="--", linewidth=1.2, label=ref_label)
        ax.set(title=name, xlabel=xlabel)
        ax.ticklabel_format(axis="y", useOffset=False)
        if not sharey:
            ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


@drawing
def grid_curves_png(
    curves: Mapping[str, Mapping[str, np.ndarray]], x: np.ndarray, refs: Mapping[str, np.ndarray], *,
    title: str, xlabel: str, ylabel: str, ref_label: str = "reference", titles: Mapping[str, str] | None = None,
) -> bytes:
    """A grid, column per outer key and row per inner key: every seed's (len(x),) curve thin, their mean thick.

    curves: column -> row -> (S, len(x)); refs: column -> (len(x),) reference curve.
    """
    columns = list(curves)
    rows = list(dict.fromkeys(r for c in curves.values() for r in c))
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(4.6 * len(columns), 2.9 * len(rows) + 0.8),
                             sharex=True, sharey=True, squeeze=False)
    for j, col in enumerate(columns):
        for i, row in enumerate(rows):
            ax, values = axes[i][j], curves[col].get(row)
            colour = f"C{i}"
            if values is not None:
                ax.plot(x, np.asarray(values).T, color=colour, alpha=0.3, linewidth=0.6)
                ax.plot(x, np.asarray(values).mean(axis=0), color=colour, linewidth=2.0,
                        label=f"mean of {len(values)} seeds (thin: each seed)")
            if col in refs:
                ax.step(x, refs[col], where="mid", color="black", linestyle="--", linewidth=1.2, label=ref_label)
            ax.set_title(f"{(titles or {}).get(col, col)}: {row}", fontsize=10)
            ax.legend(fontsize=7, loc="upper left")
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel)
    for i in range(len(rows)):
        axes[i][0].set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


@drawing
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
def _multiple(v: float, _pos: object = None) -> str:
    """A wealth multiple as a tick label: 1x, 2x, 0.5x, 0.25x."""
    return f"{v:g}x"


@drawing
def equity_png(dates: np.ndarray, log_wealth: Mapping[str, np.ndarray], *, title: str,
               fold_starts: Sequence[int] = ()) -> bytes:
    """Wealth of each strategy on a log scale (from cumulative log P&L), ticks as multiples, each fold's start."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, curve in log_wealth.items():
        ax.plot(dates, np.exp(curve), label=name.replace("_", " "), linewidth=1.2)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_multiple))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="grey", linewidth=0.6)
    for k, i in enumerate(fold_starts):
        ax.axvline(dates[i], color="grey", linewidth=0.5, linestyle=":")
        ax.annotate(f"fold {k + 1}", xy=(dates[i], 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                    textcoords="offset points", rotation=90, va="top", fontsize=7, color="grey")
    ax.set(title=title, ylabel="wealth (start = 1x, log scale)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return figure_png(fig)


@drawing
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


@drawing
def fold_curves_png(grid: np.ndarray, curves: Mapping[str, np.ndarray], *, title: str,
                    folds: Sequence[str] = ()) -> bytes:
    """One panel per variant: its learned position against the last scaled return, one line per fold.

    curves: variant -> (F, S, grid) positions; each line is the mean over seeds of one fold.
    folds: the F legend entries (e.g. each fold's test dates); none: "fold k".
    """
    n_folds = next(iter(curves.values())).shape[0]
    names = list(folds) or [f"fold {f + 1}" for f in range(n_folds)]
    fig, axes = plt.subplots(1, len(curves), figsize=(3.8 * len(curves) + 2.0, 3.8), sharey=True, squeeze=False,
                             layout="constrained")
    colours = plt.cm.viridis(np.linspace(0, 0.95, n_folds))
    for ax, (name, values) in zip(axes[0], curves.items()):
        for f, colour in enumerate(colours):
            ax.plot(grid, values[f].mean(axis=0), color=colour, linewidth=1.0, label=names[f])
        ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
        ax.set(title=name, xlabel="last return / volatility", ylim=(0, 1))
    axes[0][0].set_ylabel("position (mean over seeds)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="fold: test dates", loc="outside right center", fontsize=7, title_fontsize=8)
    fig.suptitle(f"{title} (one line per fold)")
    return figure_png(fig)
