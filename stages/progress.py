"""Progress a person can read: a bar per training, a line per finished stage, a console that stays plain.

`runtime.progress` (auto | true | false) decides the bars; auto draws them when
stderr is a terminal. It keys no stage: a bar or a line changes no output. The
lines are formatted here and emitted by the flow's process as its tasks finish
(`flows.progress`), never from a worker thread. Light on purpose (no torch, tqdm
imported when a bar opens): the command line imports it before any work.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from neural_trader.train import OnEpoch

    from .catalog import Workspace

__all__ = ["Setting", "bar_label", "closing_line", "console_handler", "epoch_bar", "plain_console", "point_line", "progress_on",
           "stage_label", "stage_line"]

Setting = Literal["auto"] | bool
log = logging.getLogger("neural_trader.progress")

#: loggers whose INFO lines the console shows only with --verbose: Prefect's per-run lines
#: ("Finished in state Completed()", the tasks' "ran generate: {...}") and the stage bodies' own
QUIET_BELOW_WARNING = ("prefect.flow_runs", "prefect.task_runs", "neural_trader")


def progress_on(setting: Setting, stream: TextIO | None = None) -> bool:
    """True/False as given; auto: whether `stream` (stderr by default) is a terminal."""
    if setting != "auto":
        return bool(setting)
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def epoch_bar(show: Setting, desc: str) -> OnEpoch | None:
    """A bar per `train.fit` call (opened at its epoch 0, gone when done), or None when not shown (`progress_on`)."""
    if not progress_on(show):
        return None
    from tqdm.auto import tqdm

    bars: list[Any] = []

    def on_epoch(epoch: int, epochs: int, row: Any) -> None:
        if epoch == 0:
            bars.append(tqdm(total=epochs, desc=desc, leave=False, unit="epoch"))
        bars[-1].update()
        if epoch + 1 == epochs:
            bars.pop().close()

    return on_epoch


def bar_label(ws: Workspace, cell: str) -> str:
    """A training's bar label: its cell, after its sweep point if any (`hidden5-rho0p2/momentum-d0`)."""
    return f"{ws.point}/{cell}" if ws.point else cell


def stage_label(stage: str, item: Mapping[str, str], point: str | None = None) -> str:
    """`train momentum-dropout`, `train hidden5-rho0p2/momentum-d0`, `compare`: the stage and what it ran on."""
    from .registry import item_id

    what = "/".join(p for p in (point, item_id(dict(item))) if p)
    return f"{stage} {what}" if what else stage


def stage_line(label: str, state: str, summary: Mapping[str, Any] | None = None) -> str:
    """One finished task: `train momentum-dropout: 3.1 s`, `... : cached`, or `... : failed`.

    `state` is the task's final state name (Completed, Cached, Failed, ...). A
    completed task whose stage was up to date (its stamp, e.g. after `dvc repro`)
    counts as cached; else its `task_seconds`.
    """
    summary = summary or {}
    if state == "Cached" or (state == "Completed" and summary.get("reused")):
        return f"{label}: cached"
    if state == "Completed":
        seconds = summary.get("task_seconds")
        return f"{label}: {seconds:.1f} s" if isinstance(seconds, (int, float)) else f"{label}: done"
    return f"{label}: {state.lower()}"


def point_line(done: int, total: int, point: str, seconds: float, failure: str | None = None) -> str:
    """A finished sweep point, counted in completion order: `point 1/4 hidden5-rho0p2: done at 7 s`."""
    outcome = f"failed at {seconds:.0f} s: {failure}" if failure else f"done at {seconds:.0f} s"
    return f"point {done}/{total} {point}: {outcome}"


def closing_line(what: str, seconds: float, report: str | None = None) -> str:
    """`study finished in 10.1 s; report: ws/reports/comparison.md` (no report: the first clause alone)."""
    return f"{what} finished in {seconds:.1f} s" + (f"; report: {report}" if report else "")


class _Quiet(logging.Filter):
    """Drops INFO and below of `QUIET_BELOW_WARNING` (not their child `neural_trader.progress`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or record.name.startswith(log.name):
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in QUIET_BELOW_WARNING)


class TqdmHandler(logging.StreamHandler):
    """A stream handler that writes above the bars (`tqdm.write`) instead of through them.

    Its name has no leading '_': Prefect keeps a root handler it takes for the user's own.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001  a handler never raises (logging's contract)
            self.handleError(record)


def console_handler(verbose: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """The console: `HH:MM:SS LEVEL message` on `stream` (stderr), no colour, written above any bar.

    Not `verbose`: Prefect's run loggers and the stage bodies show WARNING and
    up only (their INFO lines still reach the API and the UI: the filter is on
    this handler, not on the loggers); the progress lines pass.
    """
    stream = stream if stream is not None else sys.stderr
    handler = TqdmHandler(stream) if progress_on("auto", stream) else logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
    if not verbose:
        handler.addFilter(_Quiet())
    return handler


def plain_console(verbose: bool = False, quiet: bool = False) -> None:
    """Make `console_handler` the root logger's one handler (unless someone set their own, as basicConfig does).

    `quiet`: the progress lines go too. The project's INFO lines are on for
    the API's sake (the UI's run logs); the console's filter decides what shows.
    """
    root, handler = logging.getLogger(), console_handler(verbose)
    handler.plain_console = True  # type: ignore[attr-defined]
    if all(getattr(h, "plain_console", False) for h in root.handlers):
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    for name in ("neural_trader", "flows.server"):
        logging.getLogger(name).setLevel(logging.INFO)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
