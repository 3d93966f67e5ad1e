"""The command line: `neural-trader run | stage | ...`.

Parameters are validated before anything else happens: a bad key exits with
status 2 and one line naming it, and no output file is touched. Prefect is
only imported by the commands that orchestrate; `stage` (what `dvc repro`
calls) runs a step in-process without it.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the closing line's seconds count from here: imports included

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from neural_trader.config import ConfigError
from stages.progress import closing_line, plain_console, progress_on
from stages.progress import log as progress

if TYPE_CHECKING:
    from flows.server import RunServer


#: the PREFECT_LOGGING_* settings this command sets itself; any other in the environment is the user's
_OUR_LOGGING = ("PREFECT_LOGGING_EXTRA_LOGGERS", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW",
                "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")


def _user_logging() -> bool:
    """Whether the user set Prefect's logging (PREFECT_LOGGING_*): then Prefect's lines are theirs to see."""
    return any(k.startswith("PREFECT_LOGGING_") and k not in _OUR_LOGGING for k in os.environ)


def _prefect_env(verbose: bool = True) -> None:
    """Defaults for the embedded Prefect: quiet and offline; read by Prefect at import, and by Dask workers.

    Not `verbose`: the console handler of any process that uses Prefect's own
    logging set-up (a Dask worker's) shows WARNING and up; the API still gets every line.
    """
    if not verbose and not _user_logging():
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # the client's too: no usage data, no first-run notice on a terminal
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "neural_trader")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neural-trader", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override one parameter, e.g. --set train.epochs=50 (repeatable)")
        p.add_argument("--workspace", default=".", help="folder for data/, models/, metrics/, plots/, reports/")

    run = sub.add_parser("run", help="run the whole study (or the seed's warm-ups) as a Prefect flow")
    run.add_argument("flow", nargs="?", default="study",
                     choices=("study", "sweep", "warmups", "regression", "classifier"),
                     help="study (default): the study; sweep: the study over the `sweep` grid; "
                          "warmups: both of the seed's warm-ups; or one of them")
    run.add_argument("--rerun", action="store_true",
                     help="a rerun that adds evidence: fresh seeds from --slot, its own folder, ledger, pooled report")
    run.add_argument("--slot", help="the rerun's slot, e.g. 20261128T0200Z (default: now)")
    run.add_argument("--dvc-record", action="store_true",
                     help="record the outputs in DVC: dvc.lock (dvc commit), `dvc add` of a rerun's folder, or a "
                          "sweep's points (dvc add) and its report (sweeps/dvc.yaml, dvc commit)")
    run.add_argument("--dvc-push", action="store_true", help="with --dvc-record: also dvc push to the default remote")
    talk = run.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="no progress lines or bars: warnings, errors and the result")
    talk.add_argument("--verbose", action="store_true",
                      help="every log line too: Prefect's per-task states, the stages' own lines")
    common(run)
    stage = sub.add_parser("stage", help="run one stage in-process, without Prefect (dvc.yaml calls this)")
    stage.add_argument("name", help="a stage of dvc.yaml: generate, window, train, evaluate, plot, compare, ...")
    stage.add_argument("--regime")
    stage.add_argument("--market")
    stage.add_argument("--model")
    common(stage)
    check = sub.add_parser("check", help="validate the params file and print the resolved config")
    common(check)

    reruns = sub.add_parser("reruns", help="list, compare or pool the scheduled reruns of a workspace")
    reruns.add_argument("action", choices=("list", "compare", "pool"))
    reruns.add_argument("slots", nargs="*", help="compare: the two slots")
    common(reruns)

    server = sub.add_parser("server", help="start a local Prefect server in the background, which `run` reuses")
    server.add_argument("--port", type=int, default=4200, help="port on 127.0.0.1 (default: 4200)")
    server.add_argument("--stop", action="store_true", help="stop the server this command started")
    server.add_argument("--workspace", default=".", help="the workspace whose runs use it (default: .)")

    serve = sub.add_parser("serve", help="start (or reuse) a local Prefect server and serve the deployments")
    serve.add_argument("--cron", default=None, help="nightly schedule (default: 0 2 * * *)")
    serve.add_argument("--timezone", default=None, help="time zone of the schedule (default: UTC)")
    serve.add_argument("--port", type=int, default=4200, help="port of the local server on 127.0.0.1")
    serve.add_argument("--dvc-push", action="store_true", help="nightly reruns also dvc push what they add")
    common(serve)

    dvc_yaml = sub.add_parser("dvc-yaml", help="write dvc.yaml and .gitignore's cached outs from the stage registry"
                                               " (--check: only compare)")
    dvc_yaml.add_argument("--check", action="store_true", help="exit 1 if either differs from the registry's")
    dvc_yaml.add_argument("--workspace", default=".", help="folder whose dvc.yaml and .gitignore to write (default: .)")

    status = sub.add_parser("status", help="is the server up and is the nightly schedule firing?")
    status.add_argument("--api-url", default=None, help="default: $PREFECT_API_URL or http://127.0.0.1:4200/api")
    status.add_argument("--stale-after", type=float, default=120.0,
                        help="seconds without a poll after which the schedule counts as stopped (default 120)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `neural-trader` command on `argv` (default: this program's arguments); its exit status."""
    code = _main(argv)
    if argv is None:  # the program itself, about to exit
        # The interpreter's last collections walk every object torch and Prefect made
        # (measured: seconds after a cold study); frozen objects they skip, at no cost
        # to a process that is ending.
        gc.freeze()
    return code


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    run = args.command == "run"
    # `run`: a line per finished stage, Prefect's own lines with --verbose (or the user's PREFECT_LOGGING_*)
    plain_console(verbose=not run or args.verbose or _user_logging(), quiet=run and args.quiet)
    if args.command == "status":
        return _status(args)
    if args.command == "dvc-yaml":
        return _dvc_yaml(args)
    if args.command == "server":
        return _server(args)
    if run and args.flow == "sweep":
        return _sweep(args)  # its points are the studies: params.yaml is read once, there
    from stages.catalog import load_params

    try:
        cfg = load_params(args.params, args.overrides)
    except ConfigError as exc:
        print(f"neural-trader: error: {exc}", file=sys.stderr)
        return 2
    if run:
        cfg = _with_bars(cfg, args.quiet)

    if args.command in ("check", "run") and cfg.markets.regimes:
        from stages.catalog import check_inputs

        try:
            check_inputs(cfg, args.workspace)  # a bad price file fails here, before any work
        except ValueError as exc:
            print(f"neural-trader: error: {exc}", file=sys.stderr)
            return 2
    if args.command == "check":
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        return 0

    if args.command == "stage":
        return _stage(args, cfg)
    if args.command == "reruns":
        return _reruns(args, cfg)

    _prefect_env(verbose=not run or args.verbose)
    if args.command == "serve":
        return _serve(args)
    return _with_server(args, lambda server: _run(args, cfg, server))


def _with_bars(cfg, quiet: bool):
    """`cfg` with runtime.progress decided here, once (it keys no stage): off with --quiet; auto is on when
    stderr is a terminal, except on Dask, whose worker processes would draw over each other."""
    setting = cfg.runtime.progress
    show = not quiet and progress_on(setting) and not (setting == "auto" and cfg.runtime.task_runner == "dask")
    return cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"progress": show})})


