"""Deployments on a real `prefect server start` (conftest), executed by a real process worker.

No mocks: the deployment is created through the API, scheduled runs are read
back, runs are triggered and a `prefect worker start --run-once` subprocess
executes them in its own process. `neural-trader serve` starts its own server
on a free port, as it does without PREFECT_API_URL. Liveness is judged on the
deployment's `last_polled`: it must advance while a runner lives and stop when
it dies, and `status` is asked with a threshold above the runner's poll period.

Every test stands alone (the `deployed` fixture only creates the pool and the
deployments); the one that replaces them (`prefect deploy --all`) puts them back.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flows.server import guard
from tests.conftest import (
    ROOT,
    SHRUNK,
    _merge,
    beyond_loopback,
    free_port,
    listening_sockets,
    start_guarded,
    stop_group,
)

pytestmark = pytest.mark.slow

POOL = "nt-test-pool"
SLOTS = ("20261101T0200Z", "20261102T0200Z")
POLL_S = 2  # the poll period given to the workers and `serve` runners started here (Prefect's default: 10 s)
STALE_S = 3 * POLL_S  # what `status --stale-after` is asked with: above the poll period, so a live runner passes


def _prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy(), cwd=ROOT)


@dataclass(frozen=True)
class Deployed:
    params: Path
    workspace: Path


def _deploy(params: Path, workspace: Path) -> None:
    """The manual and nightly deployments on the test pool (what `deployed` creates)."""
    from prefect.schedules import Cron

    from flows.deploy import deployment_parameters
    from flows.study import study

    source = study.from_source(source=str(ROOT), entrypoint="flows/study.py:study")
    for name, rerun, schedules in (("manual", False, None), ("nightly", True, [Cron("0 2 * * *", timezone="Europe/Paris")])):
        source.deploy(name=name, work_pool_name=POOL, schedules=schedules, build=False, push=False,
                      parameters=deployment_parameters(str(params), [], str(workspace), rerun=rerun,
                                                       dvc_record=rerun))


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory) -> Deployed:
    """A process work pool and the two deployments, pointed at a temporary workspace."""
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
    _deploy(params, workspace)
    return Deployed(params, workspace)


def _run_once() -> None:
    worker = _prefect("worker", "start", "--pool", POOL, "--run-once", timeout=400)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]


def _flow_run(flow_run_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _state(flow_run_id):
    return _flow_run(flow_run_id).state


def _status(api_url: str, stale_after: float = STALE_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", api_url,
                           "--stale-after", str(stale_after)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def _last_polled(deployment: str = "study/nightly") -> datetime | None:
    """The server's record of the last time a runner asked for the deployment's runs (PREFECT_API_URL's server)."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(deployment).last_polled


def _wait_for(condition, what: str, timeout: float = 90, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)
    return value


def _polled_after(when: datetime) -> datetime | None:
    polled = _last_polled()
    return polled if polled and polled > when else None


def _liveness(api_url: str, runner: subprocess.Popen, what: str) -> None:
    """While `runner` lives last_polled advances and `status` is healthy; once it is killed both say it died."""
    started = datetime.now(UTC)
    first = _wait_for(lambda: runner.poll() is None and _polled_after(started), f"{what} polls")
    second = _wait_for(lambda: _polled_after(first), f"{what} polls again", timeout=10 * POLL_S)
    assert (second - first).total_seconds() < STALE_S, (first, second)  # the period the threshold is above
    assert not beyond_loopback(listening_sockets(runner.pid)), listening_sockets(runner.pid)
    alive = _status(api_url)
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert "deployment: study/nightly" in alive.stdout and "schedules_active: [True]" in alive.stdout
    stop_group(runner, signal.SIGKILL)  # a crash: no chance to pause its deployments or say goodbye
    time.sleep(1)  # a poll already on its way lands now
    last = _last_polled()
    time.sleep(STALE_S + POLL_S)
    assert _last_polled() == last, "last_polled still advances after the runner was killed"
    dead = _status(api_url)
    assert dead.returncode == 1 and "problem: nothing has polled study/nightly" in dead.stdout, dead.stdout


def test_schedule_exists_and_produces_scheduled_runs(deployed):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("study/nightly")
        assert [s.active for s in nightly.schedules] == [True]
        assert nightly.schedules[0].schedule.cron == "0 2 * * *"
        assert nightly.schedules[0].schedule.timezone == "Europe/Paris"
        assert client.read_deployment_by_name("study/manual").schedules == []
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

    workspace = deployed.workspace
    for n, slot in enumerate(SLOTS, start=1):
        run = run_deployment("study/nightly", parameters={"slot": slot}, timeout=0)
        _run_once()
        state = _state(run.id)
        assert state.is_completed(), state
        # the flow's summary is returned, not stored (no result record, no untitled artifact): read what it wrote
        assert _flow_run(run.id).name == f"study ws={workspace.name} rerun={slot} dvc_record"
        ledger = json.loads((workspace / "reruns" / "ledger.json").read_text())["reruns"]
        assert [e["slot"] for e in ledger] == list(SLOTS[:n])
        assert ledger[-1]["flow_run_id"] == str(run.id)
        pooled = json.loads((workspace / "reruns" / "pooled" / "metrics" / "comparison.json").read_text())
        assert pooled["runs"] == n
        assert (workspace / "reruns" / slot / "metrics" / "comparison.json").is_file()
        assert (workspace / "reruns" / f"{slot}.dvc").is_file() and (workspace / "reruns" / "ledger.json.dvc").is_file()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=workspace, capture_output=True,
                            text=True, timeout=120)
    assert json.loads(status.stdout) == {}, status.stdout  # what the last rerun versioned is what is on disk
    pooled = json.loads((workspace / "reruns" / "pooled" / "metrics" / "comparison.json").read_text())
    assert pooled["runs"] == 2 and pooled["replicas"] == 2 * SHRUNK["seeds"]["count"]
    report = (workspace / "reruns" / "pooled" / "reports" / "comparison.md").read_text()
    assert f"Pooled over 2 reruns with independent base seeds: {pooled['replicas']} seeds per cell" in report
    from stages.reruns import slot_base_seed

    seeds = {e["slot"]: e["seeds_base"] for e in json.loads((workspace / "reruns" / "ledger.json").read_text())["reruns"]}
    assert seeds == {slot: slot_base_seed(slot) for slot in SLOTS} and len(set(seeds.values())) == 2


