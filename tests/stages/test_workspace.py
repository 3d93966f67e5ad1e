"""The workspace lock and atomic writes: concurrent runs are serialised, a killed holder frees the lock, a failed
write keeps the earlier file (tests/integration/test_cli.py kills a whole run and resumes it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stages.catalog import Workspace, WorkspaceBusy, atomic_write_bytes
from tests.conftest import ROOT

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


WRITE = """
import os, sys
os.umask(int(sys.argv[2], 8))  # before the catalog is imported, as a user's shell would have set it
from stages.catalog import atomic_write_bytes, write_json
atomic_write_bytes(sys.argv[1] + "/plots/x.png", b"png")
write_json(sys.argv[1] + "/reports/x.json", {})
"""


@pytest.mark.parametrize("umask, mode", [("022", 0o644), ("077", 0o600), ("002", 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    subprocess.run([sys.executable, "-c", WRITE, str(tmp_path), umask], check=True, cwd=ROOT)
    for path in (tmp_path / "plots" / "x.png", tmp_path / "reports" / "x.json"):
        assert path.stat().st_mode & 0o777 == mode, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"
