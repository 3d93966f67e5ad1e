"""Submitting stages as the registry lists them: each task waits for the tasks that write its inputs.

The registry (`stages.registry`) is the one stage graph: its entries are in
dependency order, and a stage's inputs are files that earlier stages write.
So a flow needs no wiring of its own: for each stage and each item of its grid
it submits the stage's task, waiting for whichever submitted tasks write the
item's inputs. A stage with parts (train's seed shards, `runtime.seed_shards`
> 1) is submitted as its parts, then the task that joins them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig
from stages.catalog import Workspace
from stages.progress import stage_label
from stages.registry import ALL_STAGES, FLOW_STAGES, Item, Stage
from tasks.stages import stage_task

__all__ = ["Track", "submit_stages"]

#: told of each submitted task: (its future, its label); returns the future
Track = Callable[[Any, str], Any]


def submit_stages(cfg: StudyConfig, workspace: str, stages: Iterable[str],
                  track: Track | None = None) -> dict[str, list[Any]]:
    """Submit every item of `stages` (registry names, in registry order); stage -> the futures of its items.

    `track(future, label)` is told of every task submitted, seed shards included,
    with its label (`train momentum-dropout`, after the sweep point if any).
    """
    ws = Workspace(Path(workspace))
    track = track or (lambda future, label: future)

    def tracked(future: Any, stage: str, item: Item) -> Any:
        return track(future, stage_label(stage, item, ws.point))

    writers: dict[Path, Any] = {}  # output file -> the future of the task that writes it
    futures: dict[str, list[Any]] = {}
    for name in stages:
        spec = ALL_STAGES[name]
        futures[name] = []
        for item in spec.grid(cfg):
            waits = list({id(f): f for p in spec.inputs(cfg, ws, item) if (f := writers.get(p)) is not None}.values())
            future = _submit(spec, cfg, workspace, item, waits, tracked)
            writers.update(dict.fromkeys(spec.outputs(cfg, ws, item), future))
            futures[name].append(future)
    return futures


def _submit(spec: Stage, cfg: StudyConfig, workspace: str, item: Item, waits: list[Any],
            track: Callable[[Any, str, Item], Any]) -> Any:
    """One item of a stage: its task, or its parts' tasks and the task joining them; `track(future, stage, item)`."""
    parts = [p for p in FLOW_STAGES.values() if p.part_of == spec.name]
    mine = [(p, i) for p in parts for i in p.grid(cfg) if all(i[k] == v for k, v in item.items())]
    if not mine:
        return track(stage_task(spec.name).submit(cfg, workspace, item, wait_for=waits), spec.name, item)
    shards = [track(stage_task(p.name).submit(cfg, workspace, i, wait_for=waits), p.name, i) for p, i in mine]
    return track(stage_task(spec.name, from_shards=True).submit(cfg, workspace, item, wait_for=shards), spec.name, item)


