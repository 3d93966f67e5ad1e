"""The README is executed, not just read: its commands must do what it says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def _commands(block: str) -> list[str]:
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]


def _make_runs(target: str) -> str:
    """The last command `make TARGET` runs (make -n: printed, not run), on this interpreter's venv."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={BIN.parent}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.strip().splitlines()[-1]


def test_first_two_commands_run_the_study_and_the_tests():
    assert _commands(_blocks()[0]) == ["make run", "make test"]
    assert _make_runs("run").startswith(f"{BIN}/neural-trader run ")
    assert _make_runs("test") == f"{BIN}/python -m pytest"  # every tier, no marker left out
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci.splitlines()[-1]


def test_documented_error_is_the_real_one():
    block = next(b for b in _blocks() if "neural-trader check" in b)
    command, expected = block.strip().splitlines()[:2]
    args = command.split()[1:]
    proc = subprocess.run([BIN / "neural-trader", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == expected.lstrip("# ").strip()


@pytest.mark.slow
def test_try_it_small_runs(prefect_server, tmp_path):
    block = next(b for i, b in enumerate(_blocks()) if "--workspace /tmp/nt-demo" in b)
    (command,) = _commands(block)
    args = command.replace("/tmp/nt-demo", str(tmp_path / "demo")).split()
    assert args[0] == ".venv/bin/neural-trader"
    proc = subprocess.run([BIN / "neural-trader", *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "momentum beats random" in proc.stdout
    assert (tmp_path / "demo" / "reports" / "comparison.md").is_file()
