"""How many replicas train in one batch: the trainer's memory per replica, a budget, and replica blocks.

A cell of S replicas trains in blocks of replicas, each block one batched
`train.fit`, so a study larger than memory still runs (seeds.count 4096 on a
24 GiB machine, or a GPU's memory). Blocks start on multiples of
`seeding.SHARD_ALIGN`, as seed shards do; replica r's initial weights, data and
streams are keyed on r alone, and the trader's kernels are lane-padded
(`models.LANES`), so blocks joined in order are one batch's bytes.

The budget is `runtime.max_batch_bytes` where set, else derived from the memory
free when the cell starts: half of it (CUDA: `torch.cuda.mem_get_info`; CPU:
available memory), shared by the `runtime.max_workers` stage bodies that may
train at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from typing import TYPE_CHECKING, Any

from neural_trader.seeding import SHARD_ALIGN

if TYPE_CHECKING:  # torch is imported where a size needs it: the config validates without it
    import torch

__all__ = ["TrainShape", "trainer_bytes", "evaluation_bytes", "replica_blocks", "batch_budget", "parse_bytes", "free_bytes",
           "MemoryBudgetError", "format_bytes", "BUDGET_KEY"]

BUDGET_KEY = "runtime.max_batch_bytes"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
#: The estimate's margin over the tensors it counts: allocator rounding, small temporaries, the history.
MARGIN = 1.25


class MemoryBudgetError(ValueError):
    """A batch of the smallest allowed block does not fit the memory budget."""


@dataclass(frozen=True)
class TrainShape:
    """What one replica's training holds: rows, validation rows, lag, hidden units, batch size, dropout."""

    rows: int
    valid_rows: int
    lag: int
    hidden: int
    batch_size: int
    dropout: float = 0.0


def trainer_bytes(shape: TrainShape) -> int:
    """Peak bytes one replica takes in `trader.train_trader` (its hand-written step), float32, margin included.

    Counts the tensors the trainer holds per replica: the training and
    validation windows, the stepper's transposed copy, the epoch's shuffled
    layout and its int64 index, the permuter's buffers (2**bits >= rows int32
    values, three of them, a mask and an int64 output), the dropout noise and
    the words it is made from, one step's temporaries and the validation
    forward pass; times MARGIN.
    """
    from neural_trader.models import lane_padded

    n, v, lag, h = shape.rows, shape.valid_rows, shape.lag, shape.hidden
    width = lane_padded(min(shape.batch_size, n))
    steps = -(-n // shape.batch_size)
    domain = 1 << max(5, (n - 1).bit_length())
    per_value = 4 if domain <= 1 << 20 else 8
    windows = 4 * (lag + 1) * (n + v)
    stepper = 4 * (lag + 1) * (n + 1) + 4 * (lag + 1) * steps * width + 8 * steps * width
    permuter = 3 * per_value * domain + domain + 8 * n
    packed = round(256 * (1 - shape.dropout)) == 128  # one bit a unit (`TraderNet.sample_noise`)
    noise_bytes = n * (-(-h // 8) if packed else h) if shape.dropout > 0 else 0
    noise = noise_bytes + 5 * noise_bytes  # the bytes, and the int64 words and their scratch they come from
    step = 4 * width * (6 * h + 8)
    valid = 4 * lane_padded(v) * (3 * h + 4)
    return int(MARGIN * (windows + stepper + permuter + noise + step + valid))


def evaluation_bytes(test_rows: int, train_rows: int, lag: int, hidden: int) -> int:
    """Peak bytes one replica takes in `evaluate.seed_metrics`, margin included.

    The windows (float32), a forward pass's hidden units over a chunk of at
    most 65,536 rows, and `policy_metrics`' float64 arrays (positions, P&L,
    its square, signs, a copy of the returns: about ten a test row).
    """
    from neural_trader.evaluate import REPLICA_CHUNK

    windows = 4 * (lag + 1) * (test_rows + train_rows)
    forward = 4 * (3 * hidden + 4) * min(max(test_rows, train_rows), REPLICA_CHUNK)
    metrics = 8 * 10 * test_rows + 4 * 2 * train_rows
    return int(MARGIN * (windows + forward + metrics))


def replica_blocks(count: int, per_replica: int, budget: int, *, key: str = BUDGET_KEY) -> list[tuple[int, int]]:
    """[lo, hi) blocks covering replicas 0..count, each within `budget` bytes, on SHARD_ALIGN boundaries.

    Raises MemoryBudgetError, naming `key` and the bytes needed, when not even
    the smallest block (SHARD_ALIGN replicas, or all of them if fewer) fits.
    """
    if count < 1 or per_replica < 1:
        raise ValueError(f"count and per_replica must be >= 1, got {count}, {per_replica}")
    smallest = min(count, SHARD_ALIGN)
    if smallest * per_replica > budget:
        raise MemoryBudgetError(
            f"{key}: a block of {smallest} replicas needs {format_bytes(smallest * per_replica)} "
            f"({format_bytes(per_replica)} a replica), more than the budget of {format_bytes(budget)}; "
            f"allowed: a size of at least {smallest * per_replica} bytes, or fewer rows per replica")
    size = max(SHARD_ALIGN, budget // per_replica // SHARD_ALIGN * SHARD_ALIGN)
    return [(lo, min(lo + size, count)) for lo in range(0, count, size)]


def parse_bytes(value: int | str) -> int:
    """A byte count from an int or a string with a unit: 2000000, '512MiB', '2 GB', '1.5GiB'."""
    if isinstance(value, bool):
        raise ValueError(f"expected a byte count, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match.group(2).lower() if match else None
        if unit not in _UNITS:
            raise ValueError(f"expected a byte count such as 2000000, '512MiB' or '2GB' (units: "
                             f"{', '.join(u for u in _UNITS if u)}), got {value!r}")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise ValueError(f"expected a byte count >= 1, got {value!r}")
    return size


def batch_budget(runtime: Any, device: torch.device) -> int:
    """Bytes one training batch may take: `runtime.max_batch_bytes`, else half the free memory over max_workers."""
    if runtime.max_batch_bytes is not None:
        return int(runtime.max_batch_bytes)
    return free_bytes(device) // 2 // runtime.max_workers


def free_bytes(device: torch.device) -> int:
    """Memory free for new tensors on `device`: CUDA's free memory, or the CPU's available memory."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil is optional: sysconf knows the free pages on Linux
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def format_bytes(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
