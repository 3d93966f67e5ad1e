"""The memory budget: the trainer's bytes per replica, replica blocks, byte counts with units.

The estimate is held to the real thing: a fresh interpreter trains S replicas
and reports its peak resident memory's growth (VmHWM: ru_maxrss would carry the
parent's peak across exec), which must lie below the
estimate and above half of it (an estimate so loose it wastes memory fails too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neural_trader.memory import MemoryBudgetError, TrainShape, parse_bytes, replica_blocks, trainer_bytes
from neural_trader.seeding import SHARD_ALIGN


def _peak_rss() -> int:
    """This process's peak resident memory, bytes: VmHWM, which (unlike ru_maxrss) starts afresh at exec."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def measure(replicas: int, rows: int, valid_rows: int, dropout: float) -> None:
    """Print the peak RSS growth (bytes) of training `replicas` replicas for 2 epochs, after a warm-up."""
    import torch

    from neural_trader.data import Windows, make_generator
    from neural_trader.models import TraderNet
    from neural_trader.streams import Streams
    from neural_trader.trader import train_trader

    torch.set_num_threads(1)

    def run(s: int, n: int, v: int) -> None:
        g = torch.Generator().manual_seed(0)
        tr = Windows(torch.randn(s, n, 4, generator=g), torch.randn(s, n, generator=g))
        va = Windows(torch.randn(s, v, 4, generator=g), torch.randn(s, v, generator=g))
        net = TraderNet([make_generator("memory", r) for r in range(s)], 4, 5, dropout)
        train_trader(net, tr, va, Streams(list(range(1, s + 1))), lr=0.01, epochs=2, batch_size=1000)

    run(1, 64, 64)  # torch's one-off allocations, outside the measurement
    before = _peak_rss()
    run(replicas, rows, valid_rows)
    print(json.dumps({"used": _peak_rss() - before}))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc (Linux)")
@pytest.mark.parametrize("dropout", [0.0, 0.5, 0.3])  # no noise, packed bits, a byte a unit
def test_the_estimate_bounds_the_peak_memory_of_training(dropout):
    replicas, rows, valid_rows = 128, 16_000, 1_600  # the default study's rows; 250 MiB or so
    code = f"from tests.unit.test_memory import measure; measure({replicas}, {rows}, {valid_rows}, {dropout})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    used = json.loads(out.stdout.strip().splitlines()[-1])["used"]
    estimate = replicas * trainer_bytes(TrainShape(rows, valid_rows, 4, 5, 1000, dropout))
    assert 0.5 * estimate < used <= estimate, (used, estimate)


@given(count=st.integers(1, 5000), per_replica=st.integers(1, 10**7), blocks=st.integers(1, 400))
def test_blocks_cover_every_replica_in_order_on_aligned_boundaries_within_the_budget(count, per_replica, blocks):
    budget = max(min(count, SHARD_ALIGN), -(-count // blocks)) * per_replica
    ranges = replica_blocks(count, per_replica, budget)
    assert ranges[0][0] == 0 and ranges[-1][1] == count
    assert all(a[1] == b[0] and a[1] % SHARD_ALIGN == 0 for a, b in zip(ranges, ranges[1:]))
    assert all((hi - lo) * per_replica <= budget for lo, hi in ranges)


def test_one_block_holds_every_replica_when_they_fit():
    assert replica_blocks(4096, 1000, 4096 * 1000) == [(0, 4096)]
    assert replica_blocks(40, 1000, 10**9) == [(0, 40)]


def test_a_budget_below_the_smallest_block_names_the_key_and_the_size_needed():
    with pytest.raises(MemoryBudgetError, match=r"runtime.max_batch_bytes: a block of 16 replicas needs .* at least 16000 "):
        replica_blocks(100, 1000, 15_999)
    assert replica_blocks(100, 1000, 16_000)[0] == (0, 16)
    with pytest.raises(MemoryBudgetError, match="a block of 3 replicas"):  # fewer replicas than a block
        replica_blocks(3, 1000, 2_999)


@pytest.mark.parametrize("text,size", [(2_000_000, 2_000_000), ("512MiB", 512 * 2**20), ("2 GB", 2 * 10**9),
                                       ("1.5GiB", 3 * 2**29), ("100", 100), ("64kb", 64_000)])
def test_byte_counts_take_units(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["2 parsecs", "-5", "0", 0, "GiB", "", True, "1e9"])
def test_a_bad_byte_count_says_what_is_allowed(bad):
    with pytest.raises(ValueError, match="byte count"):
        parse_bytes(bad)
