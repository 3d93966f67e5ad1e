"""Progress: the lines a run prints, when bars are drawn, what the console lets through; runtime.progress keys nothing."""

from __future__ import annotations

import io
import logging

import pytest

from neural_trader.config import ConfigError
from stages.catalog import Workspace, load_params
from stages.progress import (
    bar_label,
    closing_line,
    console_handler,
    epoch_bar,
    plain_console,
    point_line,
    progress_on,
    stage_label,
    stage_line,
)
from stages.registry import STAGES, stage_key
from tests.conftest import ROOT


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_follows_the_terminal_and_true_false_do_not():
    assert progress_on("auto", _Tty()) and not progress_on("auto", io.StringIO())
    assert progress_on(True, io.StringIO()) and not progress_on(False, _Tty())


def test_no_bar_when_off():
    assert epoch_bar(False, "momentum-base") is None


def test_a_bar_per_fit_labelled_and_closed(monkeypatch):
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    on_epoch = epoch_bar("auto", "hidden5-rho0p2/momentum-d0")
    for fit in range(2):  # two fits (two batches of replicas): a bar each
        for epoch in range(3):
            on_epoch(epoch, 3, None)
    assert err.getvalue().count("hidden5-rho0p2/momentum-d0:") >= 2


def test_stage_labels_name_the_cell_market_and_point():
    assert stage_label("train", {"regime": "momentum", "model": "dropout"}) == "train momentum-dropout"
    assert stage_label("market_train", {"market": "sp500", "model": "base"}) == "market_train sp500-base"
    assert stage_label("train", {"regime": "momentum", "model": "d0"}, "hidden5-rho0p2") == \
        "train hidden5-rho0p2/momentum-d0"
    assert stage_label("compare", {}, "hidden5-rho0p2") == "compare hidden5-rho0p2"
    assert stage_label("compare", {}) == "compare"


def test_bar_label_names_the_sweep_point(tmp_path):
    assert bar_label(Workspace(tmp_path / "ws"), "momentum-d0") == "momentum-d0"
    point = Workspace(Workspace(tmp_path / "ws").sweep_point("hidden5-rho0p2"))
    assert bar_label(point, "momentum-d0") == "hidden5-rho0p2/momentum-d0"


def test_stage_lines_give_seconds_or_cached():
    assert stage_line("train momentum-dropout", "Completed", {"task_seconds": 3.14}) == \
        "train momentum-dropout: 3.1 s"
    assert stage_line("evaluate random-base", "Cached", {"task_seconds": 9.0}) == "evaluate random-base: cached"
    # up to date by its stamp (after `dvc repro`): the task ran, the stage did not
    assert stage_line("generate momentum", "Completed", {"reused": True, "task_seconds": 0.01}) == \
        "generate momentum: cached"
    assert stage_line("train momentum-base", "Failed") == "train momentum-base: failed"


def test_point_and_closing_lines():
    assert point_line(1, 4, "hidden5-rho0p2", 7.2) == "point 1/4 hidden5-rho0p2: done at 7 s"
    assert point_line(2, 4, "hidden8-rho0", 9.0, "ValueError: bad") == \
        "point 2/4 hidden8-rho0: failed at 9 s: ValueError: bad"
    assert closing_line("study", 10.06, "ws/reports/comparison.md") == \
        "study finished in 10.1 s; report: ws/reports/comparison.md"
    assert closing_line("warmups", 3.0) == "warmups finished in 3.0 s"


@pytest.fixture
def console():
    """Attach a console (`console_handler`) on a StringIO to the root logger, the loggers at INFO, for one test."""
    names = ("prefect.task_runs", "prefect.flow_runs", "neural_trader", "neural_trader.progress")
    levels = {n: logging.getLogger(n).level for n in names}
    attached = []

    def attach(verbose: bool = False) -> io.StringIO:
        out = io.StringIO()
        attached.append(console_handler(verbose, stream=out))
        logging.getLogger().addHandler(attached[-1])
        for name in names:
            logging.getLogger(name).setLevel(logging.INFO)
        return out

    yield attach
    for handler in attached:
        logging.getLogger().removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _emit() -> None:
    logging.getLogger("prefect.task_runs").info("Finished in state Completed()")
    logging.getLogger("prefect.flow_runs").info("Beginning flow run")
    logging.getLogger("neural_trader").info("trained momentum-base replicas 0-3")
    logging.getLogger("neural_trader.progress").info("train momentum-base: 0.4 s")
    logging.getLogger("prefect.task_runs").warning("Task run failed, retrying")


def test_console_is_plain_and_quiet_by_default(console):
    out = console()
    _emit()
    lines = out.getvalue().splitlines()
    assert [ln.split(" ", 2)[2] for ln in lines] == ["train momentum-base: 0.4 s", "Task run failed, retrying"]
    assert all(len(ln.split(" ")[0]) == len("12:34:56") and ln[2] == ":" for ln in lines)  # HH:MM:SS
    assert "\x1b" not in out.getvalue()


def test_verbose_shows_every_line(console):
    out = console(verbose=True)
    _emit()
    assert "Finished in state Completed()" in out.getvalue() and "trained momentum-base" in out.getvalue()
    assert len(out.getvalue().splitlines()) == 5


def test_quiet_drops_the_progress_lines():
    progress, level = logging.getLogger("neural_trader.progress"), logging.getLogger("neural_trader.progress").level
    try:
        plain_console(quiet=True)
        assert not progress.isEnabledFor(logging.INFO) and progress.isEnabledFor(logging.WARNING)
        plain_console()
        assert progress.isEnabledFor(logging.INFO)
    finally:
        progress.setLevel(level)


def test_progress_takes_auto_true_false_and_names_the_key_otherwise():
    for value in ("auto", "true", "false"):
        load_params(ROOT / "params.yaml", [f"runtime.progress={value}"])
    with pytest.raises(ConfigError, match=r"runtime\.progress: must be auto, true or false, got 'yes'"):
        load_params(ROOT / "params.yaml", ["runtime.progress=yes"])


def test_progress_keys_no_stage(tmp_path):
    shown, hidden = (load_params(ROOT / "params.yaml", [f"runtime.progress={v}"]) for v in ("true", "false"))
    ws = Workspace(tmp_path)
    for name in ("generate", "train", "compare"):
        item = STAGES[name].grid(shown)[0]
        assert stage_key(name, shown, ws, item) == stage_key(name, hidden, ws, item)
