"""End to end: the whole default study, cold, in model-epochs per second against the seed's loop.

In one run:

  1. the seed notebook's DataLoader loop, as benchmarks/train_speed.py re-creates
     it, on its workload (N=1000 series, T=20, L=4, hidden 5, batch 1000):
     `--seed-epochs` epochs, best of `--seed-repeats` rounds, in a fresh
     interpreter, so that this one stays cold for the study;
  2. the whole study on params.yaml, cold, in this process: the imports (Prefect,
     torch and the flow, then what the first stage body would import), a fresh
     temporary workspace, Prefect's temporary server (PREFECT_API_URL unset) on a
     fresh PREFECT_HOME, the flow through `flows.study.run_study`, the
     drain of its log and event queues, then the server stopped: what
     `neural-trader run` does, in its order. A fresh interpreter first creates
     and migrates the new PREFECT_HOME's database, untimed, as any run after a
     machine's first finds it; `--cold-server` times that first start instead.

The study runs in this process rather than as `neural-trader run` in a
subprocess, for what only the process itself can see. It starts the
temporary server explicitly (the singleton the flow's client then reuses), so
server start and stop are timed apart from the flow. It wraps each stage body
(each registry entry's `body`) and the file writers the bodies call with a timer, so
every body's interval and summary, and the seconds spent writing, are known
without parsing logs; the stage keys hash module sources, so the wrappers
change no key and no output. And a sampler thread reads the process CPU time
(`time.process_time`, every thread of the process: the thread runner's bodies
run here) every `--sample` seconds, so the CPU used while training is the CPU
used while some train body runs, not a whole-run average diluted by the server
and the imports. The environment is the one
`flows/cli.py` sets for Prefect, and the neural_trader logger logs at INFO as
under the CLI.

Figures:

- model-epochs: replicas x epochs of every train task (synthetic cells:
  seeds.count replicas; market cells: folds x seeds), over the study's wall
  time (imports + server start + flow + drain + server stop), as a ratio to
  the seed loop's epochs per second (`end_to_end_ratio`). A market epoch is one pass
  over a fold's training window (1000 days: one batch), the seed's is 16,000
  windows (16 batches), so the table also counts window-epochs and the same
  ratio in seed-sized epochs (`seed_equivalent_ratio`).
- training: the union of the train and market_train bodies' intervals (loading
  the windows, training, saving the weights). `train_cores` is the process CPU
  seconds within it over its length.
- `fixed_seconds`: the study's wall time outside that union, broken down as
  imports, server start, the flow before the first training, gaps between
  trainings, the flow after the last, the drain and server stop; and by which
  stage bodies ran in those seconds. One-off costs met inside a training body
  count as training: the first torch optimizer built in a process imports
  torch._dynamo (about 1.5 s here), and the first autograd-path cell pays it.
- `dropout_cost_ratio`: training seconds (the summaries' `seconds`) of the
  dropout variants over the dropout-free variants of the same architecture,
  synthetic and market together. Under `max_workers` > 1 the tasks share the
  cores, so this is the cost inside the study, not train_speed's isolated one.

The last line printed is JSON. The flow's own log goes to stderr.

    python benchmarks/study_throughput.py                   # the default study on the CPU
    python benchmarks/study_throughput.py --device cuda     # the study on a GPU (the seed loop stays on the CPU)
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STAGES = ("train", "train_shard", "market_train")  # a seed shard trains part of a cell
TARGETS = {"end_to_end_ratio": (">=", 100.0), "train_cores": (">=", 1.7), "dropout_cost_ratio": ("<=", 1.25)}

Interval = tuple[float, float]


# ------------------------------------------------------------------ timing
def time_seed_loop(epochs: int, repeats: int) -> float:
    """Epochs per second of the seed's loop on its workload (one replica, on the CPU, 1 thread), best of `repeats`."""
    import torch

    from neural_trader.data import Windows
    from train_speed import replica_data, seed_loop  # benchmarks/ is on sys.path when this file runs

    torch.set_num_threads(1)  # train_speed's default; the seed loop's ops are too small to split anyway
    train, valid = replica_data(1, torch.device("cpu"))
    train, valid = Windows(train.x[0], train.y[0]), Windows(valid.x[0], valid.y[0])
    return epochs / min(seed_loop(train, valid, epochs) for _ in range(repeats))


