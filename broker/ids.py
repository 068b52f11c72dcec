"""Identifiers: time-sortable job ids and unguessable lease tokens and API keys."""

from __future__ import annotations

import secrets

__all__ = ["new_id", "new_secret", "new_token"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str, now_ms: int) -> str:
    """`prefix_` + a ULID: 48 bits of milliseconds then 80 random bits, Crockford base32.

    Ids sort by creation time as strings, which keeps listings and logs in order.
    """
    value = (now_ms & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def new_token() -> str:
    """A lease token: fences reports from a worker whose lease has moved on."""
    return secrets.token_urlsafe(16)


def new_secret(prefix: str) -> str:
    """An API key secret; 256 random bits, so a fast hash is enough to store it."""
    return f"{prefix}-{secrets.token_urlsafe(32)}"
