"""Every random stream is derived from (seed, site, round, purpose), never global state,
so the fast engine and Flower's engine (other processes, other order) draw the same numbers."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the experiment seed and a path such as ('cleveland', 3, 'batches')."""
    text = "/".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