def test_status_reports_a_healthy_schedule_while_a_worker_polls(deployed, prefect_server):
    """Healthy only on this worker's own polls (they must come after it started), flagged once it is killed."""
    worker = start_guarded([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
                           cwd=ROOT, env={**os.environ, "PREFECT_WORKER_QUERY_SECONDS": str(POLL_S)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _liveness(prefect_server, worker, "the worker")
    finally:
        stop_group(worker, signal.SIGKILL)


def test_status_flags_a_paused_schedule(deployed, prefect_server):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("study/nightly")
        client.pause_deployment(nightly.id)
        try:
            proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", prefect_server],
                                  capture_output=True, text=True, timeout=60, cwd=ROOT)
        finally:
            client.resume_deployment(nightly.id)
    assert proc.returncode == 1
    assert "problem: the schedule is paused" in proc.stdout


def test_status_flags_late_runs(deployed, prefect_server):
    """A run still SCHEDULED past its start time is marked Late by the server; `status` reports it."""
    from prefect import get_client
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("study/nightly")
        overdue = client.create_flow_run_from_deployment(
            nightly.id, state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=5)))
        try:
            _wait_for(lambda: client.read_flow_run(overdue.id).state.name == "Late", "the server marks the run Late")
            # what a runner's poll does, asking only for runs due a day ago: none is started
            assert client.get_scheduled_flow_runs_for_deployments(
                [nightly.id], scheduled_before=datetime.now(UTC) - timedelta(days=1)) == []
            _wait_for(lambda: _polled_after(datetime.now(UTC) - timedelta(seconds=STALE_S)), "the poll")
            proc = _status(prefect_server)
        finally:
            client.delete_flow_run(overdue.id)
    assert proc.returncode == 1, proc.stdout
    assert "problem: 1 scheduled run(s) are Late: nothing is picking up study/nightly" in proc.stdout
    assert "late_runs: 1" in proc.stdout


def test_session_server_listens_on_loopback_only(prefect_server):
    port = urllib.parse.urlparse(prefect_server).port
    ours = listening_sockets(os.getpid())  # the server is a child of this process
    (server_pid,) = {pid for pid, _, _, p in ours if p == port}
    server = {s for s in ours if s[0] == server_pid}
    assert server and not beyond_loopback(server), server


