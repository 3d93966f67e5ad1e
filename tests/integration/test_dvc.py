"""DVC for real: `dvc repro`, the two front doors, a param change, a remote round trip, experiments.

One temporary git + DVC repository per module holds a copy of the project on
shrunk params, built by one cold `dvc repro` (`built`): shared because that
build is most of the module's cost. Every test starts from a committed,
up-to-date repository and leaves one (a test that changes params repros or
records and commits, or resets), so each runs alone, under -k, or in any order:

- a cold `dvc repro` builds every stage, a second one runs nothing; DVC adds no
  .gitignore of its own (the committed one already ignores every cached out);
- the flow, run the way `make run` runs it (no PREFECT_API_URL: Prefect's
  temporary server) in a separate clone of the same commit, writes byte for
  byte what `dvc repro` wrote: data, models, evaluations, metrics, figures, report;
  and leaves `git status` what `dvc repro` leaves: the files git tracks, nothing cached;
- the Prefect flow after `dvc repro` rewrites nothing (every stage is a stamp hit);
- the flow with `dvc_record` after a params change leaves `dvc repro` nothing to do;
- changing the momentum regime's rho reruns exactly the momentum stages and
  compare, seen by `dvc metrics diff` and `dvc plots show/diff` (offline page)
  across the commit the test makes;
- push to a local remote, clone, pull: a clean `dvc status`, a no-op `dvc repro`;
- `dvc exp run -S` reruns exactly the stages the param touches, and `dvc exp run --queue` +
  `dvc queue start` runs one in the background; `dvc exp show --json` lists both.

Each stage runs in its own process (about 2.5 s of imports), so the module
takes a few minutes on 2 cores. DVC is never mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import ROOT, SHRUNK, ListenerWatch, beyond_loopback

pytestmark = pytest.mark.slow

PROJECT_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots",
                 "dvc_plots_template/index.html", "neural_trader", "stages", "tasks", "flows", "prices"]
TINY = {
    "seeds": {"count": 3},
    "data": {"n_train": 200, "n_valid": 50, "n_test": 500},
    "train": {"epochs": 5, "batch_size": 100},
    "runtime": {"device": "cpu", "torch_threads": 1},
    "warmups": {"regression": {"n": 500, "epochs": 3, "batch_size": 100},
                "classifier": {"n": 500, "n_test": 500, "dim": 10, "epochs": 2, "batch_size": 100,
                               "bayes_draws": 10000}},
    "markets": SHRUNK["markets"],
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


def outputs(repo: Path) -> list[Path]:
    """Every output file of the study and the warm-ups (DVC's .gitignore files left out)."""
    return [p for d in OUTPUT_DIRS for p in sorted((repo / d).rglob("*")) if p.is_file() and p.name != ".gitignore"]


def snapshot(repo: Path) -> dict[str, tuple[int, bytes]]:
    """Every output file with its mtime and bytes."""
    return {p.relative_to(repo).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs(repo)}


def digests(repo: Path) -> dict[str, str]:
    """Every output file with the sha256 of its bytes."""
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs(repo)}


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


@dataclass(frozen=True)
class Built:
    repo: Path
    log: str  # of the cold `dvc repro`
    commit: str  # the commit it ran on
    outputs: dict[str, str]  # what it wrote: path -> sha256
    tracked: frozenset[str]  # of those, what git tracks (the cached outs are git-ignored)

    def __iter__(self):  # repo, log = built
        return iter((self.repo, self.log))


@pytest.fixture(scope="module")
def built(repo: Path) -> Built:
    """The cold `dvc repro` of every stage (its log and what it wrote), then committed like a user would."""
    head = sh(repo, "git", "rev-parse", "HEAD").strip()
    log = dvc(repo, "repro")
    wrote = digests(repo)
    commit(repo, "dvc repro")
    tracked = frozenset(sh(repo, "git", "ls-files", *OUTPUT_DIRS).split())
    return Built(repo, log, head, wrote, tracked)


