"""The sweep end to end: through the Prefect flow, cached point by point, a failed point alone, on a real Dask cluster.

A shrunk grid (2 hidden sizes x 2 rho, dropout 0 and 0.5, 4 seeds, 10 epochs)
so every test runs in seconds per point; the session's real Prefect server
records the runs. The Dask run trains 20 seeds per cell as two seed shards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from stages.catalog import file_digest, read_json
from tests.conftest import (
    ROOT,
    SHRUNK,
    _merge,
    beyond_loopback,
    free_port,
    listening_sockets,
    start_guarded,
    stop_group,
)

GRID = {"sweep": {"dropout": [0.0, 0.5], "axes": {"hidden": [5, 8], "rho": [0.0, 0.2]}},
        "data": {"n_train": 100, "n_test": 300}, "train": {"epochs": 10}}
BIN = Path(sys.executable).parent


def _params(tmp_path: Path, extra: dict | None = None) -> Path:
    raw = _merge(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK), GRID)
    raw["sweep"] = _merge(GRID["sweep"], (extra or {}).get("sweep", {}))  # this grid, not the shipped one
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _stamps(ws: Path) -> dict[str, str]:
    """Every stage stamp under sweeps/, by path: their digests change only when a stage reran."""
    return {p.relative_to(ws).as_posix(): file_digest(p) for p in sorted((ws / "sweeps").rglob(".nt/stamps/*.json"))}


@pytest.fixture
def progress_lines():
    """The flow's progress lines (`neural_trader.progress`), in order, while a test runs.

    A handler on that logger itself: Prefect's logging set-up, on its import,
    replaces the root logger's handlers (caplog's among them).
    """
    import flows.sweep  # noqa: F401  Prefect's logging set-up first

    lines, logger = [], logging.getLogger("neural_trader.progress")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.slow
def test_sweep_runs_every_point_then_only_new_ones(tmp_path, prefect_server, progress_lines):
    from flows.sweep import run_sweep

    params, ws, since = _params(tmp_path), tmp_path / "ws", datetime.now(UTC)
    summary = run_sweep(str(params), ["seeds.count=4"], str(ws))
    result = read_json(ws / "metrics" / "sweep.json")
    lines = list(progress_lines)
    points = [i for i, line in enumerate(lines) if line.startswith("point ")]
    assert [lines[i].split()[1] for i in points] == ["1/4", "2/4", "3/4", "4/4"]
    for i in points:  # each point reported as its comparison finished, not all at the end
        name = lines[i].split()[2].removesuffix(":")
        assert re.fullmatch(rf"compare {name}: \d+\.\d s", lines[i - 1]) and lines[i].endswith(" s")
    assert {lines[i].split()[2].removesuffix(":") for i in points} == {p["name"] for p in result["points"]}
    assert any(re.fullmatch(r"train hidden5-rho0p2/momentum-d0_5: \d+\.\d s", line) for line in lines), lines
    assert summary["points"] == 4 and not summary["failed"] and len(result["points"]) == 4
    _check_names_and_report(since, result)
    assert len(result["contrasts"]) == 4 * 2 and result["family_size"] == 8 and result["method"] == "bh"
    assert result["verdicts"] and (ws / "reports" / "sweep.md").read_text().startswith("# Dropout sweep")
    assert {p.name for p in (ws / "plots" / "sweep").iterdir()} >= {"effect_test_return.png", "effect_gap.png"}
    for point in result["points"]:  # replica s of both dropout values saw the same data: same windows file
        cells = read_json(ws / "sweeps" / point["name"] / "metrics" / "evaluate" / "momentum-d0.json")
        assert cells["replicas"] == 4
    first = _stamps(ws)
    run_sweep(str(params), [], str(ws))  # nothing changed: no stage reran
    assert _stamps(ws) == first
    grown = _params(tmp_path, {"sweep": {"axes": {"hidden": [5, 8, 12]}}})
    run_sweep(str(grown), [], str(ws))  # one more axis value: only its two new points compute
    after = _stamps(ws)
    assert {k: v for k, v in after.items() if k in first} == first
    assert {k.split("/")[1] for k in set(after) - set(first)} == {"hidden12-rho0", "hidden12-rho0p2"}
    assert len(read_json(ws / "metrics" / "sweep.json")["points"]) == 6


@pytest.mark.slow
def test_a_failed_point_fails_alone_and_a_rerun_computes_only_it(tmp_path, prefect_server):
    from flows.sweep import run_sweep

    params, ws = _params(tmp_path), tmp_path / "ws"
    run_sweep(str(params), [], str(ws))
    broken = ws / "sweeps" / "hidden8-rho0p2"
    returns = broken / "data" / "generate" / "momentum" / "returns.safetensors"
    returns.write_bytes(b"not a safetensors file")  # a corrupt input that its stamp vouches for
    stamp = broken / ".nt" / "stamps" / "generate@momentum.json"
    record = read_json(stamp)
    record["outputs"]["data/generate/momentum/returns.safetensors"] = file_digest(returns)
    stamp.write_text(json.dumps(record))
    (broken / ".nt" / "stamps" / "window@momentum.json").unlink()
    before = _stamps(ws)
    summary = run_sweep(str(params), [], str(ws))
    assert summary["failed"] == ["hidden8-rho0p2"]
    result = read_json(ws / "metrics" / "sweep.json")
    (lost,) = result["failed"]
    assert lost["point"] == "hidden8-rho0p2" and lost["error"]
    assert len(result["points"]) == 3 and "hidden8-rho0p2" in (ws / "reports" / "sweep.md").read_text()
    assert {k: v for k, v in _stamps(ws).items() if "hidden8-rho0p2" not in k} == \
        {k: v for k, v in before.items() if "hidden8-rho0p2" not in k}  # the other points were kept as they were
    returns.unlink()  # the fix: the rerun rebuilds the missing point only
    stamp.unlink()
    summary = run_sweep(str(params), [], str(ws))
    assert not summary["failed"] and len(read_json(ws / "metrics" / "sweep.json")["points"]) == 4
    assert {k: v for k, v in _stamps(ws).items() if "hidden8-rho0p2" not in k} == \
        {k: v for k, v in before.items() if "hidden8-rho0p2" not in k}


def _check_names_and_report(since: datetime, result: dict) -> None:
    """The sweep's run is named after its workspace and overrides, each point's task runs after their point;
    its report artifact carries its figures inline."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from neural_trader.sweep.report import FIGURES

    trains = _task_runs_since(since, "train[")
    assert {r.name.rpartition(" @ ")[2] for r in trains} == {p["name"] for p in result["points"]}, \
        sorted(r.name for r in trains)
    with get_client(sync_client=True) as client:
        (flow_run_id,) = {r.flow_run_id for r in trains}
        assert client.read_flow_run(flow_run_id).name == "sweep ws=ws seeds.count=4"
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=["sweep-report"])))
    assert len(found) == 1 and found[0].data.count("](data:image/png;base64,") == len(FIGURES)


