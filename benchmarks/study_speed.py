"""The fixed seconds of `neural-trader run`: cold, and all cached, on both server routes, side by side.

One invocation measures, for this tree and (with `--baseline-rev REV`) the
tree of a git revision, on each of two server routes:

  temporary  no server running: `run` starts the temporary Prefect server of its own
  server     a `neural-trader server` running in the workspace, started (and
             stopped, by its PID) by this script, untimed

  - the default study, cold, in a fresh workspace, in a fresh process: its
    wall time from spawn to exit, split into the seconds training (the union of
    the train bodies' intervals) and the fixed seconds outside it, by phase:
    imports (spawn to the run waiting for its server: the interpreter, the
    params, the flow's imports), server start (what the run waited for it),
    the flow before the first training, gaps between trainings, the flow after
    the last training, drain and server stop, and the process's exit;
  - then the all-cached rerun: `neural-trader run` again in the same workspace,
    `--repeats` times, each in a fresh process, timed spawn to exit.

Every measurement runs in a fresh process with the same venv and PYTHONPATH
pointing at the tree measured (the baseline in a `git worktree` of REV, removed
at the end), each route on a fresh PREFECT_HOME whose database is migrated
first, untimed. The cold runs (`--cold-repeats`, each in a fresh workspace;
the table gives medians) alternate between the trees, baseline first on the
first route, and so do the reruns, so both meet the same load. The cold run is this script in
`--child` mode: it calls `flows.cli.main` as the `neural-trader` script does,
with timers around `RunServer.wait`, `RunServer.stop` and each stage body (the
stage keys hash module sources, so the timers change no key and no output).

Wall-clock figures of whatever machine it runs on: the ratios (this tree over
the baseline, measured side by side) are the comparison. The last line printed
is JSON.

    python benchmarks/study_speed.py                              # this tree, both routes
    python benchmarks/study_speed.py --baseline-rev main          # and main's, side by side, with ratios
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from study_throughput import Interval, union  # this folder is on sys.path: the script's own

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STAGES = ("train", "train_shard", "market_train")  # a seed shard trains part of a cell
ROUTES = ("temporary", "server")
PHASES = ("imports", "server start", "flow before the first training", "gaps between trainings",
          "flow after the last training", "drain and server stop", "exit")
MAIN = "import sys; from flows.cli import main; sys.exit(main())"  # what the `neural-trader` script runs


# ------------------------------------------------------------------ the cold run, in its own process
def child(argv: list[str], spawned: float, out: Path) -> None:
    """`neural-trader run` in this process, timing the server wait and stop and every stage body."""
    events: dict[str, Any] = {"bodies": []}
    import flows.server
    import stages.run
    from stages.registry import ALL_STAGES

    stage_of = {n: s.name for s in ALL_STAGES.values() for n in (s.body, s.join) if n}
    body_of = stages.run.body_of

    def timed_body_of(name: str):
        body = body_of(name)

        def timed(*args, **kwargs):
            start = time.time()
            try:
                return body(*args, **kwargs)
            finally:
                events["bodies"].append((stage_of.get(name, name), start, time.time()))
        return timed

    def timer(key: str, method):
        def timed(*args, **kwargs):
            start = time.time()
            try:
                return method(*args, **kwargs)
            finally:
                events.setdefault(key, (start, time.time()))
        return timed

    stages.run.body_of = timed_body_of
    flows.server.RunServer.wait = timer("wait", flows.server.RunServer.wait)
    flows.server.RunServer.stop = timer("stop", flows.server.RunServer.stop)
    from flows.cli import main

    events["tree"] = str(Path(flows.server.__file__).resolve().parents[1])
    events["spawned"] = spawned
    sys.argv = ["neural-trader", *argv]
    code = main()  # as the `neural-trader` script calls it
    events["returned"] = time.time()
    out.write_text(json.dumps(events))
    sys.exit(code)


# ------------------------------------------------------------------ the parent
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tree:
    """A source tree measured: its folder, and the environment that makes Python import it."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        return {**env, "PYTHONPATH": str(self.root), "PREFECT_HOME": str(home)}

    def python(self, args: list[str], home: Path, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=self.root, env=self.env(home), check=True, **kw)


