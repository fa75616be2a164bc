"""Policy files → compiled policies: read once (``check``, ``test``, ``audit -p``) or watched (``serve``).

Its own module, below every command and adapter, because four of them load
policy files and none of them owns the others: the CLI, the webhook's
``serve`` and the operator's ``audit -p`` all read the same folders the same
way, through :mod:`controller.documents`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.documents import (
    MANIFEST_SUFFIXES,
    POLICY_KINDS,
    STDIN,
    discover,
    documents,
    is_manifest,
    objects,
    read_text,
    where,
)
from controller.errors import InputError, PolicyError
from controller.policy.model import CompiledPolicy
from controller.policy.store import PolicyStore, Snapshot, policy_key

if TYPE_CHECKING:
    from controller.policy.exceptions import CompiledException

log = logging.getLogger("baseguard.policyfiles")

_MAX_ERRORS_SHOWN = 5


def load_policy_documents(paths: Sequence[str]) -> list[tuple[str, int, dict[str, Any]]]:
    """Every policy document under ``paths`` (``-p``), as ``(file, document index, document)``.

    Directories are walked for ``.yaml``/``.yml``/``.json``, leaving out
    hidden entries and ``tests/`` folders (a policy library keeps its test
    resources there). Any document that is not a ``BaseImagePolicy`` or
    ``ClusterBaseImagePolicy`` (a ``List`` of them is fine) is an error:
    a workload handed to ``-p`` by mistake should not pass unnoticed.
    """
    out: list[tuple[str, int, dict[str, Any]]] = []
    for path in discover(paths, wanted=is_manifest, skip_dirs=frozenset({"tests"})):
        if path == STDIN:
            raise InputError("policies cannot be read from stdin; name a file or a folder")
        for index, line, doc in documents(path, read_text(path)):
            here = where(path, index, line)
            for item, kind, _ in objects(doc, here):
                if kind not in POLICY_KINDS:
                    raise InputError(
                        f"{here}: a {kind} is not a policy "
                        f"(expected {', '.join(sorted(POLICY_KINDS))})"
                    )
                out.append((path, index, dict(item)))
    return out


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def compile_documents(
    docs: Sequence[tuple[str, int, dict[str, Any]]], *, today: dt.date | None = None
) -> list[CompiledPolicy]:
    """Compile every policy document; all problems reported at once, naming file and document.

    ``BaseImagePolicyException`` documents among them are compiled as of ``today``
    (their ``until`` bound; default: today, UTC) and filed under the policies they
    name, exactly as the store files cluster objects; one naming no policy given
    changes nothing.
    """
    from controller.policy.compile import compile_checked
    from controller.policy.exceptions import (
        attach,
        compile_exception_checked,
        is_exception,
    )

    day = today or _today()
    problems: list[str] = []
    policies: list[CompiledPolicy] = []
    exceptions: list[CompiledException] = []
    for path, index, doc in docs:
        if is_exception(doc):
            exception, errors = compile_exception_checked(doc, today=day)
            if exception is not None:
                exceptions.append(exception)
        else:
            policy, errors = compile_checked(doc)
            if policy is not None:
                policies.append(policy)
        problems.extend(f"{path} (document {index + 1}): {err}" for err in errors)
    if problems:
        raise PolicyError("", "invalid policy:\n  " + "\n  ".join(problems))
    return list(attach(policies, exceptions))


def load_policies(paths: Sequence[str], *, today: dt.date | None = None) -> list[CompiledPolicy]:
    """The compiled policies under ``paths``; none at all is an error (a mistyped ``-p``)."""
    docs = load_policy_documents(paths)
    if not docs:
        raise InputError(f"no policies found in {', '.join(paths)}")
    return compile_documents(docs, today=today)


def _is_manifest(name: str) -> bool:
    return name.lower().endswith(MANIFEST_SUFFIXES) and not name.startswith(".")


@dataclass
class PolicyFiles:
    """Policy files under ``paths``, compiled into ``store``, re-read when they change.

    Folders are walked like ``baseguard check -p`` does (``.yaml``/``.yml``/
    ``.json``, hidden entries and ``tests/`` folders left out). Each file is
    loaded on its own, so one broken file does not take the others down:

    * a file that does not read, parse or compile keeps its last good
      policies in force, and its error is recorded (``/readyz``, the log);
      its exceptions (``BaseImagePolicyException``) are dropped, never kept:
      what stays in force after a bad edit is the stricter thing;
    * a file that disappears from a folder takes its policies with it;
      a file named explicitly with ``-p`` that disappears is an error
      (its last good policies stay: it was asked for by name);
    * a policy defined in two files is an error on the later file.
    """

    paths: Sequence[str]
    store: PolicyStore
    _good: dict[str, dict[str, CompiledPolicy | CompiledException]] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)
    _signature: dict[str, tuple[int, int, int]] | None = None

    def discover(self) -> tuple[list[str], dict[str, str]]:
        """(files, errors for missing explicit paths)."""
        files: list[str] = []
        missing: dict[str, str] = {}
        seen: set[str] = set()

        def add(path: str) -> None:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                files.append(path)

        for path in self.paths:
            if os.path.isdir(path):
                for root, dirs, names in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "tests")
                    for name in sorted(names):
                        if _is_manifest(name):
                            add(os.path.join(root, name))
            elif os.path.exists(path):
                add(path)
            else:
                missing[path] = f"{path}: no such file or directory"
        return files, missing

    def signature(self) -> dict[str, tuple[int, int, int]]:
        files, missing = self.discover()
        out: dict[str, tuple[int, int, int]] = {path: (0, 0, 0) for path in missing}
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                out[path] = (0, 0, 0)
            else:
                out[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return out

    def changed(self) -> bool:
        return self._signature != self.signature()

    def load(self) -> Snapshot:
        """One pass over every file; publishes a new snapshot (always marked loaded)."""
        from controller.policy.compile import check_policy, compile_policy
        from controller.policy.exceptions import (
            CompiledException,
            check_exception,
            compile_exception,
            is_exception,
        )

        self._signature = self.signature()
        files, missing = self.discover()
        errors: dict[str, str] = dict(missing)
        present = set(files) | set(missing)
        for path in list(self._good):
            if path not in present:
                del self._good[path]  # gone from its folder: its policies go too
        for path in files:
            try:
                docs = load_policy_documents([path])
            except InputError as exc:
                errors[path] = exc.message
                self._drop_exceptions(path)
                continue
            today = _today()
            problems = [
                f"document {index + 1}: {err}"
                for _, index, doc in docs
                for err in (
                    check_exception(doc, today=today) if is_exception(doc) else check_policy(doc)
                )
            ]
            if problems:
                shown = problems[:_MAX_ERRORS_SHOWN]
                more = len(problems) - len(shown)
                errors[path] = "; ".join(shown) + (f"; and {more} more" if more else "")
                self._drop_exceptions(path)
                continue
            compiled: dict[str, CompiledPolicy | CompiledException] = {}
            for _, _, doc in docs:
                if is_exception(doc):
                    exception = compile_exception(doc, today=today)
                    compiled[exception.key] = exception
                else:
                    policy = compile_policy(doc)
                    compiled[policy_key(policy.kind, policy.namespace, policy.name)] = policy
            self._good[path] = compiled
        policies: dict[str, CompiledPolicy] = {}
        exceptions: dict[str, CompiledException] = {}
        origin: dict[str, str] = {}
        for path in [*files, *missing]:
            for key, item in self._good.get(path, {}).items():
                if key in origin:
                    errors.setdefault(
                        path,
                        f"{key.replace('//', ' ')} is also defined in {origin[key]}; this copy is ignored",
                    )
                    continue
                if isinstance(item, CompiledException):
                    exceptions[key] = item
                else:
                    policies[key] = item
                origin[key] = path
        previous = self._errors
        self._errors = errors
        for path, reason in errors.items():
            if previous.get(path) != reason:
                log.warning(
                    "policy file refused; its last good policies stay in force",
                    extra={"fields": {"file": path, "error": reason}},
                )
        snapshot = self.store.replace(
            policies, errors, loaded=True, exceptions=exceptions.values()
        )
        log.info(
            "policies loaded",
            extra={
                "fields": {
                    "policies": sorted(p.key for p in snapshot.policies),
                    "errors": len(errors),
                    "generation": snapshot.generation,
                }
            },
        )
        return snapshot

    def _drop_exceptions(self, path: str) -> None:
        """A refused file keeps its last good *policies* (the stricter state) but not its
        exceptions: a waiver nobody can read any more must not stay in force."""
        from controller.policy.exceptions import CompiledException

        kept = self._good.get(path)
        if kept is not None:
            self._good[path] = {
                k: v for k, v in kept.items() if not isinstance(v, CompiledException)
            }

    async def watch(self, interval: float) -> None:
        """Re-read every file whenever any of them changes, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                if await asyncio.to_thread(self.changed):
                    await asyncio.to_thread(self.load)
            except Exception:  # the watcher must outlive any surprise
                log.exception("policy reload failed; the policies in force are unchanged")
