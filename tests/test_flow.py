"""The Prefect layer: task logic through `.fn`, and the flow end to end against a real server.

The end-to-end tests share one Prefect server (conftest) and one workspace, in
order: cold run, a no-change rerun (all cached), a params change (only the
affected tasks run), a deleted model file (only its rebuild runs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks import study as pipeline
from stages.registry import STAGES
from stages.run import run_stage
from stages.catalog import Workspace, load_params
from tests.conftest import run_study_stages, task_states

STUDY_TASKS = 2 * 2 + 3 * 4 + 1  # generate+window per regime, train+evaluate+plot per cell, compare


# ------------------------------------------------------------------ task logic
def test_tasks_fn_write_their_outputs_and_summaries(shrunk_cfg, tmp_path):
    ws = str(tmp_path / "ws")
    cfg = shrunk_cfg
    g = pipeline.generate.fn(cfg, ws, "momentum")
    assert g["train"] == [cfg.seeds.count, cfg.data.n_train, cfg.data.length]
    assert 0.1 < g["test_lag1_autocorr"] < 0.3  # rho = 0.2 on 2000 series
    w = pipeline.window.fn(cfg, ws, "momentum")
    assert w["windows"]["train_x"] == [cfg.seeds.count, cfg.data.n_train * (cfg.data.length - cfg.data.lag), cfg.data.lag]
    t = pipeline.train.fn(cfg, ws, "momentum", "base")
    assert t["reused"] is False and t["device"] == "cpu"
    again = pipeline.train.fn(cfg, ws, "momentum", "base")
    assert again["reused"] is True  # resumes from the stamp: nothing recomputed
    for p in STAGES["train"].outputs(cfg, Workspace(Path(ws)), {"regime": "momentum", "model": "base"}):
        assert p.is_file(), p
    e = pipeline.evaluate.fn(cfg, ws, "momentum", "base")
    assert e["test_return"] > 0.02  # momentum is learnable even on shrunk data
    assert e["oracle_return"] > e["test_return"]


def test_stage_refuses_to_run_without_its_inputs(shrunk_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="data/window/random/windows.safetensors"):
        run_stage("train", shrunk_cfg, tmp_path, regime="random", model="base")


def test_altered_output_is_recomputed(shrunk_cfg, tmp_path):
    ws = Workspace(tmp_path)
    run_stage("generate", shrunk_cfg, ws, regime="random")
    path = ws.returns("random")
    original = path.read_bytes()
    path.write_bytes(b"corrupt")
    assert run_stage("generate", shrunk_cfg, ws, regime="random")["reused"] is False
    assert path.read_bytes() == original


def test_same_params_give_byte_identical_metrics(shrunk_params, tmp_path):
    """Two fresh workspaces, same params: every metrics file is byte-identical (CPU)."""
    cfg = load_params(shrunk_params, ["data.regimes={\"momentum\": {\"kind\": \"ar1\", \"rho\": 0.2}}"])
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        run_study_stages(cfg, root, compare=False)
    files = sorted(p.relative_to(roots[0]) for p in (roots[0] / "metrics").rglob("*") if p.is_file())
    assert len(files) == 3 * len(cfg.cells) + len(cfg.markets.cells) + len(cfg.markets.regimes)
    for rel in files:
        assert (roots[0] / rel).read_bytes() == (roots[1] / rel).read_bytes(), rel


# ------------------------------------------------------------------ bad input
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


# ------------------------------------------------------------------ end to end
def _task_states(flow_state, expected: int = STUDY_TASKS) -> dict[str, str]:
    return task_states(flow_state.state_details.flow_run_id, expected)


def _ran(states: dict[str, str]) -> set[str]:
    return {name for name, state in states.items() if state != "Cached"}


@pytest.fixture(scope="module")
def study(tmp_path_factory, prefect_server):
    """One workspace and params file shared by the ordered end-to-end checks."""
    root = tmp_path_factory.mktemp("study")
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    from tests.conftest import SHRUNK, _merge

    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(_merge(raw, SHRUNK)))
    return root, params


def _run(study, overrides=()):
    from flows.experiment import experiment

    root, params = study
    state = experiment(params=str(params), overrides=list(overrides), workspace=str(root / "ws"), return_state=True)
    assert state.is_completed(), state
    return state, _task_states(state)


@pytest.mark.slow
def test_flow_end_to_end_then_cached(study):
    state, states = _run(study)
    assert len(states) == STUDY_TASKS and _ran(states) == set(states)
    summary = state.result()
    assert {r["contrast"] for r in summary["table"]} >= {"momentum - random | base", "momentum - random | dropout"}
    ws = study[0] / "ws"
    for rel in ("metrics/comparison.json", "reports/comparison.md", "plots/comparison/learned_position.png",
                "plots/history/momentum-dropout.png", "models/random-base/last.safetensors"):
        assert (ws / rel).is_file(), rel

    _, again = _run(study)
    assert len(again) == STUDY_TASKS and _ran(again) == set(), again


@pytest.mark.slow
def test_flow_reruns_only_what_a_param_change_touches(study):
    _, states = _run(study, ["models.dropout.dropout=0.3"])
    assert _ran(states) == {
        "train[random-dropout]", "evaluate[random-dropout]", "plot[random-dropout]",
        "train[momentum-dropout]", "evaluate[momentum-dropout]", "plot[momentum-dropout]",
        "compare",
    }


@pytest.mark.slow
def test_flow_rebuilds_only_a_deleted_model(study):
    ws = study[0] / "ws"
    (ws / "models" / "momentum-base" / "last.safetensors").unlink()
    _, states = _run(study, ["models.dropout.dropout=0.3"])
    # retraining is deterministic, so everything downstream of the rebuilt file stays cached
    assert _ran(states) == {"train[momentum-base]"}
    assert (ws / "models" / "momentum-base" / "last.safetensors").is_file()
