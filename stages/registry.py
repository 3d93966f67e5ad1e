"""The stage registry: every stage of the study and the warm-ups, what it reads, writes and depends on.

A stage is identified by its name and item (a regime, a regime-model cell, or
nothing). Its key hashes what determines its outputs: its params keys, the
bytes of its input files and the source of its code. After a stage's body ran,
a stamp (`.nt/stamps/`) records the key and the digest of every output. The
stamp alone decides whether a stage is up to date (`up_to_date`): Prefect's
cache policy asks it, and `stages.run.run_stage` asks it.

This is the one stage graph. Each entry carries its body (a `module:function`
name, imported only when the stage runs), its grid (the params dicts whose
names it iterates) and what dvc.yaml says of it. Both Prefect flows walk it
(`flows.graph`), `stages.run.run_stage` runs its bodies, and dvc.yaml is
generated from it (`neural-trader dvc-yaml`, `stages.dvcfile`). Adding a stage
is an entry here plus its body.

This module is light on purpose (no torch, scipy or matplotlib): the Prefect
cache policy computes keys through it, so a fully cached rerun never pays for
importing the numerical stack.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neural_trader.params import StudyConfig, sweep_points
from neural_trader.seeding import shard_names

from .catalog import Workspace, file_digest, read_json

__all__ = ["Stage", "STAGES", "FLOW_STAGES", "SWEEP_STAGES", "ALL_STAGES", "STUDY_STAGES", "WARMUPS", "Item", "ITEM_KEYS", "item_id",
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


#: item key -> the params dict whose names it takes, per kind of grid (a seed shard's keys come from runtime)
GRIDS: dict[tuple[str, ...], dict[str, str]] = {
    (): {},
    ("regime",): {"regime": "data.regimes"},
    ("regime", "model"): {"regime": "data.regimes", "model": "models"},
    ("market",): {"market": "markets.regimes"},
    ("market", "model"): {"market": "markets.regimes", "model": "markets.models"},
    ("regime", "model", "shard"): {"regime": "data.regimes", "model": "models"},
}


@dataclass(frozen=True)
class Stage:
    """What a stage runs, reads, writes and depends on; dvc.yaml is generated from it."""

    name: str
    items: tuple[str, ...]  # what one run is about: a key of GRIDS
    body: str  # "module:function", called as body(cfg, ws, **item) -> JSON summary
    params: Callable[[StudyConfig, Item], list[str]]
    code: tuple[str, ...]  # modules whose source is part of the key, its body's module first
    inputs: Callable[[StudyConfig, Workspace, Item], list[Path]]
    outputs: Callable[[StudyConfig, Workspace, Item], list[Path]]
    tracked: tuple[str, ...] = ()  # folders dvc.yaml depends on whole, in place of the inputs
    part_of: str | None = None  # a seed shard's stage: skipped while that stage is up to date
    join: str | None = None  # "module:function" writing the outputs from the stage's parts (seed shards)
    plots: dict[str, dict[str, str]] = field(default_factory=dict)  # output file name -> dvc plot props
    note: str = ""  # dvc.yaml's comment above the stage
    needs: str | None = None  # a params dict the stage has nothing to do without (no market: no markets' report)

    def grid(self, cfg: StudyConfig) -> list[Item]:
        """Every item the stage runs for, in params order."""
        if self.needs and not cfg.section(self.needs):
            return []
        axes = GRIDS[self.items]
        names = [list(cfg.section(path)) for path in axes.values()]
        if "shard" in self.items:
            names.append(_shards(cfg))
        return [dict(zip(self.items, combo)) for combo in itertools.product(*names)]

    def choices(self, cfg: StudyConfig) -> dict[str, list[str]]:
        """The names each item key may take (what `neural-trader stage` checks its flags against)."""
        names = {k: list(cfg.section(path)) for k, path in GRIDS[self.items].items()}
        return {**names, "shard": _shards(cfg)} if "shard" in self.items else names


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


COMPARISON_FIGURES = ("contrasts", "test_return", "gap", "learned_position", "valid_return")  # neural_trader.synthetic.comparison.FIGURES
MARKET_FIGURES = ("equity", "drawdown", "learned_position")  # plots/market/<m>/, written by market_compare


def comparison_outputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    tables = [ws.comparison_tables / "headline.json", ws.comparison_tables / "valid_return.tsv"]
    figures = [ws.comparison_plots / f"{f}.png" for f in COMPARISON_FIGURES]
    return [ws.comparison_json, ws.comparison_report, *tables, *figures]


def _market_files(cfg: StudyConfig, ws: Workspace, market: str) -> list[Path]:
    """The workspace files a market's closes are read from (a CSV's path; none for a shipped data set)."""
    path = getattr(cfg.markets.regimes[market], "path", None)
    return [ws.root / path] if path else []


def _market_compare_inputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    markets = [p for m in cfg.markets.regimes for p in (ws.market_series(m), ws.market_summary(m))]
    return [*markets, *(ws.market_eval(cell_name(r, m)) for r, m in cfg.markets.cells)]


def _history_plot(title: str, y: str, y_label: str) -> dict[str, dict[str, str]]:
    """dvc.yaml's plot of a per-epoch history.tsv: its curve `y`, named by `title` and `y_label`."""
    return {"history.tsv": {"x": "epoch", "y": y, "title": title, "x_label": "epoch", "y_label": y_label}}


