"""Deployments on a real `prefect server start` (conftest), executed by a real process worker.

No mocks: the deployment is created through the API, scheduled runs are read
back, runs are triggered and a `prefect worker start --run-once` subprocess
executes them in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT, SHRUNK, _merge

pytestmark = pytest.mark.slow

POOL = "nt-test-pool"
SLOTS = ("20261101T0200Z", "20261102T0200Z")


def _prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy(), cwd=ROOT)


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory):
    """A process work pool and the two deployments, pointed at a temporary workspace."""
    from prefect.schedules import Cron

    from flows.deploy import deployment_parameters
    from flows.experiment import experiment

    root = tmp_path_factory.mktemp("deployed")
    params = root / "params.yaml"
    raw = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)
    params.write_text(yaml.safe_dump(raw))
    workspace = root / "ws"
    workspace.mkdir()
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=workspace, check=True, timeout=60)
    created = _prefect("work-pool", "create", POOL, "--type", "process")
    assert created.returncode == 0, created.stderr
    source = experiment.from_source(source=str(ROOT), entrypoint="flows/experiment.py:experiment")
    for name, rerun, schedules in (("manual", False, None), ("nightly", True, [Cron("0 2 * * *", timezone="Europe/Paris")])):
        source.deploy(name=name, work_pool_name=POOL, schedules=schedules, build=False, push=False,
                      parameters=deployment_parameters(str(params), [], str(workspace), rerun=rerun,
                                                       dvc_record=rerun))
    return workspace


def _run_once() -> None:
    worker = _prefect("worker", "start", "--pool", POOL, "--run-once", timeout=400)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]


def _state(flow_run_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def test_schedule_exists_and_produces_scheduled_runs(deployed):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, \
        FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("experiment/nightly")
        assert [s.active for s in nightly.schedules] == [True]
        assert nightly.schedules[0].schedule.cron == "0 2 * * *"
        assert nightly.schedules[0].schedule.timezone == "Europe/Paris"
        assert client.read_deployment_by_name("experiment/manual").schedules == []
        deadline = time.monotonic() + 60
        while True:  # the server's scheduler service fills in upcoming runs every few seconds
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            )
            if runs or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert runs, "no scheduled run appeared within 60 s"
    assert all(r.parameters["rerun"] is True for r in runs)


def test_triggered_reruns_complete_are_recorded_and_pooled(deployed):
    from prefect.deployments import run_deployment

    workspace = deployed
    for n, slot in enumerate(SLOTS, start=1):
        run = run_deployment("experiment/nightly", parameters={"slot": slot}, timeout=0)
        _run_once()
        state = _state(run.id)
        assert state.is_completed(), state
        result = state.result()
        assert result["slot"] == slot and result["pooled"]["runs"] == n
        ledger = json.loads((workspace / "reruns" / "ledger.json").read_text())["reruns"]
        assert [e["slot"] for e in ledger] == list(SLOTS[:n])
        assert (workspace / "reruns" / slot / "metrics" / "comparison.json").is_file()
        assert (workspace / "reruns" / f"{slot}.dvc").is_file() and (workspace / "reruns" / "ledger.json.dvc").is_file()
        assert result["dvc"]["added"] == [f"reruns/{slot}.dvc", "reruns/ledger.json.dvc"]
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=workspace, capture_output=True,
                            text=True, timeout=120)
    assert json.loads(status.stdout) == {}, status.stdout  # what the last rerun versioned is what is on disk
    pooled = json.loads((workspace / "reruns" / "pooled" / "metrics" / "comparison.json").read_text())
    assert pooled["runs"] == 2 and pooled["replicas"] == 2 * SHRUNK["seeds"]["count"]
    report = (workspace / "reruns" / "pooled" / "reports" / "comparison.md").read_text()
    assert f"Pooled over 2 reruns with independent base seeds: {pooled['replicas']} seeds per cell" in report
    seeds = [e["seeds_base"] for e in json.loads((workspace / "reruns" / "ledger.json").read_text())["reruns"]]
    assert len(set(seeds)) == 2  # each slot drew its own seeds


def test_status_reports_a_healthy_schedule_while_a_worker_polls(deployed, prefect_server):
    import signal

    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
                              cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", prefect_server],
                                  capture_output=True, text=True, timeout=60, cwd=ROOT)
            if proc.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deployment: experiment/nightly" in proc.stdout and "schedules_active: [True]" in proc.stdout


def test_status_flags_a_paused_schedule(deployed, prefect_server):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("experiment/nightly")
        client.pause_deployment(nightly.id)
        try:
            proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", prefect_server],
                                  capture_output=True, text=True, timeout=60, cwd=ROOT)
        finally:
            client.resume_deployment(nightly.id)
    assert proc.returncode == 1
    assert "problem: the schedule is paused" in proc.stdout


def test_status_without_a_server_says_so():
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", "http://127.0.0.1:9/api"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1 and "no Prefect server answers at http://127.0.0.1:9/api" in proc.stdout


def test_prefect_yaml_deploys_the_same_deployments(deployed):
    """The team route: prefect.yaml through `prefect deploy --all` (run last: it replaces both)."""
    from prefect import get_client

    assert _prefect("work-pool", "create", "local-process", "--type", "process").returncode == 0
    proc = _prefect("--no-prompt", "deploy", "--all")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("experiment/nightly")
        manual = client.read_deployment_by_name("experiment/manual")
    assert nightly.work_pool_name == manual.work_pool_name == "local-process"
    assert nightly.schedules[0].schedule.cron == "0 2 * * *" and nightly.parameters["rerun"] is True
    assert manual.parameters["rerun"] is False and not manual.schedules
    assert nightly.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]


def test_serve_registers_both_and_status_sees_it_die(prefect_server, tmp_path):
    """`neural-trader serve` against the running server; once it is killed, `status` says nothing serves it."""
    import signal

    from prefect import get_client

    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--workspace", str(tmp_path), "--cron", "30 3 * * *",
         "--timezone", "Europe/Paris"], cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while True:
                try:
                    nightly = client.read_deployment_by_name("experiment/nightly")
                    if nightly.schedules and nightly.schedules[0].schedule.cron == "30 3 * * *" and not nightly.paused:
                        break
                except Exception:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
                time.sleep(0.5)
        assert nightly.parameters["rerun"] is True and nightly.parameters["workspace"] == str(tmp_path)
        assert nightly.schedules[0].schedule.timezone == "Europe/Paris"
        alive = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", prefect_server],
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert alive.returncode == 0, alive.stdout
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no chance to clean up
        proc.wait(timeout=60)
    time.sleep(3)
    status = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", prefect_server,
                             "--stale-after", "2"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert status.returncode == 1 and "nothing has polled experiment/nightly" in status.stdout, status.stdout