def test_status_without_a_server_says_so():
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--api-url", "http://127.0.0.1:9/api"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1 and "no Prefect server answers at http://127.0.0.1:9/api" in proc.stdout


def test_prefect_yaml_deploys_the_same_deployments(deployed):
    """The team route: prefect.yaml through `prefect deploy --all`; it replaces both, so they are put back after."""
    from prefect import get_client

    assert _prefect("work-pool", "create", "local-process", "--type", "process").returncode == 0
    try:
        proc = _prefect("--no-prompt", "deploy", "--all")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("study/nightly")
            manual = client.read_deployment_by_name("study/manual")
    finally:
        _deploy(deployed.params, deployed.workspace)
    assert nightly.work_pool_name == manual.work_pool_name == "local-process"
    assert nightly.schedules[0].schedule.cron == "0 2 * * *" and nightly.parameters["rerun"] is True
    assert manual.parameters["rerun"] is False and not manual.schedules
    assert nightly.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]


def _lines(stream) -> queue.Queue:
    """The lines of `stream` as they come, read by a thread (a pipe read would block the test)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in stream], daemon=True).start()
    return lines


def _line_matching(lines: queue.Queue, pattern: str, proc: subprocess.Popen, timeout: float = 180) -> re.Match:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "".join(seen)[-3000:]
            continue
        seen.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n{''.join(seen)[-3000:]}")


def _ui_api_url(port: int) -> str:
    """The API URL the server on `port` tells its UI (GET /ui-settings)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as r:
        return json.loads(r.read())["api_url"]


def test_serve_registers_both_and_status_sees_it_die(tmp_path):
    """`neural-trader serve` without PREFECT_API_URL, on a free port: it starts `prefect server start` on
    127.0.0.1 (nothing of it, nor of `serve`, listens beyond loopback), registers both deployments there and
    polls them; its UI is told that server's API (`/ui-settings`); once killed, `status` says nothing serves them.
    The server is then stopped by its pid."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port, workspace = free_port(), tmp_path / "ws"
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_RUNNER_POLL_FREQUENCY=str(POLL_S))
    serve = start_guarded(
        [sys.executable, "-m", "flows.cli", "serve", "--port", str(port), "--workspace", str(workspace),
         "--cron", "30 3 * * *", "--timezone", "Europe/Paris"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    server_pid = None
    try:
        lines = _lines(serve.stdout)
        started = _line_matching(lines, r"started a server \(pid (\d+);.*UI: (\S+)", serve)
        server_pid = int(started.group(1))
        server_guard = guard(server_pid)  # noqa: F841 - the detached server goes with the tests too
        assert started.group(2) == f"http://127.0.0.1:{port}"
        assert _ui_api_url(port) == api_url  # the UI calls this server's API, not port 4200's
        assert (workspace / ".nt" / "prefect-server" / "server.pid").read_text().strip() == str(server_pid)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            with get_client(sync_client=True) as client:
                def registered():
                    try:
                        found = client.read_deployment_by_name("study/nightly")
                    except Exception:  # not there yet
                        return None
                    return found if found.schedules and not found.paused else None

                nightly = _wait_for(registered, "serve registers study/nightly")
                assert client.read_deployment_by_name("study/manual").schedules == []
            assert nightly.schedules[0].schedule.cron == "30 3 * * *"
            assert nightly.schedules[0].schedule.timezone == "Europe/Paris"
            assert nightly.parameters["rerun"] is True and nightly.parameters["workspace"] == str(workspace)
            sockets = listening_sockets(serve.pid)  # serve, the server it started, the server's uvicorn
            assert {p for *_, p in sockets} >= {port} and {pid for pid, *_ in sockets} >= {server_pid}
            assert not beyond_loopback(sockets), beyond_loopback(sockets)
            _liveness(api_url, serve, "serve")
        assert listening_sockets(server_pid), "the server died with serve"
    finally:
        stop_group(serve, signal.SIGKILL)
        if server_pid:
            os.killpg(server_pid, signal.SIGTERM)
    _wait_for(lambda: not listening_sockets(server_pid), "the server stops", timeout=30)
