"""Failure paths: concurrent runs are serialised, a killed run leaves nothing corrupt and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from stages.registry import STAGES, stage_key, up_to_date
from stages.catalog import Workspace, WorkspaceBusy, atomic_write_bytes, load_params
from tests.conftest import ROOT, SHRUNK, _merge

HOLD = """
import sys, time
from pathlib import Path
from stages.catalog import Workspace
with Workspace(sys.argv[1]).lock("holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    (Path(sys.argv[1]) / "released").write_text("")  # written while still holding the lock
"""


def test_a_second_run_waits_for_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "2"], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    ws = Workspace(tmp_path)
    with pytest.raises(WorkspaceBusy, match=f"holder pid {holder.pid}"):
        with ws.lock("second", wait=False):
            pass
    with ws.lock("second"):  # blocks until the holder lets go
        assert (tmp_path / "released").exists(), "acquired the lock while the first run still held it"
    assert holder.wait() == 0


def test_lock_of_a_killed_holder_is_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with Workspace(tmp_path).lock("after", wait=False):  # the OS dropped the dead holder's lock
        pass


def test_failed_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics" / "x.json"
    atomic_write_bytes(path, b"earlier")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(path, b"later")
    assert path.read_bytes() == b"earlier"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary left behind


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
