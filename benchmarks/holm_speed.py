"""Holm as `inference.adjust` writes it against statsmodels' `multipletests(method="holm")`, side by side.

    python benchmarks/holm_speed.py            # the study's family of 6 and the sweep's of 100
    python benchmarks/holm_speed.py --torch    # the same with torch loaded, as in a stage or a test session

statsmodels' holm runs a full `gc.collect()` on every call, so its cost grows
with the objects the process holds, not with the p-values. The contrast tests
adjust hundreds of families (tests/unit/test_comparison.py). Both give the same
floats (tests/unit/test_inference.py). The last line is JSON with the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _seconds(call, number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=3)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="import torch first (a larger heap to collect)")
    args = parser.parse_args()
    if args.torch:
        import torch  # noqa: F401
    from statsmodels.stats.multitest import multipletests

    from neural_trader.inference import adjust

    ratios = {}
    for m in (6, 100):
        p = np.random.default_rng(0).uniform(size=m) ** 3
        ours = _seconds(lambda: adjust(p, "holm"), 2000)
        theirs = _seconds(lambda: multipletests(p, method="holm")[1], 20)
        ratios[m] = theirs / ours
        print(f"m = {m:3d}: inference.adjust {ours * 1e6:8.1f} us, statsmodels {theirs * 1e6:10.1f} us, "
              f"ratio {ratios[m]:,.0f}")
    print(json.dumps({"torch": args.torch, "ratio": ratios}))


if __name__ == "__main__":
    main()
