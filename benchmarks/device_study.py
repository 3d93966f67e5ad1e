"""The default study end to end on each device, through the stage layer (no Prefect, no DVC), side by side.

Runs every study stage (generate, window, train, evaluate, the markets, compare;
no figures, no warm-ups) in registry order with `stages.run.run_stage`, once per
device named, each in a fresh temporary workspace, in one process, and prints
the wall seconds of each run and their ratio, then how far apart the runs'
`metrics/comparison.json` are: the largest difference of a cell's or a
contrast's mean in units of its standard error across seeds, and whether every
verdict (significant, equivalent or undecided, and which way) is the same. The last line is JSON.

    python benchmarks/device_study.py --devices cpu cuda      # on a machine with a GPU
    python benchmarks/device_study.py --devices cpu --set seeds.count=4 --set train.epochs=5   # a quick try

The first device's run also pays the imports and first-use costs of torch; the
order is the command line's.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = ("generate", "window", "train", "evaluate", "market_data", "market_train", "market_evaluate", "compare")


def run_study(params: Path, overrides: list[str], device: str, workspace: Path) -> tuple[float, dict]:
    from stages.catalog import load_params, read_json
    from stages.registry import STAGES
    from stages.run import run_stage

    cfg = load_params(params, [*overrides, f"runtime.device={device}"])
    start = time.perf_counter()
    for name in STUDY:
        for item in STAGES[name].grid(cfg):
            run_stage(name, cfg, workspace, **item)
    found = {**read_json(workspace / "metrics" / "comparison.json"), "market": read_json(workspace / "metrics" / "markets" / "comparison.json")}
    return time.perf_counter() - start, found


def apart(a: dict, b: dict) -> dict:
    """The largest |difference of means| / standard error, and whether the verdicts agree."""
    from scipy import stats

    n, level = a["replicas"], a["confidence"]
    t = stats.t.ppf(0.5 + level / 2, n - 1)

    def se(interval: dict) -> float:
        return (interval["ci_hi"] - interval["ci_lo"]) / (2 * t)

    worst = 0.0
    for x, y in zip(a["cells"], b["cells"], strict=True):
        for metric in ("test_return", "gap"):
            worst = max(worst, abs(x[metric]["mean"] - y[metric]["mean"]) / se(x[metric]))
    same = True
    for x, y in zip(a["contrasts"], b["contrasts"], strict=True):
        worst = max(worst, abs(x["diff"] - y["diff"]) / se(x))
        # the verdict's state (significant, equivalent, undecided) and, when significant, its direction
        same &= x["state"] == y["state"] and (not x["significant"] or (x["diff"] > 0) == (y["diff"] > 0))
    for market, m in a["market"].items():
        same &= (m["spa_p"] < m["alpha"]) == (b["market"][market]["spa_p"] < m["alpha"])
    return {"max_diff_in_se": round(worst, 4), "same_verdicts": bool(same)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices, in the order they run")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as neural-trader's")
    args = parser.parse_args()
    import torch

    seconds, results = {}, {}
    with tempfile.TemporaryDirectory(prefix="device_study.") as tmp:
        for device in args.devices:
            seconds[device], results[device] = run_study(args.params, args.overrides, device, Path(tmp) / device)
    print(f"# {platform.machine()}, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA device"))
    first = args.devices[0]
    for device in args.devices:
        print(f"{device:<8}{seconds[device]:>8.1f} s{seconds[first] / seconds[device]:>8.2f}x of {first}")
    line = {"seconds": {d: round(s, 2) for d, s in seconds.items()}}
    if len(args.devices) > 1:
        line |= apart(results[first], results[args.devices[1]])
        print(f"{args.devices[1]} against {first}: means at most {line['max_diff_in_se']} standard errors apart; "
              f"verdicts {'the same' if line['same_verdicts'] else 'DIFFER'}")
    print(json.dumps(line))


if __name__ == "__main__":
    main()
