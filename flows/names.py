"""Readable flow-run names: what tells one run from another in the UI's runs list.

A run is named after its flow, its workspace's folder and its `--set`
overrides, e.g. `study ws=default seeds.count=8`, instead of Prefect's random
"faithful-silkworm". The flows name themselves from their own parameters
(`flow_run_name=`), so a deployment's runs are named the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["run_name", "from_parameters"]

_LONGEST = 120  # characters: the runs list truncates long names anyway


def run_name(flow: str, workspace: str, overrides: Iterable[str] = (), *extra: str) -> str:
    """`<flow> ws=<workspace folder> <override> ... <extra> ...`, whitespace collapsed, at most 120 characters."""
    folder = Path(workspace).resolve().name or str(workspace)
    words = [flow, f"ws={folder}", *(" ".join(o.split()) for o in overrides), *extra]
    name = " ".join(words)
    return name if len(name) <= _LONGEST else name[:_LONGEST - 3] + "..."


def from_parameters(flow: str, *flags: str) -> Callable[[], str]:
    """A `flow_run_name` callable: `run_name` from the run's `workspace` and `overrides`, plus each of `flags`
    that is set; `rerun` reads `rerun=<slot>`, the slot given or the one the scheduled start time makes."""
    def name() -> str:
        from prefect.runtime import flow_run

        from stages.reruns import slot_id

        p = flow_run.parameters
        slot = p.get("slot") or (slot_id(flow_run.scheduled_start_time) if flow_run.scheduled_start_time else None)
        extra = [f"rerun={slot}" if f == "rerun" and slot else f for f in flags if p.get(f)]
        return run_name(flow, p.get("workspace", "."), p.get("overrides") or (), *extra)

    name.__name__ = f"{flow}_run_name"
    return name