def seed_loop_elsewhere(epochs: int, repeats: int) -> float:
    """`time_seed_loop` in a fresh interpreter (this script with --seed-loop-only): this one stays cold."""
    out = subprocess.run([sys.executable, __file__, "--seed-loop-only", "--seed-epochs", str(epochs),
                          "--seed-repeats", str(repeats)], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def prefect_env(home: Path) -> None:
    """A fresh PREFECT_HOME, the temporary server, and the settings flows/cli.py gives Prefect."""
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)  # the temporary server, as `make run` without a running server
    for key, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
                       ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"),
                       ("PREFECT_LOGGING_EXTRA_LOGGERS", "neural_trader"),
                       ("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")):
        os.environ.setdefault(key, value)


class CpuSampler(threading.Thread):
    """Samples (perf_counter, process CPU seconds) every `period` seconds until stopped."""

    def __init__(self, period: float) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self.done = period, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.perf_counter(), time.process_time()))
            self.done.wait(self.period)
        self.samples.append((time.perf_counter(), time.process_time()))

    def cpu_at(self, t: float) -> float:
        """Process CPU seconds at time t, linear between samples."""
        after = next((i for i, (ts, _) in enumerate(self.samples) if ts >= t), len(self.samples) - 1)
        (t0, c0), (t1, c1) = self.samples[max(after - 1, 0)], self.samples[after]
        return c0 if t1 <= t0 else c0 + (c1 - c0) * min(max((t - t0) / (t1 - t0), 0.0), 1.0)


class Recorder:
    """Times the stage bodies and the writers they call, in this process only (see the module docstring)."""

    WRITERS = ("save_tensors", "write_json", "atomic_write_bytes")

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, str], float, float, dict[str, Any]]] = []
        self.writes: list[tuple[str, float]] = []  # (stage module, seconds)

    def install(self) -> None:
        import importlib

        from stages import compare, market, run, study
        from stages.registry import ALL_STAGES

        for spec in ALL_STAGES.values():  # run_stage looks each body up by name when it runs
            for named in filter(None, (spec.body, spec.join)):
                module, _, function = named.partition(":")
                module = importlib.import_module(module)
                setattr(module, function, self._body(spec.name, getattr(module, function)))
        for module in (study, market, compare, run):  # run.py writes the stamps
            for name in self.WRITERS:
                if hasattr(module, name):
                    setattr(module, name, self._writer(module.__name__, getattr(module, name)))

    def _body(self, stage: str, body):
        @functools.wraps(body)
        def timed(cfg, ws, **item):
            start = time.perf_counter()
            summary = body(cfg, ws, **item)
            self.bodies.append((stage, item, start, time.perf_counter(), summary))
            return summary
        return timed

    def _writer(self, where: str, write):
        @functools.wraps(write)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return write(*args, **kwargs)
            finally:
                self.writes.append((where, time.perf_counter() - start))
        return timed


def union(intervals: list[Interval]) -> list[Interval]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def clip(intervals: list[Interval], window: Interval) -> list[Interval]:
    return [(max(a, window[0]), min(b, window[1])) for a, b in intervals if min(b, window[1]) > max(a, window[0])]


def length(intervals: list[Interval]) -> float:
    return sum(b - a for a, b in union(intervals))


