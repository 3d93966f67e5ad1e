"""Compute slots: at most `runtime.max_workers` stage bodies compute at once in one process; trainings first.

Prefect's thread runner hands a task its thread when it is submitted, and a task
submitted with `wait_for` holds that thread while it waits for its upstream.
With as many threads as compute slots, a waiting task kept ready work from
running (measured: an independent train task waited for an unrelated one). So
the runner gets spare threads to wait in (`flows.runners`), and the slot is
taken here, only once a task's inputs are ready and its body is about to run.

A freed slot goes to a waiting training first, then to the other stages, and
to plots last, each rank in the order they came: trainings are the long tasks,
and an evaluate or plot run ahead of one only moves the last training, and what
waits on it, later; a plot is a leaf that nothing waits on, while the
comparisons wait on every evaluation.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator

TRAININGS = frozenset({"train", "train_shard", "market_train"})  # stages served first


def _rank(stage: str) -> int:
    """0 for a training, 2 for a plot (nothing waits on one), 1 for the rest."""
    return 0 if stage in TRAININGS else 2 if stage.endswith("plot") else 1

_LOCK = threading.Lock()
_SLOTS: dict[int, ComputeSlots] = {}


class ComputeSlots:
    """`count` slots; `hold(stage)` waits for one: trainings first, plots last, else first come first served."""

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
