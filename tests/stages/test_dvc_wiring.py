"""dvc.yaml against the stage registry, the offline plots page, and `stages.versioning` on a tiny repo.

Fast: DVC resolves dvc.yaml in-process (no stage runs), and the versioning
tests drive the real `dvc` on a one-stage repository whose command is `echo`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from stages import versioning
from stages.catalog import Workspace, load_params
from stages.registry import STAGES, code_files, item_id

ROOT = Path(__file__).resolve().parents[2]
DVC = [sys.executable, "-m", "dvc"]


# ------------------------------------------------------------------ dvc.yaml = registry
def _expected(root: Path) -> dict[str, dict]:
    """Every stage the registry defines for root/params.yaml, as dvc.yaml should declare it."""
    cfg, ws = load_params(root / "params.yaml"), Workspace(root)
    out = {}
    for name, spec in STAGES.items():
        for item in spec.grid(cfg):
            flags = "".join(f" --{k} {v}" for k, v in item.items())
            out[name + (f"@{item_id(item)}" if item else "")] = {
                "cmd": f"python -m flows.cli stage {name}{flags}",
                "code": {p.resolve().relative_to(ROOT).as_posix() for p in code_files(spec)},
                "inputs": {ws.rel(p) for p in spec.inputs(cfg, ws, item)} | set(spec.tracked),
                "params": set(spec.params(cfg, item)),
                "outs": {ws.rel(p) for p in spec.outputs(cfg, ws, item)},
            }
    return out


def _declared(root: Path) -> dict[str, dict]:
    """Every stage of root/dvc.yaml as DVC resolves it (foreach/matrix expanded)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        declared = {}
        for s in repo.index.stages:
            files = [d for d in s.deps if not isinstance(d, ParamsDependency)]
            params = [d for d in s.deps if isinstance(d, ParamsDependency)]
            assert all(d.def_path == "params.yaml" for d in params), s.name
            declared[s.name] = {
                "cmd": s.cmd,
                "code": {d.def_path for d in files if d.def_path.endswith(".py")},
                "data": {d.def_path for d in files if not d.def_path.endswith(".py")},
                "params": {k for d in params for k in d.params},
                "outs": {o.def_path: o for o in s.outs},
            }
        return declared


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


