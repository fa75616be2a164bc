"""The CEL text the generated ValidatingAdmissionPolicy runs: literals, globs, the reference grammar.

PURE: strings in, CEL source text out. The apiserver has no image-reference
library for CEL, so the generated policy parses each image itself, in the same
steps as :func:`controller.reference.parse` (digest at the first ``@``, tag at the
last ``:`` after the last ``/``, the first component a host only when it holds
``.`` or ``:``, is ``localhost`` or has upper case; host lower-cased, Docker Hub's
aliases folded, ``library/`` added), and checks each piece with the same regular
expressions. Each step is one VAP variable (a list parallel to the images, of
string-valued maps), so no piece is computed twice: CEL on the apiserver has no
``let``.

Only standard CEL, ``matches`` (RE2) and the apiserver's string extension
(``indexOf``, ``lastIndexOf``, ``substring``, ``lowerAscii``, ``join``) are used
for the per-image part; the extraction of the images from the object
(:func:`images_expression`) also needs ``transformList`` (two-variable
comprehensions, since Kubernetes 1.32) to compare each image with the one at the
same place in ``oldObject``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from controller.globs import GlobSet
from controller.reference import DEFAULT_REGISTRY, LEGACY_REGISTRIES, NAME_TOTAL_MAX

# The grammar of controller.reference, as RE2 (which it already is: no lookaround).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_RE = rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
PATH_RE = rf"^{_COMPONENT}(?:/{_COMPONENT})*$"
TAG_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
DIGEST_RE = r"^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$"
IMAGE_ID_RE = r"^[a-f0-9]{64}$"
#: ``controller.policy.rules.has_full_version`` without its lookbehind (RE2 has none):
#: three numeric parts not preceded by a digit or a dot.
FULL_VERSION_RE = r"(?:^|[^0-9.])[0-9]+\.[0-9]+\.[0-9]+"

#: Where each kind keeps its pod spec (``controller.workloads``), as CEL field paths.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_TEMPLATE_DEFAULT = ("spec", "template", "spec")
_SECTIONS = ("containers", "initContainers", "ephemeralContainers")


def string(text: str) -> str:
    """A CEL string literal holding ``text`` exactly (single-quoted, backslashes escaped)."""
    out = []
    for char in text:
        if char in "\\'":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def glob_regex(patterns: Iterable[str]) -> str:
    """An RE2 expression true exactly where :class:`controller.globs.GlobSet` matches.

    ``*`` is any run of characters (``/`` included, as in the glob matcher), ``?``
    one character; everything else is literal (escaped), and the whole is
    anchored: CEL's ``matches`` searches, a glob matches the whole string.
    """
    alternatives = []
    for pattern in patterns:
        parts = []
        for char in pattern:
            if char == "*":
                parts.append(".*")
            elif char == "?":
                parts.append(".")
            elif char.isascii() and char.isalnum():
                parts.append(char)
            else:
                parts.append("\\" + char)
        alternatives.append("".join(parts))
    return "(?s)^(?:" + "|".join(alternatives) + ")$"


def glob_test(globs: GlobSet, value: str) -> str:
    """CEL: ``value`` (a CEL expression of type string) matches one of ``globs``.

    Sorted by shape as :mod:`controller.globs` does, for the apiserver's cost
    budget: a regex costs the string's length times the expression's, so an
    allowlist of fifty ``registry/team/*`` globs as one regex spends the budget
    of a pod with a hundred containers. Exact names are an ``in`` list, plain
    prefixes (``…/*`` with no other wildcard) ``startsWith``, and only the rest
    one anchored regex.
    """
    exact: list[str] = []
    prefixes: list[str] = []
    others: list[str] = []
    for pattern in globs.patterns:
        collapsed = re.sub(r"\*+", "*", pattern)
        if "*" not in collapsed and "?" not in collapsed:
            exact.append(collapsed)
        elif collapsed.endswith("*") and "*" not in collapsed[:-1] and "?" not in collapsed:
            prefixes.append(collapsed[:-1])
        else:
            others.append(collapsed)
    terms = []
    if exact:
        terms.append(f"{value} in [{', '.join(string(e) for e in sorted(set(exact)))}]")
    terms += [f"{value}.startsWith({string(p)})" for p in sorted(set(prefixes))]
    if others:
        terms.append(f"{value}.matches({string(glob_regex(others))})")
    return "(" + " || ".join(terms or ["false"]) + ")"


# --------------------------------------------------------------------------- extraction


def _select(root: str, path: Sequence[str]) -> str:
    """``root.a.b.c`` if every field is there, else ``{}`` (baseguard: no pod spec, no images)."""
    checks = [f"has({root}.{'.'.join(path[: i + 1])})" for i in range(len(path))]
    return f"({' && '.join(checks)} ? {root}.{'.'.join(path)} : {{}})"


def pod_spec_expression(root: str) -> str:
    """The pod spec of ``root`` (``object`` or ``oldObject``) for whichever workload kind it is."""
    expr = _select(root, _TEMPLATE_DEFAULT)
    for kind, path in _TEMPLATE_PATHS.items():
        expr = f"request.kind.kind == {string(kind)} ? {_select(root, path)} : ({expr})"
    return expr


def old_spec_expression() -> str:
    return f"oldObject == null ? {{}} : ({pod_spec_expression('oldObject')})"


def _new_section(section: str) -> str:
    """The images of one container list that the request adds or changes.

    ``controller.webhook.review.workloads_of``: on UPDATE only an image whose
    (section, index, image) is not in ``oldObject`` is judged; on CREATE every one.
    A container without an image is judged as the empty string (invalid-reference).
    """
    new, old = "variables.spec", "variables.old"
    image = "(has(c.image) ? c.image : '')"
    old_image = f"(has({old}.{section}[i].image) ? {old}.{section}[i].image : '')"
    unchanged = f"has({old}.{section}) && size({old}.{section}) > i && {old_image} == {image}"
    return f"(has({new}.{section}) ? {new}.{section}.transformList(i, c, !({unchanged}), {image}) : [])"


def _new_volumes() -> str:
    new, old = "variables.spec", "variables.old"
    ref = "(has(c.image.reference) ? c.image.reference : '')"
    old_ref = f"(has({old}.volumes[i].image.reference) ? {old}.volumes[i].image.reference : '')"
    unchanged = (
        f"has({old}.volumes) && size({old}.volumes) > i && has({old}.volumes[i].image) "
        f"&& {old_ref} == {ref}"
    )
    return (
        f"(has({new}.volumes) ? {new}.volumes.transformList(i, c, has(c.image) && !({unchanged}), "
        f"{ref}) : [])"
    )


def images_expression() -> str:
    """Every image string the request adds or changes: containers, init, ephemeral, image volumes.

    On the ``pods/ephemeralcontainers`` subresource (``kubectl debug``) only the
    ephemeral containers, as the webhook.
    """
    sections = " + ".join(_new_section(s) for s in _SECTIONS)
    return (
        "has(request.subResource) && request.subResource == 'ephemeralcontainers' ? "
        f"{_new_section('ephemeralContainers')} "
        f": ({sections} + {_new_volumes()})"
    )


# --------------------------------------------------------------------------- parsing

#: The parsing steps, in order: (variable name, expression over the previous step).
#: Every map holds strings only (the apiserver's CEL wants homogeneous literals):
#: flags are ``'y'`` or ``''``.


def _record(var: str, source: str, fields: Sequence[tuple[str, str]]) -> str:
    """``source.map(var, {...})`` with every value a ``string(...)``: the apiserver's CEL wants
    the values of a map literal to share one type, and a field read from a ``dyn`` is ``dyn``."""
    body = ", ".join(f"{string(key)}: string({expr})" for key, expr in fields)
    return f"{source}.map({var}, {{{body}}})"


def parse_steps() -> list[tuple[str, str]]:
    """The VAP variables that turn ``variables.images`` into parsed, normalized references.

    The last one, ``refs``, holds for each image: ``raw``, ``valid`` (``'y'`` when
    :func:`controller.reference.parse` accepts it), ``name`` (``registry/repository``),
    ``tag`` (the effective tag: ``latest`` when neither tag nor digest is written,
    ``''`` for a digest-only reference), ``digest``, ``hasDigest`` and ``normalized``.
    """
    at = "s.indexOf('@')"
    step1 = _record(
        "s",
        "variables.images",
        [
            ("raw", "s"),
            ("rem", f"{at} < 0 ? s : s.substring(0, {at})"),
            ("digest", f"{at} < 0 ? '' : s.substring({at} + 1)"),
            ("hasDigest", f"{at} < 0 ? '' : 'y'"),
        ],
    )
    colon, slash = "e.rem.lastIndexOf(':')", "e.rem.lastIndexOf('/')"
    tagged = f"{colon} > {slash}"
    keep = [("raw", "e.raw"), ("digest", "e.digest"), ("hasDigest", "e.hasDigest")]
    step2 = _record(
        "e",
        "variables.ref1",
        [
            *keep,
            ("name", f"{tagged} ? e.rem.substring(0, {colon}) : e.rem"),
            ("tag", f"{tagged} ? e.rem.substring({colon} + 1) : ''"),
            ("hasTag", f"{tagged} ? 'y' : ''"),
        ],
    )
    first = "e.name.indexOf('/')"
    head = f"e.name.substring(0, {first})"
    is_host = (
        f"({first} >= 0 && ({head}.contains('.') || {head}.contains(':') || "
        f"{head} == 'localhost' || {head}.lowerAscii() != {head}))"
    )
    keep += [("tag", "e.tag"), ("hasTag", "e.hasTag")]
    step3 = _record(
        "e",
        "variables.ref2",
        [
            *keep,
            ("rem", "e.name"),
            ("domain", f"{is_host} ? {head} : ''"),
            ("hasDomain", f"{is_host} ? 'y' : ''"),
            ("path", f"{is_host} ? e.name.substring({first} + 1) : e.name"),
        ],
    )
    lower = "e.domain.lowerAscii()"
    legacy = " || ".join(f"{lower} == {string(h)}" for h in sorted(LEGACY_REGISTRIES))
    host = (
        f"e.hasDomain == '' ? {string(DEFAULT_REGISTRY)} : (({legacy}) ? {string(DEFAULT_REGISTRY)} "
        f": (({lower}.contains('.') || {lower}.contains(':') || {lower} == 'localhost') "
        f"? {lower} : e.domain))"
    )
    keep += [
        ("rem", "e.rem"),
        ("domain", "e.domain"),
        ("hasDomain", "e.hasDomain"),
        ("path", "e.path"),
    ]
    step4 = _record("e", "variables.ref3", [*keep, ("host", host)])
    path = f"(e.host == {string(DEFAULT_REGISTRY)} && !e.path.contains('/') ? 'library/' + e.path : e.path)"
    valid = " && ".join(
        [
            "e.raw != ''",
            f"(e.hasDigest == '' || e.digest.matches({string(DIGEST_RE)}))",
            f"(e.hasTag == '' || e.tag.matches({string(TAG_RE)}))",
            "e.rem != ''",
            f"(e.hasDomain == '' || e.domain.matches({string(DOMAIN_RE)}))",
            "e.path != ''",
            f"(e.hasDomain != '' || !e.path.matches({string(IMAGE_ID_RE)}))",
            f"e.path.matches({string(PATH_RE)})",
            f"size({path}) <= {NAME_TOTAL_MAX}",
        ]
    )
    effective = "(e.hasTag != '' ? e.tag : (e.hasDigest != '' ? '' : 'latest'))"
    name = f"e.host + '/' + {path}"
    step5 = _record(
        "e",
        "variables.ref4",
        [
            ("raw", "e.raw"),
            ("valid", f"({valid}) ? 'y' : ''"),
            ("name", name),
            ("tag", effective),
            ("digest", "e.digest"),
            ("hasDigest", "e.hasDigest"),
            (
                "normalized",
                f"{name} + ({effective} != '' ? ':' + {effective} : '') "
                "+ (e.hasDigest != '' ? '@' + e.digest : '')",
            ),
        ],
    )
    return [("ref1", step1), ("ref2", step2), ("ref3", step3), ("ref4", step4), ("refs", step5)]


def image_matches(globs: GlobSet, ref: str = "e") -> str:
    """``controller.policy.evaluate._image_matches`` without the identity index.

    The repository, or the normalized reference as written; an image that does
    not parse is matched as its raw string. (With the registry, a pinned digest's
    written tag may be refuted; the VAP cannot ask, see docs/vap.md.)
    """
    return (
        f"({ref}.valid == 'y' ? ({glob_test(globs, f'{ref}.name')} || "
        f"{glob_test(globs, f'{ref}.normalized')}) : {glob_test(globs, f'{ref}.raw')})"
    )


def label_selector_condition(
    labels: str,
    match_labels: Sequence[tuple[str, str]],
    expressions: Sequence[tuple[str, str, Sequence[str]]],
) -> str:
    """CEL over a labels map (which may be absent) that is a ``metav1.LabelSelector``'s answer."""
    terms = []
    for key, value in match_labels:
        terms.append(f"({string(key)} in {labels} && {labels}[{string(key)}] == {string(value)})")
    for key, operator, values in expressions:
        listed = "[" + ", ".join(string(v) for v in sorted(values)) + "]"
        present = f"{string(key)} in {labels}"
        if operator == "In":
            terms.append(f"({present} && {labels}[{string(key)}] in {listed})")
        elif operator == "NotIn":
            terms.append(f"(!({present}) || !({labels}[{string(key)}] in {listed}))")
        elif operator == "Exists":
            terms.append(f"({present})")
        else:
            terms.append(f"!({present})")
    return " && ".join(terms) if terms else "true"
