"""Per-review registry credentials (a pod's pull secrets) against a real htpasswd registry over TLS.

The webhook never reads Secrets itself: ``Admission(credentials=...)`` asks the
caller (the operator) for the review's credentials. Here that caller is a
table of pull-secret names, which is all the seam needs.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from support.credentials import TLS_USER
from support.images import Pushed, layer
from support.registry import RegistryProcess
from support.webhook import StartWebhook, Webhook, fill_store, fixture

from controller.memo import MemoAssessor, MemoResolver
from controller.policy.store import PolicyStore
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import Credentials, RegistryConfig, RegistryHost
from controller.webhook.handlers import Admission


@dataclass
class Family:
    python: Pushed
    app: Pushed


@pytest.fixture
def family(tls_registry: RegistryProcess, unique_repo: str) -> Family:
    claim = lambda p: {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}  # noqa: E731
    debian = layer({"etc/os-release": f"debian {unique_repo}"})
    python = layer({"python": f"3.12 {unique_repo}"})
    base = tls_registry.push_image(
        f"{unique_repo}/debian", "12", [debian], annotations={media.BASE_NAME: "scratch"}
    )
    py = tls_registry.push_image(
        f"{unique_repo}/python", "3.12.3", [debian, python], annotations=claim(base)
    )
    app = tls_registry.push_image(
        f"{unique_repo}/app", "1.0.0", [debian, python, layer({"app": unique_repo})],
        annotations=claim(py),
    )  # fmt: skip
    return Family(py, app)


def policy(host: str, repo: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "bases": {"allowed": [{"image": f"{host}/{repo}/python", "tags": ["3.12*"]}]},
            "lineage": {"onLookupFailure": "Deny", "onUnknownBase": "Deny"},
        },
    }


def pod(image: str, *pull_secrets: str) -> dict[str, Any]:
    """A Pod review with one container running ``image``, naming ``pull_secrets``."""
    review = copy.deepcopy(fixture("pod-create.json"))
    spec = review["request"]["object"]["spec"]
    spec["containers"] = [{**spec["containers"][0], "image": image}]
    spec.pop("initContainers", None)
    spec.pop("volumes", None)
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    return review


class PullSecrets:
    """The operator's part, reduced to a table: secret name → credentials for the registry."""

    def __init__(self, secrets: Mapping[str, Mapping[str, Credentials]]) -> None:
        self.secrets = secrets
        self.asked = 0

    async def __call__(
        self, namespace: str | None, spec: Mapping[str, Any]
    ) -> Mapping[str, Credentials]:
        self.asked += 1
        found: dict[str, Credentials] = {}
        for ref in spec.get("imagePullSecrets") or []:
            for host, creds in self.secrets.get(ref["name"], {}).items():
                found.setdefault(host, creds)
        return found


