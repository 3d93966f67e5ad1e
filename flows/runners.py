"""Task runners for the flows: threads by default, Dask to scale out."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from neural_trader.config import RuntimeConfig

#: A local Dask cluster listens on loopback only: its scheduler, workers and nannies on 127.0.0.1 (`host`),
#: and the scheduler's dashboard too (LocalCluster's default, ':8787', binds every interface). Workers
#: start no dashboard (LocalCluster's default `worker_dashboard_address=None`).
LOCAL_CLUSTER = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:8787"}
WAITING_THREADS = 64  # threads for tasks that wait on their upstream; a waiting thread costs no CPU


def make_task_runner(runtime: RuntimeConfig) -> Any:
    """The runner `runtime.task_runner` names.

    threads: a thread pool in which at most `max_workers` stage bodies compute at
    once (`tasks.slots`; torch releases the GIL in its kernels); tasks waiting for
    their inputs wait in spare threads, so they never hold up ready work.
    sequential: one task at a time.
    dask: prefect-dask's DaskTaskRunner on `dask_address`, or a local cluster
    of `max_workers` single-threaded worker processes when no address is given,
    every listener of it bound to 127.0.0.1 (`LOCAL_CLUSTER`).
    """
    if runtime.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=runtime.max_workers + WAITING_THREADS)
    if runtime.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "runtime.task_runner=dask needs the scale-out extra: pip install 'neural-trader[scale]'"
        ) from exc
    if runtime.dask_address:
        return DaskTaskRunner(address=runtime.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": runtime.max_workers, "threads_per_worker": 1,
                                          "processes": True, **LOCAL_CLUSTER})
