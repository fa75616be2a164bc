"""``BaseImagePolicyException`` objects: a team's exception to a policy; PURE.

A team that must keep an image past a policy's word for a while files an
exception in its own namespace instead of editing the platform's policy (which
it should not be allowed to edit). The two are RBAC-able apart: ``create`` on
``baseimagepolicyexceptions`` in one namespace grants nothing on policies.

What an exception may do is narrow on purpose:

* it waives findings about workloads **of its own namespace only**
  (:attr:`~controller.policy.model.Waiver.scope`); nothing it writes can reach
  another namespace, and it never covers an object outside the cluster (a
  Dockerfile judged without ``--namespace``);
* it names one policy: a ``ClusterBaseImagePolicy``, or a ``BaseImagePolicy``
  of its own namespace; optionally which rules, and always which images;
* it ends: ``until`` is required, and at most :data:`MAX_EXCEPTION_DAYS` after
  the day it is read (``today``): a longer one is refused, so an exception is
  renewed on purpose, never forgotten. Past ``until`` it waives nothing and
  says so (:func:`expired`);
* a namespace holds at most :data:`MAX_EXCEPTIONS_PER_NAMESPACE` of them
  (the store refuses the rest), which bounds what they add to every review of
  that namespace; other namespaces pay one dictionary lookup.

Unlike a policy, an exception whose edit does not compile is *not* kept at its
last good version: keeping it would keep a waiver nobody can read any more in
force. It waives nothing until fixed (``Ready=False`` with the field path).

A waived finding is shown, never hidden: its ``waived`` text ends with
``(BaseImagePolicyException <namespace>/<name>)``.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from controller.errors import PolicyError
from controller.policy.compile import DEFAULT_NAMESPACE, calendar_date, image_globs
from controller.policy.model import (
    API_VERSION,
    EXCEPTION_KIND,
    NAMESPACED_KIND,
    CompiledPolicy,
    RuleCode,
    Waiver,
    policy_key,
)
from controller.policy.schema import (
    DNS_SUBDOMAIN,
    in_document_order,
    schema_problems,
    to_plain,
)

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "MAX_EXCEPTIONS_PER_NAMESPACE",
    "MAX_EXCEPTION_DAYS",
    "CompiledException",
    "attach",
    "check_exception",
    "compile_exception",
    "compile_exception_checked",
    "exception_schema",
    "expired",
]

SCHEMA_RESOURCE = "exception-schema.yaml"

#: The longest an exception may run, counted from the day it is read.
MAX_EXCEPTION_DAYS = 90
#: Exception objects one namespace may hold: each one is tried for every image of
#: every review of that namespace.
MAX_EXCEPTIONS_PER_NAMESPACE = 64

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class CompiledException:
    """One exception object, ready to attach to the policy it names."""

    name: str
    namespace: str
    policy_kind: str
    policy_name: str
    waiver: Waiver
    uid: str = ""
    generation: int = 0

    @property
    def key(self) -> str:
        """Its store key: ``BaseImagePolicyException/<namespace>/<name>``."""
        return policy_key(EXCEPTION_KIND, self.namespace, self.name)

    @property
    def title(self) -> str:
        return f"{EXCEPTION_KIND} {self.namespace}/{self.name}"

    @property
    def policy_key(self) -> str:
        """The store key of the policy it names (a namespaced one: in this namespace)."""
        where = self.namespace if self.policy_kind == NAMESPACED_KIND else None
        return policy_key(self.policy_kind, where, self.policy_name)

    @property
    def policy_title(self) -> str:
        where = f"{self.namespace}/" if self.policy_kind == NAMESPACED_KIND else ""
        return f"{self.policy_kind} {where}{self.policy_name}"


def exception_schema() -> dict[str, Any]:
    """A fresh copy of the ``openAPIV3Schema`` of the exception CRD."""
    return json.loads(json.dumps(_schema()))  # type: ignore[no-any-return]


@functools.cache
def _schema() -> dict[str, Any]:
    text = importlib.resources.files("controller.policy").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    import jsonschema

    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(_schema())
    return validator


def _identity_errors(doc: Mapping[str, Any]) -> list[PolicyError]:
    errors: list[PolicyError] = []
    if doc.get("apiVersion") != API_VERSION:
        errors.append(
            PolicyError("apiVersion", f"expected {API_VERSION!r}, got {doc.get('apiVersion')!r}")
        )
    if doc.get("kind") != EXCEPTION_KIND:
        errors.append(PolicyError("kind", f"expected {EXCEPTION_KIND!r}, got {doc.get('kind')!r}"))
    metadata = doc.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    name = meta.get("name")
    if name is None or name == "":
        errors.append(PolicyError("metadata.name", "required field is missing"))
    elif not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errors.append(
            PolicyError(
                "metadata.name",
                f"invalid name {name!r}: lower-case letters, digits, '-' and '.', at most 253 characters",
            )
        )
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
    ):
        errors.append(
            PolicyError(
                "metadata.namespace",
                f"invalid namespace {namespace!r}: lower-case letters, digits and '-', at most 63 characters",
            )
        )
    return errors


def _covered(path: str, faulted: Sequence[str]) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in faulted if p)


def compile_exception_checked(
    doc: Mapping[str, Any], *, today: dt.date
) -> tuple[CompiledException | None, list[PolicyError]]:
    """The compiled exception and every error (schema first, then semantic), in one pass.

    ``today`` is the day it is read: ``until`` may be at most
    :data:`MAX_EXCEPTION_DAYS` after it. An ``until`` already past is *not* an
    error (the exception compiles and waives nothing; :func:`expired` says so).
    """
    plain = to_plain(doc)
    if not isinstance(plain, dict):
        return None, [PolicyError("", "an exception must be a mapping")]
    errors = _identity_errors(plain)
    errors += [PolicyError(where, reason) for where, reason in schema_problems(plain, _validator())]
    faulted = [e.path for e in errors]
    raw_meta, raw_spec = plain.get("metadata"), plain.get("spec")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    semantic: list[PolicyError] = []
    images, found = image_globs(spec.get("images"), "spec.images")
    semantic += found
    until, found = calendar_date(spec.get("until"), "spec.until")
    semantic += found
    latest = today + dt.timedelta(days=MAX_EXCEPTION_DAYS)
    if until is not None and until > latest:
        semantic.append(
            PolicyError(
                "spec.until",
                f"{until.isoformat()} is more than {MAX_EXCEPTION_DAYS} days away (the latest is "
                f"{latest.isoformat()}): an exception is time-boxed; file a new one when it ends",
            )
        )
    errors += in_document_order(plain, [e for e in semantic if not _covered(e.path, faulted)])
    if errors:
        return None, errors
    assert until is not None
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    name = str(meta["name"])
    target = spec["policy"]
    rules = spec.get("rules")
    reason = spec.get("reason")
    source = f"{EXCEPTION_KIND} {namespace}/{name}"
    generation = meta.get("generation")
    return (
        CompiledException(
            name=name,
            namespace=namespace,
            policy_kind=str(target["kind"]),
            policy_name=str(target["name"]),
            waiver=Waiver(
                images=images,
                namespaces=None,
                until=until,
                reason=reason if isinstance(reason, str) else "",
                rules=frozenset(RuleCode(r) for r in rules) if isinstance(rules, list) else None,
                scope=namespace,
                source=source,
            ),
            uid=str(meta.get("uid") or ""),
            generation=generation if isinstance(generation, int) else 0,
        ),
        [],
    )


def check_exception(doc: Mapping[str, Any], *, today: dt.date) -> list[PolicyError]:
    """Every error of one exception document, in document order."""
    return compile_exception_checked(doc, today=today)[1]


def compile_exception(doc: Mapping[str, Any], *, today: dt.date) -> CompiledException:
    """Compile one exception document; raise its first :class:`PolicyError` if it has any."""
    compiled, errors = compile_exception_checked(doc, today=today)
    if errors:
        raise errors[0]
    assert compiled is not None
    return compiled


def expired(exception: CompiledException, today: dt.date) -> str | None:
    """Why ``exception`` waives nothing any more, if its ``until`` is past."""
    until = exception.waiver.until
    if today <= until:
        return None
    return f"expired on {until.isoformat()}: it waives nothing (file a new one if it is still needed)"


def attach(
    policies: Iterable[CompiledPolicy], exceptions: Iterable[CompiledException]
) -> tuple[CompiledPolicy, ...]:
    """``policies`` with each exception filed under the policy it names, by its namespace.

    An exception naming no policy in force changes nothing. A policy no
    exception names is returned as the very object given.
    """
    by_policy: dict[str, dict[str, list[Waiver]]] = {}
    for exc in sorted(exceptions, key=lambda e: e.key):
        by_policy.setdefault(exc.policy_key, {}).setdefault(exc.namespace, []).append(exc.waiver)
    out: list[CompiledPolicy] = []
    for policy in policies:
        granted = by_policy.get(policy_key(policy.kind, policy.namespace, policy.name))
        if granted:
            policy = replace(
                policy,
                granted=MappingProxyType({ns: tuple(ws) for ns, ws in granted.items()}),
            )
        out.append(policy)
    return tuple(out)


def namespace_full(namespace: str, others: int) -> PolicyError | None:
    """Why one more exception may not go into ``namespace`` holding ``others`` already."""
    if others < MAX_EXCEPTIONS_PER_NAMESPACE:
        return None
    return PolicyError(
        "metadata.name",
        f"namespace {namespace} already holds {others} exceptions, the most one namespace may "
        f"hold ({MAX_EXCEPTIONS_PER_NAMESPACE}); this one is not applied: merge or delete expired ones",
    )


def is_exception(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == EXCEPTION_KIND

