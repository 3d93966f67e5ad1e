"""`neural-trader` end to end, each command in its own process: bad params stop it before any work, a run
killed half-way leaves nothing corrupt and resumes, and progress shows as bars on a terminal and plain lines off one."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
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



def _on_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run `args` with stderr on a pseudo-terminal of 100 columns (stdout a pipe); its exit status and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a fresh pty is 0 columns wide
    proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, b"".join(chunks).decode(errors="replace")


#: a time, a level, a message: the console's plain format
PLAIN = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR) \S")
#: a tqdm bar's frame, labelled with its cell: `\rmomentum-base:  40%|`
BAR = re.compile(r"\r((?:momentum|random)-(?:base|dropout)):\s+\d+%\|")


@pytest.mark.slow
def test_progress_is_plain_off_a_terminal_and_has_bars_on_one(tmp_path, shrunk_params, prefect_server):
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "flows.cli", "run", "--params", str(shrunk_params), "--workspace", str(ws),
           "--set", "markets.regimes={}"]
    plain = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert all(PLAIN.match(ln) for ln in lines), plain.stderr  # no bar, no colour, every line HH:MM:SS
    assert "\r" not in plain.stderr and "\x1b" not in plain.stderr and "Finished in state" not in plain.stderr
    for cell in ("momentum-base", "momentum-dropout", "random-base", "random-dropout"):
        assert any(re.search(rf"INFO train {cell}: \d+\.\d s$", ln) for ln in lines), (cell, plain.stderr)
    assert re.search(rf"INFO study finished in \d+\.\d s; report: {re.escape(str(ws))}/reports/comparison.md$",
                     lines[-1]), lines[-1]

    # on a terminal, with more epochs: the data is reused, every cell trains again under its own bar
    code, err = _on_terminal([*cmd, "--set", "train.epochs=40"])
    assert code == 0, err
    assert set(BAR.findall(err)) == {"momentum-base", "momentum-dropout", "random-base", "random-dropout"}, err
    text = err.replace("\r\n", "\n")
    assert re.search(r"INFO generate momentum: cached\n", text) and re.search(r"INFO train random-base: \d", text)
    assert "Finished in state" not in err

    quiet = subprocess.run([*cmd, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "INFO train" not in quiet.stderr and "finished in" not in quiet.stderr