def _with_server(args: argparse.Namespace, run: Callable[[RunServer], int]) -> int:
    """`run(server)` against the workspace's running server, or a temporary one that goes when this process goes.

    Once the server is stopped, a closing line: the run's seconds, from the command's start, and its report.
    """
    from flows.server import RunServer

    server = RunServer(args.workspace).start()  # before Prefect is imported: it boots while the flow imports
    try:
        with server.settings():
            code = run(server)
    except BaseException:  # Ctrl-C included: stop it without waiting for task runs that will never finish
        server.stop(settled=False)
        raise
    server.stop()
    sys.stdout.flush()  # what the run printed comes before the closing line, when both go to one file too
    progress.info(closing_line("rerun" if args.rerun else args.flow, time.perf_counter() - START, _report(args)))
    return code


def _report(args: argparse.Namespace) -> str | None:
    """Where a run's report is: the comparison (a rerun's: the pooled one), the sweep's; a warm-up has none."""
    ws = Path(args.workspace)
    if args.flow == "sweep":
        return str(ws / "reports" / "sweep.md")
    if args.flow == "study":
        return str(ws / ("reruns/pooled" if args.rerun else "") / "reports" / "comparison.md")
    return None


def _run(args: argparse.Namespace, cfg, server: RunServer) -> int:
    if args.flow != "study":
        from flows.warmups import format_reports, run_warmups

        server.wait()
        print(format_reports(run_warmups(args.flow, args.params, args.overrides, args.workspace, cfg=cfg)))
        return 0
    from flows.study import DVC_STAGES, run_study
    from stages.run import preload_bodies

    if server.tied:  # a temporary server boots: import the bodies meanwhile (with one running, they load as needed)
        preload_bodies(cfg, args.workspace, DVC_STAGES)
    server.wait()
    summary = run_study(args.params, args.overrides, args.workspace, rerun=args.rerun, slot=args.slot,
                             dvc_record=args.dvc_record, dvc_push=args.dvc_push, cfg=cfg)
    if args.rerun:
        print(f"rerun {summary['slot']}: pooled {summary['pooled']['runs']} reruns, "
              f"{summary['pooled']['replicas']} seeds per cell -> reruns/pooled/reports/comparison.md")
        summary = summary["pooled"]
    _print_verdicts(summary, Path(args.workspace) / ("reruns/pooled" if args.rerun else ""))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from stages.catalog import load_sweep

    try:
        study, points = load_sweep(args.params, args.overrides)  # every grid point validated before any work
    except ConfigError as exc:
        print(f"neural-trader: error: {exc}", file=sys.stderr)
        return 2
    loaded = _with_bars(study, args.quiet), [(point, _with_bars(cfg, args.quiet)) for point, cfg in points]
    _prefect_env(verbose=args.verbose)  # before Prefect is imported: it reads its settings then
    return _with_server(args, lambda server: _run_sweep(args, loaded, server))


