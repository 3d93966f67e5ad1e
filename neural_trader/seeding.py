"""Seeds derived from names: light (no torch), so a fully cached rerun can derive a slot's seeds."""

from __future__ import annotations

import hashlib

__all__ = ["seed_from"]


def seed_from(*keys: object) -> int:
    """A 63-bit seed derived from any printable keys; the same keys give the same seed."""
    digest = hashlib.blake2b("\x1f".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
