"""The policy CRD schema: validation with Kubernetes field paths, and the CRD objects.

``crd-schema.yaml`` beside this module is the one source of truth: the same
schema validates policy files here (``baseguard policy validate``) and is
embedded in the CRDs the apiserver enforces (:func:`crd_manifests`). Two things
the apiserver does differently are made up for here:

* it *prunes* unknown fields silently (a structural schema may not say
  ``additionalProperties: false``), so a typo such as ``mutatetoDigest`` would
  quietly do nothing; :func:`validate_document` reports every unknown field;
* it applies ``default``\\ s; jsonschema does not, so
  :mod:`controller.policy.compile` applies the same defaults.

The schema is read lazily from the package (never at import time) and cached.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import importlib.resources
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from controller import globs
from controller.errors import InvalidGlob, PolicyError
from controller.policy.model import (
    API_VERSION,
    CLUSTER_KIND,
    EXCEPTION_KIND,
    GROUP,
    NAMESPACED_KIND,
    VERSION,
)

if TYPE_CHECKING:
    import jsonschema

SCHEMA_RESOURCE = "crd-schema.yaml"

#: A name Kubernetes accepts for an object (DNS-1123 subdomain).
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: A namespace name (DNS-1123 label).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Path = tuple[str | int, ...]


@functools.cache
def _schema_text() -> str:
    return (
        importlib.resources.files("controller.policy").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    )


def openapi_schema() -> dict[str, Any]:
    """A fresh copy of the ``openAPIV3Schema`` (callers may change it freely).

    The JSON round trip also undoes YAML anchors, so the copy shares no nodes.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ten times faster
    loaded = yaml.load(_schema_text(), Loader=loader)
    copied: dict[str, Any] = json.loads(json.dumps(loaded))
    return copied


@functools.cache
def _schema() -> dict[str, Any]:
    """The parsed schema, shared by the validator and the unknown-field walk; never handed out."""
    return openapi_schema()


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    import jsonschema  # a tenth of a second: only paid when a policy is validated

    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(_schema())
    return validator


def to_plain(value: Any) -> Any:
    """``value`` as the apiserver would see it: dicts, lists, strings, numbers.

    YAML turns an unquoted ``until: 2026-03-31`` into a ``date`` where kubectl
    sends a string, and kopf hands over ``Mapping``\\ s that are not ``dict``\\ s;
    both are made plain JSON here so files and cluster objects validate alike.
    """
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def field_path(path: Sequence[str | int]) -> str:
    """Kubernetes-style field path: ``spec.bases.allowed[2].tags[0]``, ``matchLabels[app.kubernetes.io/name]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part}]"
    return out


# --- messages --------------------------------------------------------------------------

_JSON_TYPES = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "null": "null",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def glob_problem(pattern: str, alphabet: re.Pattern[str], what: str) -> str | None:
    """Why ``pattern`` is not a glob of ``alphabet`` (``what`` names it), or ``None``.

    Wraps :func:`controller.globs.check` with the hint a user needs most often:
    names are lower case.
    """
    try:
        globs.check(pattern, alphabet, what)
    except InvalidGlob as exc:
        reason = exc.message.replace(" in a image", " in an image")
        lowered = pattern.lower()
        if lowered != pattern and alphabet.match(lowered):
            return f"{reason} (names are lower case: {lowered!r})"
        return reason
    return None


def _glob_hint(alphabet: re.Pattern[str], what: str) -> Callable[[str], str]:
    return lambda value: glob_problem(value, alphabet, what) or f"bad glob {value!r}"


def _fixed(reason: str) -> Callable[[str], str]:
    return lambda value: f"{value!r} {reason}"


#: The schema's pattern for dates (``until``, ``enforceAfter``): the years 1970 to 2999.
DATE_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-[0-9]{2}-[0-9]{2}$"
_SHAPE_OF_A_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date_hint(value: str) -> str:
    """The compiler's words for a date the pattern refuses (out of range, or no date)."""
    if _SHAPE_OF_A_DATE.match(value):
        return f"{value!r} is out of range: a date must be between 1970-01-01 and 2999-12-31"
    return f"{value!r} is not a date: expected YYYY-MM-DD"


#: What each ``pattern`` of the schema means, in words a policy author can act on.
_PATTERN_HINTS: Mapping[str, Callable[[str], str]] = {
    globs.REPOSITORY_CHARS.pattern: _glob_hint(globs.REPOSITORY_CHARS, "repository pattern"),
    globs.TAG_CHARS.pattern: _glob_hint(globs.TAG_CHARS, "tag pattern"),
    globs.NAMESPACE_CHARS.pattern: _glob_hint(globs.NAMESPACE_CHARS, "namespace pattern"),
    globs.IMAGE_CHARS.pattern: _glob_hint(globs.IMAGE_CHARS, "image pattern"),
    DATE_PATTERN: _date_hint,
    r"^[0-9]+[hdw]$": _fixed(
        "is not a duration: expected a number and a unit h, d or w (e.g. 180d)"
    ),
    r"^sha(256:[0-9a-f]{64}|384:[0-9a-f]{96}|512:[0-9a-f]{128})$": _fixed(
        "is not a digest: expected sha256:, sha384: or sha512: and lower-case hex characters"
    ),
    r"^[a-z0-9._\-]+/[a-z0-9._\-]+(/[a-z0-9._\-]+)?$": _fixed(
        "is not a platform: expected os/arch or os/arch/variant in lower case (e.g. linux/arm64)"
    ),
}