STUDY_STAGES: tuple[Stage, ...] = (
    Stage("generate", ("regime",), "stages.study:generate",
          lambda c, i: ["seeds", "data.n_train", "data.n_valid", "data.n_test", "data.length",
                        f"data.regimes.{i['regime']}"],
          ("stages.study", "neural_trader.synthetic.sources", "neural_trader.synthetic.config", "neural_trader.data"),
          lambda c, w, i: [],
          lambda c, w, i: [w.returns(i["regime"])],
          note="the synthetic study: each regime's returns, windows, and every (regime, model) cell's seeds"),
    Stage("window", ("regime",), "stages.study:window",
          lambda c, i: ["data.lag"],
          ("stages.study", "neural_trader.data"),
          lambda c, w, i: [w.returns(i["regime"])],
          lambda c, w, i: [w.windows(i["regime"])]),
    Stage("train", ("regime", "model"), "stages.study:train", _train_params, _TRAIN_CODE,
          lambda c, w, i: [w.windows(i["regime"])],
          lambda c, w, i: _train_outputs(w, i),
          join="stages.study:join_shards",
          plots=_history_plot("Validation return per epoch, mean over seeds ({cell})", "valid_return",
                              "return per step (position x next return)")),
    Stage("evaluate", ("regime", "model"), "stages.study:evaluate",
          lambda c, i: ["seeds.count", "data.lag", f"models.{i['model']}", f"data.regimes.{i['regime']}", THREADS],
          ("stages.study", "neural_trader.evaluate", "neural_trader.synthetic.sources", "neural_trader.models",
           "neural_trader.train", "neural_trader.trader", "neural_trader.synthetic.metrics"),
          lambda c, w, i: [w.windows(i["regime"]), *_train_outputs(w, i)[:3]],
          lambda c, w, i: [w.eval_metrics(_cell(w, i))]),
    Stage("plot", ("regime", "model"), "stages.study:plot",
          lambda c, i: [],
          ("stages.study", "neural_trader.plots", "neural_trader.trader"),
          lambda c, w, i: [w.model_dir(_cell(w, i)) / "history.safetensors"],
          lambda c, w, i: [w.history_plot(_cell(w, i))]),
    Stage("market_data", ("market",), "stages.market:market_data",
          lambda c, i: [f"markets.regimes.{i['market']}", "markets.lag", "markets.vol_window", "markets.walk_forward"],
          ("stages.market", "neural_trader.markets.data", "neural_trader.markets.prices", "neural_trader.markets.folds",
           "neural_trader.markets.sources"),
          lambda c, w, i: _market_files(c, w, i["market"]),
          lambda c, w, i: [w.market_series(i["market"]), w.market_summary(i["market"])],
          tracked=("prices",),
          note="the markets: real closes (a CSV under prices/, or a series shipped in arch), tested walk-forward; "
               "every market_data stage depends on prices/ whole"),
    Stage("market_train", ("market", "model"), "stages.market:market_train",
          lambda c, i: ["seeds", "markets.lag", "markets.epochs", "markets.lr", "markets.batch_size",
                        f"markets.models.{i['model']}", THREADS, DEVICE],
          ("stages.market", "neural_trader.markets.data", "neural_trader.models", "neural_trader.train",
           "neural_trader.trader", "neural_trader.data"),
          lambda c, w, i: [w.market_series(i["market"])],
          lambda c, w, i: [w.market_model(cell_name(i["market"], i["model"]), k) for k in ("best", "history")]),
    Stage("market_evaluate", ("market", "model"), "stages.market:market_evaluate",
          lambda c, i: ["seeds.count", "markets.lag", f"markets.models.{i['model']}", THREADS],
          ("stages.market", "neural_trader.markets.data", "neural_trader.models", "neural_trader.evaluate"),
          lambda c, w, i: [w.market_series(i["market"]), w.market_model(cell_name(i["market"], i["model"]))],
          lambda c, w, i: [w.market_eval(cell_name(i["market"], i["model"]))]),
    Stage("market_compare", (), "stages.market:market_compare",
          lambda c, i: ["markets", "costs", "compare.confidence", "compare.alpha"],
          ("stages.market", "neural_trader.markets.data", "neural_trader.markets.report",
           "neural_trader.markets.publish", "neural_trader.markets.backtest", "neural_trader.markets.stats",
           "neural_trader.inference", "neural_trader.plots", "neural_trader.evaluate"),
          lambda c, w, i: _market_compare_inputs(c, w),
          lambda c, w, i: [w.markets_json, w.markets_headline, w.markets_report, w.root / "plots" / "market"],
          tracked=("data/market", "metrics/market"), needs="markets.regimes",
          note="every market's series and out-of-sample positions, as the folders that hold them; costs.bps "
               "re-keys this stage only"),
    Stage("compare", (), "stages.compare:compare",
          lambda c, i: ["compare", "data", "models", "seeds", "train"],
          ("stages.compare", "neural_trader.synthetic.comparison", "neural_trader.synthetic.contrasts",
           "neural_trader.inference", "neural_trader.synthetic.report", "neural_trader.plots", "neural_trader.evaluate",
           "neural_trader.synthetic.sources"),
          lambda c, w, i: [w.eval_metrics(cell_name(r, m)) for r, m in c.cells],
          lambda c, w, i: comparison_outputs(c, w),
          tracked=("metrics/evaluate",),
          note="the synthetic cells' comparison: every cell's evaluation, as the folder that holds them, so a new "
               "cell needs no edit here (DVC links a folder dep to the stages writing into it)"),
)

