"""Compute slots (tasks/slots.py): never more holders than slots; a freed slot goes to the stages others wait on, then trainings, plots last."""

from __future__ import annotations

import threading
import time

from tasks.slots import ComputeSlots


def _queued(slots: ComputeSlots, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(slots._queue) < n:
        assert time.monotonic() < deadline, f"{len(slots._queue)} of {n} threads queued"
        time.sleep(0.005)


def test_a_freed_slot_goes_to_what_others_wait_on_then_to_a_training_a_plot_last():
    slots, order = ComputeSlots(1), []

    def take(stage: str) -> None:
        with slots.hold(stage):
            order.append(stage)

    threads = []
    with slots.hold("window"):  # every slot busy: the others queue in this order
        for n, stage in enumerate(("plot", "evaluate", "train", "compare", "market_train", "train_shard"), 1):
            threads.append(threading.Thread(target=take, args=(stage,)))
            threads[-1].start()
            _queued(slots, n)
    for t in threads:
        t.join(10)
    assert order == ["evaluate", "compare", "train", "market_train", "train_shard", "plot"]
    assert slots.free == 1


def test_never_more_holders_than_slots():
    slots, lock, now, peak = ComputeSlots(2), threading.Lock(), [0], [0]

    def work(stage: str) -> None:
        with slots.hold(stage):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.01)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=work, args=(s,)) for s in ["train", "evaluate", "plot", "market_train"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and now[0] == 0 and slots.free == 2
