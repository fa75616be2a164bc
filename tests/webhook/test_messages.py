"""Warnings a developer reads: every rule's fix survives the 120-character limit, whole.

The apiserver passes each warning to ``kubectl`` as a ``Warning`` header and
Kubernetes asks for at most 120 characters each. Rule messages are longer, so
:func:`controller.webhook.messages.warning` shortens them; these tests take each
rule's real message (written by the rule functions themselves) and every
container-name length Kubernetes allows (1..63), in each section, and assert
what a developer must still read: the rule, the container, and the fix whole.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import signing
from support.policy_builders import D_IMG, D_NEW, D_OLD, NOW, g, lvl, plat, pol
from support.signing import SLSA_V1
from support.webhook import StartWebhook, fixture, set_images

from controller import logs
from controller.assess import Assessor
from controller.evidence.model import BaseNow, Evidence, Scan, Vulnerability, Where
from controller.findings import SECTION_NOUN, Finding, Group, grouped_findings
from controller.lineage.identity import KnownTags
from controller.lineage.model import End, Lineage, PlatformLineage, Source
from controller.lineage.resolve import LineageResolver
from controller.policy import evidencerules, rules, trustrules
from controller.policy.evidencespec import EvidenceSpec
from controller.policy.facts import ImageFacts
from controller.policy.model import (
    Action,
    BaseEntry,
    DeprecatedEntry,
    LineageSettings,
    Pinning,
    Require,
    RuleCode,
    Verify,
)
from controller.policy.trustspec import (
    AttestationSpec,
    AuthoritySpec,
    TrustPolicy,
    answer_key,
    subjects,
)
from controller.policy.verdict import Violation
from controller.reference import parse
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig
from controller.trust.keys import load_key
from controller.trust.results import Reason, TrustAnswer, TrustResult
from controller.webhook import messages
from controller.workloads import ContainerImage

IMAGE = "registry.example.com/shop/payments-api:2.0.1"
PY38 = "docker.io/library/python:3.8-slim"


def _subject(image: str = IMAGE) -> rules.Subject:
    ref = parse(image)
    return rules.Subject(ImageFacts(image=image, reference=ref), ref)


def _chain(*ancestors: object, end: End = End.KNOWN_BASE) -> rules.Chain:
    return rules.chain_of(
        plat("linux/amd64", IMAGE, *ancestors, end=end),  # type: ignore[arg-type]
        max_depth=4,
        verify=Verify.LAYERS,
    )


def _one(found: list[Violation] | Violation | None) -> str:
    if isinstance(found, list):
        (found,) = found
    assert found is not None
    return found.message


def rule_messages() -> dict[str, tuple[RuleCode, str, str, str]]:
    """Each rule's message as the rule functions write it: id → (rule, image, message, fix).

    ``fix`` is what must end every warning whole: the fix itself, without the
    examples and explanations around it (``e.g. …``, an aside, ``…: ``), which
    go only when the whole fix cannot fit beside a long container name.
    """
    s = _subject()
    deprecated = DeprecatedEntry(
        g("docker.io/library/python"), tags=g("3.8*"),
        reason="Python 3.8: end of life 2024-10-07; source: endoflife.date, snapshot 2026-08-22",
        replacement="docker.io/library/python:3.13-slim",
    )  # fmt: skip
    allowed = (BaseEntry(g("docker.io/library/python"), tags=g("3.12*-slim*", "3.13*-slim*")),)
    contradicted = rules.Rung(
        name="registry.example.com/shop/payments-api", tag="2.0.1", digests=frozenset({D_IMG}),
        display=IMAGE, depth=0, contradicted=KnownTags(frozenset({"1.9.0"})),
    )  # fmt: skip
    base_claim = rules.Rung(
        name="docker.io/library/python", tag="3.12-slim", digests=frozenset({D_OLD}),
        display="docker.io/library/python:3.12-slim", depth=1,
        contradicted=KnownTags(frozenset({"3.8-slim"})),
    )  # fmt: skip
    tag_policy = pol(bases_allowed=(*allowed, BaseEntry(g(contradicted.name), tags=g("1.*"))))
    failed = Lineage(
        reference=s.reference, digest=None,
        failure="cannot connect to registry registry.example.com: Connection refused "
        "(registry.example.com GET /v2/shop/payments-api/manifests/2.0.1)",
    )  # fmt: skip
    stopped = rules.chain_of(
        PlatformLineage(
            "linux/arm64", (lvl(IMAGE), lvl("registry.example.com/shop/base:1")),
            End.LOOKUP_FAILED, failure="registry registry.example.com did not answer within 2s",
        ),
        max_depth=4, verify=Verify.LAYERS,
    )  # fmt: skip
    invalid = ImageFacts(
        image="Registry.example.com/Shop/App:2.0.1",
        invalid="invalid reference 'Registry.example.com/Shop/App:2.0.1': repository name must be lower case",
    )  # fmt: skip
    messages_by_id = {
        "invalid-reference": (
            RuleCode.INVALID_REFERENCE, invalid.image, _one(rules.invalid_reference(pol(), invalid)),
            "write [registry/]repository[:tag][@sha256:<digest>] in lower case",
        ),
        "registry-not-allowed": (
            RuleCode.REGISTRY_NOT_ALLOWED, IMAGE,
            _one(rules.registry_not_allowed(pol(registries_allowed=g("ghcr.io/acme/*", "docker.io/library/*")), s)),
            "use an image from an allowed registry, or mirror it there",
        ),
        "disallowed-tag": (
            RuleCode.DISALLOWED_TAG, "nginx:latest",
            _one(rules.disallowed_tag(pol(pinning=Pinning(disallowed_tags=g("latest"))), _subject("nginx:latest"))),
            "pin a version tag or a digest",
        ),
        "unpinned-digest": (
            RuleCode.UNPINNED, IMAGE,
            _one(rules.unpinned(pol(pinning=Pinning(require=Require.DIGEST)), s)),
            f"use {IMAGE}@sha256:<digest>",
        ),
        "unpinned-version": (
            RuleCode.UNPINNED, "nginx:1.25",
            _one(rules.unpinned(pol(pinning=Pinning(require=Require.VERSION)), _subject("nginx:1.25"))),
            "pin a full version tag or a digest",
        ),
        "tag-mismatch-image": (
            RuleCode.TAG_MISMATCH, IMAGE, _one(rules.tag_mismatch(tag_policy, s, [contradicted])),
            "write the tag the digest has",
        ),
        "tag-mismatch-base": (
            RuleCode.TAG_MISMATCH, IMAGE, _one(rules.tag_mismatch(tag_policy, s, [base_claim])),
            "fix the base annotations at build time, or rebuild on the base it names",
        ),
        "deprecated-base-self": (
            RuleCode.DEPRECATED_BASE, PY38,
            _one(rules.deprecated_base(
                pol(bases_deprecated=(deprecated,)), _subject(PY38), [rules.self_rung(_subject(PY38), None)],
                today=NOW.date(),
            )),
            "use python:3.13-slim",
        ),
        "deprecated-base-lineage": (
            RuleCode.DEPRECATED_BASE, IMAGE,
            _one(rules.deprecated_base(
                pol(bases_deprecated=(deprecated,)), s,
                [rules.self_rung(s, None), rules.level_rung(lvl(PY38), 1)], today=NOW.date(),
            )),
            "use python:3.13-slim",
        ),
        "deprecated-base-enforce-after": (
            RuleCode.DEPRECATED_BASE, IMAGE,
            _one(rules.deprecated_base(
                pol(bases_deprecated=(DeprecatedEntry(
                    deprecated.image, tags=deprecated.tags, reason="EOL",
                    replacement=deprecated.replacement, enforce_after=dt.date(2025, 9, 1),
                ),)), s,
                [rules.self_rung(s, None), rules.level_rung(lvl(PY38), 1)], today=NOW.date(),
            )),
            "use python:3.13-slim; enforced from 2025-09-01",
        ),
        "base-not-allowed": (
            RuleCode.BASE_NOT_ALLOWED, IMAGE,
            _one(rules.base_not_allowed(
                pol(bases_allowed=allowed), s,
                [_chain(lvl("registry.example.com/shop/base:1"), lvl("python:3.11-slim"))],
            )),
            "rebuild it FROM an allowed base",
        ),
        "unknown-base": (
            RuleCode.UNKNOWN_BASE, IMAGE, _one(rules.unknown_base(pol(), s, [_chain(end=End.UNCLAIMED)])),
            "add those annotations at build time or list its base in lineage.catalog",
        ),
        "lineage-mismatch": (
            RuleCode.LINEAGE_MISMATCH, IMAGE,
            _one(rules.lineage_mismatch(pol(), s, [_chain(
                lvl("python:3.12-slim", source=Source.LABEL, verified=False, note="3 of 5 base layers differ")
            )])),
            "fix the base annotations at build time",
        ),
        "stale-base-moved": (
            RuleCode.STALE_BASE, IMAGE,
            _one(rules.stale_base(pol(), s, [_chain(lvl("python:3.12-slim", digest=D_OLD, moved_to=D_NEW))], now=NOW)),
            "rebuild it to pick up the current base",
        ),
        "stale-base-age": (
            RuleCode.STALE_BASE, IMAGE,
            _one(rules.stale_base(
                pol(lineage=LineageSettings(max_base_age=dt.timedelta(days=180))), s,
                [_chain(lvl("python:3.12-slim", created=dt.datetime(2024, 11, 1, tzinfo=dt.UTC)))], now=NOW,
            )),
            "rebuild it on a current base",
        ),
        "lookup-failed": (
            RuleCode.LOOKUP_FAILED, IMAGE, _one(rules.lookup_failed(pol(), s, failed, [])),
            "check the registry and the pull credentials, then retry",
        ),
        "lookup-failed-partial": (
            RuleCode.LOOKUP_FAILED, IMAGE,
            _one(rules.lookup_failed(pol(), s, Lineage(reference=s.reference, digest=D_IMG), [stopped])),
            "check the registry and the pull credentials, then retry",
        ),
        **trust_messages(s),
        **evidence_messages(),
    }
    return messages_by_id


def trust_messages(s: rules.Subject) -> dict[str, tuple[RuleCode, str, str, str]]:
    """The trust rules' messages, as :func:`trustrules.judge` writes them for real answers."""
    key = load_key("platform[0]", signing.public_pem(signing.new_key("p256")))
    authority = AuthoritySpec("platform", keys=(key,), fingerprint="f" * 64)
    trust = TrustPolicy((authority,), attestations=(AttestationSpec(SLSA_V1, (authority,)),))
    lineage = Lineage(reference=s.reference, digest=D_IMG)

    def judged(signature: TrustResult, attestation: TrustResult) -> list[Violation]:
        facts = replace(s.facts, lineage=lineage)
        [target] = subjects(trust, lineage)
        answers = {
            answer_key(target, D_IMG, authority, None): TrustAnswer(signature),
            answer_key(target, D_IMG, authority, SLSA_V1): TrustAnswer(attestation),
        }
        found, _ = trustrules.judge(pol(trust=trust), rules.Subject(replace(facts, trust=answers), s.reference))
        return found

    ok = TrustResult.ok("platform", "platform[0]", "verified", predicate_type=SLSA_V1)
    unsigned = TrustResult.refused("platform", Reason.UNSIGNED, f"no signature for {D_IMG}")
    bad = TrustResult.refused(
        "platform", Reason.BAD_SIGNATURE,
        "the signature does not verify with any key (platform[0]): signed by another key, or the signed bytes were altered",
    )  # fmt: skip
    missing = TrustResult.refused("platform", Reason.UNSIGNED, f"no attestation of {SLSA_V1} for {D_IMG}")
    return {
        "unsigned": (RuleCode.UNSIGNED, IMAGE, _one(judged(unsigned, ok)), "sign it with a listed authority"),
        "signature-invalid": (
            RuleCode.SIGNATURE_INVALID, IMAGE, _one(judged(bad, ok)), "sign it with a listed authority",
        ),
        "attestation-missing": (
            RuleCode.ATTESTATION_MISSING, IMAGE,
            _one([v for v in judged(TrustResult.ok("platform", "platform[0]", "verified"), missing)]),
            "attest it with a listed authority",
        ),
    }