# ---------------------------------------------------------------- the warm-ups
WARMUPS = ("regression", "classifier")
WARMUP_NOTE = ("the warm-ups, the seed's regression and classifier: <exp>_generate -> _train -> _evaluate -> _plot, "
               "each reading only its keys of warmups.<exp>, plus seeds.base where it draws")


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


#: the y of each warm-up's history plot, its title and its y-label
_WARMUP_CURVE = {
    "regression": ("loss", "Regression warm-up, training loss per epoch", "mean squared error (training batches)"),
    "classifier": ("test_accuracy", "Classifier warm-up, test accuracy per epoch", "accuracy"),
}


def _warmup_stages(exp: str) -> tuple[Stage, ...]:
    keys, body = _WARMUP_KEYS[exp], f"stages.warmups:{exp}"
    return (
        Stage(f"{exp}_generate", (), f"{body}_generate", lambda c, i: _keys(exp, *keys["generate"]), _GEN,
              lambda c, w, i: [], lambda c, w, i: [w.warmup_data(exp)],
              note=WARMUP_NOTE if exp == WARMUPS[0] else ""),
        Stage(f"{exp}_train", (), f"{body}_train", lambda c, i: _keys(exp, *keys["train"]), _FIT,
              lambda c, w, i: [w.warmup_data(exp)], lambda c, w, i: _fit(w, exp),
              plots=_history_plot(_WARMUP_CURVE[exp][1], _WARMUP_CURVE[exp][0], _WARMUP_CURVE[exp][2])),
        Stage(f"{exp}_evaluate", (), f"{body}_evaluate",
              lambda c, i: _keys(exp, *keys["evaluate"], seeded=exp == "classifier"), _EVAL,
              lambda c, w, i: [w.warmup_data(exp), w.warmup_model(exp)], lambda c, w, i: [w.warmup_report(exp)]),
        Stage(f"{exp}_plot", (), f"{body}_plot", lambda c, i: [], _PLOT,
              lambda c, w, i: [w.warmup_history(exp), w.warmup_report(exp)], lambda c, w, i: [w.warmup_plot(exp)]),
    )


