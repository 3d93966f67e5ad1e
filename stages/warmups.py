"""The warm-ups' stage bodies: read inputs from the workspace, call the core, write outputs.

<exp>_generate -> <exp>_train -> <exp>_evaluate -> <exp>_plot, <exp> = regression
or classifier. What each reads and writes is declared in `stages.registry`;
both front doors (the Prefect tasks in `tasks.stages` and `neural-trader
stage <name>`) run these functions through `stages.run.run_stage`.

The warm-ups train one replica on the CPU whatever `runtime.device` says: they
take seconds, and CPU draws keep their numbers identical on every machine.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neural_trader import plots
from neural_trader.warmups import classifier as C
from neural_trader.warmups import regression as R
from neural_trader.params import StudyConfig
from neural_trader.data import make_generator
from neural_trader.seeding import seed_from
from neural_trader.models import Classifier, LinearRegression1D
from neural_trader.history import read_table, single_table
from neural_trader.train import History

from .catalog import Workspace, atomic_write_bytes, load_tensors, read_json, save_tensors, write_json
from .progress import epoch_bar

__all__ = [
    "regression_generate",
    "regression_train",
    "regression_evaluate",
    "regression_plot",
    "classifier_generate",
    "classifier_train",
    "classifier_evaluate",
    "classifier_plot",
]

def _generator(cfg: StudyConfig, exp: str, purpose: str) -> torch.Generator:
    return make_generator(cfg.seeds.base, "warmups", exp, purpose)


def _seed(cfg: StudyConfig, exp: str) -> int:
    """The training seed of a warm-up's one replica: its initial weights and its streams."""
    return seed_from(cfg.seeds.base, "warmups", exp, "train")


def _set_threads(cfg: StudyConfig) -> None:
    """Intra-op threads, process-wide (every stage sets the same value): sums depend on the count."""
    torch.set_num_threads(cfg.runtime.torch_threads)


def _save_fit(ws: Workspace, exp: str, model: torch.nn.Module, history: History) -> None:
    """The weights, and the per-epoch history as the TSV that DVC plots."""
    save_tensors(ws.warmup_model(exp), model.state_dict())
    atomic_write_bytes(ws.warmup_history(exp), single_table(history).encode())


def _read_history(ws: Workspace, exp: str) -> dict[str, Any]:
    return read_table(ws.warmup_history(exp).read_text())


def _final(history: History) -> dict[str, float]:
    return {c: float(v) for c, v in zip(history.columns, history.values[0, -1].tolist())}


