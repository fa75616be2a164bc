"""Content digests (``algorithm:hex``): the one grammar every part of baseguard checks.

PURE. A digest is the only fact about an image that cannot lie, so what counts
as one must not depend on where it was read: an image reference, a policy's
``digests``, a base annotation, a registry header. The grammar is the OCI
image spec's, narrowed to the algorithms a registry can actually verify
(``opencontainers/go-digest``: sha256, sha384, sha512): a digest with any other
algorithm (``invaliddigest:…``) names nothing we could check, so it is refused
everywhere, and can never count as "pinned".
"""

from __future__ import annotations

import hashlib

#: The algorithms go-digest (and so Docker, containerd and the kubelet) can verify, with
#: the number of lower-case hex characters each one's encoded part has.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

_HEX = frozenset("0123456789abcdef")


def problem(text: str) -> str | None:
    """Why ``text`` is not a digest, or ``None`` when it is one."""
    algorithm, colon, encoded = text.partition(":")
    if not colon or not algorithm or not encoded:
        return f"{text!r} is not a digest: expected algorithm:hex, e.g. sha256:<64 hex characters>"
    length = ALGORITHMS.get(algorithm)
    if length is None:
        known = ", ".join(ALGORITHMS)
        return f"unsupported digest algorithm {algorithm!r} (supported: {known})"
    if len(encoded) != length or not _HEX.issuperset(encoded):
        return f"a {algorithm} digest is {length} lower-case hex characters"
    return None


def is_digest(text: object) -> bool:
    """Whether ``text`` is a digest of a supported algorithm (any non-string is not)."""
    return isinstance(text, str) and problem(text) is None


def compute(body: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``body`` under ``algorithm``; ``ValueError`` for an unsupported one."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
