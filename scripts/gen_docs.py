#!/usr/bin/env python3
"""Generate the parts of docs/ that must never drift from the code.

* ``docs/policy-reference.md`` entirely, from ``controller/policy/crd-schema.yaml``
  (every field, its type, default, constraints and description) and the CRD
  metadata of :func:`controller.policy.schema.crd_manifests`;
* the option tables in ``docs/cli.md``, from the real argument parser
  (:func:`controller.cli.main.build_parser`): every block between
  ``<!-- BEGIN GENERATED: cli COMMAND -->`` and ``<!-- END GENERATED -->`` is
  rewritten; the prose around the blocks is written by hand.

Usage::

    python scripts/gen_docs.py          # write
    python scripts/gen_docs.py --check  # exit 1 and name what is stale

A field without a description, or a CLI command without a block in cli.md, is an
error: the reference must cover everything.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
POLICY_REFERENCE = DOCS / "policy-reference.md"
CLI_REFERENCE = DOCS / "cli.md"

#: Fields every Kubernetes object has; the apiserver documents them.
STANDARD_FIELDS = {"apiVersion", "kind", "metadata"}

#: A complete policy using every section (tests/chart/test_docs.py validates it).
EXAMPLE = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: production-bases
spec:
  mode: Enforce
  match:
    namespaces: ["prod-*"]
    excludeNamespaces: ["prod-sandbox"]
    namespaceSelector:
      matchExpressions:
        - {key: team, operator: In, values: [payments, checkout]}
    objectSelector:
      matchLabels: {tier: backend}
  exclude:
    images: ["registry.example.com/debug/*"]
  exceptions:
    - images: ["docker.io/acme/legacy-*"]
      namespaces: ["prod-payments"]
      until: "2026-03-31"
      reason: "migration to python 3.12 tracked in PAY-123"
  registries:
    allowed: ["docker.io/library/*", "ghcr.io/acme/*"]
  pinning:
    require: Version
    disallowedTags: ["latest"]
    mutateToDigest: false
  bases:
    allowed:
      - image: docker.io/library/python
        tags: ["3.12*-slim*", "3.13*-slim*"]
      - image: gcr.io/distroless/*
    deprecated:
      - image: docker.io/library/python
        tags: ["3.8*", "3.7*"]
        reason: "Python 3.8 reached end of life on 2024-10-07"
        replacement: "docker.io/library/python:3.12-slim"
        enforceAfter: "2025-01-01"
  lineage:
    maxDepth: 4
    verify: Layers
    catalog: ["docker.io/library/python:3.12-slim"]
    onUnknownBase: Deny
    onLookupFailure: Deny
    maxBaseAge: 180d
    staleBase: Warn
    platforms: ["linux/amd64", "linux/arm64"]
  trust:
    appliesTo: Bases
    images: ["gcr.io/distroless/*"]
    authorities:
      - name: distroless
        keyless:
          issuer: https://accounts.google.com
          subject: keyless@distroless.iam.gserviceaccount.com
  evidence:
    maxScanAge: 7d
    denyFixable: [CRITICAL, HIGH]
    scope: All
    requireScan: true
"""


def _import_controller() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


# --- the policy reference ----------------------------------------------------------------


def type_name(node: Mapping[str, Any]) -> str:
    kind = node.get("type", "")
    if kind == "array":
        return "[]" + type_name(node.get("items", {}))
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return "map[string]" + type_name(node["additionalProperties"])
    if kind == "string" and node.get("format") in ("date", "date-time"):
        return f"string ({node['format']})"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def constraints(node: Mapping[str, Any], *, required: bool) -> list[str]:
    """What the schema enforces about one field, in words."""
    out: list[str] = []
    if required:
        out.append("Required.")
    leaf = node.get("items") if node.get("type") == "array" else node
    leaf = leaf if isinstance(leaf, Mapping) else {}
    where = "Each item: " if leaf is not node else ""
    if "enum" in leaf:
        out.append(f"{where}one of " + ", ".join(f"`{v}`" for v in leaf["enum"]) + ".")
    if "pattern" in leaf:
        out.append(f"{where}matches `{leaf['pattern']}`.")
    if leaf.get("minLength"):
        out.append(f"{where}not empty.")
    if leaf.get("maxLength"):
        out.append(f"{where}at most {leaf['maxLength']} characters.")
    if node.get("minItems"):
        out.append(f"At least {node['minItems']} item(s) when given.")
    if node.get("maxItems"):
        out.append(f"At most {node['maxItems']} items.")
    if node.get("maxProperties"):
        out.append(f"At most {node['maxProperties']} entries.")
    if "minimum" in node or "maximum" in node:
        out.append(f"From {node.get('minimum', '-inf')} to {node.get('maximum', 'inf')}.")
    for rule in node.get("x-kubernetes-validations", []):
        out.append(f"Checked: {rule['message']} (`{' '.join(rule['rule'].split())}`).")
    items = node.get("items")
    if isinstance(items, Mapping):
        for rule in items.get("x-kubernetes-validations", []):
            out.append(f"Each item checked: {rule['message']}.")
    return [o[0].upper() + o[1:] for o in out]


