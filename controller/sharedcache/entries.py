"""How a shared entry is named and sealed: HMAC-SHA256, bound to its name and its lifetime.

Pure (no I/O, no database client), so the rules a reader applies to what it finds
are tested on their own:

- **names** are ``<prefix><kind>:<hex>``, the hex an HMAC of the whole key (kind,
  registry, repository, tag, credential fingerprint, ...) under a key derived from
  the secret. Whoever can read the database learns neither the images nor the
  registries looked up, and cannot test guesses of a password against a
  fingerprint; and no two keys that differ in any part share a name;
- **entries** are ``MAGIC | MAC | written-at | ttl | value``, the MAC an
  HMAC-SHA256 (under a second derived key) over the entry's *name* and everything
  after the MAC. An entry copied under another name (another repository's tag,
  another credential set's failure) does not verify there, and one replayed past
  the lifetime it was written with is refused even if the database kept it
  (``expired``): the writer's clock, signed, not the database's TTL, decides.

A reader that holds no key can only verify nothing, so there is no unauthenticated
mode: without a key, no tier.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass

from controller.registry.cache import SharedKey

MAGIC = b"bg1"
HEADER = struct.Struct(">dd")  # written at (Unix time), lifetime (seconds)
MAC_SIZE = hashlib.sha256().digest_size
OVERHEAD = len(MAGIC) + MAC_SIZE + HEADER.size
#: The shortest secret accepted: 256 bits, as HMAC-SHA256's own key.
MIN_SECRET_BYTES = 32
#: Clocks of two replicas may disagree by this much before an entry counts as expired
#: (or as written in the future).
CLOCK_SKEW = 5.0


class Rejected(Exception):
    """An entry a reader must ignore; ``reason`` is the metric's label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Keys:
    """The two keys derived from one secret: one names entries, one authenticates them."""

    names: bytes
    mac: bytes

    @classmethod
    def derive(cls, secret: bytes) -> Keys:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the key is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
        return cls(
            names=hmac.new(secret, b"baseguard shared cache: names", hashlib.sha256).digest(),
            mac=hmac.new(secret, b"baseguard shared cache: entries", hashlib.sha256).digest(),
        )


def name(keys: Keys, prefix: str, key: SharedKey) -> str:
    """The database key of ``key``: the kind in clear (for sizing), the rest an HMAC."""
    text = json.dumps(list(key), separators=(",", ":"), ensure_ascii=True).encode()
    return f"{prefix}{key[0]}:{hmac.new(keys.names, text, hashlib.sha256).hexdigest()[:40]}"


def _mac(keys: Keys, entry_name: str, rest: bytes) -> bytes:
    return hmac.new(keys.mac, entry_name.encode() + b"\0" + rest, hashlib.sha256).digest()


def seal(keys: Keys, entry_name: str, value: bytes, *, now: float, ttl: float) -> bytes:
    """The entry to store under ``entry_name``: ``value`` authenticated, with its lifetime."""
    rest = HEADER.pack(now, ttl) + value
    return MAGIC + _mac(keys, entry_name, rest) + rest


def unseal(keys: Keys, entry_name: str, blob: bytes, *, now: float) -> tuple[bytes, float]:
    """``(value, age)`` of an entry read from ``entry_name``; :class:`Rejected` when it is
    not one this key wrote there (``mac``), not an entry (``malformed``), or past the
    lifetime it was written with (``expired``)."""
    if len(blob) < OVERHEAD or not blob.startswith(MAGIC):
        raise Rejected("malformed")
    mac, rest = blob[len(MAGIC) : len(MAGIC) + MAC_SIZE], blob[len(MAGIC) + MAC_SIZE :]
    if not hmac.compare_digest(mac, _mac(keys, entry_name, rest)):
        raise Rejected("mac")
    written, ttl = HEADER.unpack_from(rest)
    age = now - written
    if age > ttl + CLOCK_SKEW or age < -CLOCK_SKEW:
        raise Rejected("expired")
    return rest[HEADER.size :], max(age, 0.0)
