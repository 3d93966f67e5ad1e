"""The study as a Prefect flow: generate -> window -> train each variant -> evaluate -> plot -> compare.

    neural-trader run                      # the CLI front door
    python -m flows.study             # the same, on params.yaml

Every task writes files into the workspace and returns a small JSON summary;
tensors never travel through Prefect. Train tasks of different cells run
concurrently under the task runner chosen in `runtime` (threads by default, a
Dask cluster for scale-out). With `dvc_record` the flow ends by recording its
files in DVC (dvc.lock and the cache, and the remote with `dvc_push`), so a
scheduled run leaves a versioned result and a later `dvc repro` reruns nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from neural_trader.params import StudyConfig
from stages.catalog import Workspace, check_inputs, load_params
from stages.reruns import rerun_root, slot_base_seed, slot_id
from stages.versioning import DvcError, check_recordable, is_dvc_workspace
from stages.registry import STUDY_STAGES
from tasks.reruns import pool, record, version_rerun
from tasks.stages import record_in_dvc

from .graph import Track, submit_stages
from .progress import StageReport, log as progress, ui_link
from .names import from_parameters
from .runners import make_task_runner

#: the registry's stages this flow runs, in order; dvc.yaml has the same
DVC_STAGES = tuple(s.name for s in STUDY_STAGES)


# persist_result=False: the summary is returned, not stored; a stored one shows as an untitled "unknown" artifact
@flow(name="study", log_prints=False, persist_result=False,
      flow_run_name=from_parameters("study", "rerun", "dvc_record"))
def study(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    workspace: str = ".",
    rerun: bool = False,
    slot: str | None = None,
    dvc_record: bool = False,
    dvc_push: bool = False,
    cfg: StudyConfig | None = None,
) -> dict[str, Any]:
    """Run the whole study described by `params` (with `key.path=value` overrides) in `workspace`.

    `cfg` is that study already validated (the command line parsed it): then
    the params file is not read again. Deployments pass only `params`.

    With `rerun`, this is a scheduled rerun that adds evidence: replica seeds
    come from the slot (its scheduled start time unless `slot` is given), the
    study runs in reruns/<slot>/, is recorded in the ledger, and every rerun so
    far is pooled into reruns/pooled/.

    With `dvc_record`, the workspace is a DVC repository and the run ends with
    `dvc commit` of its stages (then `dvc push` with `dvc_push`). Only a run of
    what dvc.yaml describes can be recorded: the workspace's params.yaml, no
    overrides (so no rerun), the workspace's code; anything else fails here,
    before any work.
    """
    overrides = list(overrides or [])
    root = Workspace(Path(workspace))
    cfg = cfg or load_params(params, overrides)
    if rerun:
        slot = slot or slot_id(flow_run.scheduled_start_time or datetime.now(timezone.utc))
        cfg = cfg.model_copy(update={"seeds": cfg.seeds.model_copy(update={"base": slot_base_seed(slot)})})
    if dvc_record and rerun and not is_dvc_workspace(root.root):
        raise DvcError(f"record: {root.root} is not a DVC workspace: run `git init && dvc init` there")
    if dvc_record and not rerun:
        check_recordable(root, params, overrides, DVC_STAGES)
    ws = str(rerun_root(root.root, slot)) if rerun else str(root.root)
    progress.info("study: %d regimes x %d models x %d seeds in %s%s", len(cfg.data.regimes), len(cfg.models),
                  cfg.seeds.count, ws, ui_link())

    with root.lock("study"):  # runs on one workspace are serialised, never interleaved
        root.sweep_temporaries()
        report = StageReport()
        futures = submit_study(cfg, ws, track=report.track)
        (verdicts,), rest = futures["compare"], [f for fs in futures.values() for f in fs]
        for _ in report.finished():  # a line per stage as it finishes
            pass
        summary = verdicts.result()
        for markets in futures["market_compare"]:  # none without a market
            summary["market"] = markets.result()["market"]

        if rerun:
            record(str(root.root), slot, cfg, flow_run.id, wait_for=[verdicts])
            pooled = pool(str(root.root), cfg)
            summary = {**summary, "slot": slot, "pooled": pooled}
            if dvc_record:
                summary["dvc"] = version_rerun(str(root.root), slot, push=dvc_push, wait_for=[*rest])
        elif dvc_record:
            recorded = record_in_dvc(ws, list(DVC_STAGES), push=dvc_push, wait_for=[verdicts, *rest])
            summary = {**summary, "dvc": recorded}
    return summary


def submit_study(cfg: StudyConfig, ws: str, track: Track | None = None) -> dict[str, list[Any]]:
    """Submit every stage of one study in `ws`, as the registry lists them; stage -> the futures of its items.

    Each task waits for the tasks that write its inputs (`flows.graph`), in a
    spare thread, not a compute slot: generate -> window -> train each variant
    (in seed shards with runtime.seed_shards > 1) -> evaluate -> plot per cell;
    each market's data -> train -> evaluate; compare waits for every cell's
    evaluation, market_compare for every market's. `track(future, label)` is told of each task.
    """
    return submit_stages(cfg, ws, DVC_STAGES, track=track)


def run_study(params: str, overrides: list[str], workspace: str, rerun: bool = False,
                   slot: str | None = None, dvc_record: bool = False, dvc_push: bool = False,
                   cfg: StudyConfig | None = None) -> dict[str, Any]:
    """Validate params (unless `cfg` is given), then run the flow under the task runner they ask for."""
    cfg = cfg or load_params(params, overrides)  # fails here, before any work, on a bad key
    check_inputs(cfg, workspace)  # and on a bad price file
    runner = make_task_runner(cfg.runtime)
    return study.with_options(task_runner=runner)(
        params=str(Path(params).resolve()), overrides=list(overrides), workspace=str(Workspace(Path(workspace)).root),
        rerun=rerun, slot=slot, dvc_record=dvc_record, dvc_push=dvc_push, cfg=cfg,
    )


if __name__ == "__main__":
    import sys

    print(run_study("params.yaml", sys.argv[1:], "."))