# ------------------------------------------------------------------- regression
def regression_generate(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Draw (x, y), y = beta0 + beta1 x + sigma e, n rows."""
    _set_threads(cfg)
    rc = cfg.warmups.regression
    x, y = R.regression_data(rc, _generator(cfg, "regression", "data"))
    save_tensors(ws.warmup_data("regression"), {"x": x, "y": y})
    return {"n": rc.n, "y_mean": float(y.mean()), "y_std": float(y.std())}


def regression_train(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Fit beta0 and beta1 by minibatch RMSprop on the MSE (the core's trainer)."""
    _set_threads(cfg)
    rc = cfg.warmups.regression
    data = load_tensors(ws.warmup_data("regression"))
    model, history = R.fit_regression(data["x"], data["y"], rc, _seed(cfg, "regression"),
                                      on_epoch=epoch_bar(cfg.runtime.progress, "regression"))
    _save_fit(ws, "regression", model, history)
    return {"epochs": rc.epochs, "steps": rc.epochs * math.ceil(rc.n / rc.batch_size), "final": _final(history)}


def regression_evaluate(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Recovered beta0, beta1 and sigma (backed out from the residuals) against the truth."""
    _set_threads(cfg)
    data = load_tensors(ws.warmup_data("regression"))
    model = LinearRegression1D()
    model.load_state_dict(load_tensors(ws.warmup_model("regression")))
    report = R.regression_report(model, data["x"], data["y"], cfg.warmups.regression)
    write_json(ws.warmup_report("regression"), report)
    return report


def regression_plot(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """The seed's picture: beta0, beta1 and loss per epoch, each against its true value."""
    h, rep = _read_history(ws, "regression"), read_json(ws.warmup_report("regression"))
    png = plots.epochs_png(
        {c: {"fit": h[c]} for c in R.REGRESSION_COLUMNS},
        {"beta0": ("true", rep["beta0_true"]), "beta1": ("true", rep["beta1_true"]),
         "loss": ("true sigma^2", rep["sigma_true"] ** 2)},  # the MSE of the true line
        title=f"regression: beta0 {rep['beta0']:.3f}, beta1 {rep['beta1']:.3f}, sigma {rep['sigma']:.3f}",
    )
    atomic_write_bytes(ws.warmup_plot("regression"), png)
    return {"plot": ws.rel(ws.warmup_plot("regression"))}


# ------------------------------------------------------------------- classifier
def classifier_generate(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Draw n training and n_test test rows of the noisy-hyperplane model, independently."""
    _set_threads(cfg)
    cc = cfg.warmups.classifier
    x, label = C.classifier_data(cc, cc.n, _generator(cfg, "classifier", "data-train"))
    xt, lt = C.classifier_data(cc, cc.n_test, _generator(cfg, "classifier", "data-test"))
    save_tensors(ws.warmup_data("classifier"), {"train_x": x, "train_label": label, "test_x": xt, "test_label": lt})
    return {"train": list(x.shape), "test": list(xt.shape), "positive_share": float(label.double().mean())}


def classifier_train(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Train the dim -> hidden -> 2 network by minibatch RMSprop on cross-entropy (the core's trainer).

    The test set is scored after every epoch for the history only: nothing is
    selected on it, so the final test accuracy stays an honest estimate.
    """
    _set_threads(cfg)
    cc = cfg.warmups.classifier
    d = load_tensors(ws.warmup_data("classifier"))
    model, history = C.fit_classifier(d["train_x"], d["train_label"], cc, _seed(cfg, "classifier"),
                                      valid=(d["test_x"], d["test_label"]),
                                      on_epoch=epoch_bar(cfg.runtime.progress, "classifier"))
    _save_fit(ws, "classifier", model, history)
    return {"epochs": cc.epochs, "steps": cc.epochs * math.ceil(cc.n / cc.batch_size), "final": _final(history)}


def classifier_evaluate(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Test accuracy against the Bayes rate, simulated from the generating model on fresh draws."""
    _set_threads(cfg)
    cc = cfg.warmups.classifier
    d = load_tensors(ws.warmup_data("classifier"))
    model = Classifier([torch.Generator()], dim=cc.dim, hidden=cc.hidden)  # weights are overwritten below
    model.load_state_dict(load_tensors(ws.warmup_model("classifier")))
    bayes = C.bayes_rate(cc, cc.bayes_draws, _generator(cfg, "classifier", "bayes"))
    report = C.classifier_report(model, d["test_x"], d["test_label"], cc, bayes)
    report.update(
        bayes_draws=cc.bayes_draws,
        bayes_se=math.sqrt(bayes * (1 - bayes) / cc.bayes_draws),  # Monte Carlo standard error
        bayes_exact=C.bayes_rate_integral(cc),  # quadrature, a check on the simulation
    )
    write_json(ws.warmup_report("classifier"), report)
    return report


def classifier_plot(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """The seed's three rates per epoch (train batches and test set), accuracy against the Bayes rate."""
    h, rep = _read_history(ws, "classifier"), read_json(ws.warmup_report("classifier"))
    png = plots.epochs_png(
        {c: {"train (mean over batches)": h[c], "test": h[f"test_{c}"]} for c in C.CLASSIFIER_COLUMNS},
        {"accuracy": ("Bayes rate", rep["bayes"])},
        title=f"classifier: test accuracy {rep['accuracy']:.4f}, Bayes rate {rep['bayes']:.4f}",
    )
    atomic_write_bytes(ws.warmup_plot("classifier"), png)
    return {"plot": ws.rel(ws.warmup_plot("classifier"))}
