"""`neural-trader` end to end, each command in its own process: bad params stop it before any work, and a run
killed half-way leaves nothing corrupt and resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
import yaml

from flows.server import free_port, guard
from stages.catalog import Workspace, load_params
from stages.registry import STAGES, stage_key, up_to_date
from tests.conftest import ROOT, SHRUNK, SHRUNK_WARMUPS, _merge, listening_sockets


def test_bad_params_fail_before_any_work(tmp_path, shrunk_params):
    bad = yaml.safe_load(shrunk_params.read_text())
    bad["train"]["lr"] = -0.5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "keep.txt").write_text("earlier result")
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--params", str(path), "--workspace", str(ws)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "train.lr" in lines[0] and "> 0" in lines[0], proc.stderr
    assert sorted(p.name for p in ws.iterdir()) == ["keep.txt"]


def test_unknown_key_names_the_path(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  base:\n    hiden: 5\n")
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "check", "--params", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "models.base.hiden: unknown key" in proc.stderr


@pytest.mark.slow
def test_killed_run_leaves_no_corrupt_file_and_resumes(tmp_path, prefect_server):
    raw = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)
    raw["train"]["epochs"] = 400  # long enough to be killed while training
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    ws = Workspace(tmp_path / "ws")
    cfg = load_params(params)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--params", str(params),
                             "--workspace", str(ws.root)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((ws.private / "stamps").glob("train@*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before any train stage finished"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    stamps = {p.stem: p.stat().st_mtime_ns for p in (ws.private / "stamps").glob("*.json")}
    assert "compare" not in stamps
    for stamp in stamps:  # whatever a stamp vouches for is intact
        name, _, item_id = stamp.partition("@")
        item = dict(zip(STAGES[name].items, item_id.split("-")))
        assert up_to_date(name, cfg, ws, item, stage_key(name, cfg, ws, item)) is not None, stamp

    from flows.study import study

    state = study(params=str(params), workspace=str(ws.root), return_state=True)
    assert state.is_completed()
    assert json.loads(ws.comparison_json.read_text())["replicas"] == SHRUNK["seeds"]["count"]
    assert not list(ws.root.rglob(".*.tmp"))
    for stamp, mtime in stamps.items():  # finished stages were reused, not recomputed
        assert (ws.private / "stamps" / f"{stamp}.json").stat().st_mtime_ns == mtime, stamp


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
    """`neural-trader server` starts one server for the workspace and says so again instead of starting a second;
    `run` records its flow run there and starts no temporary server; `server --stop` stops it."""
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
