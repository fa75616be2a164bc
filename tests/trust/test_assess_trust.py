"""The assessor's trust phase against the real registry: budget, cache, and the warm path.

Every registry request made for signatures is charged to the review's budget:
at every request bound below what the review needs the image is denied
(``lookup-failed`` or the trust rule), never allowed; a warm review asks the
registry nothing for signatures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from support import signing
from support.cosign_push import push_signature
from support.images import layer

from controller.assess import Assessor
from controller.lineage.budget import Bounds
from controller.lineage.resolve import LineageResolver
from controller.lineage.signatures import SignatureChecker
from controller.policy.compile import compile_policy
from controller.policy.model import Action, RuleCode
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.workloads import ContainerImage, Workload

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


@pytest_asyncio.fixture
async def client(registry: Any) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistryConfig.of(RegistryHost(registry.host, insecure=True))) as c:
        yield c


def trust_policy(key: Any) -> Any:
    return compile_policy(
        {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "signed"},
            "spec": {
                "pinning": {"disallowedTags": []},
                "trust": {"authorities": [{"name": "platform", "keys": [{"publicKey": signing.public_pem(key)}]}]},
            },
        }
    )


def workload(image: str) -> Workload:
    return Workload("Pod", "a", "shop", images=(ContainerImage("app", image, "/spec/containers/0/image"),))


async def test_every_request_bound_short_of_the_reviews_need_denies_and_the_warm_review_asks_nothing(
    registry: Any, unique_repo: str, client: RegistryClient
) -> None:
    key = signing.new_key("ed25519")
    image = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "budget"})])
    push_signature(registry.pusher, f"{unique_repo}/app", image.digest, key)
    policies = (trust_policy(key),)
    seen_signature_bound = False
    for limit in range(1, 12):
        assessor = Assessor(
            LineageResolver(client),
            bounds=Bounds(max_requests=limit),
            signatures=SignatureChecker(client),  # a fresh results cache: every bound is cold
        )
        [result] = await assessor.assess([workload(image.tagged)], policies, now=NOW)
        if result.verdict is Action.ALLOW:
            break
        [violation] = result.results[0].violations
        assert violation.rule is RuleCode.LOOKUP_FAILED, violation
        assert "max_requests_per_review" in violation.message, violation.message
        seen_signature_bound |= "the signatures of" in violation.message
    else:
        raise AssertionError("never allowed, even with 11 requests")
    assert seen_signature_bound, "no bound fell between the lineage and the signatures"

    checker = SignatureChecker(client)
    assessor = Assessor(LineageResolver(client), signatures=checker)
    before = client.stats.total
    [cold] = await assessor.assess([workload(image.reference)], policies, now=NOW)
    cold_requests = client.stats.total - before
    assert cold.verdict is Action.ALLOW
    before = client.stats.total
    [warm] = await assessor.assess([workload(image.reference)], policies, now=NOW)
    assert warm.verdict is Action.ALLOW
    assert checker.results.hits >= 1
    assert client.stats.total - before <= cold_requests


async def test_verification_cpu_is_the_reviews_and_running_out_is_a_failure_not_a_pass(
    registry: Any, unique_repo: str, client: RegistryClient
) -> None:
    """Each verification is charged to the review's CPU; past the bound the rest is not verified, and says so."""
    from controller.lineage.budget import ReviewBudget
    from controller.lineage.signatures import Wanted
    from controller.trust.authorities import KeyAuthority
    from controller.trust.keys import load_key

    key = signing.new_key("rsa")
    image = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "cpu"})])
    push_signature(registry.pusher, f"{unique_repo}/app", image.digest, key)
    authority = KeyAuthority("platform", (load_key("platform[0]", signing.public_pem(key)),))
    wanted = [Wanted(registry.host, f"{unique_repo}/app", image.digest, authority, "platform", "f" * 64)]
    budget = ReviewBudget()
    [answer] = await SignatureChecker(client).check(wanted, budget=budget, now=NOW)
    assert answer.result is not None and answer.result.verified
    assert budget.cpu > 0  # the verification was charged
    spent = ReviewBudget(Bounds(max_cpu_per_review=0.001))
    spent.charge_cpu(1.0)
    [answer] = await SignatureChecker(client).check(wanted, budget=spent, now=NOW)
    assert answer.result is None
    assert answer.failure is not None and "max_cpu_per_review" in answer.failure


async def test_a_signature_failure_is_never_remembered_by_the_webhooks_memo(
    registry: Any, unique_repo: str, client: RegistryClient
) -> None:
    """A review whose signatures could not be judged is asked again, never answered from memory."""
    from controller.memo import MemoAssessor, MemoResolver

    image = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "memo"})])
    keyless = compile_policy(
        {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "keyless"},
            "spec": {"trust": {"authorities": [{"name": "ci", "keyless": {"issuer": "https://i", "subject": "s"}}]}},
        }
    )
    key = signing.new_key("p256")
    push_signature(registry.pusher, f"{unique_repo}/app", image.digest, key)
    for policies, remembered in (((keyless,), 0), ((trust_policy(key),), 1)):
        assessor = MemoAssessor(MemoResolver(client))  # no trusted roots: the keyless one fails
        [result] = await assessor.assess([workload(image.reference)], policies, now=NOW)
        assert len(assessor.memo) == remembered, result.results[0].violations
