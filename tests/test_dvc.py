"""DVC for real: `dvc repro`, the two front doors, a param change, a remote round trip, experiments.

One temporary git + DVC repository per module holds a copy of the project on
shrunk params; the tests run in order against it, the way a user would:

1. a cold `dvc repro` builds every stage, a second one runs nothing;
2. the Prefect flow after `dvc repro` rewrites nothing (every stage is a stamp hit);
3. the flow with `dvc_record` after a params change leaves `dvc repro` nothing to do;
4. changing the momentum regime's rho reruns exactly the momentum stages and compare;
5. `dvc metrics diff` and `dvc plots show/diff` (offline page) on the result;
6. push to a local remote, clone, pull: a clean `dvc status`, a no-op `dvc repro`;
7. `dvc exp run -S` and `dvc exp run --queue` + `dvc queue start`, listed by `dvc exp show --json`.

Each stage runs in its own process (about 2.5 s of imports), so the module
takes a few minutes on 2 cores. DVC is never mocked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots",
                 "dvc_plots_template/index.html", "neural_trader", "stages", "tasks", "flows"]
TINY = {
    "seeds": {"count": 3},
    "data": {"n_train": 200, "n_valid": 50, "n_test": 500},
    "train": {"epochs": 5, "batch_size": 100},
    "runtime": {"device": "cpu", "torch_threads": 1},
    "warmups": {"regression": {"n": 500, "epochs": 3, "batch_size": 100},
                "classifier": {"n": 500, "n_test": 500, "dim": 10, "epochs": 2, "batch_size": 100,
                               "bayes_draws": 10000}},
}
OUTPUT_DIRS = ("data", "models", "metrics", "plots", "reports")
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` = this venv
       "DVC_NO_ANALYTICS": "1"}


def _merge(base: dict, extra: dict) -> dict:
    return {**base, **{k: _merge(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in extra.items()}}


def sh(cwd: Path, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def dvc(cwd: Path, *args: str, timeout: float = 600) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args, timeout=timeout)


def ran(log: str) -> set[str]:
    """Stages `dvc repro` / `dvc exp run` actually ran (not skipped, not restored from the run-cache)."""
    return set(re.findall(r"Running stage '([^']+)'", log))


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", message)


def set_param(repo: Path, dotted: str, value) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    *path, leaf = dotted.split(".")
    node = raw
    for key in path:
        node = node[key]
    node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def snapshot(repo: Path) -> dict[str, tuple[int, bytes]]:
    """Every output file with its mtime and bytes."""
    return {p.relative_to(repo).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for d in OUTPUT_DIRS for p in sorted((repo / d).rglob("*")) if p.is_file() and p.name != ".gitignore"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project in a fresh git + DVC repository, on TINY params, committed."""
    root = tmp_path_factory.mktemp("dvc-project")
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(raw, TINY), sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "test@example.invalid")
    sh(root, "git", "config", "user.name", "test")
    commit(root, "project")
    return root


@pytest.fixture(scope="module")
def built(repo: Path) -> tuple[Path, str]:
    """The cold `dvc repro` of every stage (its log), then committed like a user would."""
    log = dvc(repo, "repro")
    commit(repo, "dvc repro")
    return repo, log


def test_repro_builds_every_stage_then_runs_nothing(built):
    repo, log = built
    stages = set(dvc(repo, "stage", "list", "--name-only").split())
    assert ran(log) == stages and len(stages) == 25  # 2 regimes, 2 x 2 cells, compare, 8 warm-up stages
    assert (repo / "metrics/comparison/headline.json").is_file()
    assert (repo / "metrics/comparison/valid_return.tsv").read_text().startswith("epoch\tcell\tvalid_return\n")
    assert json.loads(dvc(repo, "status", "--json")) == {}
    assert sh(repo, "git", "status", "--porcelain") == ""  # every output is git-tracked or git-ignored
    again = dvc(repo, "repro")
    assert ran(again) == set() and "Data and pipelines are up to date" in again


def test_flow_after_repro_rewrites_nothing(built, prefect_server):
    """Repro, then the flow: every stage is a stamp hit, no output file is even rewritten."""
    from flows.experiment import run_experiment

    repo, _ = built
    before = snapshot(repo)
    run_experiment(str(repo / "params.yaml"), [], str(repo))
    assert snapshot(repo) == before
    assert json.loads(dvc(repo, "status", "--json")) == {}