def _with_evidence(evidence: Evidence) -> rules.Subject:
    ref = parse(IMAGE)
    platform = PlatformLineage(
        "linux/amd64", (lvl(IMAGE, digest=D_IMG), lvl("python:3.12-slim", digest=D_OLD)),
        End.KNOWN_BASE, evidence=evidence,
    )  # fmt: skip
    return rules.Subject(ImageFacts(image=IMAGE, reference=ref, lineage=Lineage(ref, D_IMG, (platform,))), ref)


def evidence_messages() -> dict[str, tuple[RuleCode, str, str, str]]:
    """The evidence rules' messages (scan-missing, scan-stale, fixable-vulnerabilities)."""
    spec = EvidenceSpec(max_scan_age=dt.timedelta(days=7), deny_fixable=("CRITICAL", "HIGH"))
    policy = pol(evidence=spec)
    scanned = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    base_vuln = Vulnerability(
        "CVE-2024-5535", "libssl3", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1", "CRITICAL", Where.BASE
    )
    app_vuln = Vulnerability("CVE-2024-6345", "setuptools", "65.5.1", "70.0.0", "HIGH", Where.APPLICATION)
    fresh = Scan("cosign-vuln attestation (attestation)", "trivy 0.58.1", NOW, (base_vuln,))
    base = "docker.io/library/python:3.12-slim"

    def judged(evidence: Evidence, rule: RuleCode) -> str:
        found, _ = evidencerules.judge(policy, _with_evidence(evidence), now=NOW)
        return _one([v for v in found if v.rule is rule])

    rebuilt = Evidence(
        D_IMG, (fresh,), base=base, base_digest=D_OLD, base_moved_to=D_NEW,
        base_now=BaseNow(base, D_NEW, True),
    )  # fmt: skip
    return {
        "scan-missing": (
            RuleCode.SCAN_MISSING, IMAGE, judged(Evidence(D_IMG), RuleCode.SCAN_MISSING),
            "attach a scan with cosign attest --type vuln",
        ),
        "scan-stale": (
            RuleCode.SCAN_STALE, IMAGE,
            judged(Evidence(D_IMG, (Scan("Trivy report (referrer)", "trivy 0.58.1", scanned),)), RuleCode.SCAN_STALE),
            "rescan it and attach the result",
        ),
        "fixable-vulnerabilities-base": (
            RuleCode.FIXABLE_VULNERABILITIES, IMAGE, judged(rebuilt, RuleCode.FIXABLE_VULNERABILITIES),
            "rebuild on the current python:3.12-slim",
        ),
        "fixable-vulnerabilities-application": (
            RuleCode.FIXABLE_VULNERABILITIES, IMAGE,
            judged(
                Evidence(D_IMG, (Scan("Trivy report (referrer)", "trivy", NOW, (app_vuln,)),)),
                RuleCode.FIXABLE_VULNERABILITIES,
            ),
            "update setuptools to 70.0.0",
        ),
    }


