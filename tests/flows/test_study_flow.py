"""The study's Prefect layer: task logic through `.fn`, and the flow end to end against a real server.

The end-to-end tests share one Prefect server (conftest) and one workspace
built by a cold run (`built`); each starts from that workspace as the cold run
left it and leaves it so, so any of them runs alone, under -k or in any order:
a no-change rerun (all cached), the artifacts and result records the cold run
left on the server, a params change (only the affected tasks run), a deleted
model file (only its rebuild runs), and retries on injected errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stages.catalog import Workspace
from stages.registry import STAGES
from stages import study
from tasks.stages import stage_task
from tests.browser import check_artifact
from tests.conftest import ROOT, SHRUNK, _merge, task_states

# generate+window per regime, train+evaluate+plot per cell, market_data per market,
# market_train+market_evaluate per market cell (1 market x 3 variants), market_compare, compare
STUDY_TASKS = 2 * 2 + 3 * 4 + 1 + 2 * 3 + 1 + 1


# ------------------------------------------------------------------ task logic
def test_tasks_fn_write_their_outputs_and_summaries(shrunk_cfg, tmp_path):
    ws = str(tmp_path / "ws")
    cfg = shrunk_cfg
    g = stage_task("generate").fn(cfg, ws, {"regime": "momentum"})
    assert g["train"] == [cfg.seeds.count, cfg.data.n_train, cfg.data.length]
    assert 0.1 < g["test_lag1_autocorr"] < 0.3  # rho = 0.2 on 2000 series
    w = stage_task("window").fn(cfg, ws, {"regime": "momentum"})
    assert w["windows"]["train_x"] == [cfg.seeds.count, cfg.data.n_train * (cfg.data.length - cfg.data.lag), cfg.data.lag]
    t = stage_task("train").fn(cfg, ws, {"regime": "momentum", "model": "base"})
    assert t["reused"] is False and t["device"] == "cpu"
    again = stage_task("train").fn(cfg, ws, {"regime": "momentum", "model": "base"})
    assert again["reused"] is True  # resumes from the stamp: nothing recomputed
    for p in STAGES["train"].outputs(cfg, Workspace(Path(ws)), {"regime": "momentum", "model": "base"}):
        assert p.is_file(), p
    e = stage_task("evaluate").fn(cfg, ws, {"regime": "momentum", "model": "base"})
    assert e["test_return"] > 0.02  # momentum is learnable even on shrunk data
    assert e["oracle_return"] > e["test_return"]


# ------------------------------------------------------------------ end to end
def _ran(states: dict[str, str]) -> set[str]:
    return {name for name, state in states.items() if state != "Cached"}


@dataclass(frozen=True)
class Built:
    root: Path  # holds params.yaml, ws/ (the workspace) and results/ (Prefect's result records)
    cold: object  # the cold run's final flow state
    cold_states: dict[str, str]

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def ws(self) -> Path:
        return self.root / "ws"


def _run(built: Built | Path, overrides=()):
    """The flow on the shrunk params of `built` (its workspace, its result store); (final state, task states)."""
    from prefect.settings import temporary_settings

    from flows.study import study

    root = built.root if isinstance(built, Built) else built
    with temporary_settings(updates={"results.local_storage_path": str(root / "results")}):
        state = study(params=str(root / "params.yaml"), overrides=list(overrides), workspace=str(root / "ws"),
                           return_state=True)
    assert state.is_completed(), state
    states = task_states(state.state_details.flow_run_id, STUDY_TASKS)
    assert len(states) == STUDY_TASKS, sorted(states)
    return state, states


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_server) -> Built:
    """A workspace after one cold run of the flow on shrunk params.

    Shared because the cold run is most of this module's cost. Tests that change
    the workspace put it back (a rerun on the same params rewrites the same bytes).
    """
    root = tmp_path_factory.mktemp("study")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(raw, SHRUNK)))
    state, states = _run(root)
    return Built(root, state, states)


@pytest.mark.slow
def test_flow_end_to_end_then_cached(built):
    assert _ran(built.cold_states) == set(built.cold_states), built.cold_states  # the cold run ran every task
    summary = built.cold.result()
    assert {r["contrast"] for r in summary["table"]} >= {"momentum - random / base", "momentum - random / dropout"}
    for rel in ("metrics/comparison.json", "reports/comparison.md", "plots/comparison/learned_position.png",
                "plots/history/momentum-dropout.png", "models/random-base/last.safetensors",
                "metrics/market/evaluate/sp500-linear.safetensors", "plots/market/sp500/equity.png"):
        assert (built.ws / rel).is_file(), rel

    _, again = _run(built)
    assert _ran(again) == set(), again


def _published(built: Built) -> tuple[list, str]:
    """The artifacts the cold run published, and its flow run's name."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = built.cold.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        run_name = client.read_flow_run(flow_run_id).name
    return found, run_name


