"""Running a stage: skip it when its stamp still vouches for its outputs, else run its body and stamp it.

Both front doors call `run_stage`: the Prefect tasks (`tasks/`) and the DVC
stage command (`neural-trader stage NAME`, what dvc.yaml runs), so both write
the same bytes. A stage's body is named in the registry (`module:function`)
and imported here when the stage runs, with torch; the registry stays light.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig

from .catalog import Workspace, file_digest, write_json
from .registry import ALL_STAGES, item_id, stage_key, up_to_date, whole_up_to_date

__all__ = ["body_of", "preload_bodies", "run_stage"]

log = logging.getLogger("neural_trader")


def body_of(name: str) -> Callable[..., dict[str, Any]]:
    """The function a registry entry names as "module:function" (looked up at each call: tests may replace it)."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def preload_bodies(cfg: StudyConfig, ws: Workspace | str | Path, stages: Iterable[str]) -> list[str]:
    """Import the modules of the bodies of `stages` now if some item of them has no stamp; the modules imported.

    Called while the run's server boots: the bodies' imports (torch, scipy,
    statsmodels, matplotlib: seconds) then fill time the run would spend
    waiting, instead of delaying the first stage. With every stamp in place the
    run will most likely only check keys, which needs none of them.
    """
    ws = ws if isinstance(ws, Workspace) else Workspace(Path(ws))
    specs = [ALL_STAGES[s] for s in stages]
    if all(ws.stamp(s.name, item_id(i)).is_file() for s in specs for i in s.grid(cfg)):
        return []
    modules = sorted({n.partition(":")[0] for s in specs for n in (s.body, s.join) if n})
    for module in modules:
        importlib.import_module(module)
    return modules


def run_stage(stage: str, cfg: StudyConfig, ws: Workspace | str | Path, *, key: str | None = None,
              from_shards: bool = False, **item: str) -> dict[str, Any]:
    """Run one stage unless its outputs are already up to date; return its summary.

    `key` is the stage key when the caller has computed it already (Prefect's
    cache policy has), so it is computed once per run of a stage. With
    `from_shards` the stage's outputs are joined from its seed shards (the
    entry's `join`): same key, same stamp, same bytes. A shard is skipped when
    the stage it is part of is up to date already.
    """
    ws = ws if isinstance(ws, Workspace) else Workspace(Path(ws))
    spec = ALL_STAGES[stage]
    if (whole := whole_up_to_date(stage, cfg, ws, item)) is not None:
        log.info("%s is up to date: %s@%s needs no run", spec.part_of, stage, item_id(item))
        return whole
    missing = [ws.rel(p) for p in spec.inputs(cfg, ws, item) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"stage {stage}@{item_id(item) or '-'} needs {', '.join(missing)}: "
                                "run the upstream stages first")
    key = key or stage_key(stage, cfg, ws, item)
    if (summary := up_to_date(stage, cfg, ws, item, key)) is not None:
        log.info("%s@%s is up to date", stage, item_id(item) or "-")
        return {**summary, "reused": True}
    summary = body_of(spec.join if from_shards else spec.body)(cfg, ws, **item)
    outputs = {ws.rel(p): file_digest(p) for p in spec.outputs(cfg, ws, item)}
    if missing_out := [p for p, d in outputs.items() if d == "missing"]:
        raise RuntimeError(f"stage {stage} did not write {missing_out}")
    write_json(ws.stamp(stage, item_id(item)), {"key": key, "outputs": outputs, "summary": summary})
    return {**summary, "reused": False}