def wall(tree: Tree, args: list[str], home: Path) -> float:
    """Seconds from spawn to exit of `python args` in `tree` (its output discarded; it must succeed)."""
    start = time.perf_counter()
    tree.python(args, home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def cold(tree: Tree, home: Path, ws: Path, run_args: list[str]) -> dict[str, float]:
    """The study, cold, in `ws`: its phases (seconds), training, fixed seconds and wall time."""
    out = ws.parent / f"{ws.name}-events.json"
    spawned = time.time()
    tree.python([__file__, "--child", str(out), str(spawned), "run", "--workspace", str(ws), *run_args], home,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ended = time.time()
    ev = json.loads(out.read_text())
    if Path(ev["tree"]) != tree.root.resolve():
        raise RuntimeError(f"{tree.name}: the run imported {ev['tree']}, not {tree.root}")
    train = union([(a, b) for stage, a, b in ev["bodies"] if stage in TRAIN_STAGES])
    (w0, w1), (s0, s1) = ev["wait"], ev["stop"]
    first, last = (train[0][0], train[-1][1]) if train else (w1, w1)
    training = sum(b - a for a, b in train)
    phases = dict(zip(PHASES, (w0 - spawned, w1 - w0, first - w1, (last - first) - training, s0 - last, s1 - s0,
                               ended - s1)))
    return {**phases, "fixed seconds": sum(phases.values()), "training": training, "cold wall": ended - spawned}


class Route:
    """A fresh PREFECT_HOME and workspace for one tree on one route; `server` keeps a `neural-trader server`."""

    def __init__(self, tree: Tree, route: str, scratch: Path) -> None:
        self.tree, self.route = tree, route
        self.home = Path(tempfile.mkdtemp(prefix=f"home-{route}-", dir=scratch))
        self.ws = Path(tempfile.mkdtemp(prefix=f"ws-{route}-", dir=scratch))
        self.pid: int | None = None

    def fresh_workspace(self) -> None:
        """An empty workspace for the next cold run; the running server, recorded in the old one, moves with it."""
        old, self.ws = self.ws, Path(tempfile.mkdtemp(prefix=f"ws-{self.route}-", dir=self.ws.parent))
        if self.pid:
            shutil.copytree(old / ".nt" / "prefect-server", self.ws / ".nt" / "prefect-server")
        shutil.rmtree(old, ignore_errors=True)

    def __enter__(self) -> Route:
        self.tree.python(["-m", "prefect", "server", "database", "upgrade", "-y"], self.home, capture_output=True)
        if self.route == "server":
            self.tree.python(["-c", MAIN, "server", "--workspace", str(self.ws), "--port", str(free_port())],
                             self.home, capture_output=True)
            self.pid = int((self.ws / ".nt" / "prefect-server" / "server.pid").read_text())
        return self

    def __exit__(self, *exc) -> None:
        if self.pid:  # its own process group (start_new_session)
            try:
                os.killpg(self.pid, signal.SIGTERM)
                for _ in range(150):
                    os.killpg(self.pid, 0)
                    time.sleep(0.1)
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def measure(trees: list[Tree], routes: list[str], repeats: int, cold_repeats: int, run_args: list[str],
            scratch: Path) -> dict:
    """{route: {tree: {figure: seconds}}}: cold runs alternating between trees, then the reruns; medians."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for route in routes:
        envs = [Route(tree, route, scratch) for tree in trees]
        try:
            for r in envs:
                r.__enter__()
            colds: dict[str, list[dict[str, float]]] = {r.tree.name: [] for r in envs}
            for k in range(cold_repeats):  # each later cold run in a fresh workspace, the trees' order alternating
                for r in (envs if (k + len(results)) % 2 == 0 else envs[::-1]):
                    if k:
                        r.fresh_workspace()
                    colds[r.tree.name].append(cold(r.tree, r.home, r.ws, run_args))
            results[route] = {name: {key: statistics.median(c[key] for c in runs) for key in runs[0]}
                              for name, runs in colds.items()}
            reruns: dict[str, list[float]] = {r.tree.name: [] for r in envs}
            for _ in range(repeats):
                for r in envs:
                    reruns[r.tree.name].append(wall(r.tree, ["-c", MAIN, "run", "--workspace", str(r.ws), *run_args],
                                                    r.home))
            for name, times in reruns.items():
                results[route][name] |= {"cached rerun": statistics.median(times), "cached reruns": times}
        finally:
            for r in envs:
                r.__exit__()
        print(f"# {route}: done", file=sys.stderr, flush=True)
    return results


def report(results: dict, trees: list[Tree], load: tuple[float, float], cold_repeats: int, repeats: int) -> None:
    names = [t.name for t in trees]
    print(f"# {os.cpu_count()} cores, load average {load[0]:.2f} before, {load[1]:.2f} after; wall seconds, "
          f"each figure a fresh process; medians of {cold_repeats} cold runs, {repeats} cached reruns")
    rows = [*PHASES, "fixed seconds", "training", "cold wall", "cached rerun"]
    head = f"{'seconds':<32}"
    for route in results:
        head += "".join(f"{f'{route}: {n}':>26}" for n in names) + (f"{'ratio':>8}" if len(names) > 1 else "")
    print(head)
    for row in rows:
        line = f"{row:<32}"
        for route, by in results.items():
            values = [by[n][row] for n in names]
            line += "".join(f"{v:>26.2f}" for v in values)
            if len(names) > 1:
                line += f"{values[0] / values[1]:>8.2f}" if values[1] > 0.005 else f"{'-':>8}"
        print(line)
    for route, by in results.items():
        print(f"cached reruns, {route}: " + "; ".join(
            f"{n} " + ", ".join(f"{t:.2f}" for t in by[n]["cached reruns"]) for n in names))
    if len(names) > 1:
        print(f"(ratio: {names[0]} over {names[1]})")
    print(json.dumps({"load_average": [round(x, 2) for x in load],
                      "results": {route: {n: {k: (round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v])
                                              for k, v in fig.items()} for n, fig in by.items()}
                                  for route, by in results.items()}}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[4:], float(sys.argv[3]), Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", help="also measure this git revision (a worktree of it), side by side")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated, of {', '.join(ROUTES)}")
    parser.add_argument("--repeats", type=int, default=3, help="all-cached reruns per tree and route (default 3)")
    parser.add_argument("--cold-repeats", type=int, default=1,
                        help="cold runs per tree and route, each in a fresh workspace; the table gives medians")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one parameter of every run, as `neural-trader run --set` (repeatable)")
    args = parser.parse_args()
    routes = args.routes.split(",")
    if args.repeats < 1 or args.cold_repeats < 1 or not routes or set(routes) - set(ROUTES):
        parser.error(f"--repeats must be >= 1 and --routes some of {', '.join(ROUTES)}")
    run_args = [a for o in args.overrides for a in ("--set", o)]
    scratch = Path(tempfile.mkdtemp(prefix="nt-study-speed-"))
    trees = [Tree("this tree", ROOT)]
    try:
        if args.baseline_rev:
            rev = subprocess.run(["git", "rev-parse", "--short", args.baseline_rev], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
            subprocess.run(["git", "worktree", "add", "--detach", str(scratch / "baseline"), rev], cwd=ROOT,
                           check=True, capture_output=True)
            trees.insert(0, Tree(f"baseline {rev}", scratch / "baseline"))
        load = os.getloadavg()[0]
        results = measure(trees, routes, args.repeats, args.cold_repeats, run_args, scratch)
        report(results, trees, (load, os.getloadavg()[0]), args.cold_repeats, args.repeats)
    finally:
        if args.baseline_rev:
            subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "baseline")], cwd=ROOT,
                           capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