@pytest_asyncio.fixture
async def client(tls_registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    config = RegistryConfig.of(RegistryHost(tls_registry.host, ca_file=tls_registry.ca_file))
    async with RegistryClient(config) as client:
        yield client


@pytest.fixture
def secrets(tls_registry: RegistryProcess) -> PullSecrets:
    host = tls_registry.host
    return PullSecrets(
        {
            "regcred": {host: Credentials(*TLS_USER)},
            "stale": {host: Credentials(TLS_USER[0], "an-old-password")},
            "elsewhere": {"registry.example.com": Credentials(*TLS_USER)},
        }
    )


async def start(
    start_webhook: StartWebhook,
    client: RegistryClient,
    secrets: PullSecrets,
    tls_registry: RegistryProcess,
    unique_repo: str,
) -> tuple[Webhook, MemoAssessor]:
    store = PolicyStore()
    fill_store(store, [policy(tls_registry.host, unique_repo)])
    assessor = MemoAssessor(MemoResolver(client))
    admission = Admission(store=store, assessor=assessor, credentials=secrets)
    return await start_webhook(store=store, reviewer=admission), assessor


def lookup_failed(response: Mapping[str, Any]) -> bool:
    return response["allowed"] is False and "rule lookup-failed" in response["status"]["message"]


NONE = "requires credentials (Basic) and none are configured for {host}"
REFUSED = "authentication refused by {host} (401 with basic credentials)"


@pytest.mark.parametrize(
    ("pull_secrets", "refused"),
    [((), NONE), (("stale",), REFUSED), (("elsewhere",), NONE), (("stale", "regcred"), REFUSED),
     (("regcred",), None), (("elsewhere", "regcred"), None)],
    ids=["none", "wrong-password", "other-registry", "first-secret-wins", "right", "right-second"],
)  # fmt: skip
async def test_a_pull_secret_opens_the_registry_for_its_own_review(
    start_webhook: StartWebhook,
    client: RegistryClient,
    secrets: PullSecrets,
    tls_registry: RegistryProcess,
    unique_repo: str,
    family: Family,
    pull_secrets: tuple[str, ...],
    refused: str | None,
) -> None:
    hook, _ = await start(start_webhook, client, secrets, tls_registry, unique_repo)
    response = await hook.response(pod(family.app.tagged, *pull_secrets))
    if refused is None:  # the lineage was found: the app is built on an allowed python
        assert response == {"uid": fixture("pod-create.json")["request"]["uid"], "allowed": True}
    else:
        assert lookup_failed(response), response
        assert refused.format(host=tls_registry.host) in response["status"]["message"]


async def test_a_refusal_without_credentials_is_not_served_to_a_review_with_them(
    start_webhook: StartWebhook,
    client: RegistryClient,
    secrets: PullSecrets,
    tls_registry: RegistryProcess,
    unique_repo: str,
    family: Family,
) -> None:
    hook, assessor = await start(start_webhook, client, secrets, tls_registry, unique_repo)
    # one after the other: the anonymous 401 is remembered for anonymous lookups only
    assert lookup_failed(await hook.response(pod(family.app.tagged)))
    assert (await hook.response(pod(family.app.tagged, "regcred")))["allowed"] is True
    # at once, on an image nobody looked up yet: neither joins the other's lookup in flight
    again = tls_registry.push_image(
        f"{unique_repo}/app", "again", [layer({"etc/os-release": f"debian {unique_repo}"}),
        layer({"python": f"3.12 {unique_repo}"}), layer({"app": "again"})],
        annotations={media.BASE_NAME: family.python.tagged, media.BASE_DIGEST: family.python.digest},
    )  # fmt: skip
    anonymous, credentialed = await asyncio.gather(
        hook.response(pod(again.tagged)), hook.response(pod(again.tagged, "regcred"))
    )
    assert lookup_failed(anonymous)
    assert credentialed["allowed"] is True
    assert secrets.asked == 4
    # what was judged with the password is remembered for that credential set only
    bound = assessor.for_credentials({tls_registry.host: Credentials(*TLS_USER)})
    assert bound is not assessor
    assert (len(bound.reviews), len(assessor.reviews)) == (2, 0)


async def test_credentials_that_do_not_arrive_in_time_leave_the_lookup_anonymous(
    start_webhook: StartWebhook,
    client: RegistryClient,
    tls_registry: RegistryProcess,
    unique_repo: str,
    family: Family,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stalled(namespace: str | None, spec: Mapping[str, Any]) -> Mapping[str, Credentials]:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    store = PolicyStore()
    fill_store(store, [policy(tls_registry.host, unique_repo)])
    admission = Admission(
        store=store, assessor=MemoAssessor(MemoResolver(client)), credentials=stalled
    )
    hook = await start_webhook(store=store, reviewer=admission)
    response = await hook.response(pod(family.app.tagged, "regcred"), query="?timeout=4s")
    assert lookup_failed(response)
    assert "registry credentials unavailable" in caplog.text
