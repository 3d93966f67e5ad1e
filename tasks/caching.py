"""A Prefect cache policy keyed on what determines a stage's output.

Prefect's INPUTS policy cannot hash tensors stably and hashes a Path by its
name, so it is not used. `StageCache` keys a task run on
`stages.registry.stage_key`: the stage's params keys, the content of its input
files and its code.

The stage's stamp decides whether it is up to date; Prefect's record is only
trusted while the stamp vouches for the outputs on disk. If an output was
deleted or altered, the record for that key is evicted before Prefect looks it
up, so the task runs again instead of returning a stale hit. The task body
passes the key on (`stage_digest`), so it is computed once per task run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from prefect.transactions import get_transaction

from stages.catalog import Workspace
from stages.registry import stage_key, up_to_date

log = logging.getLogger("neural_trader")


@dataclass
class StageCache(CachePolicy):
    stage: str = ""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        cfg, ws, item = inputs["cfg"], Workspace(Path(inputs["workspace"])), dict(inputs["item"])
        digest = stage_key(self.stage, cfg, ws, item)
        key = f"{self.stage}-{digest}"
        if up_to_date(self.stage, cfg, ws, item, digest) is None:
            _evict(task_ctx, key)
        return key


def _evict(task_ctx: TaskRunContext, key: str) -> None:
    """Drop the persisted record for `key`, if any, so the lookup misses."""
    store = task_ctx.result_store
    resolve = getattr(store.result_storage, "_resolve_path", None)
    if store.result_storage_block_id is None and resolve is not None:
        path = Path(resolve(key))
        if path.exists():
            path.unlink()
            log.info("evicted cached result %s: its outputs changed on disk", key)


def stage_digest(stage: str) -> str | None:
    """The stage key `StageCache` computed for the running task, or None outside a cached task run."""
    txn = get_transaction()
    key = getattr(txn, "key", None) or ""
    return key.removeprefix(f"{stage}-") if key.startswith(f"{stage}-") else None