RULE_MESSAGES = rule_messages()
SECTIONS = ("containers", "initContainers", "ephemeralContainers")


def test_every_rule_code_has_a_message_here() -> None:
    assert {rule for rule, *_ in RULE_MESSAGES.values()} == set(RuleCode)


def _warn(
    container: str, rule: RuleCode, image: str, message: str, *, section: str = "containers",
    policy: str = "platform-bases",
) -> Finding:  # fmt: skip
    where = ContainerImage(container, image, "/spec/containers/0/image", section=section)
    return Finding(where, Violation(policy, rule, Action.WARN, message))


def _container(length: int) -> str:
    """A valid container name (a DNS label) of ``length`` characters, different at each end."""
    return "".join("abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] for i in range(length))


@pytest.mark.parametrize("case", sorted(RULE_MESSAGES))
@pytest.mark.parametrize("section", SECTIONS)
def test_every_warning_keeps_its_fix_whole_at_every_container_name_length(case: str, section: str) -> None:
    """The fix was cut (``pin a...``) once a container name had 8 characters; it never is."""
    rule, image, message, fix = RULE_MESSAGES[case]
    sent = message.replace("docker.io/library/", "")  # Docker Hub names are written short
    for length in range(1, 64):
        name = _container(length)
        (line,) = messages.warning_lines(grouped_findings([_warn(name, rule, image, message, section=section)]))
        assert len(line.encode()) <= messages.WARNING_MAX, (length, line)
        assert line.isascii() and line.isprintable(), line
        assert line.startswith(f'{rule.value}, {SECTION_NOUN[section]} "'), line
        at = line.rfind(fix)
        assert at > 0 and line[at - 2 : at] in ("; ", ": "), (length, line)
        # the fix whole, with its examples as the rule wrote them or without them
        assert line[at:] == fix or sent.endswith(line[at:]), (length, line)
        shown = re.search(r'"([^"]*)"', line)
        assert shown is not None
        if len(name) <= messages.NAME_MIN or "..." not in shown.group(1):
            assert shown.group(1) == name, line
        else:  # cut in its middle: both ends still say which container
            head, _, tail = shown.group(1).partition("...")
            assert name.startswith(head) and name.endswith(tail) and len(head) >= 3, line


@pytest.mark.parametrize("case", sorted(RULE_MESSAGES))
def test_a_short_container_name_keeps_the_whole_fix_with_its_example(case: str) -> None:
    """With room, nothing of the fix goes: the example digest reference stays."""
    rule, image, message, _ = RULE_MESSAGES[case]
    (line,) = messages.warning_lines(grouped_findings([_warn("app", rule, image, message)]))
    whole = message.replace("docker.io/library/", "").rsplit("; ", 1)[1]  # the fix as the rule wrote it
    if whole.startswith("enforced from "):
        whole = "; ".join(message.replace("docker.io/library/", "").rsplit("; ", 2)[1:])
    if len(f'{rule.value}, container "app": {whole}') <= messages.WARNING_MAX:
        assert line.endswith(whole), line


def test_the_warning_kubectl_printed_cut_keeps_its_fix() -> None:
    """The one reported through a real apiserver: ``…which the policy disallows; pin a...``."""
    rule, image, message, _ = RULE_MESSAGES["disallowed-tag"]
    (line,) = messages.warning_lines(grouped_findings([_warn("warn-latest", rule, image, message)]))
    assert line == (
        'disallowed-tag, container "warn-latest": uses the tag "latest", which the policy...; '
        "pin a version tag or a digest"
    )


def test_a_deprecated_base_keeps_the_base_and_the_reason_and_drops_the_image_name() -> None:
    """``image 127.0.0.1:5055/shop/legacy:2.0.1 is built on...; use python:3.13-slim`` lost
    the base: the container name already says which image, so its name goes first."""
    image = "127.0.0.1:5055/shop/legacy:2.0.1"
    message = (
        f"image {image} is built on {PY38} (deprecated: Python 3.8: end of life 2024-10-07; "
        "source: endoflife.date, snapshot 2026-08-22); use docker.io/library/python:3.13-slim"
    )
    (line,) = messages.warning_lines(grouped_findings([_warn("app", RuleCode.DEPRECATED_BASE, image, message)]))
    assert line == (
        'deprecated-base, container "app": is built on python:3.8-slim '
        "(Python 3.8: end of life 2024-10-07); use python:3.13-slim"
    )
    (line,) = messages.warning_lines(grouped_findings([_warn("legacy", RuleCode.DEPRECATED_BASE, image, message)]))
    assert line == (  # a longer name: the reason is cut, inside its parentheses
        'deprecated-base, container "legacy": is built on python:3.8-slim '
        "(Python 3.8: end of life...); use python:3.13-slim"
    )


def test_a_failed_lookup_keeps_why_it_failed() -> None:
    """``the lineage of image...; check the registry…`` said nothing of the failure."""
    rule, image, message, fix = RULE_MESSAGES["lookup-failed"]
    (line,) = messages.warning_lines(grouped_findings([_warn("app", rule, image, message)]))
    assert line.startswith('lookup-failed, container "app": cannot connect to registry')
    assert line.endswith(f"; {fix}")


def test_two_policies_with_different_replacements_give_one_warning_offering_both() -> None:
    image = "127.0.0.1:5055/shop/legacy:2.0.1"
    what = f"image {image} is built on {PY38}"
    found = [
        _warn("app", RuleCode.DEPRECATED_BASE, image, f"{what} (deprecated: end of life); use {PY38[:-8]}3.13-slim",
              policy="eol-python"),
        _warn("app", RuleCode.DEPRECATED_BASE, image, f"{what} (deprecated: platform rule); use {PY38[:-8]}3.12-slim",
              policy="platform-bases"),
    ]  # fmt: skip
    assert messages.warning_lines(grouped_findings(found)) == [
        'deprecated-base, container "app": is built on python:3.8-slim (end of life); '
        "use python:3.13-slim or python:3.12-slim"
    ]


def test_the_same_replacement_from_two_policies_is_said_once() -> None:
    rule, image, message, _ = RULE_MESSAGES["deprecated-base-lineage"]
    found = [_warn("app", rule, image, message, policy=p) for p in ("eol-python", "platform-bases")]
    (line,) = messages.warning_lines(grouped_findings(found))
    assert line.endswith("; use python:3.13-slim") and line.count("python:3.13-slim") == 1


def test_a_fix_longer_than_a_warning_is_the_only_thing_cut_at_its_end() -> None:
    """A replacement named in 150 characters cannot fit: the warning still fits."""
    replacement = "registry.example.com/" + "platform/" * 15 + "python:3.13-slim"
    message = f"image {IMAGE} is deprecated (EOL); use {replacement}"
    (line,) = messages.warning_lines(grouped_findings([_warn("a" * 63, RuleCode.DEPRECATED_BASE, IMAGE, message)]))
    assert len(line) <= messages.WARNING_MAX
    assert line.startswith('deprecated-base, container "aaa') and "; " not in line
    assert ": use registry.example.com/platform/" in line and line.endswith("...")


# --------------------------------------------------------------------------- clip, unchanged


_SPACES = re.compile(r"\s+")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TYPOGRAPHY = str.maketrans({
    "\u2192": "->", "\u2190": "<-", "\u2026": "...", "\u2014": "-", "\u2013": "-",
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
})  # fmt: skip


def _old_clip(text: str, limit: int, *, ascii_only: bool = True) -> str:
    """``clip()`` as it was before its fast path, copied whole: the behaviour it must keep."""
    line = _SPACES.sub(" ", text).strip()
    line = (
        _NOT_PRINTABLE.sub("?", line.translate(_TYPOGRAPHY))
        if ascii_only
        else _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", _CONTROL.sub(" ", line))
    )
    if len(line.encode()) <= limit:
        return line
    cut = line[: max(limit - 3, 0)]
    while len(cut.encode()) > limit - 3:
        cut = cut[:-1]
    space = cut.rfind(" ", len(cut) - 20)
    if space > 0:
        cut = cut[:space]
    return cut.rstrip() + "..."


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet=st.sampled_from("ab :;()\t\n  é→—\x00\x7f\ud800"), max_size=300),
        st.text(max_size=300),
    ),
    limit=st.integers(min_value=3, max_value=200),  # the old loop never ended below 3
    ascii_only=st.booleans(),
)
def test_clip_says_what_it_said_before_only_faster(text: str, limit: int, ascii_only: bool) -> None:
    assert messages.clip(text, limit, ascii_only=ascii_only) == _old_clip(text, limit, ascii_only=ascii_only)


