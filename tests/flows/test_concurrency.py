"""Concurrency: independent cells train at once under the thread runner, and give a sequential run's bytes.

One shrunk study runs twice against the session's real Prefect server, in two
fresh workspaces: `runtime.task_runner=threads` with `max_workers=2`, then
`sequential`. Training intervals come from the train bodies' own log lines
("trained <cell> ... in S s", logged once the weights are saved): training
lasted the record's last argument, in seconds, and ended by the record's time,
inside the body's compute slot. Task-run times come back from the server. A
task run's interval is not enough on its own under threads: it includes the
wait for a compute slot (`tasks.slots`), so it would overlap another even if
the slots let one body train at a time. With as many threads as slots, the
bug `tasks/slots.py` describes, the threads run trained its cells one after
another and the overlap test failed (measured on this shrunk study).

The params are SHRUNK's (the session's shared shape), read in a module fixture
because the two runs and three tests share them.
"""

from __future__ import annotations

import itertools
import logging

import pytest

from tests.conftest import task_states

pytestmark = pytest.mark.slow

COMPARED = ("data", "metrics", "models", "reports")  # plots/ are drawn from models/, and PNGs are not the claim
TRAIN_STAGES = ("train", "market_train")
#: SHRUNK trains a cell in 20-100 ms, less than Prefect takes to start the next task (0.1-0.7 s measured):
#: bodies that short never meet. Ten times the training series make each synthetic body 0.2-1 s.
LONGER = ["data.n_train=3000"]


class _TrainedLines(logging.Handler):
    """Keeps (flow run id, task run name, start, end) of every "trained ..." line logged inside a task run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.intervals: list[tuple[str, str, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is not None and record.getMessage().startswith("trained "):
            seconds = float(record.args[-1])  # the unrounded figure the message prints to 0.1 s
            self.intervals.append((str(ctx.task_run.flow_run_id), ctx.task_run.name,
                                   record.created - seconds, record.created))


def _expected_tasks(cfg) -> int:
    """generate + window per regime, train + evaluate + plot per cell, market_data per market,
    market_train + market_evaluate per market cell, market_compare, compare."""
    return 2 * len(cfg.data.regimes) + 3 * len(cfg.cells) + len(cfg.markets.regimes) + 2 * len(cfg.markets.cells) + 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prefect_server):
    """{runner: (workspace, training intervals, task runs)} of the shrunk study under each runner."""
    import yaml
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.study import run_study
    from stages.catalog import load_params
    from tests.conftest import ROOT, SHRUNK, _merge

    root = tmp_path_factory.mktemp("concurrency")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)))
    expected = _expected_tasks(load_params(params))
    logger, lines = logging.getLogger("neural_trader"), _TrainedLines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    out = {}
    try:
        for runner in ("threads", "sequential"):
            ws, before = root / runner, len(lines.intervals)
            overrides = [f"runtime.task_runner={runner}", "runtime.max_workers=2", *LONGER]
            summary = run_study(str(params), overrides, str(ws))
            assert summary["table"]
            intervals = lines.intervals[before:]
            flow_run_id = {fid for fid, *_ in intervals}.pop()
            states = task_states(flow_run_id, expected)
            assert len(states) == expected and set(states.values()) == {"Completed"}, states  # nothing Cached
            with get_client(sync_client=True) as client:
                task_runs = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            out[runner] = ws, intervals, task_runs
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return out


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Seconds during which both intervals hold."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    return max(itertools.accumulate(step for _, step in events))


def test_threads_give_the_sequential_bytes(runs):
    threads, sequential = runs["threads"][0], runs["sequential"][0]
    files = sorted(p.relative_to(threads) for d in COMPARED for p in (threads / d).rglob("*") if p.is_file())
    assert {rel.parts[0] for rel in files} == set(COMPARED)
    theirs = sorted(p.relative_to(sequential) for d in COMPARED for p in (sequential / d).rglob("*") if p.is_file())
    assert files == theirs
    for rel in files:
        assert (threads / rel).read_bytes() == (sequential / rel).read_bytes(), rel


def test_independent_cells_train_at_once_up_to_max_workers(runs):
    _, intervals, task_runs = runs["threads"]
    train = [(start, end) for *_, start, end in intervals]
    names = sorted(name for _, name, *_ in intervals)
    assert len(train) == len([r for r in task_runs if r.name.split("[")[0] in TRAIN_STAGES]), names
    shared = max(_overlaps(a, b) for a, b in itertools.combinations(train, 2))
    assert shared > 0, f"no two train bodies computed at the same time: {sorted(intervals, key=lambda i: i[2])}"
    assert _most_at_once(train) <= 2  # max_workers: the compute slots bound the bodies


def test_sequential_runs_one_task_at_a_time(runs):
    _, intervals, task_runs = runs["sequential"]
    train = [(start, end) for *_, start, end in intervals]
    assert all(_overlaps(a, b) == 0 for a, b in itertools.combinations(train, 2))
    spans = sorted((r.start_time, r.end_time) for r in task_runs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans  # the server saw them one by one
