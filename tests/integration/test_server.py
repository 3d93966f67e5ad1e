"""The Prefect server's life cycle, in real processes: a run's temporary server goes with the run however it
ends, `neural-trader server` runs one in the background that `run` reuses, and a guarded process group goes
when the process that started it goes (`flows/server.py`; the tests' own servers and workers are guarded so)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from flows.server import RunServer, Tied, free_port, guard
from tests.conftest import ROOT, SHRUNK_WARMUPS, listening_sockets

#: a parent that starts `sleep` (which starts another `sleep`) tied to it, prints their pids, then waits
_PARENT = """
import time
from flows.server import Tied
tied = Tied(["sh", "-c", "sleep 600 & sleep 600"])
print(tied.proc.pid, tied.guard.pid, flush=True)
time.sleep(600)
"""


def test_flow_heartbeats_are_off_on_a_temporary_server_only(tmp_path, monkeypatch):
    """A temporary server lives as long as the run: no heartbeats to it (each flow's end would wait for one)."""
    from prefect.settings import get_current_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # restored after the test; start() sets it
    default = get_current_settings().flows.heartbeat_frequency
    server = RunServer(tmp_path).start()  # nothing runs for tmp_path: a temporary server, tied to this process
    try:
        assert server.tied is not None
        with server.settings():
            assert get_current_settings().flows.heartbeat_frequency is None
    finally:
        server.stop(settled=False)
    with RunServer(tmp_path).start().settings():  # PREFECT_API_URL names a server: a running one's settings
        assert default is not None and get_current_settings().flows.heartbeat_frequency == default


def test_a_tied_group_goes_when_its_parent_is_killed():
    """`kill -9` of the parent alone: the guard stops the tied group, grandchildren included, and then goes."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        tied_pid, guard_pid = map(int, parent.stdout.readline().split())
        group = _group_with_sleeps(tied_pid, 2)
    finally:
        parent.kill()
        parent.wait()
    _, alive = psutil.wait_procs([*group, psutil.Process(guard_pid)], timeout=20)
    assert not alive, alive


def test_a_stopped_tied_group_is_gone():
    tied = Tied(["sh", "-c", "sleep 600 & sleep 600"])
    tied.stop()
    assert not _has_group(tied.proc.pid) and tied.guard.poll() is not None


def _group(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except ProcessLookupError:  # gone between the listing and the look
            continue
    return found


def _group_with_sleeps(pgid: int, sleeps: int, wait_s: float = 20.0) -> list[psutil.Process]:
    """Group `pgid` once `sleeps` of its processes are `sleep`: the shell starts them after its pid is known."""
    deadline = time.monotonic() + wait_s
    while True:
        group = _group(pgid)
        names = []
        for proc in group:
            try:
                names.append(proc.name())
            except psutil.NoSuchProcess:
                continue
        if names.count("sleep") >= sleeps:
            return group
        assert time.monotonic() < deadline, f"group {pgid} has {names} after {wait_s:.0f} s, not {sleeps} sleeps"
        time.sleep(0.05)


def _has_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_killed_run_leaves_no_server_behind(tmp_path, shrunk_params):
    """`kill -9` of `neural-trader run` alone (not its group): its temporary server and the server's guard go too,
    and the server's port closes, within the guard's grace."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--params", str(shrunk_params),
                             "--workspace", str(tmp_path / "ws")], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (sockets := listening_sockets(proc.pid)):  # the server: a child of the run
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its server listened"
            time.sleep(0.2)
        tied = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.kill()
        proc.wait()
    (port,) = {p for *_, p in sockets}
    assert any(p.cmdline()[1:5] == ["-m", "prefect", "server", "start"] for p in tied), [p.cmdline() for p in tied]
    _, alive = psutil.wait_procs(tied, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


@pytest.mark.slow
def test_server_runs_in_the_background_and_run_reuses_it(tmp_path):
    """`neural-trader server` starts one server for the workspace, its UI told its API (`/ui-settings`), and says
    so again instead of starting a second; `run` records its flow run there and starts no temporary server;
    `server --stop` stops it."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    port, ws = free_port(), tmp_path / "ws"
    home = ws / ".nt" / "prefect-server"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)

    started = cli("server", "--port", str(port), "--workspace", str(ws))
    assert started.returncode == 0 and f"at http://127.0.0.1:{port}/api" in started.stdout, started.stderr
    pid = int((home / "server.pid").read_text())
    server_guard = guard(pid)  # noqa: F841 - the server goes with the tests, however they end
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as r:
            assert json.loads(r.read())["api_url"] == f"http://127.0.0.1:{port}/api"  # its UI reaches its API
        again = cli("server", "--port", str(free_port()), "--workspace", str(ws))
        assert f"a server is running at http://127.0.0.1:{port}/api" in again.stdout, again.stdout + again.stderr
        run = cli("run", "regression", "--workspace", str(ws), *(f"--set={s}" for s in SHRUNK_WARMUPS))
        assert run.returncode == 0, run.stderr[-3000:]
        assert not (home / "temporary.log").exists()
        count = urllib.request.Request(f"http://127.0.0.1:{port}/api/flow_runs/count", data=b"{}",
                                       headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(count, timeout=10) as r:
            assert int(r.read()) == 1
    finally:
        stopped = cli("server", "--stop", "--workspace", str(ws))
    assert stopped.stdout.strip() == f"stopped the server (pid {pid})", stopped.stdout + stopped.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
