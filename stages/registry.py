"""The stage registry: every stage of the study and the warm-ups, what it reads, writes and depends on.

A stage is identified by its name and item (a regime, a regime-model cell, or
nothing). Its key hashes what determines its outputs: its params keys, the
bytes of its input files and the source of its code. After a stage's body ran,
a stamp (`.nt/stamps/`) records the key and the digest of every output. The
stamp alone decides whether a stage is up to date (`up_to_date`): Prefect's
cache policy asks it, and `stages.run.run_stage` asks it.

This module is light on purpose (no torch, scipy or matplotlib): the Prefect
cache policy computes keys through it, so a fully cached rerun never pays for
importing the numerical stack. The bodies live in `stages.study`,
`stages.compare` and `stages.warmups`, bound to their names in `stages.run`.
dvc.yaml declares the same deps, params and outs (tests/test_dvc_wiring.py keeps
them in step).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig
from neural_trader.seeding import shard_names

from .catalog import Workspace, file_digest, read_json

__all__ = ["Stage", "STAGES", "FLOW_STAGES", "ALL_STAGES", "STUDY_STAGES", "WARMUPS", "Item", "ITEM_KEYS", "item_id",
           "cell_name", "code_files", "code_digest", "stage_key", "up_to_date", "whole_up_to_date", "comparison_outputs"]

Item = dict[str, str]

# Training sums depend on the intra-op thread count, and CUDA's on the device: both are in the key of every
# stage whose bytes they change. The device is keyed as set (auto | cpu | cuda): resolving it needs torch.
THREADS = "runtime.torch_threads"
DEVICE = "runtime.device"


def cell_name(regime: str, model: str) -> str:
    return f"{regime}-{model}"


ITEM_KEYS = ("regime", "market", "model", "shard")


def item_id(item: Item) -> str:
    return "-".join(item[k] for k in ITEM_KEYS if k in item)


@dataclass(frozen=True)
class Stage:
    """What a stage reads, writes and depends on; dvc.yaml declares the same."""

    name: str
    items: tuple[str, ...]  # what one run is about: ("regime",), ("regime", "model"), ("market", ...) or ()
    # (a seed shard's ("regime", "model", "shard") too: see FLOW_STAGES)
    params: Callable[[StudyConfig, Item], list[str]]
    code: tuple[str, ...]  # modules whose source is part of the key, its body's module first
    inputs: Callable[[StudyConfig, Workspace, Item], list[Path]]
    outputs: Callable[[StudyConfig, Workspace, Item], list[Path]]
    tracked: tuple[str, ...] = ()  # folders dvc.yaml depends on whole (prices/: where CSVs live)
    part_of: str | None = None  # a seed shard's stage: skipped while that stage is up to date

    def grid(self, cfg: StudyConfig) -> list[Item]:
        """Every item the stage runs for, in params order."""
        if self.items == ("regime",):
            return [{"regime": r} for r in cfg.data.regimes]
        if self.items == ("regime", "model"):
            return [{"regime": r, "model": m} for r, m in cfg.cells]
        if self.items == ("market",):
            return [{"market": m} for m in cfg.markets.regimes]
        if self.items == ("market", "model"):
            return [{"market": r, "model": m} for r, m in cfg.markets.cells]
        if self.items == ("regime", "model", "shard"):
            return [{"regime": r, "model": m, "shard": k} for r, m in cfg.cells for k in _shards(cfg)]
        return [{}]

    def choices(self, cfg: StudyConfig) -> dict[str, list[str]]:
        """The names each item key may take (what `neural-trader stage` checks its flags against)."""
        names = {"regime": list(cfg.data.regimes), "market": list(cfg.markets.regimes),
                 "model": list(cfg.markets.models if "market" in self.items else cfg.models), "shard": _shards(cfg)}
        return {k: names[k] for k in self.items}


def _shards(cfg: StudyConfig) -> list[str]:
    return shard_names(cfg.runtime.seed_shards) if cfg.runtime.seed_shards > 1 else []


def _cell(ws: Workspace, i: Item) -> str:
    return cell_name(i["regime"], i["model"])


def _train_outputs(ws: Workspace, i: Item) -> list[Path]:
    c = _cell(ws, i)
    return [ws.weights(c, "last"), ws.weights(c, "best"), ws.model_dir(c) / "history.safetensors",
            ws.train_metrics(c) / "summary.json", ws.train_metrics(c) / "history.tsv"]


def _train_params(cfg: StudyConfig, i: Item) -> list[str]:
    return ["seeds", "data.lag", "train", f"models.{i['model']}", THREADS, DEVICE]


_TRAIN_CODE = ("stages.study", "stages.blocks", "neural_trader.models", "neural_trader.train", "neural_trader.trader",
               "neural_trader.data", "neural_trader.history")


COMPARISON_FIGURES = ("test_return", "gap", "learned_position", "valid_return")  # neural_trader.synthetic.comparison.FIGURES
MARKET_FIGURES = ("equity", "drawdown", "learned_position")  # plots/market/<m>/, written by compare


def comparison_outputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    tables = [ws.comparison_tables / "headline.json", ws.comparison_tables / "valid_return.tsv"]
    figures = [ws.comparison_plots / f"{f}.png" for f in COMPARISON_FIGURES]
    markets = [ws.root / "plots" / "market"] if cfg.markets.regimes else []  # plots/market/<m>/<figure>.png
    return [ws.comparison_json, ws.comparison_report, *tables, *figures, *markets]


def _market_files(cfg: StudyConfig, ws: Workspace, market: str) -> list[Path]:
    """The workspace files a market's closes are read from (a CSV's path; none for a shipped data set)."""
    path = getattr(cfg.markets.regimes[market], "path", None)
    return [ws.root / path] if path else []


def _compare_inputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    cells = [ws.eval_metrics(cell_name(r, m)) for r, m in cfg.cells]
    markets = [p for m in cfg.markets.regimes for p in (ws.market_series(m), ws.market_summary(m))]
    market_cells = [ws.market_eval(cell_name(r, m)) for r, m in cfg.markets.cells]
    return [*cells, *markets, *market_cells]


STUDY_STAGES: tuple[Stage, ...] = (
    Stage("generate", ("regime",),
          lambda c, i: ["seeds", "data.n_train", "data.n_valid", "data.n_test", "data.length",
                        f"data.regimes.{i['regime']}"],
          ("stages.study", "neural_trader.synthetic.sources", "neural_trader.synthetic.config", "neural_trader.data"),
          lambda c, w, i: [],
          lambda c, w, i: [w.returns(i["regime"])]),
    Stage("window", ("regime",),
          lambda c, i: ["data.lag"],
          ("stages.study", "neural_trader.data"),
          lambda c, w, i: [w.returns(i["regime"])],
          lambda c, w, i: [w.windows(i["regime"])]),
    Stage("train", ("regime", "model"), _train_params, _TRAIN_CODE,
          lambda c, w, i: [w.windows(i["regime"])],
          lambda c, w, i: _train_outputs(w, i)),
    Stage("evaluate", ("regime", "model"),
          lambda c, i: ["seeds.count", "data.lag", f"models.{i['model']}", f"data.regimes.{i['regime']}", THREADS],
          ("stages.study", "neural_trader.evaluate", "neural_trader.synthetic.sources", "neural_trader.models",
           "neural_trader.train", "neural_trader.trader", "neural_trader.synthetic.metrics"),
          lambda c, w, i: [w.windows(i["regime"]), *_train_outputs(w, i)[:3]],
          lambda c, w, i: [w.eval_metrics(_cell(w, i))]),
    Stage("plot", ("regime", "model"),
          lambda c, i: [],
          ("stages.study", "neural_trader.plots"),
          lambda c, w, i: [w.model_dir(_cell(w, i)) / "history.safetensors"],
          lambda c, w, i: [w.history_plot(_cell(w, i))]),
    # -------------------------------------------------------------- the markets
    Stage("market_data", ("market",),
          lambda c, i: [f"markets.regimes.{i['market']}", "markets.lag", "markets.vol_window", "markets.walk_forward"],
          ("stages.market", "neural_trader.markets.data", "neural_trader.markets.prices", "neural_trader.markets.folds",
           "neural_trader.markets.sources"),
          lambda c, w, i: _market_files(c, w, i["market"]),
          lambda c, w, i: [w.market_series(i["market"]), w.market_summary(i["market"])],
          tracked=("prices",)),
    Stage("market_train", ("market", "model"),
          lambda c, i: ["seeds", "markets.lag", "markets.epochs", "markets.lr", "markets.batch_size",
                        f"markets.models.{i['model']}", THREADS, DEVICE],
          ("stages.market", "neural_trader.markets.data", "neural_trader.models", "neural_trader.train",
           "neural_trader.trader", "neural_trader.data"),
          lambda c, w, i: [w.market_series(i["market"])],
          lambda c, w, i: [w.market_model(cell_name(i["market"], i["model"]), k) for k in ("best", "history")]),
    Stage("market_evaluate", ("market", "model"),
          lambda c, i: ["seeds.count", "markets.lag", f"markets.models.{i['model']}", THREADS],
          ("stages.market", "neural_trader.markets.data", "neural_trader.models", "neural_trader.evaluate"),
          lambda c, w, i: [w.market_series(i["market"]), w.market_model(cell_name(i["market"], i["model"]))],
          lambda c, w, i: [w.market_eval(cell_name(i["market"], i["model"]))]),
    Stage("compare", (),
          lambda c, i: ["compare", "data", "models", "seeds", "train", "markets", "costs"],
          ("stages.compare", "neural_trader.synthetic.comparison", "neural_trader.synthetic.contrasts", "neural_trader.stats",
           "neural_trader.synthetic.report", "neural_trader.plots", "neural_trader.evaluate", "neural_trader.synthetic.sources",
           "neural_trader.markets.data", "neural_trader.markets.report", "neural_trader.markets.backtest",
           "neural_trader.markets.stats"),
          lambda c, w, i: _compare_inputs(c, w),
          lambda c, w, i: comparison_outputs(c, w)),
)

# ---------------------------------------------------------------- the warm-ups
# <exp>_generate -> <exp>_train -> <exp>_evaluate -> <exp>_plot, each reading only
# its keys of warmups.<exp>, plus seeds.base where it draws random numbers.
WARMUPS = ("regression", "classifier")


def _keys(exp: str, *names: str, seeded: bool = True, threads: bool = True) -> list[str]:
    return ["seeds.base"] * seeded + [f"warmups.{exp}.{n}" for n in names] + [THREADS] * threads


def _fit(ws: Workspace, exp: str) -> list[Path]:
    return [ws.warmup_model(exp), ws.warmup_history(exp)]


_CORE = ("neural_trader.warmups", "neural_trader.warmups.regression", "neural_trader.warmups.classifier",
         "neural_trader.warmups._common")
_GEN = ("stages.warmups", *_CORE, "neural_trader.data")
_FIT = (*_GEN, "neural_trader.models", "neural_trader.train", "neural_trader.history")
_EVAL = ("stages.warmups", *_CORE, "neural_trader.models", "neural_trader.data")
_PLOT = ("stages.warmups", "neural_trader.plots", "neural_trader.history")

_WARMUP_KEYS = {
    "regression": {"generate": ("n", "beta0", "beta1", "sigma"), "train": ("lr", "epochs", "batch_size"),
                   "evaluate": ("beta0", "beta1", "sigma")},
    "classifier": {"generate": ("n", "n_test", "dim"), "train": ("dim", "hidden", "lr", "epochs", "batch_size"),
                   "evaluate": ("dim", "hidden", "bayes_draws")},
}


def _warmup_stages(exp: str) -> tuple[Stage, ...]:
    keys = _WARMUP_KEYS[exp]
    return (
        Stage(f"{exp}_generate", (), lambda c, i: _keys(exp, *keys["generate"]), _GEN,
              lambda c, w, i: [], lambda c, w, i: [w.warmup_data(exp)]),
        Stage(f"{exp}_train", (), lambda c, i: _keys(exp, *keys["train"]), _FIT,
              lambda c, w, i: [w.warmup_data(exp)], lambda c, w, i: _fit(w, exp)),
        Stage(f"{exp}_evaluate", (),
              lambda c, i: _keys(exp, *keys["evaluate"], seeded=exp == "classifier"), _EVAL,
              lambda c, w, i: [w.warmup_data(exp), w.warmup_model(exp)], lambda c, w, i: [w.warmup_report(exp)]),
        Stage(f"{exp}_plot", (), lambda c, i: [], _PLOT,
              lambda c, w, i: [w.warmup_history(exp), w.warmup_report(exp)], lambda c, w, i: [w.warmup_plot(exp)]),
    )


STAGES: dict[str, Stage] = {s.name: s for s in (*STUDY_STAGES, *(s for e in WARMUPS for s in _warmup_stages(e)))}

#: Stages only the Prefect flow runs: how train is scheduled, not what it computes. With seed_shards N > 1
#: the flow trains each cell as N shards of its seeds (on any Dask worker), then `stages.study.join_shards`
#: writes train's outputs, byte for byte one batch's. dvc.yaml trains a cell in one batch.
FLOW_STAGES: dict[str, Stage] = {
    "train_shard": Stage("train_shard", ("regime", "model", "shard"), _train_params, _TRAIN_CODE,
                         lambda c, w, i: [w.windows(i["regime"])],
                         lambda c, w, i: [w.seed_shard(_cell(w, i), i["shard"]) / f"{f}.safetensors"
                                          for f in ("last", "best", "history")],
                         part_of="train"),
}
ALL_STAGES: dict[str, Stage] = {**STAGES, **FLOW_STAGES}


# ------------------------------------------------------------------- keys, stamps
def _module_file(name: str) -> Path:
    """The source file of a dotted module name, found without importing it or its packages.

    `find_spec` of a submodule imports its parent package first (neural_trader.warmups
    imports torch), so only the top-level package is located and the rest is a path.
    """
    top, *rest = name.split(".")
    origin = Path(importlib.util.find_spec(top).origin)  # the package's __init__.py
    path = origin.parent.joinpath(*rest) if rest else origin
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py") if rest else path


def code_files(stage: Stage) -> list[Path]:
    """Source files of a stage: its modules, this registry and the catalog (located, not imported)."""
    names = {*stage.code, __name__, "stages.catalog"}
    if names & {"neural_trader.train", "neural_trader.trader", "neural_trader.models"}:  # they draw from the streams
        names |= {"neural_trader.streams", "neural_trader.steppers"}
    if names & {"neural_trader.data", "neural_trader.streams"}:  # seeded by neural_trader.seeding
        names.add("neural_trader.seeding")
    return [_module_file(name) for name in sorted(names)]


def code_digest(stage: Stage) -> str:  # sha256 over a stage's code files, names and bytes
    h = hashlib.sha256()
    for path in code_files(stage):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def stage_key(stage: str, cfg: StudyConfig, ws: Workspace, item: Item) -> str:
    """Hash of everything that determines a stage's outputs (not the workspace's history)."""
    spec = ALL_STAGES[stage]
    payload = {
        "stage": stage,
        "item": item,
        "params": {k: cfg.section(k) for k in spec.params(cfg, item)},
        "inputs": {ws.rel(p): file_digest(p) for p in spec.inputs(cfg, ws, item)},
        "code": code_digest(spec),
        "workspace": str(ws.root),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def whole_up_to_date(stage: str, cfg: StudyConfig, ws: Workspace, item: Item) -> dict[str, Any] | None:
    """A part's summary (a seed shard's) if the stage it is part of is up to date; else None (the part runs)."""
    whole = ALL_STAGES[stage].part_of
    if whole is None:
        return None
    cell = {k: item[k] for k in ALL_STAGES[whole].items}
    if up_to_date(whole, cfg, ws, cell, stage_key(whole, cfg, ws, cell)) is None:
        return None
    return {**item, "part_of": f"{whole}@{item_id(cell)}", "reused": True}


def up_to_date(stage: str, cfg: StudyConfig, ws: Workspace, item: Item, key: str) -> dict[str, Any] | None:
    """The recorded summary if the stamp matches `key` and every output is intact, else None."""
    try:
        stamp = read_json(ws.stamp(stage, item_id(item)))
    except (OSError, ValueError):
        return None
    if stamp.get("key") != key:
        return None
    outputs = ALL_STAGES[stage].outputs(cfg, ws, item)
    recorded = stamp.get("outputs", {})
    if set(recorded) != {ws.rel(p) for p in outputs}:
        return None
    if any(file_digest(p) != recorded[ws.rel(p)] for p in outputs):
        return None
    return stamp.get("summary")
