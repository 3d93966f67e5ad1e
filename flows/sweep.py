"""Where does dropout help? The study over a grid of points, every point through the same stages and caches.

    neural-trader run sweep                # the `sweep` section of params.yaml
    neural-trader run sweep --set 'sweep.axes={"hidden": [5, 32]}'

Each grid point is a whole study (one AR(1) regime, one model per dropout
value, paired by seed) in its own workspace `sweeps/<point>/`: a point already
computed is a stamp hit, and a new axis value computes only its new points.
A point that fails fails alone: the others finish, and the report names it.
The report (`metrics/sweep.json`, `reports/sweep.md`, `plots/sweep/`), the
registry's `sweep_report` stage, controls the false discovery rate across the
whole grid; with `dvc_record` it is recorded in `sweeps/dvc.yaml` for `dvc repro`. Under
`runtime.task_runner: dask` the points' tasks run on a Dask cluster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow

from neural_trader.params import StudyConfig
from neural_trader.sweep.points import Point, SweepConfig
from stages.catalog import Workspace, load_sweep, write_json
from stages.progress import point_line, stage_line
from stages.versioning import DvcError, check_recordable, is_dvc_workspace
from tasks.reruns import version_sweep
from tasks.stages import stage_task

from .progress import StageReport, log as progress, ui_link
from .names import from_parameters, run_name
from .study import submit_study
from .runners import make_task_runner


# validate_parameters=False: the grid arrives validated; Prefect's pass would re-run each study's model checks
@flow(name="sweep", log_prints=False, persist_result=False, validate_parameters=False,
      flow_run_name=from_parameters("sweep", "dvc_record"))
def sweep(study: StudyConfig, points: list[tuple[Point, StudyConfig]], workspace: str = ".", dvc_record: bool = False,
          dvc_push: bool = False) -> dict[str, Any]:
    """Run every point of the `sweep` grid, then compare dropout across the grid.

    `study` (its `sweep` section the grid) and `points` are the sweep validated
    at the door (`load_sweep`): each point with its study, which the point's
    tasks run as they are.
    """
    root, grid = Workspace(Path(workspace)), study.sweep or SweepConfig()
    if dvc_record and not is_dvc_workspace(root.root):
        raise DvcError(f"record: {root.root} is not a DVC workspace: run `git init && dvc init` there")
    progress.info("sweep: %d points x %d dropout values in %s%s", len(points), len(grid.dropout),
                  root.root / "sweeps", ui_link())
    start, failed = time.perf_counter(), {}
    with root.lock("sweep"):
        root.sweep_temporaries()
        report, compares = StageReport(), {}
        for point, cfg in points:
            compares[submit_study(cfg, str(root.sweep_point(point.name)), track=report.track)["compare"][0]] = point
        done = 0
        # every task of every point, its training pictures too, before the flow (and a Dask client) ends
        for future in report.finished():
            if (point := compares.get(future)) is None:
                continue
            done += 1
            if (reason := _failure(future)) is not None:
                failed[point.name] = reason
            progress.info(point_line(done, len(points), point.name, time.perf_counter() - start, reason))
        write_json(root.sweep_failures, failed)  # the report's record of why a point failed
        state = stage_task("sweep_report")(study, str(root.root), {}, return_state=True)
        summary = state.result()
        progress.info(stage_line("sweep_report", state.name, summary))
        if dvc_record:
            summary["dvc"] = version_sweep(str(root.root), study, [p.name for p, _ in points if p.name not in failed],
                                           push=dvc_push)
    return summary


def _failure(future: Any) -> str | None:
    """None if a point's comparison completed, else one line on why not (its error, or an upstream task's)."""
    try:
        future.result()
    except BaseException as exc:  # noqa: BLE001  reported, not raised: a failed point fails alone
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return None


def run_sweep(params: str, overrides: list[str], workspace: str, dvc_record: bool = False, dvc_push: bool = False,
              loaded: tuple[StudyConfig, list[tuple[Point, StudyConfig]]] | None = None) -> dict[str, Any]:
    """Validate the grid, then run the sweep flow under the task runner the study's runtime asks for.

    `loaded` is `load_sweep(params, overrides)` already done (the command line
    did it): then the params file is not read again. With `dvc_record` only a
    run sweeps/dvc.yaml describes is recorded: the workspace's params.yaml, no
    overrides, the workspace's code (checked here, before any work).
    """
    study, points = loaded or load_sweep(params, overrides)  # fails here, before any work, on a bad axis
    root = Workspace(Path(workspace))
    if dvc_record:
        check_recordable(root, params, overrides, ["sweep_report"], needs_dvc_yaml=False)
    runner = make_task_runner(points[0][1].runtime)
    name = run_name("sweep", str(root.root), overrides, *(["dvc_record"] if dvc_record else []))
    return sweep.with_options(task_runner=runner, flow_run_name=name)(
        study=study, points=points, workspace=str(root.root), dvc_record=dvc_record, dvc_push=dvc_push)
