"""Prefect tasks for the warm-ups: one per warm-up stage of `stages.registry`, built like `tasks.study`.

Each task is a thin wrapper around `run_stage` with the same options as the
trader's tasks (content-keyed `StageCache`, JSON result, retries on I/O only).
The evaluate tasks also publish their report as a table artifact. Tasks are
written out one by one, not made by a factory: Prefect's TASK_SOURCE cache
component tells tasks apart by their source text.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from neural_trader.params import StudyConfig

from .study import _options, run


# ------------------------------------------------------------------- regression
@task(**_options("regression_generate"))
def regression_generate(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Draw the regression's (x, y)."""
    return run("regression_generate", cfg, workspace)


@task(**_options("regression_train"))
def regression_train(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Fit beta0 and beta1 by minibatch RMSprop."""
    return run("regression_train", cfg, workspace)


@task(**_options("regression_evaluate"))
def regression_evaluate(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Recovered beta0, beta1 and sigma against the truth; published as a table."""
    report = run("regression_evaluate", cfg, workspace)
    create_table_artifact(
        key="regression-report",
        table=[{"parameter": p, "recovered": report[p], "true": report[f"{p}_true"], "error": report[f"{p}_error"]}
               for p in ("beta0", "beta1", "sigma")],
        description="Warm-up regression: recovered parameters against the truth",
    )
    return report


@task(**_options("regression_plot"))
def regression_plot(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """beta0, beta1 and loss per epoch."""
    return run("regression_plot", cfg, workspace)


# ------------------------------------------------------------------- classifier
@task(**_options("classifier_generate"))
def classifier_generate(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Draw the classifier's training and test rows."""
    return run("classifier_generate", cfg, workspace)


@task(**_options("classifier_train"))
def classifier_train(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Train the dim -> hidden -> 2 network by minibatch RMSprop."""
    return run("classifier_train", cfg, workspace)


@task(**_options("classifier_evaluate"))
def classifier_evaluate(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """Test accuracy against the simulated Bayes rate; published as a table."""
    report = run("classifier_evaluate", cfg, workspace)
    create_table_artifact(
        key="classifier-report",
        table=[{"quantity": k, "value": report[k]}
               for k in ("accuracy", "false_pos", "false_neg", "bayes", "bayes_se", "gap", "bayes_test", "gap_test")],
        description="Warm-up classifier: test accuracy against the Bayes rate (gap = bayes - accuracy)",
    )
    return report


@task(**_options("classifier_plot"))
def classifier_plot(cfg: StudyConfig, workspace: str) -> dict[str, Any]:
    """The three rates per epoch, accuracy against the Bayes rate."""
    return run("classifier_plot", cfg, workspace)