def object_sections(
    node: Mapping[str, Any], path: str, description: str = ""
) -> Iterator[tuple[str, Mapping[str, Any], str]]:
    """Every object node with properties, depth first: dotted path, node, description
    (a list item takes its list's description)."""
    yield path, node, description or node.get("description", "")
    for name, child in node.get("properties", {}).items():
        if name in STANDARD_FIELDS and not path:
            continue
        here = f"{path}.{name}" if path else name
        if child.get("type") == "object" and child.get("properties"):
            yield from object_sections(child, here)
        items = child.get("items")
        if child.get("type") == "array" and isinstance(items, Mapping) and items.get("properties"):
            yield from object_sections(items, f"{here}[]", child.get("description", ""))


def missing_descriptions(schema: Mapping[str, Any]) -> list[str]:
    """Fields the reference could not explain: every property needs a description."""
    missing: list[str] = []
    for path, node, _ in object_sections(schema, ""):
        for name, child in node.get("properties", {}).items():
            if not path and name in STANDARD_FIELDS:
                continue
            if not child.get("description"):
                missing.append(f"{path}.{name}" if path else name)
    return missing


def _anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", path.lower().replace(".", "").replace("[]", ""))


def field_table(path: str, node: Mapping[str, Any]) -> list[str]:
    required = set(node.get("required", []))
    lines = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for name, child in node.get("properties", {}).items():
        if not path and name in STANDARD_FIELDS:
            continue
        here = f"{path}.{name}" if path else name
        nested = (child.get("type") == "object" and child.get("properties")) or (
            child.get("type") == "array" and isinstance(child.get("items"), Mapping) and child["items"].get("properties")
        )
        label = f"[`{name}`](#{_anchor(here + ('[]' if child.get('type') == 'array' else ''))})" if nested else f"`{name}`"
        default = f"`{_json(child['default'])}`" if "default" in child else ""
        text = " ".join([child.get("description", ""), *constraints(child, required=name in required)])
        lines.append(f"| {label} | {type_name(child)} | {default} | {_cell(text)} |")
    return lines


IDENTITY_TEXT = [
    "A tag is a claim, a digest is a fact: with `name:tag@digest` the runtime pulls the digest",
    "and ignores the tag. Rules that look at tags (`bases.allowed`, `bases.deprecated` by tag)",
    "therefore judge a pinned digest by the tags known to name it, from an *identity index*:",
    "when an image or a base claim is pinned by digest in a repository that a policy judges by",
    "tag (`bases.allowed`/`bases.deprecated` entries with `tags`, by name or by glob such as",
    "`*/library/python`, and tagged `lineage.catalog` references), baseguard lists that",
    "repository's tags (`/v2/<name>/tags/list`, at most 10 pages of 1,000), keeps those",
    "matching the policies' tag globs (at most 256 per repository, the last in the registry's",
    "order) and resolves each with a HEAD: the digest it names is that tag's. When a pinned",
    "digest is none of those (a platform manifest's digest, say), the indexes of the listed",
    "tags are read once each and their platform manifests become their tags' too.",
    "A listing is trusted for 5 minutes (30 s after a failure), and every digest a tag has",
    "named while baseguard watched stays known as that tag's (32 per tag).",
    "",
    "- `python@<digest of 3.8-slim>` is judged as `python:3.8-slim`: deprecated if 3.8 is;",
    "  `python@<digest of 3.12-slim>` is allowed by an allowlist of `3.12*`.",
    "- `python:3.12-slim@<digest of 3.8-slim>` is judged as `3.8-slim`, and the tag it writes",
    "  is `tag-mismatch`. A base claim is judged the same way: `base.name` carries the tag,",
    "  `base.digest` is the fact.",
    "- `exclude.images` and `exceptions[].images` globs with a tag match the tags the digest",
    "  has: `python:3.12*` never excludes `python:3.12-slim@<digest of 3.8-slim>`.",
    "- A digest pinned while its tag named it stays that tag's after the tag moves on:",
    "  pinning is never a mismatch by itself. Before denying, a contradicted tag is resolved",
    "  once more, in case it moved since the last listing.",
    "",
    "What is **not** known: a digest the index has never seen under a watched tag (pushed and",
    "replaced before baseguard first listed the repository, or a tag outside the globs, or",
    "past the bounds). Such an image is judged by the tag it writes and",
    "by its lineage (layers against the catalog), and its lineage carries the note",
    "`tag … unverified: the identity index has not seen …`. `pinning.require: Digest` with",
    "`mutateToDigest` keeps new pins within what the index knows. Offline (`--offline`) there",
    "is no index: a `tag@digest` a policy judges by tag lists `tag-mismatch` as not evaluated.",
    "Cost: a HEAD per matching tag (Docker Hub does not count HEADs against its pull limit);",
    "a GET per index (counted) only when a platform manifest digest is pinned, once per index",
    "digest. Give baseguard credentials or a mirror for large public repositories.",
]


