"""Shared fixtures: shrunk params, temporary workspaces, one real Prefect server per session; the tier markers.

Each folder of tests/ is a tier, and its tests carry the tier's marker (`-m unit`, `-m "not integration"`):
unit (the core), stages (the stage layer, DVC wiring in-process), flows (Prefect against a real server),
integration (`dvc repro`, Dask processes, deployments, the CLI in subprocesses), docs, gpu. `slow` and `gpu`
stay marked test by test.

Prefect state lives in a throwaway PREFECT_HOME set before Prefect is
imported, so tests never read or write the user's ~/.prefect or its result
cache.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from flows.server import Tied, free_port, guard, server_command, server_env, wait_healthy  # stdlib only: no Prefect yet

_PREFECT_HOME = tempfile.mkdtemp(prefix="nt-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "neural_trader"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.pop("PREFECT_API_URL", None)

ROOT = Path(__file__).resolve().parents[1]

#: small enough that a whole study runs in seconds, large enough to learn momentum
SHRUNK = {
    "seeds": {"count": 4, "base": 7},
    "data": {"n_train": 300, "n_valid": 50, "n_test": 500},
    "train": {"epochs": 15},
    "runtime": {"device": "cpu", "torch_threads": 1},
    "markets": {"walk_forward": {"train": 500, "valid": 100, "test": 1000}, "reps": 200},
}


#: `--set` overrides that shrink the warm-ups to a few seconds in all, on 2 cores (the regression keeps its 500 steps)
SHRUNK_WARMUPS = [
    "warmups.regression.n=2000", "warmups.regression.batch_size=100", "warmups.regression.epochs=25",
    "warmups.classifier.n=2000", "warmups.classifier.n_test=1000", "warmups.classifier.dim=10",
    "warmups.classifier.epochs=3", "warmups.classifier.batch_size=500", "warmups.classifier.bayes_draws=20000",
]


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def shrunk_params(tmp_path: Path) -> Path:
    """params.yaml of the project with SHRUNK applied, written in tmp_path."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_merge(raw, SHRUNK), sort_keys=False))
    return path


@pytest.fixture
def shrunk_cfg(shrunk_params: Path):
    from stages.catalog import load_params

    return load_params(shrunk_params)


def warmup_dvc_stages() -> dict:
    """The warm-up stages of the project's dvc.yaml, in its order."""
    from stages.registry import WARMUPS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: spec for name, spec in stages.items() if name.split("_")[0] in WARMUPS}


STUDY_ORDER = ("generate", "window", "train", "evaluate", "market_data", "market_train", "market_evaluate")


def run_study_stages(cfg, root: Path, compare: bool = True) -> None:
    """Every stage of the study (markets included, figures of the cells left out) in order, without Prefect."""
    from stages.registry import STAGES
    from stages.run import run_stage

    for name in STUDY_ORDER + ("market_compare", "compare") * compare:
        for item in STAGES[name].grid(cfg):
            run_stage(name, cfg, root, **item)


FINAL_STATES = ("Completed", "Cached", "Failed", "Crashed", "Cancelled")


def task_states(flow_run_id, expected: int, timeout: float = 60.0) -> dict[str, str]:
    """{task run name: state name} of a flow run, once the server has recorded all `expected` in a final state.

    The server records task runs from events, asynchronously: right after a flow
    returns, some may still be missing or show an earlier state. Fails (naming
    what it saw) if they are not all there by `timeout` seconds; returns more
    than `expected` if the server has more, for the caller's count to catch.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            states = {r.name: r.state.name for r in runs if r.state}
            if len(states) >= expected and all(s in FINAL_STATES for s in states.values()):
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id}: {len(states)} of {expected} task runs recorded in a "
                                     f"final state after {timeout:.0f} s: {states}")
            time.sleep(0.5)


# ------------------------------------------------------------------ listening sockets
LOOPBACK = ("127.0.0.1", "::1")


def listening_sockets(pid: int) -> set[tuple[int, str, str, int]]:
    """(pid, process name, ip, port) of every TCP socket listening in process `pid` and its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for proc in procs:
        try:
            name = " ".join(proc.cmdline()[:4])[:120]
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # gone between the listing and the look
        found |= {(proc.pid, name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


def beyond_loopback(sockets) -> list:
    """The sockets of `listening_sockets` bound to anything but 127.0.0.1 or ::1 (0.0.0.0 is every interface)."""
    return sorted(s for s in sockets if s[2] not in LOOPBACK)


class ListenerWatch:
    """Samples `listening_sockets(pid)` every `every` seconds in a thread while the block runs.

    `seen` is every listener that existed at some sample: short-lived
    processes (a Dask cluster inside one flow run) are caught while they live.
    """

    def __init__(self, pid: int, every: float = 0.1):
        import threading

        self.pid, self.every, self.seen = pid, every, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.seen |= listening_sockets(self.pid)
            self._stop.wait(self.every)

    def __enter__(self) -> ListenerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.seen |= listening_sockets(self.pid)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the process group `proc` leads (started with start_new_session), SIGKILL it if it lingers."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except ProcessLookupError:  # the whole group is gone already
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def start_guarded(args: list[str], **popen) -> subprocess.Popen:
    """`subprocess.Popen(args, **popen)` in a session of its own, whose process group goes when the tests go.

    However the test process ends (a time limit's SIGKILL too), the group's
    guard (`flows.server.guard`) sees it and stops the group.
    """
    proc = subprocess.Popen(args, start_new_session=True, **popen)
    proc.guard = guard(proc.pid)  # lives as long as this process holds it
    return proc


@pytest.fixture(scope="session")
def prefect_server():
    """A real `prefect server start` on 127.0.0.1, stopped by its pid at the end, or when the tests go.

    Sets PREFECT_API_URL for this process (and the subprocesses it starts);
    yields the API URL.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = Path(_PREFECT_HOME) / "server.log"
    server = Tied(server_command(port, ui=True), log.open("w"), env={**server_env(port), "PREFECT_HOME": _PREFECT_HOME})
    try:
        wait_healthy(url, server.proc, log)
    except RuntimeError:
        server.stop(signal.SIGKILL)
        raise
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = url  # for subprocesses
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):  # this process read its settings at import
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # ship buffered run logs while the server is still up
        server.stop()


@pytest.fixture(scope="session")
def chromium():
    """One page of one headless Chromium (Debian's, installed where missing) for the session; skips saying why not."""
    pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install -e '.[dev]')")
    from tests.browser import Chromium, install_chromium

    if reason := install_chromium():
        pytest.skip(f"no browser to look at the artifacts with: {reason}")
    with Chromium() as browser:
        yield browser


TIERS = ("unit", "stages", "flows", "integration", "docs", "gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's tier; a test module outside a tier folder is an error."""
    here = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(here):
            continue  # a test collected from outside tests/
        tier = item.path.relative_to(here).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test module belongs in a tier folder, one of {', '.join(TIERS)}")
        item.add_marker(tier)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
