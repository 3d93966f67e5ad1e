"""Compute slots: at most `runtime.max_workers` stage bodies compute at once in one process.

Prefect's thread runner hands a task its thread when it is submitted, and a task
submitted with `wait_for` holds that thread while it waits for its upstream.
With as many threads as compute slots, a waiting task kept ready work from
running (measured: an independent train task waited for an unrelated one). So
the runner gets spare threads to wait in (`flows.runners`), and the slot is
taken here, only once a task's inputs are ready and its body is about to run.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_SLOTS: dict[int, threading.BoundedSemaphore] = {}


def compute_slot(count: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore of `count` slots (one per distinct count), used as a context manager."""
    with _LOCK:
        return _SLOTS.setdefault(count, threading.BoundedSemaphore(count))
