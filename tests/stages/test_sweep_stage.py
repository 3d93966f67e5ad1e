"""The sweep's report as a stage: stamped like every stage, keyed on the grid and the points' evaluations.

The points' evaluations are written here (the keys the report reads, from
tests/unit/test_sweep_core.py), so no point trains: what is tested is the
stage, not the study each point runs (tests/flows/test_sweep_flow.py runs those).
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from neural_trader.config import ConfigError
from neural_trader.params import parse_config, sweep_points
from stages import versioning
from stages.catalog import Workspace, read_json, write_json
from stages.registry import ALL_STAGES, STAGES, cell_name, code_files, stage_key
from stages.run import run_stage
from tests.conftest import ROOT
from tests.unit.test_sweep_core import _eval

STUDY = {k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text()).items() if k != "sweep"}
GRID = {"dropout": [0.0, 0.5], "axes": {"hidden": [5, 8], "rho": [0.0, 0.2]}}


def _cfg(**sweep):
    return parse_config({**STUDY, "sweep": {**GRID, **sweep}})


def _evaluate(ws: Workspace, cfg, skip: tuple[str, ...] = ()) -> None:
    """Every point's evaluation files but those of `skip`, paired by seed across dropout values."""
    rng = np.random.default_rng(0)
    for point in sweep_points(cfg):
        common = rng.normal(0.01, 0.01, 8)
        for model in point.models:
            if point.name not in skip:
                evaluation = _eval(common + rng.normal(0, 0.002, 8), 0.05 + rng.normal(0, 0.002, 8), np.full(8, 0.02))
                write_json(Workspace(ws.sweep_point(point.name)).eval_metrics(cell_name(point.regime, model)),
                           evaluation)


def _outputs(ws: Workspace) -> dict[str, bytes]:
    files = [ws.sweep_json, ws.sweep_report, ws.sweep_ledger, *sorted(ws.sweep_plots.iterdir())]
    return {ws.rel(p): p.read_bytes() for p in files}


def test_the_report_is_a_stage_outside_the_study_graph():
    assert "sweep_report" in ALL_STAGES and "sweep_report" not in STAGES  # the study flow and ./dvc.yaml lack it


def test_the_report_is_reused_until_a_key_it_reads_changes(tmp_path):
    ws, cfg = Workspace(tmp_path), _cfg()
    _evaluate(ws, cfg)
    write_json(ws.sweep_failures, {})
    first = run_stage("sweep_report", cfg, ws)
    assert first["reused"] is False and first["points"] == 4 and not first["failed"]
    written = _outputs(ws)
    assert any(name.endswith(".png") for name in written)
    again = run_stage("sweep_report", cfg, ws)
    assert again["reused"] is True and _outputs(ws) == written
    looser = _cfg(alpha=0.2)
    assert stage_key("sweep_report", looser, ws, {}) != stage_key("sweep_report", cfg, ws, {})
    assert run_stage("sweep_report", looser, ws)["reused"] is False
    assert read_json(ws.sweep_json)["alpha"] == 0.2


def test_a_missing_or_recorded_point_is_reported_failed_with_its_reason(tmp_path):
    ws, cfg = Workspace(tmp_path), _cfg()
    _evaluate(ws, cfg, skip=("hidden8-rho0p2",))
    write_json(ws.sweep_failures, {"hidden5-rho0": "RuntimeError: a broken input"})
    summary = run_stage("sweep_report", cfg, ws)
    assert summary["failed"] == ["hidden5-rho0", "hidden8-rho0p2"]
    result = read_json(ws.sweep_json)
    errors = {f["point"]: f["error"] for f in result["failed"]}
    assert errors["hidden5-rho0"] == "RuntimeError: a broken input"
    assert errors["hidden8-rho0p2"] == ("no evaluation under sweeps/hidden8-rho0p2/metrics/evaluate/momentum-d0.json: "
                                        "run the sweep")
    assert len(result["points"]) == 2 and "hidden8-rho0p2" in ws.sweep_report.read_text()
    ledger = {p["name"]: p["failed"] for p in read_json(ws.sweep_ledger)["points"]}
    assert ledger == {"hidden5-rho0": True, "hidden5-rho0p2": False, "hidden8-rho0": False, "hidden8-rho0p2": True}
    write_json(ws.sweep_failures, {})  # the flow's record is an input: a new record re-keys the report
    assert run_stage("sweep_report", cfg, ws)["failed"] == ["hidden8-rho0p2"]


def test_the_sweep_section_keys_no_study_stage(tmp_path):
    ws, plain, swept = Workspace(tmp_path), parse_config(STUDY), _cfg()
    assert plain.sweep is None and swept.sweep.axes == GRID["axes"]
    for name, spec in STAGES.items():
        for item in spec.grid(plain):
            assert stage_key(name, plain, ws, item) == stage_key(name, swept, ws, item), name


def test_a_bad_sweep_section_fails_at_the_door_naming_its_key():
    with pytest.raises(ConfigError, match=r"^sweep\.alpha: "):
        parse_config({**STUDY, "sweep": {"alpha": 0.9}})


def test_a_recorded_sweep_needs_what_sweeps_dvc_yaml_describes(tmp_path):
    ws = Workspace(tmp_path)
    (tmp_path / ".dvc").mkdir()  # no ./dvc.yaml needed: the sweep writes sweeps/dvc.yaml
    with pytest.raises(versioning.DvcError, match="overrides sweep.alpha=0.2"):
        versioning.check_recordable(ws, tmp_path / "params.yaml", ["sweep.alpha=0.2"], ["sweep_report"],
                                    needs_dvc_yaml=False)
    with pytest.raises(versioning.DvcError, match="stages/sweep.py"):  # no copy of the report's code here
        versioning.check_recordable(ws, tmp_path / "params.yaml", [], ["sweep_report"], needs_dvc_yaml=False)
    for path in code_files(ALL_STAGES["sweep_report"]):
        rel = path.resolve().relative_to(ROOT)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((ROOT / rel).read_bytes())
    versioning.check_recordable(ws, tmp_path / "params.yaml", [], ["sweep_report"], needs_dvc_yaml=False)
