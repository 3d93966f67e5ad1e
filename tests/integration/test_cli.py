"""`neural-trader` end to end, each command in its own process: bad params stop it before any work, and a run
killed half-way leaves nothing corrupt and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from stages.catalog import Workspace, load_params
from stages.registry import STAGES, stage_key, up_to_date
from tests.conftest import ROOT, SHRUNK, _merge


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

