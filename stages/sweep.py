"""The sweep's report: read every grid point's evaluations, compare across the grid in the core, write.

Each point is a whole study run in its own workspace (`sweeps/<point>/`, built
by the same stages and caches as the study); this stage body (`sweep_report`
in the registry) reads their evaluations and the flow's record of failed
points (`sweeps/failures.json`), and writes `metrics/sweep.json`,
`reports/sweep.md`, `plots/sweep/*.png` and `sweeps/ledger.json` (the points).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neural_trader.config import merge_params
from neural_trader.params import StudyConfig, sweep_points
from neural_trader.sweep.points import Point, SweepConfig
from neural_trader.sweep.plots import sweep_figures
from neural_trader.sweep.report import sweep_markdown, sweep_summary

from .catalog import Workspace, atomic_write_bytes, read_json, write_json
from .registry import cell_name


def _evaluation_files(ws: Workspace, point: Point) -> dict[float, Path]:
    """{dropout: evaluation file} of one point: its single regime, one model per dropout value."""
    at = Workspace(ws.sweep_point(point.name))
    return {d: at.eval_metrics(cell_name(point.regime, model)) for model, d in point.models.items()}


def _failure(ws: Workspace, point: Point, recorded: dict[str, str]) -> str | None:
    """Why a point has no result: the flow's record of its error, or its missing evaluation; None if it has one."""
    if point.name in recorded:
        return recorded[point.name]
    missing = [ws.rel(p) for p in _evaluation_files(ws, point).values() if not p.is_file()]
    return f"no evaluation under {missing[0]}: run the sweep" if missing else None


def sweep_report(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """The grid's contrasts with FDR control, verdicts and figures, over the points of `cfg.sweep`.

    A point fails when the flow recorded its error (`sweeps/failures.json`) or
    when an evaluation of it is missing; the report lists it with the reason.
    """
    points = sweep_points(cfg)
    recorded = read_json(ws.sweep_failures) if ws.sweep_failures.is_file() else {}
    results, lost = [], []
    for point in points:
        if (reason := _failure(ws, point, recorded)) is not None:
            lost.append((point, reason))
            continue
        results.append((point, {d: read_json(p) for d, p in _evaluation_files(ws, point).items()}))
    # the first point's study's compare section, as every point's: an axis may set one of its keys
    study = merge_params(cfg.section("compare"), points[0].patch.get("compare", {}))
    summary = sweep_summary(cfg.sweep or SweepConfig(), results, lost, confidence=study["confidence"],
                            power=study["power"], effect_of_interest=study["effect_of_interest"])
    write_json(ws.sweep_json, summary)
    for name, png in sweep_figures(summary).items():
        atomic_write_bytes(ws.sweep_plots / f"{name}.png", png)
    figures_dir = (Path("..") / ws.rel(ws.sweep_plots)).as_posix()
    atomic_write_bytes(ws.sweep_report, sweep_markdown(summary, figures_dir).encode())
    failed = {p.name for p, _ in lost}
    write_json(ws.sweep_ledger, {"points": [{"name": p.name, "values": p.values, "workspace": f"sweeps/{p.name}",
                                             "failed": p.name in failed} for p in points]})
    return {"points": len(points), "failed": sorted(failed), "verdicts": summary["verdicts"],
            "significant": sum(r["significant"] for r in summary["contrasts"])}
