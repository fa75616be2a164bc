"""Settings of ``baseguard run`` beyond the webhook's, read once at start-up and passed down."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from controller.operator.rotation import Lifetimes, service_hosts


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    namespace: str
    """The namespace baseguard runs in: its Lease, its TLS Secret, its Service."""

    identity: str
    """This replica's name in the Lease (the pod name)."""

    lease_name: str = "baseguard-leader"
    """The ``coordination.k8s.io`` Lease the replicas elect a leader on."""

    lease_duration: int = 15
    """Seconds a Lease stays valid without renewal (client-go's default)."""

    renew_deadline: float = 10.0
    """The leader steps down when it could not renew for this long."""

    retry_period: float = 2.0
    """Seconds between election rounds."""

    tls_secret: str | None = None
    """The Secret holding the serving pair (``tls.crt``/``tls.key``), read through the API
    by every replica. ``None``: the pair comes from files (``--tls-cert``/``--tls-key``)."""

    manage_certificates: bool = False
    """The leader creates and rotates :attr:`tls_secret` and patches the ``caBundle`` of
    the webhook configurations. Off when cert-manager or a user provides the Secret."""

    service: str = "baseguard"
    """The webhook's Service: the serving certificate is made for its DNS names."""

    cert_hosts: tuple[str, ...] = ()
    """More names (or IP addresses) for the serving certificate: the host of the URL the
    apiserver calls when it reaches the webhook by URL instead of through the Service."""

    webhook_configurations: tuple[str, ...] = ("baseguard",)
    """Names of the Validating and Mutating webhook configurations (both kinds are
    looked up under each name) whose ``caBundle`` the leader keeps current."""

    mutating_webhook: str | None = None
    """A MutatingWebhookConfiguration whose ``webhooks`` the leader keeps in step with the
    policies: its templated entry while some policy sets ``pinning.mutateToDigest``, none
    otherwise (:mod:`controller.operator.mutation`). ``None``: the chart owns the list."""

    mutation_check_interval: float = 60.0
    """Seconds between the leader's checks of :attr:`mutating_webhook` when no policy
    changed (a policy change checks at once); repairs a list someone else rewrote."""

    vap_backstop: bool = False
    """The leader keeps a ValidatingAdmissionPolicy and binding per policy (its registry-free
    rules, :mod:`controller.vap`) in step with the policies (:mod:`controller.operator.backstop`)."""

    vap_owner: str = ""
    """The value of ``baseguard.io/backstop`` on the objects it writes (the only ones it
    replaces or deletes); empty: :attr:`namespace`. The chart passes the release's name."""

    vap_exclude_namespaces: tuple[str, ...] = ("kube-system",)
    """Namespaces the generated objects never judge (the webhook's own exclusions)."""

    vap_check_interval: float = 60.0
    """Seconds between the leader's backstop checks when no policy changed."""

    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    """Certificate validities and how early the serving certificate is replaced."""

    cert_check_interval: float = 60.0
    """Seconds between the leader's certificate checks (three GETs when nothing is due).
    Short, because a Helm upgrade or a user can reset a configuration's caBundle."""

    tls_poll_interval: float = 10.0
    """Seconds between every replica's reads of :attr:`tls_secret`."""

    status_resync_interval: float = 300.0
    """Seconds between the leader's full pass over every policy's ``Ready`` status
    (events keep it current; the pass repairs anything missed)."""

    audit_interval: float = 600.0
    """Seconds between background audits; 0 turns the audit off."""

    audit_budget: float = 60.0
    """Seconds the registry lookups of one audit batch may take."""

    audit_batch: int = 50
    """Objects assessed together (their lookups deduplicated) in one batch."""

    audit_lookups_per_second: float = 10.0
    """Lineage lookups the audit starts per second at most (cached ones are free)."""

    audit_writes_per_second: float = 20.0
    """Writes (reports, Events, ``status.audit``) the audit sends the apiserver per second at
    most: a thousand namespaces whose reports change at once do not flood it."""

    audit_status_refresh: dt.timedelta = dt.timedelta(hours=1)
    """``status.audit`` is rewritten when its figures change, or when its ``lastRun`` is this
    old: an audit that found what the last one found writes nothing."""

    audit_events_per_run: int = 200
    """Events one audit posts at most; the rest follow in the next run."""

    event_interval: dt.timedelta = dt.timedelta(hours=1)
    """A finding that persists refreshes its Event at most this often."""

    policy_reports: bool = True
    """Write the audit as OpenReports (``openreports.io/v1alpha1``) and/or ``wgpolicyk8s.io/v1alpha2``
    PolicyReports, whichever of the two CRDs is installed (both if both)."""

    catalog_refresh_interval: float = 300.0
    """Seconds between refreshes of the catalog bases' digests (every replica
    keeps its own catalog; a tag's digest history only grows while it is watched)."""

    warm_start: bool = False
    """Once it first leads, pre-resolve the images of running pods into admission's caches
    (:mod:`controller.operator.warmstart`), so a rollout or restart does not start cold."""

    warm_start_rate: float = 5.0
    """Image lookups the warm start begins per second at most (a burst of one)."""

    warm_start_concurrency: int = 4
    """Image lookups the warm start runs at once at most."""

    warm_start_budget: float = 30.0
    """Seconds one image's warm-start lookup may take (its own budget, no review's)."""

    pull_secrets: bool = True
    """Read pods' ``imagePullSecrets`` (and their service accounts') for registry lookups."""

    pull_secret_ttl: float = 60.0
    """Seconds a read pull secret or service account is remembered."""

    @property
    def serving_hosts(self) -> tuple[str, ...]:
        """Every name the serving certificate is made for: the Service's DNS names, then :attr:`cert_hosts`."""
        return (*service_hosts(self.service, self.namespace), *self.cert_hosts)