def _run_sweep(args: argparse.Namespace, loaded, server: RunServer) -> int:
    from flows.sweep import run_sweep

    server.wait()
    summary = run_sweep(args.params, args.overrides, args.workspace, dvc_record=args.dvc_record,
                        dvc_push=args.dvc_push, loaded=loaded)
    print(f"\nSweep: {summary['points']} points, {summary['significant']} significant contrasts"
          + (f", failed: {', '.join(summary['failed'])}" if summary["failed"] else ""))
    for line in summary["verdicts"]:
        print(f"  {line}")
    print(f"\nReport: {_report(args)}")
    return 0 if not summary["failed"] else 1


def _reruns(args: argparse.Namespace, cfg) -> int:
    from stages.reruns import compare_reruns, pool_reruns, read_ledger

    root = Path(args.workspace)
    if args.action == "list":
        entries = read_ledger(root)
        if not entries:
            print(f"no reruns recorded in {root / 'reruns' / 'ledger.json'}")
        for e in entries:
            returns = "  ".join(f"{cell} {v:+.4f}" for cell, v in e["test_return"].items())
            print(f"{e['slot']}  seeds.base={e['seeds_base']}  {e['seeds']} seeds  design {e['design']}  {returns}")
        return 0
    if args.action == "compare":
        if len(args.slots) != 2:
            print("neural-trader: error: reruns compare needs two slots", file=sys.stderr)
            return 2
        try:
            rows = compare_reruns(root, *args.slots)
        except KeyError as exc:
            print(f"neural-trader: error: {exc.args[0]}", file=sys.stderr)
            return 2
        a, b = args.slots
        print(f"{'metric':<52}{a:>16}{b:>16}{'change':>12}")
        for name, va, vb, d in rows:
            print(f"{name:<52}{va:>16.5f}{vb:>16.5f}{d:>+12.5f}")
        return 0
    try:
        summary = pool_reruns(root, cfg)
    except FileNotFoundError as exc:
        print(f"neural-trader: error: {exc}", file=sys.stderr)
        return 2
    print(f"pooled {summary['runs']} reruns ({', '.join(summary['slots'])}), {summary['replicas']} seeds per cell")
    _print_verdicts(summary, root / "reruns" / "pooled")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import DEFAULT_CRON, DEFAULT_TIMEZONE, build_deployments
    from flows.server import ensure_server, server_home

    workspace = Path(args.workspace).resolve()
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        api_url, pid = ensure_server(args.port, server_home(workspace))
        started = f"started a server (pid {pid}; stop it with `kill {pid}`)" if pid else "reusing the running server"
        print(f"{started}; UI: {api_url.removesuffix('/api')}")
    params = str(Path(args.params).resolve())
    deployments = build_deployments(params, args.overrides, str(workspace), args.cron or DEFAULT_CRON,
                                    args.timezone or DEFAULT_TIMEZONE, dvc_push=args.dvc_push)
    print("serving study/manual and study/nightly until stopped (Ctrl-C); `neural-trader status` checks it")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        serve(*deployments)
    return 0


