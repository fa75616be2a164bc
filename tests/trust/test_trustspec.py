"""``spec.trust`` compiled: every mistake named by its field path; fingerprints; what must be signed."""

from __future__ import annotations

from typing import Any

import pytest
from support import signing
from support.policy_builders import lvl, plat

from controller.lineage.model import End, Lineage, Source
from controller.policy.compile import check_policy, compile_policy
from controller.policy.trustspec import AppliesTo, subjects
from controller.reference import parse

PEM = signing.public_pem(signing.new_key("p256"))
OTHER_PEM = signing.public_pem(signing.new_key("ed25519"))


def doc(trust: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "p"},
        "spec": {"trust": trust},
    }


def errors(trust: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e.path, e.reason) for e in check_policy(doc(trust))]


KEYS = {"name": "platform", "keys": [{"publicKey": PEM}]}


@pytest.mark.parametrize(
    ("trust", "path", "words"),
    [
        ({"authorities": [{"name": "a", "keys": [{"publicKey": PEM}], "keyless": {"issuer": "i", "subject": "s"}}]},
         "spec.trust.authorities[0]", "exactly one of keys, keyless"),
        ({"authorities": [KEYS, KEYS]}, "spec.trust.authorities[1].name", "named twice"),
        ({"authorities": [{"name": "a", "keys": [{"publicKey": "nope"}]}]},
         "spec.trust.authorities[0].keys[0].publicKey", "not a PEM public key"),
        ({"authorities": [{"name": "a", "keys": [{"publicKey": PEM, "notBefore": "2027-01-01T00:00:00Z",
                                                   "notAfter": "2026-01-01T00:00:00Z"}]}]},
         "spec.trust.authorities[0].keys[0].notAfter", "before notBefore"),
        ({"authorities": [{"name": "a", "keys": [{"publicKey": PEM, "notBefore": "2027-01-01T00:00:00"}]}]},
         "spec.trust.authorities[0].keys[0].notBefore", "time zone"),
        ({"authorities": [{"name": "a", "keyless": {"issuer": "i", "subjectRegExp": "("}}]},
         "spec.trust.authorities[0].keyless.subjectRegExp", "not a regular expression"),
        ({"authorities": [KEYS], "attestations": [{"predicateType": "x", "authorities": ["nobody"]}]},
         "spec.trust.attestations[0].authorities[0]", "no authority named 'nobody'"),
        ({"authorities": [KEYS], "appliesTo": "Everything"}, "spec.trust.appliesTo", "Image, Bases, All"),
        ({"authorities": [{"name": f"a{i}", "keys": [{"publicKey": PEM}]} for i in range(17)]},
         "spec.trust.authorities", "16"),
        ({"authorities": [KEYS], "images": ["Registry.Corp/Base/*"]}, "spec.trust.images[0]", ""),
    ],
)  # fmt: skip
def test_each_mistake_is_named_by_its_path(trust: dict[str, Any], path: str, words: str) -> None:
    found = errors(trust)
    assert any(p == path and words in reason for p, reason in found), found


def test_a_good_section_compiles_with_its_defaults() -> None:
    policy = compile_policy(doc({"authorities": [KEYS], "attestations": [{"predicateType": signing.SLSA_V1}]}))
    assert policy.trust is not None
    assert policy.trust.applies_to is AppliesTo.IMAGE
    assert [a.name for a in policy.trust.attestations[0].authorities] == ["platform"]
    assert policy.needs_lineage and not policy.judges_lineage  # signatures need the registry, not the lineage rules


def test_the_fingerprint_is_the_authoritys_whole_content() -> None:
    def fingerprint(authority: dict[str, Any]) -> str:
        policy = compile_policy(doc({"authorities": [authority]}))
        assert policy.trust is not None
        return policy.trust.authorities[0].fingerprint

    same = fingerprint(KEYS)
    assert fingerprint(dict(KEYS)) == same
    assert fingerprint({"name": "platform", "keys": [{"publicKey": OTHER_PEM}]}) != same
    assert fingerprint({"name": "other", "keys": [{"publicKey": PEM}]}) != same
    windowed = {"name": "platform", "keys": [{"publicKey": PEM, "notAfter": "2027-01-01T00:00:00Z"}]}
    assert fingerprint(windowed) != same


def test_bases_are_the_levels_not_contradicted_narrowed_by_images() -> None:
    image = "registry.corp/team/app:1"
    lineage = Lineage(
        parse(image),
        "sha256:" + "a" * 64,
        (
            plat(
                "linux/amd64",
                image,
                lvl("registry.corp/base/debian:12", digest="sha256:" + "b" * 64),
                lvl("docker.io/library/busybox:1", source=Source.LABEL, verified=False, digest="sha256:" + "c" * 64),
                lvl("docker.io/library/alpine:3", digest="sha256:" + "d" * 64),
                end=End.SCRATCH,
            ),
        ),
    )
    policy = compile_policy(doc({"authorities": [KEYS], "appliesTo": "All"}))
    assert policy.trust is not None
    found = subjects(policy.trust, lineage)
    assert [(s.depth, s.name) for s in found] == [(0, "registry.corp/team/app"), (1, "registry.corp/base/debian")]
    narrowed = compile_policy(doc({"authorities": [KEYS], "appliesTo": "Bases", "images": ["registry.corp/base/*"]}))
    assert narrowed.trust is not None
    assert [s.name for s in subjects(narrowed.trust, lineage)] == ["registry.corp/base/debian"]
    assert subjects(narrowed.trust, None) == []


def test_signatures_nobody_looked_up_are_lookup_failed_and_offline_they_are_not_evaluated() -> None:
    from controller.policy import rules, trustrules
    from controller.policy.facts import ImageFacts
    from controller.policy.model import RuleCode

    image = "registry.corp/team/app:1"
    policy = compile_policy(doc({"authorities": [KEYS]}))
    lineage = Lineage(parse(image), "sha256:" + "a" * 64, (plat("linux/amd64", image, end=End.SCRATCH),))
    looked_up = ImageFacts(image=image, reference=parse(image), lineage=lineage)
    found, open_ = trustrules.judge(policy, rules.Subject(looked_up, parse(image)))
    assert [v.rule for v in found] == [RuleCode.LOOKUP_FAILED] and open_ == set()
    assert "were not looked up" in found[0].message
    offline = ImageFacts(image=image, reference=parse(image))
    found, open_ = trustrules.judge(policy, rules.Subject(offline, parse(image)))
    assert found == [] and open_ == {RuleCode.UNSIGNED, RuleCode.SIGNATURE_INVALID}
