"""Customer pseudonyms: the keyed hash that stands for a customer wherever BI tools read.

``customer_key`` = HMAC-SHA256 of the source id under GRADING_PSEUDONYM_KEY (first 32 hex
digits): stable for one key, not reversible without it. A customer's key is computed once,
when first extracted, and kept in ops.customer_keys.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(customer_id: str, key: bytes) -> str:
    """A keyed hash of a customer id: stable for one key, not reversible without it."""
    return hmac.new(key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The key's inner and outer padded forms (RFC 2104), with which a warehouse computes
    ``pseudonym`` in SQL as sha256(outer || sha256(inner || id)) - its own sha256 is all it needs.

    Secret material like the key itself: bind it, never log or store it.
    """
    block = 64  # SHA-256's block size in bytes
    padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)
