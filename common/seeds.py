"""Seeds for each purpose (dropout per rank, lighting per batch, DALI per epoch), derived from the run's seed."""
from __future__ import annotations

import hashlib

SEED_LIMIT = 2**63 - 1


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed for one purpose (e.g. ("lighting", rank, batch)) derived from the run's seed."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & SEED_LIMIT
