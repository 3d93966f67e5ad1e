"""The same shrunk sweep on a real Dask cluster of one worker, then two: the speed-up, measured in one run.

    python benchmarks/sweep_speed.py                 # 4 points x 2 dropout values, cold each time
    python benchmarks/sweep_speed.py --seeds 16 --epochs 60

Then, on the two workers, one cell of many seeds (`--cell-seeds`) in one batch
and as two seed shards (`runtime.seed_shards=2`): the shards' speed-up.

Starts a `prefect server start` on 127.0.0.1 (so no run pays for a temporary
server), a `dask scheduler` on 127.0.0.1 and `dask worker` processes (one
thread each), all stopped by their process ids at the end. Each run is cold:
a fresh workspace. The wall time is the sweep flow's, from submission to its
report. The last line is JSON with at least {"speedup": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from flows.server import server_healthy  # stdlib only: no Prefect before its settings are set


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait(check, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.5)


def _workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=10) as client:
        return len(client.scheduler_info()["workers"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--cell-seeds", type=int, default=256, help="seeds of the one cell trained in shards")
    ap.add_argument("--cell-epochs", type=int, default=200, help="epochs of that cell")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nt-sweep-bench-"))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seeds"]["count"], raw["train"]["epochs"] = args.seeds, args.epochs
    raw["data"].update(n_train=args.n_train, n_test=500)
    raw["runtime"].update(device="cpu", torch_threads=1)
    raw["sweep"] = {"dropout": [0.0, 0.5], "axes": {"hidden": [5, 16], "rho": [0.0, 0.2]}}
    params, cell = tmp / "params.yaml", tmp / "cell.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    one = {**raw, "seeds": {**raw["seeds"], "count": args.cell_seeds}, "models": {"dropout": raw["models"]["dropout"]},
           "train": {**raw["train"], "epochs": args.cell_epochs},
           "data": {**raw["data"], "regimes": {"momentum": raw["data"]["regimes"]["momentum"]}},
           "markets": {**raw["markets"], "regimes": {}}}
    cell.write_text(yaml.safe_dump(one, sort_keys=False))

    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    api_port, dask_port = _free_port(), _free_port()
    api, address = f"http://127.0.0.1:{api_port}/api", f"tcp://127.0.0.1:{dask_port}"
    env["PREFECT_API_URL"] = api
    procs = [_start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                     str(api_port), "--no-ui"], tmp / "server.log", env),
             _start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(dask_port),
                     "--dashboard-address", "127.0.0.1:0"], tmp / "scheduler.log", env)]
    try:
        _wait(lambda: server_healthy(api), "the Prefect server")
        os.environ.update({k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED")})
        from flows.study import run_study  # after the environment: Prefect reads its settings at import
        from flows.sweep import run_sweep

        seconds = {}
        for workers in (1, 2):
            while len(procs) - 2 < workers:
                i = len(procs) - 2
                procs.append(_start([str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--nthreads",
                                     "1", "--nworkers", "1", "--dashboard-address", "127.0.0.1:0", "--name",
                                     f"w{i}"], tmp / f"worker{i}.log", env))
            _wait(lambda: _workers(address) == workers, f"{workers} Dask worker(s)")
            start = time.perf_counter()
            summary = run_sweep(str(params), ["runtime.task_runner=dask", f"runtime.dask_address={address}"],
                                str(tmp / f"ws{workers}"))
            seconds[workers] = time.perf_counter() - start
            assert not summary["failed"], summary["failed"]
        dask = ["runtime.task_runner=dask", f"runtime.dask_address={address}"]
        for shards in (1, 2):  # one cell on the two workers: one batch, then two seed shards
            start = time.perf_counter()
            run_study(str(cell), [*dask, f"runtime.seed_shards={shards}"], str(tmp / f"cell{shards}"))
            seconds[f"cell{shards}"] = time.perf_counter() - start
    finally:
        for proc in reversed(procs):
            _stop(proc)

    speedup = seconds[1] / seconds[2]
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, sweep of 4 points x 2 dropout values, {args.seeds} seeds, "
          f"{args.epochs} epochs, {args.n_train} training series; cold workspace each run")
    print(f"{'Dask workers':<16}{'wall s':>10}{'ratio':>10}")
    print(f"{'1':<16}{seconds[1]:>10.1f}{1.0:>10.2f}")
    print(f"{'2':<16}{seconds[2]:>10.1f}{speedup:>10.2f}")
    shard_speedup = seconds["cell1"] / seconds["cell2"]
    same = all((tmp / "cell1" / p.relative_to(tmp / "cell2")).read_bytes() == p.read_bytes()
               for d in ("models", "metrics") for p in (tmp / "cell2" / d).rglob("*") if p.is_file())
    train = {k: max(json.loads(p.read_text())["summary"]["seconds"]  # the train stage, or its slowest shard
                    for p in (tmp / f"cell{k}" / ".nt" / "stamps").glob("train*@*.json") if "shard" in p.name or k == 1)
             for k in (1, 2)}
    print(f"# one cell of {args.cell_seeds} seeds x {args.cell_epochs} epochs on 2 Dask workers (the whole flow, and "
          f"its training: the batch or the slowest shard); outputs byte-identical: {same}")
    print(f"{'seed shards':<16}{'wall s':>10}{'ratio':>10}{'train s':>10}{'ratio':>10}")
    for k in (1, 2):
        print(f"{k:<16}{seconds[f'cell{k}']:>10.1f}{seconds['cell1'] / seconds[f'cell{k}']:>10.2f}"
              f"{train[k]:>10.1f}{train[1] / train[k]:>10.2f}")
    print(json.dumps({"speedup": round(speedup, 3), "seconds_1_worker": round(seconds[1], 2),
                      "seconds_2_workers": round(seconds[2], 2), "shard_speedup": round(shard_speedup, 3),
                      "shard_train_speedup": round(train[1] / train[2], 3),
                      "shards_same_bytes": same, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