def test_repro_builds_every_stage_then_runs_nothing(built):
    repo, log = built
    stages = set(dvc(repo, "stage", "list", "--name-only").split())
    # generate+window per regime (2 x 2), train+evaluate+plot per cell (3 x 4), compare, market_data,
    # market_train+market_evaluate per market cell (2 x 3), market_compare, 8 warm-up stages
    assert ran(log) == stages and len(stages) == 33
    assert (repo / "metrics/comparison/headline.json").is_file()
    assert (repo / "metrics/comparison/valid_return.tsv").read_text().startswith("epoch\tcell\tvalid_return\n")
    assert json.loads(dvc(repo, "status", "--json")) == {}
    assert sh(repo, "git", "status", "--porcelain") == ""  # every output is git-tracked or git-ignored
    assert sh(repo, "git", "diff", "--stat", built.commit, "--", ".gitignore") == ""
    assert not [p for d in OUTPUT_DIRS for p in (repo / d).rglob(".gitignore")]  # DVC wrote none of its own
    assert not [p for p in built.tracked if p.endswith(".safetensors") or p.startswith("metrics/evaluate/")]
    again = dvc(repo, "repro")
    assert ran(again) == set() and "Data and pipelines are up to date" in again


def test_flow_writes_the_bytes_dvc_repro_wrote(built, tmp_path):
    """`dvc repro` (the built repository) and the flow (a fresh clone of the same commit, so nothing is shared
    but the commit), each from scratch: the same files, byte for byte. The flow runs as `make run` runs it,
    without PREFECT_API_URL: Prefect starts a temporary server (on 127.0.0.1) and stops it at the end."""
    clone = tmp_path / "clone"
    sh(built.repo.parent, "git", "clone", "-q", str(built.repo), str(clone))
    sh(clone, "git", "checkout", "-q", built.commit)
    assert not outputs(clone)
    env = {k: v for k, v in ENV.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # a fresh machine's
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--params", "params.yaml", "--workspace", "."],
                            cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with ListenerWatch(proc.pid, every=0.2) as watch:
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r"Starting temporary server on http://127\.0\.0\.1:\d+", out), out[-3000:]
    assert watch.seen and not beyond_loopback(watch.seen), watch.seen  # the temporary server's uvicorn
    assert not [pid for pid, *_ in watch.seen if psutil.pid_exists(pid)], "the temporary server outlived the run"

    flow = digests(clone)
    repro = {path: digest for path, digest in built.outputs.items() if "/warmups/" not in path}  # not the flow's
    assert set(flow) == set(repro)
    for kind in ("data/", "models/", "metrics/evaluate/", "metrics/market/", "plots/", "reports/"):
        assert any(path.startswith(kind) for path in flow), kind
    assert [path for path in sorted(flow) if flow[path] != repro[path]] == []

    # `git status` after the flow: what git tracks after `dvc repro` (metrics, figures, reports), untracked,
    # and nothing DVC caches (datasets, models, evaluations)
    status = sh(clone, "git", "status", "--porcelain", "--untracked-files=all").splitlines()
    assert all(line.startswith("?? ") for line in status), status
    untracked = {line[3:] for line in status}
    assert untracked == {path for path in built.tracked if "/warmups/" not in path}
    assert not [path for path in untracked if path.startswith(("data/", "models/", "metrics/evaluate/"))]
    assert {path.split("/")[0] for path in untracked} == {"metrics", "plots", "reports"}


def test_flow_after_repro_rewrites_nothing(built, prefect_server):
    """Repro, then the flow: every stage is a stamp hit, no output file is even rewritten."""
    from flows.study import run_study

    repo, _ = built
    before = snapshot(repo)
    run_study(str(repo / "params.yaml"), [], str(repo))
    assert snapshot(repo) == before
    assert json.loads(dvc(repo, "status", "--json")) == {}


