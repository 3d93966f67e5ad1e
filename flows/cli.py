"""The command line: `neural-trader run | stage | ...`.

Parameters are validated before anything else happens: a bad key exits with
status 2 and one line naming it, and no output file is touched. Prefect is
only imported by the commands that orchestrate; `stage` (what `dvc repro`
calls) runs a step in-process without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from neural_trader.config import ConfigError



def _prefect_env() -> None:
    """Defaults for the embedded Prefect: quiet, offline, patient on slow machines."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "neural_trader")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neural-trader", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override one parameter, e.g. --set train.epochs=50 (repeatable)")
        p.add_argument("--workspace", default=".", help="folder for data/, models/, metrics/, plots/, reports/")

    run = sub.add_parser("run", help="run the whole study (or the seed's warm-ups) as a Prefect flow")
    run.add_argument("flow", nargs="?", default="experiment",
                     choices=("experiment", "warmups", "regression", "classifier"),
                     help="experiment (default): the study; warmups: both of the seed's warm-ups; or one of them")
    common(run)
    stage = sub.add_parser("stage", help="run one stage in-process, without Prefect (dvc.yaml calls this)")
    stage.add_argument("name", help="a stage of dvc.yaml: generate, window, train, evaluate, plot, compare, ...")
    stage.add_argument("--regime")
    stage.add_argument("--model")
    common(stage)
    check = sub.add_parser("check", help="validate the params file and print the resolved config")
    common(check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("neural_trader").setLevel(logging.INFO)
    from tasks.workspace import load_params

    try:
        cfg = load_params(args.params, args.overrides)
    except ConfigError as exc:
        print(f"neural-trader: error: {exc}", file=sys.stderr)
        return 2

    if args.command == "check":
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        return 0

    if args.command == "stage":
        return _stage(args, cfg)

    _prefect_env()
    if args.flow != "experiment":
        from flows.warmups import format_reports, run_warmups

        print(format_reports(run_warmups(args.flow, args.params, args.overrides, args.workspace)))
        return 0
    from flows.experiment import run_experiment

    summary = run_experiment(args.params, args.overrides, args.workspace)
    _print_verdicts(summary, Path(args.workspace))
    return 0


def _stage(args: argparse.Namespace, cfg) -> int:
    import torch

    import tasks.warmup_stages  # noqa: F401  registers the warm-up stages
    from tasks.steps import STAGES, run_stage

    if args.name not in STAGES:
        print(f"neural-trader: error: unknown stage {args.name!r}; one of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    item = {}
    for key in STAGES[args.name].items:
        value = getattr(args, key)
        names = cfg.data.regimes if key == "regime" else cfg.models
        if value not in names:
            print(f"neural-trader: error: stage {args.name} needs --{key}, one of {', '.join(names)}; got {value!r}",
                  file=sys.stderr)
            return 2
        item[key] = value
    run_stage(args.name, cfg, args.workspace, **item)
    return 0


def _print_verdicts(summary: dict, workspace: Path) -> None:
    print("\nVerdicts (Holm-adjusted across the family):")
    for row in summary["table"]:
        print(f"  {'*' if row['significant'] else ' '} {row['verdict']}")
    print("\nTest return per step (mean over seeds):")
    for cell, value in summary["cells"].items():
        print(f"  {cell:<28}{value:+.4f}")
    print(f"\nReport: {workspace / 'reports' / 'comparison.md'}")


if __name__ == "__main__":
    sys.exit(main())