@pytest.mark.slow
def test_flow_publishes_its_artifacts_to_the_server(built):
    """The verdicts and the reports, read back from the server, are the run's own, figures inlined; every
    artifact has a title (no untitled record of a persisted result); the run is named after what it ran."""
    from neural_trader.markets.publish import FIGURES as MARKET_FIGURES
    from neural_trader.synthetic.comparison import FIGURES
    from neural_trader.synthetic.report import comparison_artifact, verdicts_artifact
    from stages.catalog import load_params, read_json

    found, run_name = _published(built)
    assert run_name == "study ws=ws"  # the workspace's folder, and no overrides
    assert all(a.key for a in found), [(a.type, str(a.data)[:80]) for a in found if not a.key]
    artifacts = {a.key: a for a in found}
    assert set(artifacts) == {"verdicts", "comparison-report", "markets-report"}, sorted(artifacts)
    assert {a.type for a in found} == {"markdown"}
    ws = Workspace(built.ws)
    comparison = read_json(ws.comparison_json)
    assert artifacts["verdicts"].data == verdicts_artifact(comparison)
    report = artifacts["comparison-report"].data
    assert report.count("](data:image/png;base64,") == len(FIGURES) and "../plots" not in report
    figures = {f: uri for f, uri in re.findall(r"!\[(\w+)\]\((data:[^)]+)\)", report)}
    assert report == comparison_artifact(load_params(built.params), comparison, figures)
    markets = artifacts["markets-report"].data
    assert markets.count("](data:image/png;base64,") == len(MARKET_FIGURES) and "# Market: sp500" in markets
    assert "](../plots/comparison/" in (built.ws / "reports" / "comparison.md").read_text()  # the file's links


@pytest.mark.slow
def test_report_shows_whole_in_a_browser(built, chromium, prefect_server, tmp_path):
    """The reports the cold run published, opened in both Prefect UIs at 1280 px: every figure loads, every table fits."""
    reports = {a.key: a for a in _published(built)[0] if a.key and a.type == "markdown"}
    assert {"comparison-report", "markets-report"} <= set(reports), sorted(reports)
    problems = [p for a in reports.values()
                for p in check_artifact(prefect_server.removesuffix("/api"), a.id, chromium, tmp_path)]
    kinds = [p.kind for p in problems]
    assert not problems, (f"{kinds.count('image')} images not loaded, {kinds.count('table')} tables overflowing, "
                          f"{kinds.count('render')} pages not rendered:\n" + "\n".join(map(str, problems)))


@pytest.mark.slow
def test_no_result_record_is_a_pickle(built):
    """Every record the tasks persisted is JSON: a cache hit never unpickles. The flow persists none: its
    summary is returned, and a stored one would show in the UI as an untitled artifact.

    A task's record is Prefect's envelope naming its serializer.
    """
    records = {p.name: p.read_bytes() for p in (built.root / "results").rglob("*") if p.is_file()}
    tasks = {name: json.loads(data) for name, data in records.items() if name.partition("-")[0] in STAGES}
    assert {name.partition("-")[0] for name in tasks} == {n.split("[")[0] for n in built.cold_states}
    for name, record in tasks.items():
        assert record["metadata"]["serializer"]["type"] == "json", (name, record["metadata"]["serializer"])
    assert set(records) == set(tasks), sorted(set(records) - set(tasks))


@pytest.mark.slow
def test_flow_reruns_only_what_a_param_change_touches(built):
    try:
        _, states = _run(built, ["models.dropout.dropout=0.3"])
        assert _ran(states) == {
            "train[random-dropout]", "evaluate[random-dropout]", "plot[random-dropout]",
            "train[momentum-dropout]", "evaluate[momentum-dropout]", "plot[momentum-dropout]",
            "compare",
        }
    finally:
        _run(built)  # back to the cold run's outputs


@pytest.mark.slow
def test_flow_rebuilds_only_a_deleted_model(built):
    model = built.ws / "models" / "momentum-base" / "last.safetensors"
    original = model.read_bytes()
    model.unlink()
    try:
        _, states = _run(built)
        # retraining is deterministic, so everything downstream of the rebuilt file stays cached
        assert _ran(states) == {"train[momentum-base]"}
        assert model.read_bytes() == original
    finally:
        if not model.is_file():
            _run(built)


# ------------------------------------------------------------------ retries
class _FailsOnce:
    """The generate stage's body, raising `error` on its first call."""

    def __init__(self, error: BaseException):
        self.error, self.calls, self.body = error, 0, study.generate

    def __call__(self, cfg, ws, **item):
        self.calls += 1
        if self.calls == 1:
            raise self.error
        return self.body(cfg, ws, **item)


@pytest.mark.slow
@pytest.mark.parametrize("error, attempts, final", [
    (OSError(5, "Input/output error"), 2, "Completed"),  # what a retry can fix: retried once, then done
    (FileNotFoundError(2, "No such file or directory"), 1, "Failed"),  # a missing input stays missing
    (ValueError("a bug, not the disk"), 1, "Failed"),
], ids=["io-error", "missing-file", "value-error"])
def test_tasks_retry_on_io_errors_only(prefect_server, shrunk_cfg, tmp_path, monkeypatch, error, attempts, final):
    from prefect import flow, get_client
    from prefect.settings import temporary_settings

    body = _FailsOnce(error)
    monkeypatch.setattr(study, "generate", body)

    @flow(name="retry-probe")
    def probe() -> str:
        state = stage_task("generate")(shrunk_cfg, str(tmp_path / "ws"), {"regime": "random"}, return_state=True)
        return str(state.state_details.task_run_id)

    with temporary_settings(updates={"results.local_storage_path": str(tmp_path / "results")}):
        task_run_id = probe()
    with get_client(sync_client=True) as client:
        run = client.read_task_run(task_run_id)
    assert (body.calls, run.run_count, run.state.name) == (attempts, attempts, final)
