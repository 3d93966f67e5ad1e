"""The warm-up tasks through .fn, and both warm-up flows end to end against a real Prefect server.

On shrunk params: they check wiring, not accuracy (tests/stages/test_warmup_stages.py holds the numbers).
"""

from __future__ import annotations

import json

import pytest

from flows.cli import main
from stages.catalog import load_params
from stages.registry import WARMUPS
from tasks import stages as stage_tasks
from tests.conftest import ROOT, SHRUNK_WARMUPS as SHRUNK, task_states

PARAMS = ROOT / "params.yaml"
NAMES = [f"{exp}_{step}" for exp in WARMUPS for step in ("generate", "train", "evaluate", "plot")]


@pytest.fixture
def shrunk():
    return load_params(PARAMS, SHRUNK)


def test_tasks_through_fn(shrunk, tmp_path, monkeypatch):
    tables = {}
    monkeypatch.setattr(stage_tasks, "create_table_artifact",
                        lambda key, table, description: tables.setdefault(key, table))
    ws = str(tmp_path)
    for name in NAMES:
        summary = stage_tasks.stage_task(name).fn(shrunk, ws, {})
        assert summary["reused"] is False
    assert [row["parameter"] for row in tables["regression-report"]] == ["beta0", "beta1", "sigma"]
    rows = {row["quantity"]: row["value"] for row in tables["classifier-report"]}
    assert rows["gap"] == pytest.approx(rows["bayes"] - rows["accuracy"])


def _task_states(flow_run_id, expected: int) -> list[str]:
    return sorted(task_states(flow_run_id, expected).values())


@pytest.mark.slow
def test_flows_end_to_end(prefect_server, tmp_path, capsys):
    """`neural-trader run warmups` on shrunk params, then each flow again: every task a cache hit."""
    from prefect.settings import get_current_settings, temporary_settings

    from flows.warmups import classifier, regression

    assert get_current_settings().api.url, "prefect_server should point Prefect at a running server"
    ws = tmp_path / "ws"
    with temporary_settings(updates={"results.local_storage_path": str(tmp_path / "results")}):
        args = ["run", "warmups", "--params", str(PARAMS), "--workspace", str(ws)]
        assert main(args + [a for s in SHRUNK for a in ("--set", s)]) == 0
        out = capsys.readouterr().out
        assert "beta0" in out and "Bayes rate" in out
        for exp in WARMUPS:
            for path in (ws / "plots" / "warmups" / f"{exp}.png", ws / "metrics" / "warmups" / exp / "report.json"):
                assert path.is_file(), path
        reg = json.loads((ws / "metrics" / "warmups" / "regression" / "report.json").read_text())
        assert abs(reg["beta1"] - 2.0) < 0.1  # 500 steps on 2000 rows: close, though not the test's tolerance

        for flow in (regression, classifier):
            state = flow(params=str(PARAMS), overrides=SHRUNK, workspace=str(ws), return_state=True)
            assert state.is_completed()
            assert _task_states(state.state_details.flow_run_id, 4) == ["Cached"] * 4
