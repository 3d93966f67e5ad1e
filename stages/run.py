"""Running a stage: skip it when its stamp still vouches for its outputs, else run its body and stamp it.

Both front doors call `run_stage`: the Prefect tasks (`tasks/`) and the DVC
stage command (`neural-trader stage NAME`, what dvc.yaml runs), so both write
the same bytes. Importing this module imports the bodies, and with them torch;
the registry (`stages.registry`) is what stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig

from . import compare, market, study, warmups
from .catalog import Workspace, file_digest, write_json
from .registry import ALL_STAGES, item_id, stage_key, up_to_date, whole_up_to_date

__all__ = ["BODIES", "SHARD_JOINS", "run_stage"]

log = logging.getLogger("neural_trader")

#: stage name -> body(cfg, ws, **item) -> JSON summary
BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    "generate": study.generate,
    "window": study.window,
    "train": study.train,
    "train_shard": study.train_shard,  # the flow's seed shards (registry.FLOW_STAGES)
    "evaluate": study.evaluate,
    "plot": study.plot,
    "market_data": market.market_data,
    "market_train": market.market_train,
    "market_evaluate": market.market_evaluate,
    "compare": compare.compare,
    **{f"{exp}_{step}": getattr(warmups, f"{exp}_{step}")
       for exp in ("regression", "classifier") for step in ("generate", "train", "evaluate", "plot")},
}


#: stage -> the body that writes its outputs by joining its seed shards (registry.FLOW_STAGES)
SHARD_JOINS: dict[str, Callable[..., dict[str, Any]]] = {"train": study.join_shards}


def run_stage(stage: str, cfg: StudyConfig, ws: Workspace | str | Path, *, key: str | None = None,
              from_shards: bool = False, **item: str) -> dict[str, Any]:
    """Run one stage unless its outputs are already up to date; return its summary.

    `key` is the stage key when the caller has computed it already (Prefect's
    cache policy has), so it is computed once per run of a stage. With
    `from_shards` the stage's outputs are joined from its seed shards
    (`SHARD_JOINS`): same key, same stamp, same bytes. A shard is skipped when
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
    summary = (SHARD_JOINS[stage] if from_shards else BODIES[stage])(cfg, ws, **item)
    outputs = {ws.rel(p): file_digest(p) for p in spec.outputs(cfg, ws, item)}
    if missing_out := [p for p, d in outputs.items() if d == "missing"]:
        raise RuntimeError(f"stage {stage} did not write {missing_out}")
    write_json(ws.stamp(stage, item_id(item)), {"key": key, "outputs": outputs, "summary": summary})
    return {**summary, "reused": False}