STAGES: dict[str, Stage] = {s.name: s for s in (*STUDY_STAGES, *(s for e in WARMUPS for s in _warmup_stages(e)))}

#: Stages only the Prefect flow runs: how train is scheduled, not what it computes. With seed_shards N > 1
#: the flow trains each cell as N shards of its seeds (on any Dask worker), then `stages.study.join_shards`
#: writes train's outputs, byte for byte one batch's. dvc.yaml trains a cell in one batch.
FLOW_STAGES: dict[str, Stage] = {
    "train_shard": Stage("train_shard", ("regime", "model", "shard"), "stages.study:train_shard", _train_params,
                         _TRAIN_CODE,
                         lambda c, w, i: [w.windows(i["regime"])],
                         lambda c, w, i: [w.seed_shard(_cell(w, i), i["shard"]) / f"{f}.safetensors"
                                          for f in ("last", "best", "history")],
                         part_of="train"),
}


def _sweep_inputs(cfg: StudyConfig, ws: Workspace) -> list[Path]:
    """Every grid point's evaluations that exist, and the flow's record of failed points if there is one."""
    evals = [Workspace(ws.sweep_point(p.name)).eval_metrics(cell_name(p.regime, m))
             for p in sweep_points(cfg) for m in p.models]
    return [p for p in (*evals, ws.sweep_failures) if p.is_file()]


#: The report over the sweep's grid (`neural-trader run sweep`): not part of the study's graph (its inputs
#: exist only where a sweep ran), so neither the study flow nor the root dvc.yaml has it; the sweep flow
#: runs it, and `--dvc-record` writes it alone into sweeps/dvc.yaml (`stages.dvcfile.render_sweep_dvc_yaml`).
SWEEP_STAGES: dict[str, Stage] = {
    "sweep_report": Stage(
        "sweep_report", (), "stages.sweep:sweep_report",
        # the points' settings (in metrics/sweep.json) come from the study's data and models sections
        lambda c, i: ["sweep", "compare.confidence", "compare.power", "compare.effect_of_interest", "data.n_train",
                      "data.regimes", "models"],
        ("stages.sweep", "neural_trader.params", "neural_trader.sweep.points", "neural_trader.sweep.names",
         "neural_trader.sweep.report", "neural_trader.sweep.verdicts", "neural_trader.sweep.plots",
         "neural_trader.inference", "neural_trader.plots"),
        lambda c, w, i: _sweep_inputs(c, w),
        lambda c, w, i: [w.sweep_json, w.sweep_report, w.sweep_plots, w.sweep_ledger],
        note="the sweep's report over every grid point's evaluations (sweeps/<point>/, `dvc add`ed by the run) "
             "and the run's record of failed points; written by `neural-trader run sweep --dvc-record`"),
}
ALL_STAGES: dict[str, Stage] = {**STAGES, **FLOW_STAGES, **SWEEP_STAGES}


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