def _reason(error: jsonschema.ValidationError) -> tuple[Path, str]:
    """One jsonschema error as (path, reason) in the words ``kubectl`` users know."""
    path: Path = tuple(error.absolute_path)
    kind = str(error.validator)
    expected: Any = error.validator_value
    instance: Any = error.instance
    if kind == "required":
        missing = next(
            (p for p in expected if p not in instance and error.message.startswith(repr(p))),
            next((p for p in expected if p not in instance), "?"),
        )
        return (*path, missing), "required field is missing"
    if kind == "type":
        wanted = " or ".join(
            _JSON_TYPES.get(t, t) for t in ([expected] if isinstance(expected, str) else expected)
        )
        return path, f"expected {wanted}, got {_type_of(instance)}"
    if kind == "enum":
        allowed = ", ".join(str(v) for v in expected)
        return path, f"unsupported value {instance!r}: must be one of {allowed}"
    if kind == "pattern":
        hint = _PATTERN_HINTS.get(expected)
        return path, hint(instance) if hint else f"{instance!r} does not match {expected!r}"
    if kind == "minLength":
        return path, "must not be empty"
    if kind == "minItems":
        return path, "must not be empty (leave the field out instead)"
    if kind == "maxItems":
        return path, f"has {len(instance)} entries, more than the {expected} allowed"
    if kind == "maxProperties":
        return path, f"has {len(instance)} entries, more than the {expected} allowed"
    if kind == "maxLength":
        return path, f"is {len(instance)} characters long, more than the {expected} allowed"
    if kind == "minimum":
        return path, f"must be at least {expected}, got {instance!r}"
    if kind == "maximum":
        return path, f"must be at most {expected}, got {instance!r}"
    if kind == "anyOf" and all(set(s) == {"required"} for s in expected):
        names = ", ".join(name for s in expected for name in s["required"])
        return path, f"must set at least one of: {names}"
    return path, error.message  # pragma: no cover - every keyword the schema uses is handled


# --- unknown fields --------------------------------------------------------------------


