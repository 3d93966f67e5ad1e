"""`dvc repro` of the eight warm-up stages in a temporary git + DVC repository, on shrunk params: their metrics
and plots show, and a training key dirties only its stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neural_trader.config import apply_overrides
from stages.registry import WARMUPS
from tests.conftest import ROOT, SHRUNK_WARMUPS as SHRUNK, warmup_dvc_stages

PARAMS = ROOT / "params.yaml"


def _git_dvc_repo(path: Path) -> None:
    """A temporary git + DVC repo: the code (`python -m` runs this copy), shrunk params, the warm-up stages."""
    for package in ("neural_trader", "stages", "tasks", "flows"):
        shutil.copytree(ROOT / package, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / ".gitignore", path / ".gitignore")
    raw = apply_overrides(yaml.safe_load(PARAMS.read_text()), SHRUNK)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": warmup_dvc_stages()}, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "warm-ups"]):
        subprocess.run(cmd, cwd=path, check=True, env=_env())


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # neural-trader and dvc of this environment
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "DVC_NO_ANALYTICS": "1"}


def _dvc(path: Path, *args: str) -> str:
    done = subprocess.run(["dvc", *args], cwd=path, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_dvc_repro(tmp_path):
    """dvc repro runs the eight stages; metrics and plots show; a training key dirties only its stage."""
    _git_dvc_repo(tmp_path)
    _dvc(tmp_path, "repro")
    assert "up to date" in _dvc(tmp_path, "status")
    metrics = json.loads(_dvc(tmp_path, "metrics", "show", "--json"))
    shown = next(iter(metrics.values()))["data"]
    assert {"metrics/warmups/regression/report.json", "metrics/warmups/classifier/report.json"} <= set(shown)
    assert "gap" in shown["metrics/warmups/classifier/report.json"]["data"]
    plots = json.loads(_dvc(tmp_path, "plots", "show", "--json"))["data"]
    for exp in WARMUPS:
        assert {f"metrics/warmups/{exp}/history.tsv", f"plots/warmups/{exp}.png"} <= set(plots)

    # granular params: a classifier training key dirties classifier_train alone (repro then runs its downstream)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["warmups"]["classifier"]["epochs"] += 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert set(json.loads(_dvc(tmp_path, "status", "--json"))) == {"classifier_train"}
