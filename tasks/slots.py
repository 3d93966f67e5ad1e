"""Compute slots: at most `runtime.max_workers` stage bodies compute at once in one process; short stages first.

Prefect's thread runner hands a task its thread when it is submitted, and a task
submitted with `wait_for` holds that thread while it waits for its upstream.
With as many threads as compute slots, a waiting task kept ready work from
running (measured: an independent train task waited for an unrelated one). So
the runner gets spare threads to wait in (`flows.runners`), and the slot is
taken here, only once a task's inputs are ready and its body is about to run.

A freed slot goes first to the short stages that others wait on (generate,
window, evaluate, the comparisons), then to a training, and to plots last, each
rank in the order they came. So an evaluation and its comparison run as soon as
their inputs are ready, between trainings, instead of queueing behind every
training into the tail after the last one; a plot is a leaf that nothing waits on.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator

TRAININGS = frozenset({"train", "train_shard", "market_train"})


def _rank(stage: str) -> int:
    """1 for a training, 2 for a plot (nothing waits on one), 0 for the rest: short stages that others wait on."""
    return 1 if stage in TRAININGS else 2 if stage.endswith("plot") else 0

_LOCK = threading.Lock()
_SLOTS: dict[int, ComputeSlots] = {}


class ComputeSlots:
    """`count` slots; `hold(stage)` waits for one: short stages first, then trainings, plots last; each rank in turn."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int]] = []  # (rank, ticket): a heap, the next holder first
        self._tickets = itertools.count()

    @contextlib.contextmanager
    def hold(self, stage: str = "") -> Iterator[None]:
        with self._cond:
            me = (_rank(stage), next(self._tickets))
            heapq.heappush(self._queue, me)
            self._cond.wait_for(lambda: self.free > 0 and self._queue[0] == me)
            heapq.heappop(self._queue)
            self.free -= 1
            self._cond.notify_all()  # the next in line may find a slot free too
        try:
            yield
        finally:
            with self._cond:
                self.free += 1
                self._cond.notify_all()


def compute_slot(count: int, stage: str = "") -> contextlib.AbstractContextManager[None]:
    """A slot of the process-wide `count` slots (one set per distinct count) for a body of `stage`, as a context."""
    with _LOCK:
        return _SLOTS.setdefault(count, ComputeSlots(count)).hold(stage)