def test_flow_with_dvc_record_leaves_repro_nothing_to_do(built, prefect_server):
    """Flow (recording in DVC), then repro: nothing reruns. (That the flow's bytes are repro's is checked
    above, independently: here `dvc commit` hashes the flow's own files.)"""
    from flows.study import DVC_STAGES, run_study

    repo, _ = built
    set_param(repo, "models.dropout.dropout", 0.4)
    lock_before = (repo / "dvc.lock").read_text()
    summary = run_study(str(repo / "params.yaml"), [], str(repo), dvc_record=True)
    assert summary["dvc"]["stages"] == list(DVC_STAGES)
    assert (repo / "dvc.lock").read_text() != lock_before
    assert not [p for d in OUTPUT_DIRS for p in (repo / d).rglob(".gitignore")]  # `dvc commit` added none
    assert json.loads(dvc(repo, "status", "--json")) == {}
    assert ran(dvc(repo, "repro")) == set()
    commit(repo, "dropout 0.4, by the flow")


def test_metrics_diff_and_offline_plots(built):
    """A change of rho, reproduced and committed (exactly the momentum stages and compare rerun), then
    `dvc metrics diff HEAD~1` and `dvc plots show/diff HEAD~1` (an offline page) across that commit."""
    repo, _ = built
    rho = yaml.safe_load((repo / "params.yaml").read_text())["data"]["regimes"]["momentum"]["rho"]
    set_param(repo, "data.regimes.momentum.rho", round(rho + 0.1, 6))
    log = dvc(repo, "repro")
    cells = ("momentum-base", "momentum-dropout")
    assert ran(log) == {"generate@momentum", "window@momentum", "compare",
                        *(f"{stage}@{cell}" for stage in ("train", "evaluate", "plot") for cell in cells)}
    commit(repo, "rho + 0.1")

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
    """`dvc exp run -S`: the dropout stages and compare rerun, nothing else; `dvc exp show --json` lists the
    experiment with its param, and only the dropout cells' numbers moved. Its result is then reset."""
    repo, _ = built
    try:
        log = dvc(repo, "exp", "run", "-n", "dropout03", "-S", "models.dropout.dropout=0.3")
        assert ran(log) == {"compare", *(f"{stage}@{regime}-dropout" for stage in ("train", "evaluate", "plot")
                                         for regime in ("random", "momentum"))}
        show = json.loads(dvc(repo, "exp", "show", "--json"))
        exp = _experiments(show)["dropout03"]
        baseline = next(b["data"] for b in show if b["rev"] != "workspace")
        assert exp["params"]["params.yaml"]["data"]["models"]["dropout"]["dropout"] == 0.3
        assert _headline(exp)["test_return"]["random-dropout"] != _headline(baseline)["test_return"]["random-dropout"]
        assert _headline(exp)["test_return"]["random-base"] == _headline(baseline)["test_return"]["random-base"]
    finally:
        sh(repo, "git", "checkout", "--", ".")  # `exp run` leaves its result in the workspace
        dvc(repo, "checkout", "--force")


def test_queued_experiment_runs_under_queue_start(built):
    """`dvc exp run --queue -S`, then `dvc queue start`: a background worker runs it (the two comparisons, which
    read compare.confidence, alone) and `dvc exp show --json` lists it; the workspace is left alone."""
    repo, _ = built
    dvc(repo, "exp", "run", "--queue", "-n", "conf90", "-S", "compare.confidence=0.9")
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 300
    while "conf90" not in _experiments(json.loads(dvc(repo, "exp", "show", "--json"))):
        assert time.monotonic() < deadline, dvc(repo, "queue", "status")
        assert "Failed" not in dvc(repo, "queue", "status"), dvc(repo, "queue", "logs", "conf90")
        time.sleep(2)
    assert ran(dvc(repo, "queue", "logs", "conf90")) == {"compare", "market_compare"}
    exp = _experiments(json.loads(dvc(repo, "exp", "show", "--json")))["conf90"]
    assert exp["params"]["params.yaml"]["data"]["compare"]["confidence"] == 0.9
    assert json.loads(dvc(repo, "status", "--json")) == {}