def test_a_waived_finding_and_an_unparsable_image_still_warn() -> None:
    waived = Finding(
        ContainerImage("app", "python:3.8", "/spec/containers/0/image"),
        Violation("p", RuleCode.DEPRECATED_BASE, Action.ALLOW, "x; y", waived="waived until 2026-03-31: PAY-1"),
    )
    assert messages.warning_lines([(waived, Group(RuleCode.DEPRECATED_BASE, "x; y", waived.violation.waived,
                                                  ("p",), Action.ALLOW))]) == [
        'deprecated-base (p), container "app": waived until 2026-03-31: PAY-1'
    ]  # fmt: skip


# --------------------------------------------------------------------------- punycode hosts

#: ``xn--80ak6aa92e`` decodes to Cyrillic letters that read as "apple"; ``.invalid`` never resolves.
PUNYCODE_HOST = "xn--80ak6aa92e.invalid"


def _lineage_policy(mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": mode,
            "pinning": {"disallowedTags": []},
            "bases": {"allowed": [{"image": "docker.io/library/python", "tags": ["3.12*"]}]},
            "lineage": {"onLookupFailure": "Deny"},
        },
    }


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    stream = io.StringIO()
    handler = logs.configure(level="INFO", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.unconfigure(handler)


@pytest.mark.parametrize("mode", ["Enforce", "Warn"])
async def test_a_punycode_host_is_shown_as_written_never_decoded(
    start_webhook: StartWebhook, mode: str, lines: Any
) -> None:
    """``xn--80ak6aa92e`` was shown decoded, as a lookalike of ``apple``, in the denial
    and the log (and as ``????`` in a warning): a user must read the host the image names."""
    async with RegistryClient(RegistryConfig.of()) as client:
        hook = await start_webhook(assessor=Assessor(LineageResolver(client)), docs=[_lineage_policy(mode)])
        image = f"{PUNYCODE_HOST}/shop/app:1.0.0"
        response = await hook.response(set_images(fixture("deployment-create.json"), {"app": image, "proxy": image}))
    if mode == "Enforce":
        said = response["status"]["message"]
        assert f"cannot resolve registry host {PUNYCODE_HOST}: " in said, said
    else:  # the warning is cut before the host; what it shows is never "????"
        said = "\n".join(response["warnings"])
        assert response["allowed"] is True and "?" not in said, said
    assert said.isascii(), said
    (decision,) = [line for line in lines() if line["msg"] == "decision"]
    logged = json.dumps(decision, ensure_ascii=False)
    assert f"cannot resolve registry host {PUNYCODE_HOST}: " in logged and logged.isascii(), logged


@pytest.mark.parametrize(
    ("written", "named"),
    [("nginx", "nginx:latest"), ("docker.io/library/nginx:latest", "nginx:latest"),
     ("REGISTRY.example.com/shop/app", "registry.example.com/shop/app:latest")],
    ids=["no-tag", "long-form", "upper-case-host"],
)  # fmt: skip
def test_the_image_is_not_named_again_however_it_was_written(written: str, named: str) -> None:
    message = (
        f'image {parse(written).normalized} has no tag, so it pulls "latest", which the policy disallows '
        "(a moving tag: what runs can change without a deploy); pin a version tag or a digest, "
        f"e.g. {parse(written).name}@sha256:<digest>"
    )
    (line,) = messages.warning_lines(
        grouped_findings([_warn("payments-api", RuleCode.DISALLOWED_TAG, written, message)])
    )
    assert line.startswith('disallowed-tag, container "payments-api": has no tag, so it pulls "latest"'), line
    assert f"image {named}" not in line