def _unknown_fields(value: Any, node: Mapping[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """Fields the schema does not know: the apiserver would drop them without a word."""
    if isinstance(value, dict) and node.get("type") == "object":
        properties: Mapping[str, Any] = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                yield from _unknown_fields(child, properties[key], (*path, key))
            elif isinstance(extra, Mapping):
                yield from _unknown_fields(child, extra, (*path, key))
            elif properties:
                close = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.6)
                lowered = [p for p in properties if p.lower() == key.lower()]
                guess = lowered or close
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                yield (*path, key), f"unknown field{hint}"
    elif (
        isinstance(value, list)
        and node.get("type") == "array"
        and isinstance(node.get("items"), Mapping)
    ):
        for index, child in enumerate(value):
            yield from _unknown_fields(child, node["items"], (*path, index))


def _document_order(value: Any, path: Path, out: dict[Path, int]) -> None:
    out[path] = len(out)
    if isinstance(value, dict):
        for key, child in value.items():
            _document_order(child, (*path, key), out)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _document_order(child, (*path, index), out)


def _position(order: Mapping[Path, int], path: Path) -> int:
    """Where ``path`` sits in the document; a missing field sorts right after its parent."""
    for end in range(len(path), -1, -1):
        if path[:end] in order:
            return order[path[:end]]
    return 0


_LAST_STEP = re.compile(r"(\.[^.\[\]]+|\[[^\]]*\])$")


def in_document_order(doc: Any, errors: Sequence[PolicyError]) -> list[PolicyError]:
    """``errors`` sorted by where their field is written in ``doc`` (a plain document)."""
    order: dict[Path, int] = {}
    _document_order(doc, (), order)
    by_path = {field_path(p): i for p, i in order.items()}

    def position(path: str) -> int:
        while path not in by_path:
            shorter = _LAST_STEP.sub("", path)
            if shorter == path:
                return 0
            path = shorter
        return by_path[path]

    return sorted(errors, key=lambda e: position(e.path))


# --- the document ----------------------------------------------------------------------


def _identity_errors(doc: Mapping[str, Any]) -> list[PolicyError]:
    errors: list[PolicyError] = []
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        errors.append(PolicyError("apiVersion", f"expected {API_VERSION!r}, got {api_version!r}"))
    kind = doc.get("kind")
    if kind not in (CLUSTER_KIND, NAMESPACED_KIND):
        errors.append(
            PolicyError(
                "kind", f"unsupported kind {kind!r}: must be {CLUSTER_KIND} or {NAMESPACED_KIND}"
            )
        )
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        errors.append(PolicyError("metadata.name", "required field is missing"))
        return errors
    name = metadata.get("name")
    if name is None or name == "":
        errors.append(PolicyError("metadata.name", "required field is missing"))
    elif not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errors.append(
            PolicyError(
                "metadata.name",
                f"invalid name {name!r}: lower-case letters, digits, '-' and '.', at most 253 characters",
            )
        )
    namespace = metadata.get("namespace")
    if (
        kind == NAMESPACED_KIND
        and namespace is not None
        and (
            not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
        )
    ):
        errors.append(
            PolicyError(
                "metadata.namespace",
                f"invalid namespace {namespace!r}: lower-case letters, digits and '-', at most 63 characters",
            )
        )
    return errors


def validate_document(doc: Mapping[str, Any]) -> list[PolicyError]:
    """Every structural error of one policy document, in document order.

    Checks ``apiVersion`` (``baseguard.io/v1alpha1``), ``kind``
    (``ClusterBaseImagePolicy`` or ``BaseImagePolicy``), ``metadata.name``, the
    CRD schema (types, enums, patterns, required fields) and unknown fields.
    A ``BaseImagePolicy`` may leave out ``metadata.namespace``: loaded from a
    file it lives in ``default``, as ``kubectl apply`` would put it.
    Semantic checks (globs, calendar dates, references) are
    :func:`controller.policy.compile.check_policy`'s.
    """
    plain = to_plain(doc)
    if not isinstance(plain, dict):
        return [PolicyError("", f"a policy must be a mapping, got {_type_of(plain)}")]
    errors = _identity_errors(plain)
    errors += [PolicyError(where, reason) for where, reason in schema_problems(plain, _validator())]
    return errors


def schema_problems(value: Any, validator: jsonschema.protocols.Validator) -> list[tuple[str, str]]:
    """``(field path, reason)`` for every problem of plain data under a JSON Schema.

    Shared by policies and policy test files, so both speak the same words:
    types, enums, patterns, required and unknown fields (with a guess at the
    intended name), in document order, one problem per field.
    """
    # A wrong type is the root cause: it goes first, and one error per field is enough.
    schema_errors = sorted(validator.iter_errors(value), key=lambda e: e.validator != "type")
    found: list[tuple[Path, str]] = [_reason(e) for e in schema_errors]
    schema = validator.schema
    if isinstance(schema, Mapping):
        found += list(_unknown_fields(value, schema, ()))
    order: dict[Path, int] = {}
    _document_order(value, (), order)
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for path, reason in sorted(found, key=lambda item: _position(order, item[0])):
        where = field_path(path)
        if where not in seen:
            seen.add(where)
            out.append((where, reason))
    return out


# --- the CRDs --------------------------------------------------------------------------

_KINDS: tuple[tuple[str, str, str, str], ...] = (
    # kind, plural, short name, scope
    (CLUSTER_KIND, "clusterbaseimagepolicies", "cbip", "Cluster"),
    (NAMESPACED_KIND, "baseimagepolicies", "bip", "Namespaced"),
)

_PRINTER_COLUMNS: tuple[dict[str, str], ...] = (
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Violations", "type": "integer", "jsonPath": ".status.audit.violations"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


#: ``kubectl get bipx``: what the exception names, until when, and whether it is in force.
_EXCEPTION_COLUMNS: tuple[dict[str, str], ...] = (
    {"name": "Policy", "type": "string", "jsonPath": ".spec.policy.name"},
    {"name": "Until", "type": "string", "jsonPath": ".spec.until"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def crd_manifests() -> list[dict[str, Any]]:
    """The three ``apiextensions.k8s.io/v1`` CustomResourceDefinitions, built from the schemas.

    Printed by ``baseguard policy crds`` and rendered into the Helm chart, so the
    cluster enforces exactly what ``policy validate`` checks: the two policy kinds
    from ``crd-schema.yaml``, ``BaseImagePolicyException`` from ``exception-schema.yaml``.
    """
    from controller.policy.exceptions import exception_schema

    kinds = [
        (kind, plural, short, scope, openapi_schema(), _PRINTER_COLUMNS)
        for kind, plural, short, scope in _KINDS
    ]
    kinds.append(
        (
            EXCEPTION_KIND,
            "baseimagepolicyexceptions",
            "bipx",
            "Namespaced",
            exception_schema(),
            _EXCEPTION_COLUMNS,
        )
    )
    crds: list[dict[str, Any]] = []
    for kind, plural, short, scope, schema, columns in kinds:
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.{GROUP}",
                    "labels": {"app.kubernetes.io/part-of": "baseguard"},
                },
                "spec": {
                    "group": GROUP,
                    "scope": scope,
                    "names": {
                        "kind": kind,
                        "listKind": f"{kind}List",
                        "plural": plural,
                        "singular": kind.lower(),
                        "shortNames": [short],
                        "categories": ["baseguard"],
                    },
                    "versions": [
                        {
                            "name": VERSION,
                            "served": True,
                            "storage": True,
                            "subresources": {"status": {}},
                            "additionalPrinterColumns": [dict(c) for c in columns],
                            "schema": {"openAPIV3Schema": schema},
                        }
                    ],
                },
            }
        )
    return crds
