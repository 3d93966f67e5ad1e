"""Prefect tasks of the study: one per stage, each a thin wrapper around `stages.run.run_stage`.

What a task adds is orchestration: a content-keyed cache (`StageCache`), a
JSON result (never pickle), retries on I/O errors only, a log line and, for the
comparison, artifacts. Task name = stage name = DVC stage name. `record_in_dvc`
is the one task that is not a stage: it hands the run's files to DVC.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from neural_trader.params import StudyConfig
from stages import versioning
from stages.catalog import Workspace
from stages.registry import whole_up_to_date

from .caching import StageCache, stage_digest
from .slots import compute_slot


def _io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: file-system and transfer errors."""
    try:
        state.result()
    except OSError as exc:
        return not isinstance(exc, FileNotFoundError)
    except BaseException:
        return False
    return False


def _options(stage: str) -> dict[str, Any]:
    return dict(
        name=stage,
        cache_policy=StageCache(stage=stage),
        persist_result=True,
        result_serializer="json",
        retries=3,
        retry_delay_seconds=[1, 4, 16],
        retry_condition_fn=_io_error,
    )


def _logger() -> Any:
    """The run logger inside a run; the package logger when called through `.fn`."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("neural_trader")


def run(stage: str, cfg: StudyConfig, workspace: str, from_shards: bool = False, **item: str) -> dict[str, Any]:
    """Run a stage with the key the cache policy computed (from its seed shards with `from_shards`); log it."""
    if (whole := whole_up_to_date(stage, cfg, Workspace(workspace), item)) is not None:
        summary = whole  # a seed shard of a trained cell: no torch to import
    else:
        from stages.run import run_stage  # the bodies, and torch, load only when a stage runs

        with compute_slot(cfg.runtime.max_workers):  # taken once the inputs are ready: see tasks.slots
            summary = run_stage(stage, cfg, workspace, key=stage_digest(stage), from_shards=from_shards, **item)
    verb = "reused" if summary.get("reused") else "ran"
    brief = {k: v for k, v in summary.items() if k != "reused" and isinstance(v, (str, int, float))}
    _logger().info("%s %s: %s", verb, stage, brief)
    return summary


@task(**_options("generate"), task_run_name="generate[{regime}]")
def generate(cfg: StudyConfig, workspace: str, regime: str) -> dict[str, Any]:
    """Draw one regime's train/valid/test returns."""
    return run("generate", cfg, workspace, regime=regime)


@task(**_options("window"), task_run_name="window[{regime}]")
def window(cfg: StudyConfig, workspace: str, regime: str) -> dict[str, Any]:
    """Cut one regime's returns into lagged windows."""
    return run("window", cfg, workspace, regime=regime)


@task(**_options("train"), task_run_name="train[{regime}-{model}]")
def train(cfg: StudyConfig, workspace: str, regime: str, model: str) -> dict[str, Any]:
    """Train one variant's S replicas on one regime, batched, on the configured device."""
    return run("train", cfg, workspace, regime=regime, model=model)


@task(**_options("train_shard"), task_run_name="train_shard[{regime}-{model}-{shard}]")
def train_shard(cfg: StudyConfig, workspace: str, regime: str, model: str, shard: str) -> dict[str, Any]:
    """Train one seed shard ('KofN') of a cell, on whichever worker runs it."""
    return run("train_shard", cfg, workspace, regime=regime, model=model, shard=shard)


@task(**_options("train"), task_run_name="train[{regime}-{model}]")
def join_shards(cfg: StudyConfig, workspace: str, regime: str, model: str) -> dict[str, Any]:
    """The train stage of a cell from its seed shards (same key, outputs and bytes as `train`)."""
    return run("train", cfg, workspace, from_shards=True, regime=regime, model=model)


@task(**_options("evaluate"), task_run_name="evaluate[{regime}-{model}]")
def evaluate(cfg: StudyConfig, workspace: str, regime: str, model: str) -> dict[str, Any]:
    """Test-split metrics, baselines and learned curve of one cell."""
    return run("evaluate", cfg, workspace, regime=regime, model=model)


@task(**_options("plot"), task_run_name="plot[{regime}-{model}]")
def plot(cfg: StudyConfig, workspace: str, regime: str, model: str) -> dict[str, Any]:
    """The 2x2 training-history figure of one cell."""
    return run("plot", cfg, workspace, regime=regime, model=model)


@task(**_options("market_data"), task_run_name="market_data[{market}]")
def market_data(cfg: StudyConfig, workspace: str, market: str) -> dict[str, Any]:
    """Read one market's closes; cut its scaled windows and walk-forward folds."""
    return run("market_data", cfg, workspace, market=market)


@task(**_options("market_train"), task_run_name="market_train[{market}-{model}]")
def market_train(cfg: StudyConfig, workspace: str, market: str, model: str) -> dict[str, Any]:
    """Retrain one variant's S seeds on every fold of one market."""
    return run("market_train", cfg, workspace, market=market, model=model)


@task(**_options("market_evaluate"), task_run_name="market_evaluate[{market}-{model}]")
def market_evaluate(cfg: StudyConfig, workspace: str, market: str, model: str) -> dict[str, Any]:
    """Out-of-sample positions of every seed of one variant."""
    return run("market_evaluate", cfg, workspace, market=market, model=model)


@task(**_options("compare"), task_run_name="compare")
def compare(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Contrasts across seeds; publishes the verdict table and the report as artifacts."""
    summary = run("compare", cfg, workspace)
    ws = Workspace(workspace)
    create_table_artifact(
        key="verdicts", table=summary["table"], description="Contrasts across seeds (Holm-adjusted)"
    )
    create_markdown_artifact(key="comparison-report", markdown=ws.comparison_report.read_text(),
                             description="The comparison study's report")
    return summary


def _dvc_busy(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only while another DVC command holds the workspace."""
    try:
        state.result()
    except versioning.DvcBusy:
        return True
    except BaseException:
        return False
    return False


@task(name="record_in_dvc", cache_policy=NO_CACHE, retries=4, retry_delay_seconds=[5, 15, 45, 120],
      retry_condition_fn=_dvc_busy)
def record_in_dvc(workspace: str, stages: list[str], push: bool = False) -> dict[str, Any]:
    """Record the run's outputs in DVC: dvc.lock and the cache (`dvc commit`), then the remote if `push`."""
    result = versioning.record(workspace, stages, push=push)
    _logger().info("recorded %s in dvc.lock%s", ", ".join(stages), f"; pushed: {result['pushed']}" if push else "")
    return result


@task(name="sweep_report", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 4, 16],
      retry_condition_fn=_io_error, persist_result=True, result_serializer="json")
def sweep_report(sweep: Any, points: list[Any], workspace: str, failed: dict[str, str]) -> dict[str, Any]:
    """The grid's report (FDR across every point); published as an artifact."""
    from stages.sweep import sweep_report as build

    ws = Workspace(workspace)
    summary = build(sweep, points, ws, failed)
    create_markdown_artifact(key="sweep-report", markdown=ws.sweep_report.read_text(),
                             description=f"Dropout across a grid of {summary['points']} points")
    return summary
