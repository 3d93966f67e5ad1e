"""The seed's two warm-ups as Prefect flows: generate -> train -> evaluate -> plot, each.

    neural-trader run warmups              # both; `run regression` or `run classifier` for one
    python -m flows.warmups                # the same, on params.yaml

Parameters come from the `warmups:` section of params.yaml (plus `seeds.base`).
Tasks write files into the workspace and return small JSON summaries; the
flows return the evaluate reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from neural_trader.params import StudyConfig
from stages.catalog import Workspace, load_params
from stages.registry import STAGES

from .graph import submit_stages
from .progress import StageReport
from .names import from_parameters

__all__ = ["regression", "classifier", "warmups", "run_warmups", "format_reports"]


def _setup(params: str, overrides: list[str] | None, workspace: str,
           cfg: StudyConfig | None) -> tuple[StudyConfig, str]:
    return cfg or load_params(params, overrides or []), str(Workspace(Path(workspace)).root)


def _warmup(exp: str, cfg: StudyConfig, ws: str) -> dict[str, Any]:
    """generate -> train -> evaluate -> plot of one warm-up, as the registry lists them; its evaluation."""
    report = StageReport()
    futures = submit_stages(cfg, ws, [name for name in STAGES if name.startswith(f"{exp}_")], track=report.track)
    for _ in report.finished():  # a line per stage as it finishes
        pass
    futures[f"{exp}_plot"][0].result()  # raises if the plot failed
    return futures[f"{exp}_evaluate"][0].result()


@flow(name="regression", persist_result=False, flow_run_name=from_parameters("regression"))
def regression(params: str = "params.yaml", overrides: list[str] | None = None, workspace: str = ".",
              cfg: StudyConfig | None = None) -> dict[str, Any]:
    """y = beta0 + beta1 x + sigma e: recover beta0, beta1 and sigma."""
    return _warmup("regression", *_setup(params, overrides, workspace, cfg))


@flow(name="classifier", persist_result=False, flow_run_name=from_parameters("classifier"))
def classifier(params: str = "params.yaml", overrides: list[str] | None = None, workspace: str = ".",
              cfg: StudyConfig | None = None) -> dict[str, Any]:
    """label = 1{x . ones(dim) + logistic noise > 0}: a small network against the Bayes rate."""
    return _warmup("classifier", *_setup(params, overrides, workspace, cfg))


@flow(name="warmups", persist_result=False, flow_run_name=from_parameters("warmups"))
def warmups(params: str = "params.yaml", overrides: list[str] | None = None,
            workspace: str = ".", cfg: StudyConfig | None = None) -> dict[str, dict[str, Any]]:
    """Both warm-ups, one after the other."""
    cfg = cfg or load_params(params, overrides or [])
    return {
        "regression": regression(params, overrides, workspace, cfg),
        "classifier": classifier(params, overrides, workspace, cfg),
    }


FLOWS = {"warmups": warmups, "regression": regression, "classifier": classifier}


def run_warmups(which: str, params: str, overrides: list[str], workspace: str,
                cfg: StudyConfig | None = None) -> dict[str, dict[str, Any]]:
    """Validate params (unless `cfg` is given), then run flow `which` holding the workspace lock."""
    cfg = cfg or load_params(params, overrides)  # fails here, before any work, on a bad key
    ws = Workspace(Path(workspace))
    with ws.lock(which):
        result = FLOWS[which](params=str(Path(params).resolve()), overrides=list(overrides), workspace=str(ws.root),
                              cfg=cfg)
    return result if which == "warmups" else {which: result}


def format_reports(reports: dict[str, dict[str, Any]]) -> str:
    """The reports as a few lines for the terminal."""
    lines = []
    if rep := reports.get("regression"):
        lines.append("Regression y = beta0 + beta1 x + sigma e (sigma backed out from the residuals):")
        for p in ("beta0", "beta1", "sigma"):
            lines.append(f"  {p:<6} recovered {rep[p]:.4f}   true {rep[p + '_true']:.4f}   "
                         f"error {rep[p + '_error']:.4f}")
    if rep := reports.get("classifier"):
        lines.append("Classifier, held-out test set:")
        lines.append(f"  accuracy {rep['accuracy']:.4f}   Bayes rate {rep['bayes']:.4f} "
                     f"(simulated, {rep['bayes_draws']:,} draws, se {rep['bayes_se']:.4f})   gap {rep['gap']:+.4f}")
        lines.append(f"  Bayes rule on the same test rows {rep['bayes_test']:.4f}   gap {rep['gap_test']:+.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(format_reports(run_warmups("warmups", "params.yaml", sys.argv[1:], ".")))