def test_flow_with_dvc_record_leaves_repro_nothing_to_do(built, prefect_server):
    """Flow (recording in DVC), then repro: nothing reruns."""
    from flows.experiment import run_experiment

    repo, _ = built
    set_param(repo, "models.dropout.dropout", 0.4)
    lock_before = (repo / "dvc.lock").read_text()
    summary = run_experiment(str(repo / "params.yaml"), [], str(repo), dvc_record=True)
    assert summary["dvc"]["stages"] == ["generate", "window", "train", "evaluate", "plot", "compare"]
    assert (repo / "dvc.lock").read_text() != lock_before
    assert json.loads(dvc(repo, "status", "--json")) == {}
    assert ran(dvc(repo, "repro")) == set()
    commit(repo, "dropout 0.4, by the flow")


def test_rho_change_reruns_exactly_the_momentum_stages_and_compare(built):
    repo, _ = built
    set_param(repo, "data.regimes.momentum.rho", 0.3)
    log = dvc(repo, "repro")
    cells = ("momentum-base", "momentum-dropout")
    assert ran(log) == {"generate@momentum", "window@momentum", "compare",
                        *(f"{stage}@{cell}" for stage in ("train", "evaluate", "plot") for cell in cells)}
    commit(repo, "rho 0.3")


def test_metrics_diff_and_offline_plots(built):
    repo, _ = built
    diff = dvc(repo, "metrics", "diff", "HEAD~1", "--precision", "8")
    assert re.search(r"headline\.json\s+test_return\.momentum-base\s+-?\d\.\d{5,}", diff)
    dvc(repo, "plots", "diff", "HEAD~1", "-o", "plots_diff")
    dvc(repo, "plots", "show", "-o", "plots_show")
    for page in (repo / "plots_diff/index.html", repo / "plots_show/index.html"):
        html = page.read_text()
        assert not re.search(r"<script[^>]*\bsrc=", html) and "vegaEmbed(" in html  # all inline: no CDN
        assert '"cell": "momentum-base"' in html  # the overlay of every cell
    shutil.rmtree(repo / "plots_diff")
    shutil.rmtree(repo / "plots_show")


def test_push_then_clone_and_pull_gives_a_clean_workspace(built, tmp_path_factory):
    repo, _ = built
    remote, clone = tmp_path_factory.mktemp("remote"), tmp_path_factory.mktemp("clone") / "study"
    dvc(repo, "remote", "add", "-d", "local", str(remote))
    commit(repo, "local remote")
    dvc(repo, "push")
    sh(repo.parent, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull")
    assert (clone / "models/momentum-base/best.safetensors").read_bytes() == \
        (repo / "models/momentum-base/best.safetensors").read_bytes()
    assert json.loads(dvc(clone, "status", "--json")) == {}
    assert ran(dvc(clone, "repro")) == set()


def _experiments(show: list[dict]) -> dict[str, dict]:
    """name -> data of every experiment in `dvc exp show --json`."""
    found = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name"):
                    found[rev["name"]] = rev["data"]
    return found


def _headline(data: dict) -> dict:
    return data["metrics"]["metrics/comparison/headline.json"]["data"]


def test_exp_run_with_a_set_param_is_listed_with_its_metric(built):
    repo, _ = built
    log = dvc(repo, "exp", "run", "-n", "dropout03", "-S", "models.dropout.dropout=0.3")
    assert ran(log) == {"compare", *(f"{stage}@{regime}-dropout" for stage in ("train", "evaluate", "plot")
                                     for regime in ("random", "momentum"))}
    show = json.loads(dvc(repo, "exp", "show", "--json"))
    exp = _experiments(show)["dropout03"]
    baseline = next(b["data"] for b in show if b["rev"] != "workspace")
    assert exp["params"]["params.yaml"]["data"]["models"]["dropout"]["dropout"] == 0.3
    assert _headline(exp)["test_return"]["random-dropout"] != _headline(baseline)["test_return"]["random-dropout"]
    assert _headline(exp)["test_return"]["random-base"] == _headline(baseline)["test_return"]["random-base"]
    sh(repo, "git", "checkout", "--", ".")  # `exp run` leaves its result in the workspace
    dvc(repo, "checkout", "--force")


def test_queued_experiment_runs_under_queue_start(built):
    repo, _ = built
    dvc(repo, "exp", "run", "--queue", "-n", "conf90", "-S", "compare.confidence=0.9")
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 300
    while "conf90" not in _experiments(json.loads(dvc(repo, "exp", "show", "--json"))):
        assert time.monotonic() < deadline, dvc(repo, "queue", "status")
        assert "Failed" not in dvc(repo, "queue", "status"), dvc(repo, "queue", "logs", "conf90")
        time.sleep(2)
    exp = _experiments(json.loads(dvc(repo, "exp", "show", "--json")))["conf90"]
    assert exp["params"]["params.yaml"]["data"]["compare"]["confidence"] == 0.9