def rule_rows() -> list[str]:
    from controller.policy.model import RULE_DOCS, RuleCode

    missing = [code.value for code in RuleCode if code not in RULE_DOCS]
    if missing:
        raise SystemExit("rule codes without a description in RULE_DOCS: " + ", ".join(missing))
    return [f"| `{code.value}` | {_cell(RULE_DOCS[code])} |" for code in RuleCode]


def policy_reference() -> str:
    _import_controller()
    from controller.policy.schema import crd_manifests, openapi_schema

    schema = openapi_schema()
    missing = missing_descriptions(schema)
    if missing:
        raise SystemExit("fields without a description in crd-schema.yaml: " + ", ".join(missing))
    crds = crd_manifests()
    out = [
        "<!-- GENERATED by scripts/gen_docs.py from controller/policy/crd-schema.yaml. -->",
        "<!-- Do not edit: change the schema's descriptions and run `python scripts/gen_docs.py`. -->",
        "",
        "# Policy reference",
        "",
        _cell(schema.get("description", "")),
        "",
        "Both policy kinds have the same `spec` (a `BaseImagePolicyException` has its own: see",
        "[Exceptions filed by teams](#exceptions-filed-by-teams)). All policies that match an object apply to it, and the",
        "most severe outcome wins (`deny` > `warn` > `audit` > `allow`). Patterns are globs:",
        "`*` is any run of characters, `?` one; repository globs match the **normalized** name",
        "(`docker.io/library/python`, never `python`). There are no character classes: `[` and `]`",
        "are literal, and may only enclose an IPv6 registry host at the start of a glob",
        "(`[::1]:5000/*`); anywhere else (`docker.io/library/[abc`) the glob is refused. A glob",
        "holds at most 16 wildcards (`*` and `?` together).",
        "",
        "Every image is matched against a policy's patterns, so their number is bounded: a",
        "policy holds at most 1000 patterns (globs, digests and `lineage.catalog` entries",
        "together), and the `BaseImagePolicy` objects of one namespace at most 2000 together.",
        "A policy past its own bound does not compile; the one whose addition takes its",
        "namespace past 2000 is refused (Ready=False, with the path of its first pattern past",
        "the bound) while the namespace's other policies stay in force. Durations",
        "(`maxBaseAge`) are at most 100 years (`36525d`, `876600h`, `5217w`) and dates",
        "(`until`, `enforceAfter`) between 1970-01-01 and 2999-12-31.",
        "",
        "| Kind | Scope | Short name | Plural | Group/version |",
        "| --- | --- | --- | --- | --- |",
    ]
    for crd in crds:
        names = crd["spec"]["names"]
        [version] = crd["spec"]["versions"]
        out.append(
            f"| `{names['kind']}` | {crd['spec']['scope']} | `{names['shortNames'][0]}` | "
            f"`{names['plural']}` | `{crd['spec']['group']}/{version['name']}` |"
        )
    [version] = crds[0]["spec"]["versions"]
    columns = ", ".join(f"{c['name']} (`{c['jsonPath']}`)" for c in version["additionalPrinterColumns"])
    out += [
        "",
        f"`kubectl get cbip` and `kubectl get bip` show: {columns}.",
        "",
        "A `BaseImagePolicy` applies only to objects in its own namespace; a",
        "`ClusterBaseImagePolicy` to every namespace its `match` selects.",
        "",
        "The `bases` and `lineage` rules judge an image's *lineage*: its base, the base's base,",
        "and so on, read from annotations, labels, Buildpacks metadata, BuildKit provenance",
        "or detected by layers, each checked against the image's layers. Where each level comes",
        "from, in which order, and what happens when two sources disagree:",
        "[lineage-sources.md](lineage-sources.md).",
        "",
        "## Example",
        "",
        "```yaml",
        EXAMPLE.rstrip(),
        "```",
        "",
        "## How a policy is checked",
        "",
        "The same schema is used in three places: the apiserver enforces it (types, enums,",
        "patterns, required fields, and the CEL rules listed as *Checked* below);",
        "`baseguard policy validate` and `baseguard check` apply it to files, and also report",
        "fields the schema does not know (the apiserver would silently drop a misspelt",
        "`mutatetoDigest`) and what only code can check: globs that can never match a",
        "normalized name, calendar dates, image references, label syntax. In the cluster the",
        "controller compiles every policy the same way; one that does not compile is marked",
        "`Ready=False` with its errors in `status.errors`, and the other policies keep working.",
        "The chart also registers a validating webhook for the two policy kinds",
        "(`webhook.policies`), so that such a policy can be refused before it is stored.",
        "",
        "## Rule codes",
        "",
        "Every violation names one rule; `baseguard test` expectations, the JSON output, the",
        "webhook's messages and the `baseguard_admission_violations_total{rule=…}` metric use these codes.",
        "",
        "| Rule | Meaning |",
        "| --- | --- |",
        *rule_rows(),
        "",
        "## Tags and digests",
        "",
        *IDENTITY_TEXT,
        "",
        "## Fields",
    ]
    for path, node, description in object_sections(schema, ""):
        out += ["", f"### {path}" if path else "### Top level", ""]
        if not path:
            out += ["`apiVersion: baseguard.io/v1alpha1`, `kind` and `metadata` as for every object, and:", ""]
        elif description:
            out += [_cell(description), ""]
        alternatives = [b["required"] for b in node.get("anyOf", []) if set(b) == {"required"}]
        if alternatives:
            names = ", ".join(f"`{n}`" for names in alternatives for n in names)
            out += [f"Each entry sets at least one of {names}.", ""]
        out += field_table(path, node)
    out += exception_reference()
    return "\n".join(out) + "\n"


