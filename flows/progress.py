"""A line per finished task, written by the flow's own process as its tasks complete (never by a worker thread).

    report = StageReport()
    futures = submit_stages(cfg, ws, stages, track=report.track)
    for future in report.finished():   # each task as it completes, after its line
        ...

The lines (`stages.progress.stage_line`) go to the `neural_trader.progress`
logger: the console shows them unless --quiet, and the API (the UI's flow run
log) gets them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for

from stages.progress import log, stage_line

__all__ = ["StageReport", "log", "ui_link"]


def ui_link() -> str:
    """`; UI: <the running flow run's page>` (the link Prefect's own INFO line gives), or '' without a UI."""
    url = url_for("flow-run", obj_id=flow_run.id) if flow_run.id else None
    return f"; UI: {url}" if url else ""


class StageReport:
    """The labels of a flow's submitted tasks, and their lines as they finish."""

    def __init__(self) -> None:
        self.labels: dict[Any, str] = {}  # future -> `train momentum-dropout`

    def track(self, future: Any, label: str) -> Any:
        """Remember `future`'s label (`stages.progress.stage_label`); the future itself."""
        self.labels[future] = label
        return future

    def finished(self, futures: Iterable[Any] | None = None) -> Iterator[Any]:
        """Each of `futures` (every tracked one by default) in completion order, once its line is written."""
        for future in as_completed(list(self.labels if futures is None else futures)):
            if future in self.labels:
                log.info(stage_line(self.labels[future], *_outcome(future)))
            yield future


def _outcome(future: Any) -> tuple[str, dict[str, Any]]:
    """A finished future's state name and, when it completed, its summary."""
    future.wait()  # done already; this records its final state (else `.state` asks the server, which may lag)
    state = future.state
    if not state.is_completed():
        return state.name, {}
    summary = future.result()
    return state.name, summary if isinstance(summary, dict) else {}
