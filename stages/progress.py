"""runtime.progress as the trainer's `on_epoch`: a tqdm bar over each training run's epochs.

Keyed by no stage: a bar changes no output, as runtime.progress keys none.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from neural_trader.train import OnEpoch

__all__ = ["epoch_bar"]


def epoch_bar(show: bool, desc: str) -> OnEpoch | None:
    """A bar per `train.fit` call (opened at its epoch 0, gone when done), or None when not `show`."""
    if not show:
        return None
    bars: list[tqdm] = []

    def on_epoch(epoch: int, epochs: int, row: torch.Tensor) -> None:
        if epoch == 0:
            bars.append(tqdm(total=epochs, desc=desc, leave=False))
        bars[-1].update()
        if epoch + 1 == epochs:
            bars.pop().close()

    return on_epoch