EXCEPTION_EXAMPLE = """\
apiVersion: baseguard.io/v1alpha1
kind: BaseImagePolicyException
metadata:
  name: python-migration
  namespace: shop
spec:
  policy: {kind: ClusterBaseImagePolicy, name: production-bases}
  rules: [deprecated-base]
  images: ["docker.io/library/python"]
  until: "2026-03-31"
  reason: "SHOP-12: moving to python 3.13"
"""


def exception_reference() -> list[str]:
    """The section on ``BaseImagePolicyException``, from ``exception-schema.yaml``."""
    from controller.policy.exceptions import (
        MAX_EXCEPTION_DAYS,
        MAX_EXCEPTIONS_PER_NAMESPACE,
        exception_schema,
    )

    schema = exception_schema()
    missing = missing_descriptions(schema["properties"]["spec"])
    if missing:
        raise SystemExit("fields without a description in exception-schema.yaml: " + ", ".join(missing))
    out = [
        "",
        "## Exceptions filed by teams",
        "",
        _cell(schema.get("description", "")),
        "",
        "Two ways to waive a finding, each time-boxed (`until`, inclusive) and each shown as",
        "waived, never hidden: a policy's own entry reads `waived until <date>: <reason>",
        "(exception #<index>)`, an exception object `waived until <date> by",
        "BaseImagePolicyException <namespace>/<name>: <reason>` (its name first: a warning is",
        "cut at 120 characters). `check --format json` adds `waivedBy`; audit reports list such",
        "a result as `skip` with `properties.waived` and `properties.exception`.",
        "",
        "- `spec.exceptions[]` in the policy: written by whoever may edit the policy; it may",
        "  name namespaces by glob (`namespaces`) or by their labels (`namespaceSelector`,",
        "  the semantics of `match.namespaceSelector`). Neither covers an object outside the",
        "  cluster (a Dockerfile judged without `--namespace`).",
        "- a `BaseImagePolicyException` object: filed by a team **in its own namespace**",
        "  without editing the policy; RBAC grants `create` on `baseimagepolicyexceptions`",
        "  apart from any verb on policies (the chart's `<release>-exception-author`",
        "  ClusterRole, bound per namespace). It waives findings about the workloads of its",
        "  own namespace only, whatever it says: an exception in `shop` never waives anything",
        "  in `billing`. It names one policy: a `ClusterBaseImagePolicy`, or a",
        "  `BaseImagePolicy` of its own namespace.",
        "",
        f"`until` is required and at most {MAX_EXCEPTION_DAYS} days after the day the exception is",
        "read (created, changed, or loaded by `check -p`): a longer one is refused, so an",
        "exception is renewed on purpose, never forgotten. Past `until` it waives nothing; its",
        "status says `Ready=False`, reason `Expired`, and `baseguard policy validate` warns.",
        "With the policy webhook (the chart's default), `kubectl apply` of one that does not",
        f"compile, or of one more than {MAX_EXCEPTIONS_PER_NAMESPACE} in a namespace, fails with the field paths and",
        "nothing is stored. One that does not compile and was stored all the same (the webhook",
        "off, or down with `failurePolicy: Ignore`) waives nothing (`Ready=False`, reason",
        "`Invalid`, with the field path), unlike a policy, whose last good generation stays in",
        "force: what stays in force after a bad edit is the stricter thing. A namespace holds at",
        f"most {MAX_EXCEPTIONS_PER_NAMESPACE} exceptions; the one past that is refused (when filed, else `Ready=False`)",
        "while the others keep working.",
        "`kubectl get bipx` shows the policy, `until`, Ready and its reason.",
        "",
        "`baseguard check -p` and `baseguard policy validate` read exception files next to",
        "the policies (`-p policies/ -p exceptions/`); `check --namespace shop` judges a",
        "Dockerfile as a workload of `shop`, so `shop`'s exceptions apply to it.",
        "",
        "```yaml",
        EXCEPTION_EXAMPLE.rstrip(),
        "```",
    ]
    for path, node, description in object_sections(schema["properties"]["spec"], "spec"):
        # Headings are unique across the page (their anchors are the links of the tables).
        out += ["", "### BaseImagePolicyException spec" if path == "spec" else f"### {path}", ""]
        if description:
            out += [_cell(description), ""]
        out += field_table(path, node)
    return out


