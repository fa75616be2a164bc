"""Run-time settings of the webhook server, read once at start-up and passed down.

Nothing here reads the environment or the command line by itself: ``serve``
(and later the operator) builds one :class:`Settings` from its arguments and
hands it to whatever needs it, so tests build their own without patching.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.lineage.budget import (
    MAX_BYTES,
    MAX_CANDIDATES,
    MAX_CPU_PER_IMAGE,
    MAX_CPU_PER_REVIEW,
    MAX_IMAGES,
    MAX_PLATFORMS,
    MAX_PROCESSES,
    MAX_REQUESTS,
    Bounds,
)

MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "0.0.0.0"
    """Address to listen on. All interfaces by default: in a cluster the apiserver
    reaches the pod through its Service; tests and local runs pass 127.0.0.1."""

    port: int = 8443
    """HTTPS port. 0 picks a free port (tests)."""

    budget: float = 8.0
    """The longest one review may spend, in seconds, when the apiserver does not say.
    The apiserver appends ``?timeout=Ns`` (the webhook's ``timeoutSeconds``) to every
    call; that value minus :attr:`safety_margin` can only lower this."""

    safety_margin: float = 1.5
    """Seconds kept back from the apiserver's timeout for evaluation, the answer's
    trip back and the apiserver's own overhead: an answer that arrives after the
    apiserver gave up counts as a failure (``failurePolicy``), not as a verdict."""

    min_budget: float = 0.25
    """Floor for the lookup budget when the timeout minus the margin leaves less.
    A cached lineage still answers in that time; an uncached one falls to
    ``onLookupFailure``. Never more than half of the apiserver's timeout."""

    max_body: int = 3 * MIB
    """Largest request body accepted (HTTP 413 beyond). A review carries the object
    and, on UPDATE, the old object: a big ConfigMap-sized pod template twice over
    fits comfortably; anything larger is not a workload."""

    cache_ttl: float = 5.0
    """Seconds a complete lineage, a workload's results and a whole review's results are
    remembered (0: never). A rollout asks about the same images many times within
    seconds, and a remembered review is answered without even extracting its
    workload again; failures are never remembered. Adds at most this much to the
    registry client's tag TTL before a moved base tag is noticed."""

    policy_reload_interval: float = 2.0
    """How often ``serve`` checks its policy files for changes, in seconds."""

    cert_reload_interval: float = 5.0
    """How often the serving certificate and key files are checked for changes, in
    seconds. A rotated Secret volume is picked up without a restart."""

    shutdown_timeout: float = 5.0
    """Seconds in-flight reviews get to finish after SIGTERM before connections close."""

    handshake_timeout: float = 5.0
    """Seconds a client has to complete the TLS handshake before its socket is closed."""

    header_timeout: float = 5.0
    """Seconds a connection has to send a whole request head: from connecting, or on a
    kept-alive connection from the first byte of its next request. Past it the
    connection is closed (the apiserver sends a review's head in one write)."""

    body_timeout: float = 5.0
    """Seconds a review's body may take to arrive once its head has; past it the
    request is answered 408 and the connection closed."""

    idle_timeout: float = 120.0
    """Seconds an idle kept-alive connection stays open. Longer than the apiserver's
    own idle timeout (90 s), so that the client, not the server, closes it: a
    review sent on a connection the server is closing would fail."""

    max_connections: int = 512
    """Most connections open at once; one more is closed as soon as its handshake
    completes (the apiserver applies ``failurePolicy`` to that call)."""

    max_in_flight: int = 128
    """Most reviews being answered at once; one more is answered HTTP 429 at once,
    and the apiserver applies the webhook's ``failurePolicy`` to it."""

    backlog: int = 128
    """Connections the kernel queues before the process accepts them."""

    client_ca: str | None = None
    """Mutual TLS: a PEM file of the CA(s) that sign the apiserver's client certificate
    (reloaded with the serving pair). With it, /validate and /mutate answer only a
    client that presents a certificate it signed (HTTP 401 otherwise); the probes
    and /metrics stay open to the kubelet and Prometheus."""

    client_names: tuple[str, ...] = ()
    """With :attr:`client_ca`: the names (subject CN or DNS SAN) a client certificate
    must carry, e.g. the user name the apiserver's AdmissionConfiguration kubeconfig
    presents. Empty: any certificate the CA signed (HTTP 403 otherwise)."""

    log_level: str = "INFO"
    """Level of the JSON-lines log on stderr."""

    # The shared cache tier (docs/shared-cache.md): off unless a URL is given.

    shared_cache_url: str | None = None
    """``redis://HOST[:PORT][/DB]`` or ``rediss://…`` of a Redis/Valkey that replicas
    share: manifests and configs by digest, tag answers and failures briefly, and one
    replica's fetch for all. Never a password in the URL (see the password file)."""

    shared_cache_key_file: str | None = None
    """File (from a Secret) holding the HMAC key, 32 bytes or more, that every replica
    signs and checks entries with; required with a URL. An entry without a valid MAC
    is ignored and counted."""

    shared_cache_password_file: str | None = None
    """File (from a Secret) holding the database password (``AUTH``); the user name,
    if any, goes in the URL."""

    shared_cache_ca_file: str | None = None
    """With ``rediss://``: a PEM file of the CA(s) that sign the database's certificate
    (default: the system's)."""

    shared_cache_prefix: str = "baseguard:"
    """Prefix of every key written, so installations can share one database."""

    shared_cache_timeout: float = 0.05
    """Seconds one call to the database may take (50 ms). Past it the lookup goes on
    without the tier, and after three such calls in a row the circuit breaker stops
    asking for a while: a database that is down or slow never slows a review by more."""

    shared_cache_wait: float = 0.5
    """Seconds a replica waits for another replica that is fetching the same thing
    before fetching it itself."""

    # Bounds of one review. Past any of them the image is ``lookup-failed`` with a
    # message naming the bound, and ``lineage.onLookupFailure`` decides.

    max_images_per_review: int = MAX_IMAGES
    """Distinct images one review looks up in the registry (256). A pod naming
    5,000 images would otherwise be 5,000 lookups; a real pod has a few dozen
    containers at most. The images past the bound are not looked up at all."""

    max_platforms_per_index: int = MAX_PLATFORMS
    """Images one index may list, nested indexes counted in (64). The largest
    official images list about ten platforms and as many attestations; an index
    of thousands is refused before any of its images is fetched."""

    max_candidates_per_claim: int = MAX_CANDIDATES
    """Candidate bases one claim may name (32): BuildKit's buildinfo lists every
    image a build pulled, which is a handful for a real multi-stage build. The
    reading of a longer list stops there, so the claim is never parsed in full."""

    max_requests_per_review: int = MAX_REQUESTS
    """Registry requests one review may make, all its images together (4,096).
    Every call to the registry client counts, answered from its cache or not, so
    the bound does not depend on what the cache holds. An image of two platforms
    on four levels of bases (each an index) costs 29, so a Deployment of five such
    images about 150: the default leaves room for a review of dozens of them."""

    max_cpu_per_review: float = MAX_CPU_PER_REVIEW
    """Seconds of CPU that judging one review may take, all its images together (2.0);
    counted per object, so ``check`` and the audit, which judge many per call, give
    each the same.
    Judging runs on the event loop in slices of 5 ms, each in its namespace's turn, so
    other namespaces' reviews and the probes are served between them; this bounds how
    much a review may take in all. A pod of 256 images under the whole policy library
    takes about a twentieth of it. Past it, the images not yet judged are "not evaluated" and
    ``lineage.onLookupFailure`` decides, with a message naming the bound."""

    max_cpu_per_image: float = MAX_CPU_PER_IMAGE
    """Seconds of CPU judging one image may take under all its policies (0.1): checked
    before each policy, so the policies not reached do not judge it and say so. Under
    the pattern caps (1,000 per policy, 2,000 per namespace) an image costs a few
    milliseconds; an honest one, well under one."""
    max_processes_per_review: int = MAX_PROCESSES
    """Credential programs (Docker credential helpers, kubelet credential provider
    plugins) one review may start (32). A plugin runs once per registry (once per
    image for one that answers ``cacheKeyType: Image``) and its answer is cached,
    so an honest review starts a handful; past the bound the image is
    ``lookup-failed`` instead of starting another process. Independently of it, at
    most four programs run at once in the whole process."""

    max_bytes_per_review: int = MAX_BYTES
    """Bytes one review may fetch from registries and parse, all its images together
    (128 MiB). Every body read counts, and every JSON text parsed (a manifest, a
    config, a statement, a label's JSON), so a document costs about twice its size;
    an answer from the cache costs nothing. A real image's documents are tens of
    KiB, so a review of 256 images on four levels of bases stays well under it; a
    flood of 4 MiB indexes stops after a few dozen, and the review's queued requests
    are never sent."""

    def budget_for(self, timeout: float | None) -> float:
        """Seconds a review may spend, given the apiserver's ``?timeout=`` (``None``: absent).

        ``min(timeout - margin, budget)``; when that is below :attr:`min_budget`
        (a tiny ``timeoutSeconds``), ``min(min_budget, timeout / 2)`` so the
        answer still arrives before the apiserver stops waiting.
        """
        if timeout is None or timeout <= 0:
            return self.budget
        budget = min(timeout - self.safety_margin, self.budget)
        if budget < self.min_budget:
            budget = min(self.min_budget, timeout / 2)
        return budget

    @property
    def bounds(self) -> Bounds:
        """The bounds of one review above, as the assessor takes them."""
        return Bounds(
            max_images=self.max_images_per_review,
            max_platforms=self.max_platforms_per_index,
            max_candidates=self.max_candidates_per_claim,
            max_requests=self.max_requests_per_review,
            max_cpu_per_review=self.max_cpu_per_review,
            max_cpu_per_image=self.max_cpu_per_image,
            max_processes=self.max_processes_per_review,
            max_bytes=self.max_bytes_per_review,
        )
