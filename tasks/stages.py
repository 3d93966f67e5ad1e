"""The stage registry: what each stage reads, writes and depends on, and how a run resumes.

A stage is identified by its name and item (a regime, or a regime-model cell).
`run_stage` makes every stage resumable. Its key hashes what determines the
output: the stage's params sections, the content of its input files and the
source of its code. After a successful step a stamp records the key and the
digest of every output; a later call with the same key and intact outputs
returns the recorded summary without recomputing.

This module is light on purpose (no torch, scipy or matplotlib): the Prefect
cache policy computes keys through it, so a fully cached rerun never pays for
importing the numerical stack. Step bodies live in `tasks.steps` and are
imported when a stage actually runs. dvc.yaml declares the same deps, params
and outs (tests/test_dvc_wiring.py keeps them in step).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neural_trader.config import StudyConfig

from .workspace import Workspace, file_digest, read_json, write_json

log = logging.getLogger("neural_trader")

Item = dict[str, str]


def cell_name(regime: str, model: str) -> str:
    return f"{regime}-{model}"


def item_id(item: Item) -> str:
    return "-".join(item[k] for k in ("regime", "model") if k in item)


@dataclass(frozen=True)
class Stage:
    """What a stage reads, writes and depends on; dvc.yaml declares the same."""

    name: str
    fn: Callable[..., dict[str, Any]] | str  # the step, or "module:function" imported when it runs
    items: tuple[str, ...]  # what one run of the stage is about: ("regime",), ("regime", "model") or ()
    params: Callable[[StudyConfig, Item], list[str]]
    code: tuple[str, ...]  # modules whose source is part of the key
    inputs: Callable[[StudyConfig, Workspace, Item], list[Path]]
    outputs: Callable[[StudyConfig, Workspace, Item], list[Path]]


def _cells_eval(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    return [ws.eval_metrics(cell_name(r, m)) for r, m in cfg.cells]


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("generate", "tasks.steps:generate", ("regime",),
              lambda c, i: ["seeds", "data.n_train", "data.n_valid", "data.n_test", "data.length",
                            f"data.regimes.{i['regime']}"],
              ("neural_trader.data", "neural_trader.config"),
              lambda c, w, i: [],
              lambda c, w, i: [w.returns(i["regime"])]),
        Stage("window", "tasks.steps:window", ("regime",),
              lambda c, i: ["data.lag"],
              ("neural_trader.data",),
              lambda c, w, i: [w.returns(i["regime"])],
              lambda c, w, i: [w.windows(i["regime"])]),
        Stage("train", "tasks.steps:train", ("regime", "model"),
              lambda c, i: ["seeds", "data.lag", "train", f"models.{i['model']}"],
              ("neural_trader.models", "neural_trader.train", "neural_trader.data"),
              lambda c, w, i: [w.windows(i["regime"])],
              lambda c, w, i: [w.weights(cell_name(**i), "last"), w.weights(cell_name(**i), "best"),
                               w.model_dir(cell_name(**i)) / "history.safetensors",
                               w.train_metrics(cell_name(**i)) / "summary.json",
                               w.train_metrics(cell_name(**i)) / "history.tsv"]),
        Stage("evaluate", "tasks.steps:evaluate", ("regime", "model"),
              lambda c, i: ["seeds.count", "data.lag", f"models.{i['model']}", f"data.regimes.{i['regime']}"],
              ("neural_trader.evaluate", "neural_trader.models", "neural_trader.train"),
              lambda c, w, i: [w.windows(i["regime"]), w.weights(cell_name(**i), "last"),
                               w.weights(cell_name(**i), "best"), w.model_dir(cell_name(**i)) / "history.safetensors"],
              lambda c, w, i: [w.eval_metrics(cell_name(**i))]),
        Stage("plot", "tasks.steps:plot", ("regime", "model"),
              lambda c, i: [],
              ("neural_trader.plots",),
              lambda c, w, i: [w.model_dir(cell_name(**i)) / "history.safetensors"],
              lambda c, w, i: [w.history_plot(cell_name(**i))]),
        Stage("compare", "tasks.steps:compare", (),
              lambda c, i: ["compare", "data", "models", "seeds", "train"],
              ("neural_trader.stats", "neural_trader.plots", "neural_trader.evaluate", "tasks.report"),
              lambda c, w, i: _cells_eval(c, w),
              lambda c, w, i: comparison_outputs(c, w)),
    )
}


COMPARISON_FIGURES = ("test_return", "gap", "learned_position", "valid_return")


def comparison_outputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    tables = [ws.comparison_tables / "headline.json", ws.comparison_tables / "valid_return.tsv"]
    figures = [ws.comparison_plots / f"{f}.png" for f in COMPARISON_FIGURES]
    return [ws.comparison_json, ws.comparison_report, *tables, *figures]


def code_files(stage: Stage) -> list[Path]:
    """Source files of a stage: its modules, its step's module, this registry and the catalog."""
    step_module = stage.fn.split(":")[0] if isinstance(stage.fn, str) else stage.fn.__module__
    names = sorted({*stage.code, step_module, __name__, "tasks.workspace"})
    return [Path(importlib.util.find_spec(name).origin) for name in names]  # located, not imported