# --- the CLI reference -------------------------------------------------------------------

BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED: cli (?P<command>[a-z ]+?) -->\n)(?P<body>.*?)(<!-- END GENERATED -->)",
    re.DOTALL,
)


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every leaf sub-command by its full name (``check``, ``policy validate``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                nested = commands(sub, full)
                if nested:
                    found.update(nested)
                else:
                    found[full] = sub
    return found


def options_table(parser: argparse.ArgumentParser) -> str:
    lines = ["| Argument | Default | Meaning |", "| --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        choices = "{" + "\\|".join(str(c) for c in action.choices) + "}" if action.choices else ""
        if action.option_strings:
            flags = ", ".join(action.option_strings)
            if action.nargs != 0:
                flags += " " + (choices or str(action.metavar or action.dest.upper()))
        else:
            flags = str(action.metavar or action.dest.upper())
            if action.nargs in ("+", "*"):
                flags += " ..."
        default = action.default
        text = action.help or ""
        silent = default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0
        shown = "" if silent or "default" in text else f"`{default}`"
        if getattr(action, "required", False) and action.option_strings:
            shown = "required"
        if isinstance(action, argparse._AppendAction) and "repeatable" not in text:
            text += " (repeatable)"
        lines.append(f"| `{flags}` | {shown} | {_cell(text)} |")
    return "\n".join(lines)


def cli_commands() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser, fully built (each command's parser needs only argparse)."""
    _import_controller()
    from controller.cli.main import build_parser

    return commands(build_parser())


def cli_reference(text: str) -> str:
    available = cli_commands()
    documented = {m.group("command") for m in BLOCK.finditer(text)}
    undocumented = sorted(set(available) - documented)
    if undocumented:
        raise SystemExit(
            "commands without an option block in docs/cli.md: " + ", ".join(undocumented)
        )

    def fill(match: re.Match[str]) -> str:
        command = match.group("command")
        parser = available.get(command)
        body = (
            options_table(parser)
            if parser is not None
            else f"_`baseguard {command}` is not in this build yet; see the description above._"
        )
        return f"{match.group(1)}{body}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


# --- main --------------------------------------------------------------------------------


def expected() -> dict[Path, str]:
    return {
        POLICY_REFERENCE: policy_reference(),
        CLI_REFERENCE: cli_reference(CLI_REFERENCE.read_text("utf-8")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated doc is stale")
    args = parser.parse_args(argv)
    stale = []
    generated = expected()
    for path, text in generated.items():
        current = path.read_text("utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, "utf-8")
    if args.check and stale:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        print("run: python scripts/gen_docs.py", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(stale)} of {len(generated)} generated docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