def _server(args: argparse.Namespace) -> int:
    from flows.server import ensure_server, server_home, stop_server

    home = server_home(args.workspace)
    if args.stop:
        pid = stop_server(home)
        print(f"stopped the server (pid {pid})" if pid else f"no server of this workspace is running ({home})")
        return 0
    _prefect_env()
    api_url, pid = ensure_server(args.port, home)
    print(f"{f'started a server (pid {pid})' if pid else 'a server is running'} at {api_url}, logging to "
          f"{home / 'server.log'}; `neural-trader run` in this workspace uses it; "
          f"stop it with `neural-trader server --stop`")
    print(f"for Dask workers and other shells: export PREFECT_API_URL={api_url}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from flows.deploy import schedule_status

    api_url = args.api_url or os.environ.get("PREFECT_API_URL") or "http://127.0.0.1:4200/api"
    report = schedule_status(api_url, stale_after=args.stale_after)
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0 if report["ok"] else 1


def _stage(args: argparse.Namespace, cfg) -> int:
    from stages.catalog import Workspace
    from stages.registry import STAGES, SWEEP_STAGES
    from stages.run import run_stage

    stages = {**STAGES, **SWEEP_STAGES}  # sweep_report: what sweeps/dvc.yaml runs
    if args.name not in stages:
        print(f"neural-trader: error: unknown stage {args.name!r}; one of {', '.join(stages)}", file=sys.stderr)
        return 2
    item = {}
    for key, names in stages[args.name].choices(cfg).items():
        value = getattr(args, key)
        if value not in names:
            print(f"neural-trader: error: stage {args.name} needs --{key}, one of {', '.join(names)}; got {value!r}",
                  file=sys.stderr)
            return 2
        item[key] = value
    ws = Workspace(Path(args.workspace))
    with ws.lock(f"stage {args.name}"):  # a flow and `dvc repro` in one folder never interleave
        run_stage(args.name, cfg, ws, **item)
    return 0


def _dvc_yaml(args: argparse.Namespace) -> int:
    from stages.catalog import atomic_write_bytes
    from stages.dvcfile import render_dvc_yaml, render_gitignore

    root = Path(args.workspace)
    ignore = root / ".gitignore"
    files = {root / "dvc.yaml": render_dvc_yaml(),
             ignore: render_gitignore(ignore.read_text() if ignore.is_file() else "")}
    if args.check:
        same = {path: path.is_file() and path.read_text() == text for path, text in files.items()}
        for path, ok in same.items():
            print(f"{path}: {'matches' if ok else 'differs from'} the stage registry"
                  + ("" if ok else "; `neural-trader dvc-yaml` rewrites it"), file=sys.stderr)
        return 0 if all(same.values()) else 1
    for path, text in files.items():
        atomic_write_bytes(path, text.encode())
        print(f"wrote {path} ({text.count(chr(10))} lines)", file=sys.stderr)
    return 0


def _print_verdicts(summary: dict, workspace: Path) -> None:
    print("\nVerdicts (p-values Holm-adjusted across the family; intervals unadjusted):")
    for row in summary["table"]:
        print(f"  {'*' if row['significant'] else ' '} {row['verdict']}")
    print("\nTest return per step (mean over seeds):")
    for cell, value in summary["cells"].items():
        print(f"  {cell:<28}{value:+.4f}")
    for market, verdicts in summary.get("market", {}).items():
        print(f"\nMarket {market} (walk-forward, out of sample):")
        for line in verdicts:
            print(f"  {line}")
    print(f"\nReport: {workspace / 'reports' / 'comparison.md'}")


if __name__ == "__main__":
    sys.exit(main())