@pytest.fixture(scope="module")
def grown_project(tmp_path_factory) -> Path:
    """dvc.yaml with a params.yaml that gained a regime and a model, and nothing else edited."""
    root = tmp_path_factory.mktemp("grown")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["regimes"]["momentum_strong"] = {"kind": "ar1", "rho": 0.5, "vol": 1.0}
    raw["models"]["wide"] = {"hidden": 20, "dropout": 0.1}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    subprocess.run([*DVC, "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def test_dvc_yaml_is_the_one_the_registry_generates(tmp_path):
    from flows.cli import main
    from stages.dvcfile import render_dvc_yaml, render_gitignore

    assert (ROOT / "dvc.yaml").read_text() == render_dvc_yaml(), "run `neural-trader dvc-yaml`"
    assert (ROOT / ".gitignore").read_text() == render_gitignore((ROOT / ".gitignore").read_text()), \
        "run `neural-trader dvc-yaml`"
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / ".gitignore").write_text("/mine/\n")  # a hand-written part, kept
    assert main(["dvc-yaml", "--check", "--workspace", str(tmp_path)]) == 1
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert main(["dvc-yaml", "--workspace", str(tmp_path)]) == 0
    assert main(["dvc-yaml", "--check", "--workspace", str(tmp_path)]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    assert (tmp_path / ".gitignore").read_text() == render_gitignore("/mine/\n")
    assert (tmp_path / ".gitignore").read_text().startswith("/mine/\n\n# GENERATED")


@pytest.mark.parametrize("project", ["default", "grown"])
def test_gitignore_ignores_exactly_the_cached_outs(project, grown_project, tmp_path):
    """git, asked about every out DVC resolves (a new regime and model's too): the cached ones are ignored,
    the cache: false ones (metrics, figures, reports) are not."""
    root = ROOT if project == "default" else grown_project
    outs = {path: out.use_cache for stage in _declared(root).values() for path, out in stage["outs"].items()}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    proc = subprocess.run(["git", "check-ignore", "--stdin"], cwd=tmp_path, input="\n".join(outs),
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr  # 1: nothing ignored
    assert set(proc.stdout.split()) == {path for path, cached in outs.items() if cached}


@pytest.mark.parametrize("project", ["default", "grown"])
def test_dvc_yaml_declares_what_the_registry_says(project, grown_project):
    root = ROOT if project == "default" else grown_project
    expected, declared = _expected(root), _declared(root)
    assert set(declared) == set(expected)
    for name, want in expected.items():
        got = declared[name]
        assert got["cmd"] == want["cmd"], name
        assert got["code"] == want["code"], name  # the files its stamp key hashes
        assert got["params"] == want["params"], name
        assert set(got["outs"]) == want["outs"], name
        # data deps: the registry's inputs, or folders holding only what the stage reads and its siblings
        assert all(any(_covers(d, p) for d in got["data"]) for p in want["inputs"]), name
        assert all(any(_covers(d, p) for p in want["inputs"]) for d in got["data"]), name


def test_a_new_regime_and_model_become_stages(grown_project):
    names = set(_declared(grown_project))
    assert {"generate@momentum_strong", "window@momentum_strong", "train@momentum_strong-wide",
            "evaluate@random-wide", "plot@momentum-wide"} <= names


def test_outs_are_cached_metrics_or_plots_by_kind():
    for name, stage in _declared(ROOT).items():
        for path, out in stage["outs"].items():
            cached = path.endswith(".safetensors") or path.startswith("metrics/evaluate/")
            assert out.use_cache == cached, (name, path)  # datasets, models, evaluations: DVC's cache
            if path.endswith((".png",)) or path.endswith("/history.tsv"):
                assert out.plot, (name, path)
            if path.endswith(("summary.json", "headline.json", "report.json")):
                assert out.metric, (name, path)


def test_overlay_plot_splits_the_cells_by_regime_from_one_table():
    """A panel per regime (random-base and random-dropout apart from the momentum cells), a colour per model."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (overlay,) = [p for p in spec if "metrics/comparison/valid_return.tsv" in p]
    props = overlay["metrics/comparison/valid_return.tsv"]
    assert (props["x"], props["y"], props["template"]) == ("epoch", "valid_return", "cells")
    template = json.loads((ROOT / ".dvc/plots/cells.json").read_text())
    assert template["data"]["values"] == "<DVC_METRIC_DATA>"
    made = {t["as"]: t["calculate"] for t in template["transform"] if "calculate" in t}
    assert made == {"regime": "split(datum.cell, '-')[0]", "model": "slice(datum.cell, indexof(datum.cell, '-') + 1)"}
    assert template["facet"]["column"]["field"] == "regime" and template["resolve"]["scale"]["y"] == "independent"
    assert template["spec"]["encoding"]["color"]["field"] == "model"


def test_every_data_plot_has_a_title_and_axis_labels():
    """`dvc plots show` titles a chart by its path and labels its axes by column names unless told otherwise."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        plots = {o.def_path: o.plot for s in repo.index.stages for o in s.outs if o.plot}
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    plots |= {path: props for entry in spec for path, props in entry.items()}
    data = {path: props for path, props in plots.items() if not path.endswith(".png") and not path.startswith("plots/")}
    assert len(data) == 7, sorted(data)  # four cells' histories, two warm-ups', the overlay
    for path, props in data.items():
        assert {"title", "x_label", "y_label"} <= set(props), path
        assert "/" not in props["title"] and "recom" not in str(props), (path, props)


def test_plots_page_needs_no_network():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        page = Path(repo.dvc_dir) / repo.config["plots"]["html_template"]
    html = page.read_text(encoding="utf-8")
    assert "{plot_divs}" in html and "{scripts}" not in html  # {scripts} is where DVC puts its CDN tags
    assert not re.search(r"<script[^>]*\bsrc=", html)
    for lib in ("vega@5.", "vega-lite@5.", "vega-embed@6."):
        assert f"<script>/* {lib}" in html


def test_plots_page_carries_its_section_headings():
    """The committed page holds build.py's style and section script as they are (`build.py --restyle` keeps it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build", ROOT / "dvc_plots_template" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    html = (ROOT / "dvc_plots_template" / "index.html").read_text(encoding="utf-8")
    assert build.restyle(html) == html
    assert html.index("{plot_divs}") < html.index(build.SCRIPT_MARK[0])  # the script runs after DVC's divs
    for placeholder in ("{scripts}", "{refresh_tag}", "{plot_divs}"):  # DVC would substitute them in the script
        assert placeholder not in build.SECTIONS + build.STYLE


# ------------------------------------------------------------------ stages.versioning
def _git_dvc_repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*DVC, "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("stages:\n  stub:\n    cmd: echo hi > out.txt\n    outs:\n      - out.txt\n")
    (root / "out.txt").write_text("hi\n")  # produced "by a flow", not by dvc repro
    return root


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    return _git_dvc_repo(tmp_path)


def test_record_commits_and_pushes_what_is_on_disk(tiny_repo, tmp_path_factory):
    remote = tmp_path_factory.mktemp("remote")
    versioning.dvc(tiny_repo, "remote", "add", "-d", "local", str(remote))
    result = versioning.record(tiny_repo, ["stub"], push=True)
    assert "stub:" in (tiny_repo / "dvc.lock").read_text()
    assert result["pushed"] and any(p.is_file() for p in remote.rglob("*"))
    assert json.loads(versioning.dvc(tiny_repo, "status", "--json")) == {}
    assert "/out.txt" in (tiny_repo / ".gitignore").read_text()  # DVC git-ignores the cached out itself


def _started(argv: list[str]) -> subprocess.Popen:
    """A process whose /proc cmdline already shows `argv` (not the forked parent's)."""
    proc = subprocess.Popen(argv)
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    while cmdline.read_bytes().split(b"\0")[0] != argv[0].encode():
        time.sleep(0.01)
    return proc


def test_a_stale_dvc_lock_is_named_with_the_way_out(tiny_repo):
    # A crashed `dvc repro` whose PID now belongs to another program: DVC still sees the PID alive.
    other = _started(["sleep", "60"])
    try:
        rwlock = tiny_repo / ".dvc/tmp/rwlock"
        rwlock.write_text(json.dumps({"write": {str(tiny_repo): {"pid": other.pid, "cmd": "dvc repro"}}}))
        with pytest.raises(versioning.DvcBusy) as busy:
            versioning.record(tiny_repo, ["stub"])
        message = str(busy.value)
        assert "is busy" in message and f"PID {other.pid} now runs: sleep 60" in message
        assert "the lock is stale" in message and f"rm {rwlock}" in message
        rwlock.unlink()  # the documented way out
        versioning.record(tiny_repo, ["stub"])
    finally:
        other.kill()
        other.wait()


def test_busy_message_says_wait_while_dvc_runs():
    fake_dvc = _started([sys.executable, "-c", "import time; time.sleep(60)", "dvc", "repro"])
    try:
        dvc_says = f"ERROR: '/repo/x' is busy, it is being blocked by:\n  (PID {fake_dvc.pid}): dvc repro"
        message = versioning.busy_help("/repo", "dvc commit", dvc_says)
        assert "Wait for that command to finish" in message and "stale" in message  # names both ways
        assert "No DVC process holds it" not in message
    finally:
        fake_dvc.kill()
        fake_dvc.wait()


def test_dvc_access_does_not_wait_on_the_lock_its_own_process_holds(tmp_path):
    ws = Workspace(tmp_path)
    entered, leave = threading.Event(), threading.Event()

    def inner() -> None:
        with versioning.dvc_access(ws, "dvc record"):
            entered.set()
            leave.wait(timeout=30)

    with ws.lock("study"):  # what the study flow holds around its tasks
        t = threading.Thread(target=inner, daemon=True)
        t.start()
        # decided while the lock is still held: after the release, a waiting thread would get in too
        got_in = entered.wait(timeout=10)
        leave.set()
        t.join(timeout=10)
    assert got_in, "dvc_access waited for a lock held by its own process"
    assert not t.is_alive()
    with versioning.dvc_access(ws, "dvc record"):  # not held: it takes the lock itself
        assert (ws.private / "lock").read_text().strip() == f"dvc record pid {os.getpid()}"


def test_check_recordable_refuses_what_dvc_yaml_does_not_describe(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(versioning.DvcError, match="not a DVC workspace"):
        versioning.check_recordable(ws, tmp_path / "params.yaml", [], ["generate"])
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    with pytest.raises(versioning.DvcError, match="overrides train.epochs=3"):
        versioning.check_recordable(ws, tmp_path / "params.yaml", ["train.epochs=3"], ["generate"])
    with pytest.raises(versioning.DvcError, match="dvc.yaml reads"):
        versioning.check_recordable(ws, ROOT / "params.yaml", [], ["generate"])
    with pytest.raises(versioning.DvcError, match="neural_trader/data.py"):  # no copy of the code here
        versioning.check_recordable(ws, tmp_path / "params.yaml", [], ["generate"])
    for path in code_files(STAGES["generate"]):  # exactly the files the check compares
        rel = path.resolve().relative_to(ROOT)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((ROOT / rel).read_bytes())
    versioning.check_recordable(ws, tmp_path / "params.yaml", [], ["generate"])
