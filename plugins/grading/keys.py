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
