"""What both warm-ups share: generators per replica and data seen by every replica."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator]


def _as_generators(generator: Generators) -> list[torch.Generator]:
    gens = [generator] if isinstance(generator, torch.Generator) else list(generator)
    if not gens or not all(isinstance(g, torch.Generator) for g in gens):
        raise ValueError("generator must be a torch.Generator or a non-empty sequence of them (one per replica)")
    device = gens[0].device
    if any(g.device != device for g in gens):
        raise ValueError("all generators must live on the same device")
    return gens


def _replicate(t: torch.Tensor, replicas: int, device: torch.device) -> torch.Tensor:
    """(n, ...) -> (S, n, ...) on `device`, one shared copy seen by every replica."""
    t = t.to(device)
    return t.unsqueeze(0).expand(replicas, *t.shape)

