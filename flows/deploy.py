"""Deployments of the study, and a health check of their schedule.

Two deployments of the `study` flow:

- `study/manual`: on demand (`prefect deployment run study/manual`);
- `study/nightly`: a cron schedule in a time zone; each run is a rerun
  with fresh seeds derived from its scheduled slot, versioned and pooled.

`neural-trader serve` starts (or reuses) a `prefect server start` bound to
127.0.0.1 (`flows.server.ensure_server`) and serves both from this process.
For a team server, the same deployments are declared in prefect.yaml for the
work-pool + worker route.
"""

from __future__ import annotations

from typing import Any

from .server import server_healthy

DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"


def deployment_parameters(params: str, overrides: list[str], workspace: str, rerun: bool,
                          dvc_record: bool = False, dvc_push: bool = False) -> dict[str, Any]:
    return {"params": params, "overrides": list(overrides), "workspace": workspace, "rerun": rerun,
            "dvc_record": dvc_record, "dvc_push": dvc_push}


def build_deployments(params: str, overrides: list[str], workspace: str, cron: str, tz: str,
                      dvc_push: bool = False) -> list[Any]:
    """The manual and nightly deployments, to be served by this process.

    Nightly reruns are versioned in DVC (`dvc add` of each rerun's folder) when
    the workspace is a DVC workspace.
    """
    from prefect.schedules import Cron

    from stages.versioning import is_dvc_workspace

    from .study import study

    manual = study.to_deployment(
        name="manual", parameters=deployment_parameters(params, overrides, workspace, rerun=False),
        concurrency_limit=1, description="The study on demand, on the params file as it is.",
    )
    versioned = is_dvc_workspace(workspace)
    nightly = study.to_deployment(
        name="nightly", schedules=[Cron(cron, timezone=tz)],
        parameters=deployment_parameters(params, overrides, workspace, rerun=True, dvc_record=versioned,
                                         dvc_push=dvc_push and versioned),
        concurrency_limit=1, description="A rerun with fresh seeds per scheduled slot, versioned and pooled.",
    )
    return [manual, nightly]


# ------------------------------------------------------------------------ status
def schedule_status(api_url: str, deployment: str = "study/nightly", stale_after: float = 120.0) -> dict[str, Any]:
    """Is the nightly schedule alive? Reads the server: paused, last polled, late runs.

    Scheduled runs only start while something polls the deployment (the
    `neural-trader serve` process, or a worker of its pool): a deployment nobody
    has polled for `stale_after` seconds has lost its runner, and runs still
    SCHEDULED after their start time (Prefect marks them Late) say the same.
    """
    from datetime import datetime, timezone

    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName,
    )
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not server_healthy(api_url):
        return {"ok": False, "problem": f"no Prefect server answers at {api_url}"}
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return {"ok": False, "problem": f"deployment {deployment} does not exist: run `neural-trader serve`"}
        deps = DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
        late = client.read_flow_runs(
            deployment_filter=deps,
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))),
        )
        recent = client.read_flow_runs(deployment_filter=deps, limit=20)
    schedules_active = [s.active for s in dep.schedules]
    last_done = max((r.end_time for r in recent if r.end_time), default=None)
    since_poll = (datetime.now(timezone.utc) - dep.last_polled).total_seconds() if dep.last_polled else None
    problem = None
    if dep.paused or not any(schedules_active):
        problem = "the schedule is paused: resume it with `prefect deployment resume study/nightly`"
    elif since_poll is None or since_poll > stale_after:
        when = "ever" if since_poll is None else f"{since_poll:.0f} s"
        problem = (f"nothing has polled {deployment} for {when}: its `neural-trader serve` process (or the "
                   "worker of its pool) is gone, so no scheduled run will start; restart it")
    elif late:
        problem = f"{len(late)} scheduled run(s) are Late: nothing is picking up {deployment}; restart its runner"
    return {
        "ok": problem is None,
        "problem": problem,
        "deployment": deployment,
        "schedules": [str(s.schedule) for s in dep.schedules],
        "paused": dep.paused,
        "schedules_active": schedules_active,
        "seconds_since_polled": None if since_poll is None else round(since_poll),
        "late_runs": len(late),
        "last_finished": last_done.isoformat() if last_done else None,
    }
