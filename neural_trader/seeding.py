"""Seeds derived from names, and seed shards: light (no torch), so a fully cached rerun can derive a slot's seeds."""

from __future__ import annotations

import hashlib

__all__ = ["seed_from", "SHARD_ALIGN", "max_shards", "shard_names", "shard_range"]


def seed_from(*keys: object) -> int:
    """A 63-bit seed derived from any printable keys; the same keys give the same seed."""
    digest = hashlib.blake2b("\x1f".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


#: Seed shards start on multiples of this many replicas. The CPU kernels vectorise across replicas in
#: 16 float lanes (AVX-512; AVX2's 8 divide it) and round a scalar tail differently, so a replica keeps
#: its bytes in a shard only if it sits in the same kind of lane as in the whole batch. Measured
#: 2026-12-01 on 64 and 300 replicas: every split on multiples of 16 equals the whole batch; splits
#: at 3, 5, 8, 12 or 40 do not (last-bit differences).
SHARD_ALIGN = 16


def max_shards(count: int) -> int:
    """The most seed shards `count` replicas can be split into: one per started block of SHARD_ALIGN."""
    return -(-count // SHARD_ALIGN)


def shard_names(shards: int) -> list[str]:
    """The names of a cell's seed shards: '1of3', '2of3', '3of3' (one name per shard, in order)."""
    return [f"{k}of{shards}" for k in range(1, shards + 1)]


def shard_range(count: int, shard: str) -> tuple[int, int]:
    """The replicas [lo, hi) of `count` that shard 'KofN' trains.

    The blocks of SHARD_ALIGN replicas are dealt out as evenly as they go, in
    order; the last shard ends at `count`. Replica r's generators are keyed on r
    alone, so the shards' rows joined in order are the rows of one batch.
    """
    k, sep, n = shard.partition("of")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n) <= max_shards(count)):
        raise ValueError(f"seed shard must be 'KofN' with 1 <= K <= N <= {max_shards(count)} "
                         f"({count} replicas in blocks of {SHARD_ALIGN}), got {shard!r}")
    k, n = int(k), int(n)
    size, extra = divmod(max_shards(count), n)
    first = (k - 1) * size + min(k - 1, extra)  # in blocks
    return first * SHARD_ALIGN, min(count, (first + size + (k <= extra)) * SHARD_ALIGN)