def run_study(params: Path, overrides: list[str], sample: float) -> dict[str, Any]:
    """The study, cold, in a fresh workspace, with its timings (after `prefect_env`; once per process)."""
    workspace = Path(tempfile.mkdtemp(prefix="nt-bench-ws-"))
    logging.getLogger("neural_trader").setLevel(logging.INFO)  # as under the CLI
    try:
        t = [time.perf_counter()]
        from flows.study import run_study  # prefect, and torch (stages.reruns -> neural_trader.data)
        from stages.catalog import load_params
        t.append(time.perf_counter())
        import stages.compare, stages.market, stages.study  # noqa: F401, E401  what the first stage bodies import
        t.append(time.perf_counter())
        from prefect.server.api.server import SubprocessASGIServer  # the server app: part of its start-up

        cfg = load_params(params, overrides)
        recorder, sampler = Recorder(), CpuSampler(sample)
        recorder.install()
        sampler.start()
        server = SubprocessASGIServer()  # the one get_client() starts and reuses when no API URL is set
        server.start()
        t.append(time.perf_counter())
        summary = run_study(str(params), overrides, str(workspace), cfg=cfg)
        t.append(time.perf_counter())
        drain()
        t.append(time.perf_counter())
        server.stop()
        t.append(time.perf_counter())
        sampler.done.set()
        sampler.join()
        return {"cfg": cfg, "summary": summary, "recorder": recorder, "sampler": sampler,
                "imports": (t[0], t[1]), "numerics": (t[1], t[2]), "server_start": (t[2], t[3]),
                "flow": (t[3], t[4]), "drain": (t[4], t[5]), "server_stop": (t[5], t[6]),
                "market_rows": market_rows(cfg, workspace)}
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def migrate_database() -> None:
    """Start and stop the temporary server once in a fresh interpreter: PREFECT_HOME's database is then migrated."""
    code = "from prefect.server.api.server import SubprocessASGIServer as S; s = S(); s.start(); s.stop()"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def drain() -> None:
    """Ship the queued run logs and events while the server is up, as the interpreter does at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=60)


def market_rows(cfg, workspace: Path) -> dict[str, int]:
    """{market: training windows summed over its folds}, from the series market_data wrote."""
    from neural_trader.markets.data import MarketData, fold_groups
    from stages.catalog import Workspace, load_tensors

    ws, rows = Workspace(workspace), {}
    for market in cfg.markets.regimes:
        data = MarketData.from_arrays({k: v.numpy() for k, v in load_tensors(ws.market_series(market)).items()})
        rows[market] = sum(g.train_x.shape[0] // cfg.seeds.count * g.train_x.shape[1]
                           for g in fold_groups(data, cfg.seeds.count))
    return rows


# ------------------------------------------------------------------ figures
def throughput(run: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[tuple[str, str, str], float]]:
    """{synthetic | market: tasks, model_epochs, window_epochs, train_seconds}, and each cell's training seconds."""
    cfg, seeds, epochs = run["cfg"], run["cfg"].seeds.count, run["cfg"].train.epochs
    groups: dict[str, dict[str, float]] = {g: defaultdict(float) for g in ("synthetic", "market")}
    seconds: dict[tuple[str, str, str], float] = defaultdict(float)  # (group, regime or market, model) -> seconds
    for stage, item, _, _, summary in run["recorder"].bodies:
        if stage not in TRAIN_STAGES:
            continue
        group, where = ("market", item["market"]) if stage == "market_train" else ("synthetic", item["regime"])
        replicas = summary["replicas"] if stage != "train_shard" else summary["replicas"][1] - summary["replicas"][0]
        windows = (cfg.data.n_train * (cfg.data.length - cfg.data.lag) if group == "synthetic"  # per replica
                   else run["market_rows"][where] / (replicas // seeds))  # a fold's: rows / folds
        g = groups[group]
        g["tasks"] += 1
        g["model_epochs"] += replicas * epochs
        g["window_epochs"] += replicas * epochs * windows
        g["train_seconds"] += summary["seconds"]
        seconds[group, where, item["model"]] += summary["seconds"]
    return groups, seconds


def dropout_cost(group: str, models: dict[str, Any], seconds: dict[tuple[str, str, str], float]) -> tuple[float, float]:
    """(seconds of the dropout variants, seconds of their dropout-free twins) over the group's regimes or markets."""
    twins = [(m, b) for m, mc in models.items() if mc.dropout > 0
             for b, bc in models.items() if bc.dropout == 0 and bc.hidden == mc.hidden]
    pairs = [(seconds[group, w, m], seconds[group, w, b]) for w in {w for g, w, _ in seconds if g == group}
             for m, b in twins if (group, w, m) in seconds and (group, w, b) in seconds]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def fixed_costs(run: dict[str, Any], train: list[Interval]) -> tuple[dict[str, float], dict[str, float], float]:
    """Wall seconds outside training by phase; by stage body running in them; and with no body running."""
    def span(key: str) -> float:
        return run[key][1] - run[key][0]

    f0, f1 = run["flow"]
    first, last = (train[0][0], train[-1][1]) if train else (f0, f0)
    phases = {"imports: prefect, torch, the flow": span("imports"), "imports: the stage bodies'": span("numerics"),
              "server start (with its import)": span("server_start"), "flow before the first training": first - f0,
              "gaps between trainings": (last - first) - length(train), "flow after the last training": f1 - last,
              "drain logs and events": span("drain"), "server stop": span("server_stop")}
    outside = [(f0, first), *[(a[1], b[0]) for a, b in itertools.pairwise(train)], (last, f1)]
    by_stage: dict[str, list[Interval]] = defaultdict(list)  # each stage's body intervals, clipped to `outside`
    for stage, _, a, b, _ in run["recorder"].bodies:
        by_stage[stage] += [i for w in outside for i in clip([(a, b)], w)]
    idle = sum(b - a for a, b in outside) - length([i for v in by_stage.values() for i in v])
    return phases, {stage: length(v) for stage, v in by_stage.items()}, idle


def figures(run: dict[str, Any], seed_eps: float) -> dict[str, Any]:
    from train_speed import L, N, T  # the seed's workload (torch is loaded by now)

    cfg, rec = run["cfg"], run["recorder"]
    wall = run["server_stop"][1] - run["imports"][0]  # the phases are back to back
    groups, seconds = throughput(run)
    total = {k: sum(g[k] for g in groups.values()) for k in ("tasks", "model_epochs", "window_epochs", "train_seconds")}
    train = union([(a, b) for stage, _, a, b, _ in rec.bodies if stage in TRAIN_STAGES])
    cpu = sum(run["sampler"].cpu_at(b) - run["sampler"].cpu_at(a) for a, b in train)
    phases, busy_outside, idle = fixed_costs(run, train)
    body_seconds: dict[str, float] = defaultdict(float)
    for stage, _, a, b, _ in rec.bodies:
        body_seconds[stage] += b - a
    cost = {"synthetic": dropout_cost("synthetic", cfg.models, seconds),
            "market": dropout_cost("market", cfg.markets.models, seconds)}
    cost["total"] = (cost["synthetic"][0] + cost["market"][0], cost["synthetic"][1] + cost["market"][1])
    ratio = {k: (d / b if b else float("nan")) for k, (d, b) in cost.items()}
    return {
        "seed_eps": seed_eps, "wall": wall, "flow": run["flow"][1] - run["flow"][0], "groups": groups,
        "total": total, "seed_windows": N * (T - L), "train_len": length(train), "train_cpu": cpu, "fixed": phases,
        "busy_outside": busy_outside, "no_body_outside": idle, "body_seconds": dict(body_seconds),
        "bodies": {s: sum(1 for b in rec.bodies if b[0] == s) for s in body_seconds},
        "writes": sum(s for _, s in rec.writes), "dropout": ratio, "dropout_cost_ratio": ratio["total"],
        "end_to_end_ratio": total["model_epochs"] / wall / seed_eps,
        "seed_equivalent_ratio": total["window_epochs"] / (N * (T - L)) / wall / seed_eps,
        "train_cores": cpu / length(train) if train else float("nan"),
        "fixed_seconds": sum(phases.values()),
    }


def report(fig: dict[str, Any], args: argparse.Namespace, cfg, load: tuple[float, float]) -> None:
    import torch

    seed_eps, wall = fig["seed_eps"], fig["wall"]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"study on {args.device}, runner {cfg.runtime.task_runner} x {cfg.runtime.max_workers}, "
          f"torch threads {cfg.runtime.torch_threads}; seed loop: cpu, best of {args.seed_repeats} x "
          f"{args.seed_epochs} epochs; Prefect database {'new' if args.cold_server else 'migrated before'}; "
          f"load average {load[0]:.2f} before, {load[1]:.2f} after")
    print(f"seed DataLoader loop: {seed_eps:.2f} epochs/s; study wall {wall:.1f} s (flow {fig['flow']:.1f} s)")
    print(f"\n{'trained':<11}{'tasks':>6}{'model-epochs':>14}{'train s':>9}{'per train s':>13}{'ratio':>8}"
          f"{'end to end':>12}{'seed-size epochs':>18}{'ratio':>8}")
    for name, g in [*fig["groups"].items(), ("total", fig["total"])]:
        seed_size = g["window_epochs"] / fig["seed_windows"]
        per = g["model_epochs"] / g["train_seconds"] if g["train_seconds"] else float("nan")
        print(f"{name:<11}{g['tasks']:>6.0f}{g['model_epochs']:>14,.0f}{g['train_seconds']:>9.1f}{per:>13,.0f}"
              f"{per / seed_eps:>8.1f}{g['model_epochs'] / wall / seed_eps:>12.1f}{seed_size:>18,.0f}"
              f"{seed_size / wall / seed_eps:>8.1f}")
    print("('per train s': model-epochs over the tasks' summed training seconds; 'end to end': over the study's"
          " wall time; ratios to the seed loop)")
    print(f"\ntraining (union of train bodies): {fig['train_len']:.1f} s, {fig['train_cpu']:.1f} CPU s: "
          f"{fig['train_cores']:.2f} cores busy")
    d = fig["dropout"]
    print(f"dropout over dropout-free training seconds: synthetic {d['synthetic']:.2f}x, market {d['market']:.2f}x, "
          f"together {d['total']:.2f}x")
    print(f"\nfixed seconds (wall, outside training): {fig['fixed_seconds']:.1f} s of {wall:.1f}")
    for what, s in fig["fixed"].items():
        print(f"  {what:<34}{s:>7.1f} s")
    print("  of the flow's non-training seconds, stage bodies running (they may overlap):")
    for stage, s in sorted(fig["busy_outside"].items(), key=lambda kv: -kv[1]):
        if s >= 0.05:
            print(f"    {stage:<32}{s:>7.1f} s")
    print(f"    {'no stage body (Prefect, keys)':<32}{fig['no_body_outside']:>7.1f} s")
    print("\nstage bodies, summed seconds (count): " + ", ".join(
        f"{s} {v:.1f} ({fig['bodies'][s]})" for s, v in sorted(fig["body_seconds"].items(), key=lambda kv: -kv[1])))
    print(f"of which writing files (safetensors, JSON, PNG, stamps): {fig['writes']:.1f} s")
    checks = []
    for key, (op, target) in TARGETS.items():
        ok = fig[key] >= target if op == ">=" else fig[key] <= target
        checks.append(f"{key} {fig[key]:.2f} (target {op} {target:g}: {'met' if ok else 'not met'})")
    print("\n" + "; ".join(checks))
    g = fig["groups"]
    print(json.dumps({
        "end_to_end_ratio": round(fig["end_to_end_ratio"], 2),
        "train_cores": round(fig["train_cores"], 3),
        "dropout_cost_ratio": round(d["total"], 3),
        "fixed_seconds": round(fig["fixed_seconds"], 2),
        "seed_loop_epochs_per_s": round(seed_eps, 2),
        "study_wall_s": round(wall, 2),
        "train_s": round(fig["train_len"], 2),
        "model_epochs": {k: int(v["model_epochs"]) for k, v in [*g.items(), ("total", fig["total"])]},
        "end_to_end_ratio_by": {k: round(v["model_epochs"] / wall / seed_eps, 2) for k, v in g.items()},
        "seed_equivalent_ratio": round(fig["seed_equivalent_ratio"], 2),
        "dropout_cost_ratio_by": {k: round(d[k], 3) for k in ("synthetic", "market")},
        "fixed": {k: round(v, 2) for k, v in fig["fixed"].items()},
        "device": args.device,
        "server": "cold" if args.cold_server else "warm",
        "load_average": [round(x, 2) for x in load],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="runtime.device of the study (default cpu; the seed loop always runs on the CPU)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="the study (default params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one parameter, as `neural-trader run --set` (repeatable)")
    parser.add_argument("--seed-epochs", type=int, default=10, help="epochs of each seed-loop round")
    parser.add_argument("--seed-repeats", type=int, default=3, help="seed-loop rounds; the fastest counts")
    parser.add_argument("--sample", type=float, default=0.05, help="seconds between CPU-time samples")
    parser.add_argument("--cold-server", action="store_true",
                        help="time the very first server start on a new PREFECT_HOME (its database created and "
                             "migrated); by default a fresh interpreter migrates it first, untimed, as on any run "
                             "after the first")
    parser.add_argument("--seed-loop-only", action="store_true",
                        help="print the seed loop's epochs per second and exit (step 1 runs it in a fresh interpreter)")
    args = parser.parse_args()
    if args.seed_epochs < 1 or args.seed_repeats < 1 or not args.sample > 0:
        parser.error("--seed-epochs and --seed-repeats must be >= 1, --sample > 0")
    if args.seed_loop_only:
        print(time_seed_loop(args.seed_epochs, args.seed_repeats))
        return
    load = os.getloadavg()[0]  # other work on the machine: these are wall-clock figures
    seed_eps = seed_loop_elsewhere(args.seed_epochs, args.seed_repeats)
    home = Path(tempfile.mkdtemp(prefix="nt-bench-prefect-"))
    try:
        prefect_env(home)  # before anything imports prefect: it reads its settings once
        if not args.cold_server:
            migrate_database()
        overrides = [*args.overrides, f"runtime.device={args.device}"]
        run = run_study(args.params.resolve(), overrides, args.sample)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report(figures(run, seed_eps), args, run["cfg"], (load, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
