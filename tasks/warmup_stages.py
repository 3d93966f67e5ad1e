"""The warm-ups' stages in the registry: <exp>_generate -> <exp>_train -> <exp>_evaluate -> <exp>_plot.

<exp> is `regression` or `classifier`. Importing this module adds the eight
stages to `tasks.stages.STAGES`, so they share everything the study's stages
have: `run_stage` and its content-keyed stamps, the Prefect cache policy and
the `neural-trader stage <name>` command that dvc.yaml calls. Stage name =
Prefect task name = DVC stage name; each stage reads only its keys of
`warmups.<exp>`, plus `seeds.base` where it draws random numbers.

Light on purpose, like `tasks.stages`: the step bodies live in
`tasks.warmup_steps` and are imported only when a stage actually runs.
"""

from __future__ import annotations

from pathlib import Path

from .stages import STAGES, Stage
from .workspace import Workspace

__all__ = ["WARMUPS", "WARMUP_STAGES"]

WARMUPS = ("regression", "classifier")


def _keys(exp: str, *names: str, seeded: bool = True) -> list[str]:
    """The params keys a stage reads; `seeds.base` when it draws random numbers."""
    return ["seeds.base"] * seeded + [f"warmups.{exp}.{n}" for n in names]


def _fit_files(ws: Workspace, exp: str) -> list[Path]:
    return [ws.warmup_model(exp), ws.warmup_history(exp)]


# modules whose source is part of a stage's key, beyond its step module and the registries
_GEN = ("neural_trader.warmups", "neural_trader.data", __name__)
_FIT = ("neural_trader.warmups", "neural_trader.data", "neural_trader.models", "neural_trader.train", __name__)
_EVAL = ("neural_trader.warmups", "neural_trader.models", __name__)
_PLOT = ("neural_trader.plots", __name__)

WARMUP_STAGES: tuple[Stage, ...] = (
    Stage("regression_generate", "tasks.warmup_steps:regression_generate", (),
          lambda c, i: _keys("regression", "n", "beta0", "beta1", "sigma"), _GEN,
          lambda c, w, i: [],
          lambda c, w, i: [w.warmup_data("regression")]),
    Stage("regression_train", "tasks.warmup_steps:regression_train", (),
          lambda c, i: _keys("regression", "lr", "epochs", "batch_size"), _FIT,
          lambda c, w, i: [w.warmup_data("regression")],
          lambda c, w, i: _fit_files(w, "regression")),
    Stage("regression_evaluate", "tasks.warmup_steps:regression_evaluate", (),
          lambda c, i: _keys("regression", "beta0", "beta1", "sigma", seeded=False), _EVAL,
          lambda c, w, i: [w.warmup_data("regression"), w.warmup_model("regression")],
          lambda c, w, i: [w.warmup_report("regression")]),
    Stage("regression_plot", "tasks.warmup_steps:regression_plot", (),
          lambda c, i: [], _PLOT,
          lambda c, w, i: [w.warmup_history("regression"), w.warmup_report("regression")],
          lambda c, w, i: [w.warmup_plot("regression")]),
    Stage("classifier_generate", "tasks.warmup_steps:classifier_generate", (),
          lambda c, i: _keys("classifier", "n", "n_test", "dim"), _GEN,
          lambda c, w, i: [],
          lambda c, w, i: [w.warmup_data("classifier")]),
    Stage("classifier_train", "tasks.warmup_steps:classifier_train", (),
          lambda c, i: _keys("classifier", "dim", "hidden", "lr", "epochs", "batch_size"), _FIT,
          lambda c, w, i: [w.warmup_data("classifier")],
          lambda c, w, i: _fit_files(w, "classifier")),
    Stage("classifier_evaluate", "tasks.warmup_steps:classifier_evaluate", (),
          lambda c, i: _keys("classifier", "dim", "hidden", "bayes_draws"), _EVAL + ("neural_trader.data",),
          lambda c, w, i: [w.warmup_data("classifier"), w.warmup_model("classifier")],
          lambda c, w, i: [w.warmup_report("classifier")]),
    Stage("classifier_plot", "tasks.warmup_steps:classifier_plot", (),
          lambda c, i: [], _PLOT,
          lambda c, w, i: [w.warmup_history("classifier"), w.warmup_report("classifier")],
          lambda c, w, i: [w.warmup_plot("classifier")]),
)


def _register() -> None:
    for stage in WARMUP_STAGES:
        known = STAGES.get(stage.name)
        if known is not None and known.fn != stage.fn:
            raise RuntimeError(f"stage name {stage.name!r} is already taken by {known.fn}")
        STAGES[stage.name] = stage


_register()
