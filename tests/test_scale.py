"""Scale-out on an existing engine: the flow under Prefect's DaskTaskRunner gives the same bytes."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT, SHRUNK, _merge

pytest.importorskip("prefect_dask", reason="the scale extra is not installed: pip install -e '.[scale]'")


@pytest.mark.slow
def test_dask_runner_matches_threads(tmp_path, prefect_server):
    from flows.experiment import run_experiment

    raw = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    runs = {}
    for runner in ("threads", "dask"):
        ws = tmp_path / runner
        summary = run_experiment(str(params), [f"runtime.task_runner={runner}"], str(ws))
        assert summary["table"]
        runs[runner] = ws
    files = sorted(p.relative_to(runs["threads"]) for p in (runs["threads"] / "metrics").rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (runs["threads"] / rel).read_bytes() == (runs["dask"] / rel).read_bytes(), rel
