"""What both warm-ups share: one seed per replica and data seen by every replica."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neural_trader.streams import Streams

Seeds = int | Sequence[int]


def _as_streams(seeds: Seeds) -> Streams:
    """One replica per seed (an int is one replica): Streams raises on none, negative or repeated seeds."""
    values = [seeds] if isinstance(seeds, int) else list(seeds)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError("seeds must be an int or a non-empty sequence of ints (one per replica), "
                         f"got {seeds!r}")
    return Streams(values)


def _init_generators(streams: Streams) -> list[torch.Generator]:
    """Replica s's CPU generator for its initial weights, seeded with its seed: the same bits on every device."""
    return [torch.Generator().manual_seed(int(seed)) for seed in streams.seeds]


def _replicate(t: torch.Tensor, replicas: int, device: torch.device) -> torch.Tensor:
    """(n, ...) -> (S, n, ...) on `device`, one shared copy seen by every replica."""
    t = t.to(device)
    return t.unsqueeze(0).expand(replicas, *t.shape)
