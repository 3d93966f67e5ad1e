"""The study as a Prefect flow: generate -> window -> train each variant -> evaluate -> plot -> compare.

    neural-trader run                      # the CLI front door
    python -m flows.experiment             # the same, on params.yaml

Every task writes files into the workspace and returns a small JSON summary;
tensors never travel through Prefect. Train tasks of different cells run
concurrently under the task runner chosen in `runtime` (threads by default, a
Dask cluster for scale-out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import wait

from tasks.pipeline import compare, evaluate, generate, plot, train, window
from tasks.workspace import Workspace, load_params

from .runners import make_task_runner


@flow(name="experiment", log_prints=False, persist_result=True, result_serializer="json")
def experiment(params: str = "params.yaml", overrides: list[str] | None = None, workspace: str = ".") -> dict[str, Any]:
    """Run the whole study described by `params` (with `key.path=value` overrides) in `workspace`."""
    cfg = load_params(params, overrides or [])
    ws = str(Workspace(Path(workspace)).root)
    get_run_logger().info("study: %d regimes x %d models x %d seeds in %s",
                          len(cfg.data.regimes), len(cfg.models), cfg.seeds.count, ws)

    windows = {}
    for regime in cfg.data.regimes:
        returns = generate.submit(cfg, ws, regime)
        windows[regime] = window.submit(cfg, ws, regime, wait_for=[returns])

    evaluations, figures = [], []
    for regime, model in cfg.cells:
        trained = train.submit(cfg, ws, regime, model, wait_for=[windows[regime]])
        evaluations.append(evaluate.submit(cfg, ws, regime, model, wait_for=[trained]))
        figures.append(plot.submit(cfg, ws, regime, model, wait_for=[trained]))

    verdicts = compare.submit(cfg, ws, wait_for=evaluations)
    wait(figures)
    return verdicts.result()


def run_experiment(params: str, overrides: list[str], workspace: str) -> dict[str, Any]:
    """Validate params, then run the flow under the task runner they ask for, holding the workspace lock."""
    cfg = load_params(params, overrides)  # fails here, before any work, on a bad key
    ws = Workspace(Path(workspace))
    with ws.lock("experiment"):
        runner = make_task_runner(cfg.runtime)
        return experiment.with_options(task_runner=runner)(
            params=str(Path(params).resolve()), overrides=list(overrides), workspace=str(ws.root)
        )


if __name__ == "__main__":
    import sys

    print(run_experiment("params.yaml", sys.argv[1:], "."))