def _code_digest(stage: Stage) -> str:
    h = hashlib.sha256()
    for path in code_files(stage):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _step(stage: Stage) -> Callable[..., dict[str, Any]]:
    if callable(stage.fn):
        return stage.fn
    module, name = stage.fn.split(":")
    return getattr(importlib.import_module(module), name)


def stage_key(stage: str, cfg: StudyConfig, ws: Workspace, item: Item) -> str:
    """Hash of everything that determines a stage's outputs (not the workspace's history)."""
    spec = STAGES[stage]
    payload = {
        "stage": stage,
        "item": item,
        "params": {k: cfg.section(k) for k in spec.params(cfg, item)},
        "inputs": {ws.rel(p): file_digest(p) for p in spec.inputs(cfg, ws, item)},
        "code": _code_digest(spec),
        "workspace": str(ws.root),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def outputs_valid(stage: str, cfg: StudyConfig, ws: Workspace, item: Item, key: str) -> dict[str, Any] | None:
    """The recorded summary if the stamp matches `key` and every output is intact, else None."""
    stamp_path = ws.stamp(stage, item_id(item))
    try:
        stamp = read_json(stamp_path)
    except (OSError, ValueError):
        return None
    if stamp.get("key") != key:
        return None
    outputs = STAGES[stage].outputs(cfg, ws, item)
    recorded = stamp.get("outputs", {})
    if set(recorded) != {ws.rel(p) for p in outputs}:
        return None
    if any(file_digest(p) != recorded[ws.rel(p)] for p in outputs):
        return None
    return stamp.get("summary")


def run_stage(stage: str, cfg: StudyConfig, ws: Workspace | str | Path, **item: str) -> dict[str, Any]:
    """Run one stage unless its outputs are already up to date; return its summary."""
    ws = ws if isinstance(ws, Workspace) else Workspace(Path(ws))
    spec = STAGES[stage]
    missing = [ws.rel(p) for p in spec.inputs(cfg, ws, item) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"stage {stage}@{item_id(item) or '-'} needs {', '.join(missing)}: run the upstream stages first")
    key = stage_key(stage, cfg, ws, item)
    if (summary := outputs_valid(stage, cfg, ws, item, key)) is not None:
        log.info("%s@%s is up to date", stage, item_id(item) or "-")
        return {**summary, "reused": True}
    summary = _step(spec)(cfg, ws, **item)
    outputs = {ws.rel(p): file_digest(p) for p in spec.outputs(cfg, ws, item)}
    if missing_out := [p for p, d in outputs.items() if d == "missing"]:
        raise RuntimeError(f"stage {stage} did not write {missing_out}")
    write_json(ws.stamp(stage, item_id(item)), {"key": key, "outputs": outputs, "summary": summary})
    return {**summary, "reused": False}
