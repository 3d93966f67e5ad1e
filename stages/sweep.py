"""The sweep's report: read every grid point's evaluations, compare across the grid in the core, write.

Each point is a whole study run in its own workspace (`sweeps/<point>/`, built
by the same stages and caches as the study); this body reads their
evaluations and writes `metrics/sweep.json`, `reports/sweep.md`,
`plots/sweep/*.png` and `sweeps/ledger.json` (the points, what DVC versions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig
from neural_trader.sweep.points import Point, SweepConfig
from neural_trader.sweep.plots import sweep_figures
from neural_trader.sweep.report import sweep_markdown, sweep_summary

from .catalog import Workspace, atomic_write_bytes, read_json, write_json
from .registry import cell_name


def _evaluations(cfg: StudyConfig, ws: Workspace, point: Point) -> dict[float, dict[str, Any]]:
    """{dropout: evaluation} of one point: its single regime, one model per dropout value."""
    (regime,) = cfg.data.regimes
    return {d: read_json(ws.eval_metrics(cell_name(regime, model))) for model, d in point.models.items()}


def sweep_report(sweep: SweepConfig, points: list[tuple[Point, StudyConfig]], ws: Workspace,
                 failed: dict[str, str]) -> dict[str, Any]:
    """The grid's contrasts with FDR control, verdicts and figures; `failed` maps a point to its error.

    `points`: every point with its validated study (`stages.params.load_sweep`).
    """
    results, lost = [], []
    for point, cfg in points:
        if point.name in failed:
            lost.append((point, failed[point.name]))
            continue
        results.append((point, _evaluations(cfg, Workspace(ws.sweep_point(point.name)), point)))
    study = points[0][1].compare
    summary = sweep_summary(sweep, results, lost, confidence=study.confidence, power=study.power,
                            effect_of_interest=study.effect_of_interest)
    write_json(ws.sweep_json, summary)
    for name, png in sweep_figures(summary).items():
        atomic_write_bytes(ws.sweep_plots / f"{name}.png", png)
    figures_dir = (Path("..") / ws.rel(ws.sweep_plots)).as_posix()
    atomic_write_bytes(ws.sweep_report, sweep_markdown(summary, figures_dir).encode())
    write_json(ws.sweep_ledger, {"points": [{"name": p.name, "values": p.values, "workspace": f"sweeps/{p.name}",
                                             "failed": p.name in failed} for p, _ in points]})
    return {"points": len(points), "failed": sorted(failed), "verdicts": summary["verdicts"],
            "significant": sum(r["significant"] for r in summary["contrasts"])}