def _task_runs_since(since: datetime, prefix: str) -> list:
    """The task runs named `prefix...` that the server (PREFECT_API_URL's) saw start after `since`."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(like_=prefix), start_time=TaskRunFilterStartTime(after_=since)))
    return [r for r in runs if r.name.startswith(prefix)]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return start_guarded(args, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ.copy())


@pytest.mark.slow
def test_sweep_on_a_real_dask_cluster_gives_the_threads_bytes_on_loopback(tmp_path, prefect_server):
    pytest.importorskip("prefect_dask")
    from flows.sweep import run_sweep

    params, seeds = _params(tmp_path), "seeds.count=20"  # two seed shards of 16 and 4 under Dask
    run_sweep(str(params), ["runtime.task_runner=threads", seeds], str(tmp_path / "threads"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--dashboard-address", "127.0.0.1:0"], tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not any(s[3] == port for s in listening_sockets(procs[0].pid)):
            assert procs[0].poll() is None and time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.5)
        # a worker's HTTP server (health, metrics) binds every interface unless given an address
        for i in range(2):
            procs.append(_start([str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                 "--nworkers", "1", "--dashboard-address", "127.0.0.1:0", "--name", f"w{i}"],
                                tmp_path / f"worker{i}.log"))
        since = datetime.now(UTC)
        summary = run_sweep(str(params), ["runtime.task_runner=dask", f"runtime.dask_address={address}", seeds,
                                          "runtime.seed_shards=2"], str(tmp_path / "dask"))
        assert not summary["failed"]
        listening = set().union(*(listening_sockets(p.pid) for p in procs))
        assert {pid for pid, *_ in listening} >= {p.pid for p in procs[:1]}
        assert not beyond_loopback(listening), beyond_loopback(listening)
        # the workers got the flow's PREFECT_API_URL: no temporary server of theirs, their task runs on the flow's
        assert not [s for s in listening if "uvicorn" in s[1] or "prefect" in s[1]], listening
        assert len(_task_runs_since(since, "train_shard")) == 4 * 2 * 2
    finally:
        for proc in procs:
            stop_group(proc)
    assert all(p.poll() is not None for p in procs)
    threads, dask = tmp_path / "threads", tmp_path / "dask"
    files = sorted(p.relative_to(threads) for d in ("metrics", "reports", "plots", "sweeps")
                   for p in (threads / d).rglob("*") if p.is_file() and ".nt" not in p.parts)
    assert any("models" in p.parts for p in files) and (threads / "metrics" / "sweep.json").is_file()
    for rel in files:
        assert (threads / rel).read_bytes() == (dask / rel).read_bytes(), rel
    shards = [read_json(p)["summary"] for p in (dask / "sweeps").rglob(".nt/stamps/train_shard@*.json")]
    assert len(shards) == 4 * 2 * 2 and {tuple(s["replicas"]) for s in shards} == {(0, 16), (16, 20)}
    assert len({s["worker"] for s in shards}) == 2  # the shards trained in both worker processes


def _dvc(ws: Path, *args: str) -> str:
    """`dvc ARGS` in `ws`, with this venv's `python` first on PATH (what a stage's cmd runs)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_sweep_results_are_versioned_in_dvc(tmp_path, prefect_server):
    """With dvc_record, every computed point's folder is `dvc add`ed, as reruns are, and the report is recorded
    as the stage of sweeps/dvc.yaml: `dvc status` is clean, and `dvc repro sweeps/dvc.yaml` reruns the report
    alone when a key it reads changes."""
    from flows.sweep import run_sweep

    ws = tmp_path / "ws"
    for folder in ("neural_trader", "stages", "tasks", "flows"):  # the code sweeps/dvc.yaml depends on and runs
        shutil.copytree(ROOT / folder, ws / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=ws, check=True, capture_output=True)
    params = _params(ws, {"sweep": {"axes": {"hidden": [5], "rho": [0.2]}}})  # the workspace's own: recordable
    summary = run_sweep(str(params), [], str(ws), dvc_record=True)
    assert summary["dvc"]["added"] == ["sweeps/hidden5-rho0p2.dvc"]  # sweeps/ledger.json: an out of the report
    for pointer in summary["dvc"]["added"]:
        assert (ws / pointer).is_file()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "sweeps/hidden5-rho0p2.dvc"], cwd=ws,
                            capture_output=True, text=True, check=True)
    assert "up to date" in status.stdout.lower() or not status.stdout.strip(), status.stdout
    assert json.loads(_dvc(ws, "status", "--json")) == {}
    assert "sweep_report" in yaml.safe_load((ws / "sweeps" / "dvc.lock").read_text())["stages"]
    raw = yaml.safe_load(params.read_text())
    raw["sweep"]["alpha"] = 0.2
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert list(json.loads(_dvc(ws, "status", "--json"))) == ["sweeps/dvc.yaml:sweep_report"]
    log = _dvc(ws, "repro", "sweeps/dvc.yaml")
    assert re.findall(r"Running stage '([^']+)'", log) == ["sweeps/dvc.yaml:sweep_report"], log
    assert read_json(ws / "metrics" / "sweep.json")["alpha"] == 0.2
    assert json.loads(_dvc(ws, "status", "--json")) == {}
