"""From sites to edits: what each reference becomes, asking the registry only what it must.

The choice is :mod:`controller.fix.choose`'s; this module fetches the facts it
needs through a :class:`Lookups` (the registry, or nothing ``--offline``) and
writes the result back in the spelling the file used: the name as written,
the new tag, the new digest. A site whose new reference cannot be resolved
completely is left as it is, with a note that says why: a half-fixed reference
(a new tag still carrying the old tag's digest) would be worse than none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from controller.errors import BaseguardError, InvalidReference
from controller.fix.choose import deprecation, newest_tag
from controller.fix.sites import Edit, Site, apply_edits, spell, split_reference
from controller.policy.evaluate import applicable
from controller.policy.facts import ObjectFacts
from controller.policy.model import CompiledPolicy
from controller.reference import Reference, parse

T = TypeVar("T")


@dataclass(frozen=True)
class Modes:
    """What to fix: ``pin`` adds digests, ``refresh`` renews them, ``update`` moves tags."""

    pin: bool = False
    refresh: bool = False
    update: bool = False


class Lookups(Protocol):
    """The registry facts a choice needs. Raises :class:`BaseguardError` when it cannot answer."""

    async def digest(self, ref: Reference) -> str:
        """The digest ``ref``'s tag names now (an index's own digest for a multi-arch tag)."""
        ...

    async def tags(self, ref: Reference) -> list[str]:
        """The tags of ``ref``'s repository."""
        ...


@dataclass(frozen=True)
class Change:
    """One reference rewritten: where, from what, to what."""

    site: Site
    old: str
    new: str
    edits: tuple[Edit, ...]


@dataclass
class FilePlan:
    """One file: its text, the text ``fix`` would write, the changes, and the notes."""

    source: str
    text: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unresolved: int = 0

    @property
    def new_text(self) -> str:
        return apply_edits(self.text, (e for c in self.changes for e in c.edits))


class Unresolved(Exception):
    """A site whose new reference could not be established; the message says why."""


def covering(site: Site, policies: Sequence[CompiledPolicy]) -> list[CompiledPolicy]:
    """The policies that judge ``site``, as ``check`` picks them for its object (namespace, match)."""
    facts = ObjectFacts(kind=site.kind, name=site.name, namespace=site.namespace, labels=site.labels)
    return applicable(policies, facts)


async def target(
    site: Site, modes: Modes, policies: Sequence[CompiledPolicy], lookups: Lookups | None
) -> tuple[str, str | None, str | None] | None:
    """``(name, tag, digest)`` the site should write, or ``None`` when it is fine as it is.

    Raises :class:`Unresolved` when the answer needs a registry fact it could not get.
    """
    try:
        ref = parse(site.image)
    except InvalidReference as exc:
        raise Unresolved(f"{exc}; not edited") from None
    name, tag, digest = split_reference(site.image)
    new_name, new_tag, new_digest = name, tag, digest
    fixed_digest = False
    if modes.update:
        if tag is None:
            raise Unresolved(f"{site.image} pins a digest and names no tag: no tag to update from")
        entry = deprecation(ref, policies)
        if entry is not None and entry.replacement:
            new_name, new_tag, replacement_digest = split_reference(entry.replacement)
            if parse(entry.replacement).name == ref.name:  # same repository: keep its spelling
                new_name = name
            new_tag = new_tag or tag  # a replacement repository alone: the same tag there
            if replacement_digest:
                new_digest, fixed_digest = replacement_digest, True
        else:
            if lookups is None:
                raise Unresolved(f"could not list the tags of {ref.name} (offline): not updated")
            newer = newest_tag(ref, await _ask(lookups.tags(ref)), policies)
            if newer is not None:
                new_tag = newer
            elif entry is not None:
                raise Unresolved(
                    f"{site.image} is deprecated and no newer tag of its variant is allowed; "
                    "name a replacement in the policy (bases.deprecated[].replacement)"
                )
    moved = (new_name, new_tag) != (name, tag)
    wants_digest = (moved and (digest is not None or modes.pin)) or (
        not moved and ((modes.pin and digest is None) or (modes.refresh and digest is not None and tag is not None))
    )
    if wants_digest and not fixed_digest:
        what = spell(new_name, new_tag, None)
        if lookups is None:
            raise Unresolved(f"could not resolve the digest of {what} (offline): not edited")
        new_digest = await _ask(lookups.digest(parse(what)))
    elif moved and not fixed_digest:
        new_digest = None
    result = (new_name, new_tag, new_digest)
    return None if result == (name, tag, digest) else result


async def _ask(work: Awaitable[T]) -> T:
    """A registry answer, or :class:`Unresolved` with the registry's reason."""
    try:
        return await work
    except BaseguardError as exc:
        raise Unresolved(f"{exc}: not edited") from None


def edits_for(site: Site, name: str, tag: str | None, digest: str | None) -> tuple[Edit, ...]:
    """The text edits that make ``site`` write ``name[:tag][@digest]``.

    A plain reference is one span. A kustomize entry changes the fields that differ,
    adding a missing one on a new line under the entry; :class:`Unresolved` when
    a field must be added to a flow-style entry.
    """
    if site.span is not None:
        return (Edit(site.span[0], site.span[1], spell(name, tag, digest)),)
    fields = site.kustomize
    assert fields is not None
    old_name = (fields.new_name or fields.name)[0]
    wanted = [
        ("newName", fields.new_name, name if name != old_name else None),
        ("newTag", fields.new_tag, tag if tag != (fields.new_tag[0] if fields.new_tag else None) else None),
        ("digest", fields.digest, digest if digest != (fields.digest[0] if fields.digest else None) else None),
    ]
    out: list[Edit] = []
    added: list[str] = []
    for key, held, value in wanted:
        if value is None:
            if key == "digest" and held is not None and digest is None:
                raise Unresolved(f"{site.where}: a new tag would keep the old digest; not edited")
            continue
        if held is not None:
            out.append(Edit(held[1], held[2], value))
        else:
            added.append(f"{fields.indent}{key}: {value}{fields.eol}")
    if added:
        if fields.insert_at is None:
            raise Unresolved(f"{site.where}: a flow-style entry cannot take a new field; not edited")
        text = "".join(added)
        if fields.lead:
            text = fields.lead + text[: -len(fields.eol)]
        out.append(Edit(fields.insert_at, fields.insert_at, text))
    return tuple(out)


async def plan_file(
    source: str,
    text: str,
    sites: Sequence[Site],
    notes: Sequence[str],
    modes: Modes,
    policies: Sequence[CompiledPolicy],
    lookups: Lookups | None,
) -> FilePlan:
    """The changes for one file's sites; what could not be resolved becomes a note."""
    plan = FilePlan(source, text, notes=list(notes))
    for site in sites:
        try:
            chosen = await target(site, modes, covering(site, policies), lookups)
            if chosen is None:
                continue
            edits = edits_for(site, *chosen)
        except Unresolved as exc:
            plan.notes.append(f"{site.source}:{site.line}: {site.where}: {exc}")
            plan.unresolved += 1
            continue
        plan.changes.append(Change(site, site.image, spell(*chosen), edits))
    return plan
