"""Prefect tasks of a scheduled rerun: record it in the ledger, pool every rerun so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from neural_trader.params import StudyConfig

from stages import versioning
from stages.dvcfile import render_sweep_dvc_yaml
from stages.reruns import RERUNS, pool_reruns, pooled_workspace, record_rerun

from .stages import _dvc_busy, _logger


@task(name="record_rerun", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 4, 16])
def record(root: str, slot: str, cfg: StudyConfig, flow_run_id: str | None) -> dict[str, Any]:
    """Add this slot to reruns/ledger.json with its headline numbers."""
    entry = record_rerun(Path(root), slot, cfg, flow_run_id)
    _logger().info("recorded rerun %s (seeds.base=%d) in the ledger", slot, entry["seeds_base"])
    return entry


@task(name="pool_reruns", cache_policy=NO_CACHE)
def pool(root: str, cfg: StudyConfig) -> dict[str, Any]:
    """The comparison over every rerun of this design so far; publishes the pooled report."""
    summary = pool_reruns(Path(root), cfg)
    _logger().info("pooled %d reruns, %d seeds per cell", summary["runs"], summary["replicas"])
    create_markdown_artifact(key="pooled-report", markdown=pooled_workspace(Path(root)).comparison_report.read_text(),
                             description=f"Pooled over {summary['runs']} reruns")
    return summary


@task(name="version_rerun", cache_policy=NO_CACHE, retries=4, retry_delay_seconds=[5, 15, 45, 120],
      retry_condition_fn=_dvc_busy)
def version_rerun(root: str, slot: str, push: bool = False) -> dict[str, Any]:
    """`dvc add` this rerun's folder and the ledger (then push, if asked): each rerun findable later."""
    result = versioning.add_rerun(root, f"{RERUNS}/{slot}", push=push)
    _logger().info("versioned rerun %s in DVC: %s", slot, ", ".join(result["added"]))
    return result


@task(name="version_sweep", cache_policy=NO_CACHE, retries=4, retry_delay_seconds=[5, 15, 45, 120],
      retry_condition_fn=_dvc_busy)
def version_sweep(root: str, cfg: StudyConfig, points: list[str], push: bool = False) -> dict[str, Any]:
    """`dvc add` every computed point's folder, record the report in sweeps/dvc.yaml + .lock (then push, if asked)."""
    result = versioning.record_sweep(root, points, render_sweep_dvc_yaml(cfg, points), push=push)
    _logger().info("versioned %d sweep points and the report in DVC%s", len(points), "; pushed" if push else "")
    return result
