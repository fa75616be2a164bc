"""``spec.trust``: who must have signed an image, or the bases beneath it, compiled once.

PURE (no I/O): the keys are parsed here (``cryptography`` on the policy's own
PEM text), a keyless identity is kept as text and the trusted root it names is
looked up by whoever verifies (the root is a file the adapter read at start).

What must be signed is decided here too, from facts already gathered
(:func:`subjects`): the admitted image (``appliesTo: Image``), every base its
lineage finds whose layers are not contradicted (``Bases``), or both (``All``),
narrowed by ``images`` globs on the repository. The adapter fetches signatures
for exactly those subjects and hands the answers back in
:attr:`~controller.policy.facts.ImageFacts.trust`, keyed by :func:`answer_key`,
so the evaluator never looks anything up.

Every authority carries a :attr:`AuthoritySpec.fingerprint`: the SHA-256 of
everything that decides a verification under it (its name, each key's
SubjectPublicKeyInfo and window, the keyless issuer, identity and root name).
Verification results are remembered by (digest, fingerprint), so a namespaced
policy's authority can only ever meet results computed for that very authority.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller.globs import GlobSet
from controller.lineage.model import Lineage
from controller.trust.keys import InvalidKey, TrustedKey, load_key

#: The bounds the schema repeats (``maxItems``): each authority and key costs a
#: verification per artifact examined, so their product bounds one image's CPU.
MAX_AUTHORITIES = 16
MAX_KEYS = 8
MAX_ATTESTATIONS = 8
DEFAULT_ROOT = "default"


class AppliesTo(StrEnum):
    """Which images of a lineage must be signed."""

    IMAGE = "Image"
    BASES = "Bases"
    ALL = "All"


@dataclass(frozen=True)
class KeylessSpec:
    """A keyless identity as written; the root is named, read by the adapter."""

    issuer: str
    subject: str | None = None
    subject_regexp: str | None = None
    trusted_root: str = DEFAULT_ROOT


@dataclass(frozen=True)
class AuthoritySpec:
    """One authority: ``keys`` or ``keyless`` (never both)."""

    name: str
    keys: tuple[TrustedKey, ...] = ()
    keyless: KeylessSpec | None = None
    fingerprint: str = ""

    @property
    def describe(self) -> str:
        """How messages name it: ``authority platform (key platform[0])``."""
        if self.keyless is not None:
            who = self.keyless.subject or f"/{self.keyless.subject_regexp}/"
            return f"authority {self.name} (keyless {who} from {self.keyless.issuer})"
        return f"authority {self.name} (keys {', '.join(k.name for k in self.keys)})"


@dataclass(frozen=True)
class AttestationSpec:
    """An attestation required by predicate type, signed by one of ``authorities``."""

    predicate_type: str
    authorities: tuple[AuthoritySpec, ...]


@dataclass(frozen=True)
class TrustPolicy:
    """``spec.trust`` compiled."""

    authorities: tuple[AuthoritySpec, ...]
    images: GlobSet | None = None
    applies_to: AppliesTo = AppliesTo.IMAGE
    attestations: tuple[AttestationSpec, ...] = ()


@dataclass(frozen=True)
class TrustSubject:
    """One image that must be signed: level 0 is the admitted image, 1.. its bases.

    ``digests`` are the digests a signature may be over: an index's and its
    platform manifest's (cosign signs what the tag resolved to; either vouches).
    """

    name: str
    registry: str
    repository: str
    display: str
    depth: int
    digests: tuple[str, ...]
    note: str = ""  # why a base has no digest (the lineage's note): said, never skipped


AnswerKey = tuple[str, str, str, str]


def answer_key(subject: TrustSubject, digest: str, authority: AuthoritySpec, predicate: str | None) -> AnswerKey:
    """How answers are filed: (repository, digest, authority fingerprint, predicate type or '')."""
    return (subject.name, digest, authority.fingerprint, predicate or "")


# ------------------------------------------------------------------------- subjects


def subjects(trust: TrustPolicy, lineage: Lineage | None) -> list[TrustSubject]:
    """The images ``trust`` says must be signed, from the facts gathered; none without a lineage.

    Bases are the levels of every platform whose layers are not contradicted
    (a false claim is ``lineage-mismatch``'s, and its signature says nothing of
    this image); a base met on several platforms is one subject with each digest.
    """
    if lineage is None or lineage.failure is not None:
        return []
    found: dict[tuple[int, str], TrustSubject] = {}
    ref = lineage.reference
    if trust.applies_to in (AppliesTo.IMAGE, AppliesTo.ALL) and _wanted(trust, ref.name):
        digests = [d for d in (lineage.digest, ref.digest) if d]
        digests += [p.levels[0].digest for p in lineage.platforms if p.levels and p.levels[0].digest]
        found[(0, ref.name)] = TrustSubject(
            ref.name, ref.registry, ref.repository, ref.normalized, 0, tuple(dict.fromkeys(digests))
        )
    if trust.applies_to in (AppliesTo.BASES, AppliesTo.ALL):
        for platform in lineage.platforms:
            for depth, level in enumerate(platform.ancestors, 1):
                if level.verified is False:
                    break  # above a contradicted claim nothing is this image's ancestry
                base = level.reference
                if base is None or not _wanted(trust, base.name):
                    continue
                # Only what was fetched: a claimed digest nobody could read vouches for nothing.
                digests = [d for d in (level.digest, base.digest) if d] if level.digest else []
                key = (depth, base.name)
                known = found.get(key)
                merged = tuple(dict.fromkeys([*(known.digests if known else ()), *digests]))
                found[key] = TrustSubject(
                    base.name, base.registry, base.repository, base.normalized, depth, merged,
                    level.note if not merged else "",
                )
    return list(found.values())  # one without digests is judged lookup-failed, never skipped


def _wanted(trust: TrustPolicy, name: str) -> bool:
    return trust.images is None or trust.images.matches(name)


# ------------------------------------------------------------------------- compiling


def compile_trust(
    value: Any,
    path: str,
    fail: Callable[[str, str], None],
    image_globs: Callable[[Any, str], GlobSet | None],
) -> TrustPolicy | None:
    """``spec.trust`` compiled, reporting each problem by its field path through ``fail``.

    ``image_globs`` is the compiler's reader for repository globs, so ``images``
    is read (and refused) in the same words as ``bases.allowed[].image``.
    """
    if not isinstance(value, dict):
        return None
    raw = value.get("authorities")
    items = raw if isinstance(raw, list) else []
    if not items:
        fail(f"{path}.authorities", "must name at least one authority")
    authorities: list[AuthoritySpec] = []
    seen: set[str] = set()
    for index, item in enumerate(items[:MAX_AUTHORITIES]):
        here = f"{path}.authorities[{index}]"
        if not isinstance(item, dict):
            continue
        authority = _authority(item, here, fail)
        if authority is None:
            continue
        if authority.name in seen:
            fail(f"{here}.name", f"authority {authority.name!r} is named twice")
            continue
        seen.add(authority.name)
        authorities.append(authority)
    if len(items) > MAX_AUTHORITIES:
        fail(f"{path}.authorities", f"{len(items)} authorities, more than {MAX_AUTHORITIES}")
    by_name = {a.name: a for a in authorities}
    attestations: list[AttestationSpec] = []
    raw_att = value.get("attestations")
    att_items = raw_att if isinstance(raw_att, list) else []
    if len(att_items) > MAX_ATTESTATIONS:
        fail(f"{path}.attestations", f"{len(att_items)} attestations, more than {MAX_ATTESTATIONS}")
    for index, item in enumerate(att_items[:MAX_ATTESTATIONS]):
        here = f"{path}.attestations[{index}]"
        if not isinstance(item, dict):
            continue
        predicate = item.get("predicateType")
        if not isinstance(predicate, str) or not predicate:
            fail(f"{here}.predicateType", "must name a predicate type")
            continue
        names = item.get("authorities")
        chosen: list[AuthoritySpec] = []
        if isinstance(names, list) and names:
            for i, name in enumerate(names):
                if name not in by_name:
                    fail(
                        f"{here}.authorities[{i}]",
                        f"no authority named {name!r} in {path}.authorities "
                        f"({', '.join(sorted(by_name)) or 'none'})",
                    )
                else:
                    chosen.append(by_name[name])
        else:
            chosen = list(authorities)
        attestations.append(AttestationSpec(predicate, tuple(chosen)))
    applies = value.get("appliesTo")
    applies_to = AppliesTo.IMAGE
    if applies is not None:
        try:
            applies_to = AppliesTo(applies)
        except ValueError:
            fail(f"{path}.appliesTo", f"unsupported value {applies!r}: must be one of Image, Bases, All")
    return TrustPolicy(
        authorities=tuple(authorities),
        images=image_globs(value.get("images"), f"{path}.images"),
        applies_to=applies_to,
        attestations=tuple(attestations),
    )


def _authority(item: Mapping[str, Any], here: str, fail: Callable[[str, str], None]) -> AuthoritySpec | None:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        fail(f"{here}.name", "an authority needs a name")
        return None
    keys, keyless = item.get("keys"), item.get("keyless")
    if (keys is None) == (keyless is None):
        fail(here, "an authority has exactly one of keys, keyless")
        return None
    if keyless is not None:
        spec = _keyless(keyless, f"{here}.keyless", fail)
        if spec is None:
            return None
        return AuthoritySpec(name, keyless=spec, fingerprint=_fingerprint(name, (), spec))
    entries = keys if isinstance(keys, list) else []
    if not entries:
        fail(f"{here}.keys", "must list at least one key")
        return None
    if len(entries) > MAX_KEYS:
        fail(f"{here}.keys", f"{len(entries)} keys, more than {MAX_KEYS}")
        return None
    loaded: list[TrustedKey] = []
    for i, entry in enumerate(entries):
        at = f"{here}.keys[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("publicKey"), str):
            fail(f"{at}.publicKey", "must be a PEM public key")
            continue
        bounds: dict[str, dt.datetime | None] = {}
        for label in ("notBefore", "notAfter"):
            bounds[label] = _moment(entry.get(label), f"{at}.{label}", fail)
        try:
            loaded.append(
                load_key(
                    f"{name}[{i}]",
                    entry["publicKey"],
                    not_before=bounds["notBefore"],
                    not_after=bounds["notAfter"],
                )
            )
        except InvalidKey as exc:
            fail(f"{at}.notAfter" if "notAfter is before" in exc.message else f"{at}.publicKey", exc.message)
    if len(loaded) < len(entries):
        return None
    return AuthoritySpec(name, keys=tuple(loaded), fingerprint=_fingerprint(name, tuple(loaded), None))


def _keyless(value: Any, here: str, fail: Callable[[str, str], None]) -> KeylessSpec | None:
    if not isinstance(value, dict):
        fail(here, "must be an object with issuer and subject or subjectRegExp")
        return None
    issuer = value.get("issuer")
    subject, pattern = value.get("subject"), value.get("subjectRegExp")
    if not isinstance(issuer, str) or not issuer:
        fail(f"{here}.issuer", "must name the OIDC issuer")
        return None
    if (subject is None) == (pattern is None):
        fail(here, "a keyless authority has exactly one of subject, subjectRegExp")
        return None
    if isinstance(pattern, str):
        import re

        try:
            re.compile(pattern)
        except re.error as exc:
            fail(f"{here}.subjectRegExp", f"{pattern!r} is not a regular expression ({exc})")
            return None
    root = value.get("trustedRoot")
    return KeylessSpec(
        issuer,
        subject if isinstance(subject, str) else None,
        pattern if isinstance(pattern, str) else None,
        root if isinstance(root, str) and root else DEFAULT_ROOT,
    )


def _moment(value: Any, path: str, fail: Callable[[str, str], None]) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # YAML reads an unquoted timestamp as one
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            fail(path, f"{value!r} is not an RFC 3339 time (2026-01-01T00:00:00Z)")
            return None
    else:
        fail(path, "must be an RFC 3339 time (2026-01-01T00:00:00Z)")
        return None
    if moment.tzinfo is None:
        fail(path, f"{value!s} has no time zone: write Z or an offset")
        return None
    return moment


def _fingerprint(name: str, keys: Sequence[TrustedKey], keyless: KeylessSpec | None) -> str:
    doc: dict[str, Any] = {"name": name}
    if keyless is not None:
        doc["keyless"] = [keyless.issuer, keyless.subject, keyless.subject_regexp, keyless.trusted_root]
    doc["keys"] = [
        [k.key_id, k.not_before.isoformat() if k.not_before else None,
         k.not_after.isoformat() if k.not_after else None]
        for k in keys
    ]
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint_of(authorities: Sequence[AuthoritySpec]) -> str:
    """The fingerprint of an authority set (sorted), for whoever keys by the set."""
    return hashlib.sha256("".join(sorted(a.fingerprint for a in authorities)).encode()).hexdigest()
