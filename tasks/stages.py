"""Prefect tasks: one per registry stage, each a thin wrapper around `stages.run.run_stage`.

What a task adds is orchestration: a content-keyed cache (`StageCache`), a
JSON result (never pickle), retries on I/O errors only, a log line and, for
the comparison and the warm-ups' evaluations, artifacts. Task name = stage
name = DVC stage name. `record_in_dvc` is the task that is not a stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from neural_trader.params import StudyConfig
from stages import versioning
from stages.catalog import Workspace, read_json
from stages.registry import Item, item_id, whole_up_to_date

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
    """Run a stage with the key the cache policy computed (from its seed shards with `from_shards`); log it.

    The summary gains `task_seconds`, the seconds from taking a compute slot to
    the end (not the wait for one), which the flow's progress lines show; a
    cached hit returns the summary of the run that made it.
    """
    start = time.perf_counter()
    if (whole := whole_up_to_date(stage, cfg, Workspace(workspace), item)) is not None:
        summary = whole  # a seed shard of a trained cell: no torch to import
    else:
        from stages.run import run_stage  # the bodies, and torch, load only when a stage runs

        with compute_slot(cfg.runtime.max_workers, stage):  # taken once the inputs are ready: see tasks.slots
            start = time.perf_counter()
            summary = run_stage(stage, cfg, workspace, key=stage_digest(stage), from_shards=from_shards, **item)
    verb = "reused" if summary.get("reused") else "ran"
    brief = {k: v for k, v in summary.items() if k != "reused" and isinstance(v, (str, int, float))}
    _logger().info("%s %s: %s", verb, stage, brief)
    return {**summary, "task_seconds": round(time.perf_counter() - start, 3)}


def _run_name() -> str:
    """A task run's name: its stage and item, e.g. `train[momentum-dropout]`, or its stage alone (`compare`);
    in a sweep, then its point: `train[ar-d0_1] @ hidden32-rho0p1` (the point's workspace is sweeps/<point>)."""
    from prefect.runtime import task_run

    item = item_id(task_run.parameters.get("item") or {})
    name = f"{task_run.task_name}[{item}]" if item else task_run.task_name
    point = Workspace(task_run.parameters.get("workspace") or ".").point
    return f"{name} @ {point}" if point else name


def stage_task(stage: str, from_shards: bool = False) -> Task:
    """The Prefect task of a registry stage (task name = stage name = DVC stage name).

    Called as `stage_task(name).submit(cfg, workspace, item)`. It runs the
    stage, then publishes what the stage publishes (`PUBLISH`). With
    `from_shards` it writes the stage's outputs by joining its seed shards
    (same key, same cache record, same bytes).
    """
    if (stage, from_shards) not in _TASKS:
        def run_one(cfg: StudyConfig, workspace: str, item: Item) -> dict[str, Any]:
            summary = run(stage, cfg, workspace, from_shards=from_shards, **item)
            if stage in PUBLISH:
                PUBLISH[stage](summary, Workspace(workspace), cfg)
            return summary

        run_one.__doc__ = f"Stage {stage}: see stages.registry."
        _TASKS[stage, from_shards] = task(run_one, **_options(stage), task_run_name=_run_name)
    return _TASKS[stage, from_shards]


_TASKS: dict[tuple[str, bool], Task] = {}


# ------------------------------------------------------------------ what the UI shows
def _markdown(key: str, markdown: str, description: str) -> None:
    """A Markdown artifact, its size logged: the UI loads it whole, inlined figures and all."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)
    _logger().info("published %s: %s bytes", key, f"{len(markdown.encode()):,}")


def _inlined(paths: dict[str, Path]) -> dict[str, str]:
    """name -> the data URI of each figure file, shrunk for the UI (`neural_trader.artifacts`)."""
    from neural_trader.artifacts import inline_figures

    return inline_figures({name: path.read_bytes() for name, path in paths.items()})


def _publish_comparison(summary: dict[str, Any], ws: Workspace, cfg: StudyConfig) -> None:
    """The verdicts and the report, whole: reports/comparison.md links its figures, the artifact carries them."""
    from neural_trader.synthetic.comparison import FIGURES
    from neural_trader.synthetic.report import comparison_artifact, verdicts_artifact

    comparison = read_json(ws.comparison_json)
    _markdown("verdicts", verdicts_artifact(comparison),
              "Contrasts across seeds: unadjusted CIs, Holm-adjusted p-values, verdicts")
    figures = _inlined({f: ws.comparison_plots / f"{f}.png" for f in FIGURES})
    _markdown("comparison-report", comparison_artifact(cfg, comparison, figures), "The comparison study's report")


def _publish_markets(summary: dict[str, Any], ws: Workspace, cfg: StudyConfig) -> None:
    """Every market's section of reports/markets.md, its figures inlined."""
    from neural_trader.markets.publish import FIGURES, market_artifact

    result = read_json(ws.markets_json)
    markdown = "".join(market_artifact(m, r, _inlined({f: ws.market_plot(m, f) for f in FIGURES}))
                       for m, r in result.items())
    _markdown("markets-report", markdown, "Out of sample on real prices: net of costs, against buy-and-hold")


def _publish_regression(report: dict[str, Any], ws: Workspace, cfg: StudyConfig) -> None:
    create_table_artifact(
        key="regression-report",
        table=[{"parameter": p, "recovered": report[p], "true": report[f"{p}_true"], "error": report[f"{p}_error"]}
               for p in ("beta0", "beta1", "sigma")],
        description="Warm-up regression: recovered parameters against the truth",
    )


def _publish_classifier(report: dict[str, Any], ws: Workspace, cfg: StudyConfig) -> None:
    create_table_artifact(
        key="classifier-report",
        table=[{"quantity": k, "value": report[k]}
               for k in ("accuracy", "false_pos", "false_neg", "bayes", "bayes_se", "gap", "bayes_test", "gap_test")],
        description="Warm-up classifier: test accuracy against the Bayes rate (gap = bayes - accuracy)",
    )


def _publish_sweep(summary: dict[str, Any], ws: Workspace, cfg: StudyConfig) -> None:
    from neural_trader.sweep.report import FIGURES, sweep_artifact

    figures = _inlined({f: ws.sweep_plots / f"{f}.png" for f in FIGURES})
    _markdown("sweep-report", sweep_artifact(read_json(ws.sweep_json), figures),
              f"Dropout across a grid of {summary['points']} points")


#: stage -> what its task publishes as artifacts once it has run
PUBLISH: dict[str, Callable[[dict[str, Any], Workspace, StudyConfig], None]] = {
    "compare": _publish_comparison,
    "market_compare": _publish_markets,
    "regression_evaluate": _publish_regression,
    "classifier_evaluate": _publish_classifier,
    "sweep_report": _publish_sweep,
}


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
