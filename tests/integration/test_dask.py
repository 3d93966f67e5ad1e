"""Scale-out on a local Dask cluster: the flow under Prefect's DaskTaskRunner gives the same bytes, on loopback only."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.conftest import (
    ROOT,
    SHRUNK,
    ListenerWatch,
    _merge,
    beyond_loopback,
    listening_sockets,
)

pytest.importorskip("prefect_dask", reason="the scale extra is not installed: pip install -e '.[scale]'")


@pytest.mark.slow
def test_dask_runner_matches_threads_and_listens_on_loopback_only(tmp_path, prefect_server):
    """`runtime.task_runner: dask` with no address starts a LocalCluster inside this process (scheduler,
    dashboard, nannies) and worker processes under it: every socket any of them listens on is 127.0.0.1.
    """
    from flows.study import run_study

    raw = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    runs = {}
    before = listening_sockets(os.getpid())  # the session's Prefect server, a child of this process
    for runner in ("threads", "dask"):
        ws = tmp_path / runner
        with ListenerWatch(os.getpid(), every=0.25) as watch:
            summary = run_study(str(params), [f"runtime.task_runner={runner}"], str(ws))
        assert summary["table"]
        runs[runner] = ws
        started = watch.seen - before
        if runner == "dask":
            assert {pid for pid, *_ in started} - {os.getpid()}, f"no worker process was seen listening: {started}"
            assert any(pid == os.getpid() for pid, *_ in started), f"no scheduler was seen listening: {started}"
        assert not beyond_loopback(watch.seen), f"{runner}: listening beyond 127.0.0.1: {beyond_loopback(watch.seen)}"
    assert listening_sockets(os.getpid()) <= before, "the cluster outlived its flow run"
    files = sorted(p.relative_to(runs["threads"]) for d in ("metrics", "models", "plots", "reports")
                   for p in (runs["threads"] / d).rglob("*") if p.is_file())
    assert any(p.parts[0] == "models" for p in files) and any(p.suffix == ".png" for p in files)
    for rel in files:
        assert (runs["threads"] / rel).read_bytes() == (runs["dask"] / rel).read_bytes(), rel
