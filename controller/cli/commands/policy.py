"""``baseguard policy validate`` and ``baseguard policy crds``: policy tools."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from controller.cli.options import add_now_option, docs, parse_now
from controller.errors import ExitCode, InputError
from controller.policy.model import policy_key

if TYPE_CHECKING:
    from controller.policy.exceptions import CompiledException


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="policy tools: validate, crds", epilog=docs("policy-reference.md"))
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    v = psub.add_parser(
        "validate",
        help="validate policies against the CRD schema and semantically",
        description="Validate policy files: schema and semantic errors with field paths, every "
        "file reported (one that cannot be read does not hide the others), duplicate names, "
        "exceptions that have expired.",
        epilog="Exit codes: 0 all valid, 2 something invalid. " + docs("policy-reference.md"),
    )
    v.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders (tests/ left out)")
    add_now_option(v)
    v.set_defaults(func=validate)
    c = psub.add_parser(
        "crds", help="print the CustomResourceDefinitions", epilog=docs("install.md")
    )
    c.set_defaults(func=crds)


def _identity(doc: Mapping[str, Any]) -> tuple[str, str | None, str] | None:
    """(kind, namespace, name) as the apiserver keys a policy; ``None`` when it has no name."""
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        return None
    kind = str(doc.get("kind"))
    namespace = None
    if kind in ("BaseImagePolicy", "BaseImagePolicyException"):
        ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        namespace = ns if isinstance(ns, str) and ns else "default"
    return kind, namespace, name


def _expired(doc: Mapping[str, Any], today: dt.date) -> list[str]:
    """Exceptions whose ``until`` has passed: they waive nothing any more, and read as if they did."""
    spec = doc.get("spec")
    exceptions = spec.get("exceptions") if isinstance(spec, Mapping) else None
    out = []
    for index, item in enumerate(exceptions if isinstance(exceptions, list) else []):
        until = item.get("until") if isinstance(item, Mapping) else None
        try:
            day = dt.date.fromisoformat(str(until))
        except ValueError:
            continue  # the schema check reports it
        if day < today:
            out.append(
                f"spec.exceptions[{index}].until: expired on {day.isoformat()}: it waives "
                "nothing now; remove it, or extend it if the work is still under way"
            )
    return out


def _exception_notes(
    exception: CompiledException | None,
    today: dt.date,
    documents: Sequence[tuple[str, int, dict[str, Any]]],
) -> list[str]:
    """An exception that has expired, or names a policy none of the files define."""
    from controller.policy.exceptions import expired, is_exception

    if exception is None:
        return []
    notes: list[str] = []
    if (gone := expired(exception, today)) is not None:
        notes.append(f"spec.until: {gone}")
    named = {
        policy_key(*key)
        for _, _, doc in documents
        if not is_exception(doc) and (key := _identity(doc)) is not None
    }
    if named and exception.policy_key not in named:
        notes.append(
            f"spec.policy: {exception.policy_title} is not among the policies given; "
            "the exception waives nothing unless that policy is in force"
        )
    return notes


def validate(args: argparse.Namespace) -> int:
    from controller.documents import discover, is_manifest
    from controller.policy.compile import compile_checked
    from controller.policy.exceptions import compile_exception_checked, is_exception
    from controller.policy.store import PolicyStore
    from controller.policyfiles import load_policy_documents

    today = parse_now(args.now).date()
    files = discover(args.paths, wanted=is_manifest, skip_dirs=frozenset({"tests"}))
    documents: list[tuple[str, int, dict[str, Any]]] = []
    unreadable = 0
    for path in files:  # one at a time: a file that does not load must not hide the others
        try:
            documents += load_policy_documents([path])
        except InputError as exc:
            unreadable += 1
            print(f"{exc}")
    if not documents and not unreadable:
        raise InputError(f"no policies found in {', '.join(args.paths)}")
    bad = warnings = 0
    first: dict[tuple[str, str | None, str], str] = {}
    store = PolicyStore()  # the namespace bound on patterns, as a cluster would apply it
    for path, index, doc in documents:
        name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
        here = f"{path} (document {index + 1}, {name})"
        key = _identity(doc)
        if is_exception(doc):
            exception, problems = compile_exception_checked(doc, today=today)
            errors = [str(e) for e in problems]
            notes = _exception_notes(exception, today, documents)
            if exception is not None and key is not None and key not in first:
                refused = store.exception_refusal(exception)
                if refused is not None:
                    errors.append(str(refused))
                else:
                    store.upsert_exception(exception.key, exception)
            policy = None
        else:
            policy, problems = compile_checked(doc)
            errors = [str(e) for e in problems]
            notes = _expired(doc, today)
        if policy is not None and key is not None and key not in first:
            stored = policy_key(*key)
            refused = store.refusal(stored, policy)
            if refused is not None:
                errors.append(str(refused))
            else:
                store.upsert(stored, policy)
        if key is not None and key in first:
            errors.append(
                f"metadata.name: {key[0]} {'/'.join(p for p in key[1:] if p)} is also defined in "
                f"{first[key]}; the second would replace the first when applied"
            )
        elif key is not None:
            first[key] = here
        bad += bool(errors)
        warnings += len(notes)
        for line in errors:
            print(f"{here}: {line}")
        for line in notes:
            print(f"{here}: warning: {line}")
        if not errors and not notes:
            print(f"{here}: ok")
    summary = f"{len(documents)} policies, {bad} invalid"
    if unreadable:
        summary += f", {unreadable} file(s) could not be read"
    if warnings:
        summary += f", {warnings} warning(s)"
    print(summary)
    return ExitCode.USAGE if bad or unreadable else ExitCode.OK


def crds(args: argparse.Namespace) -> int:
    import yaml

    from controller.policy.schema import crd_manifests

    sys.stdout.write(yaml.safe_dump_all(crd_manifests(), sort_keys=False))
    return ExitCode.OK
