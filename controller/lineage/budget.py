"""The bounds of one review's lookups, and the one object that counts them.

Whatever an image, an index or a pod says, judging it must stay cheap for
everyone else: a pod naming 5,000 images, an index of 5,000 platforms or a
build record listing 20,000 source images must not turn into thousands of
registry requests while honest reviews wait, and a flood of 4 MiB indexes must
not turn into gigabytes fetched and parsed. :class:`Bounds` holds the limits
(their defaults are documented where the webhook's settings are);
:class:`ReviewBudget` is created once per review by the assessor and passed
down to the resolver, which charges every registry call to it through
:class:`controller.lineage.images.ChargedClient`. Past a bound the lookup fails with
:class:`BoundExceeded`, a :class:`~controller.errors.LookupFailed` whose
message names the bound, so the image is ``lookup-failed`` like any other
registry trouble and ``onLookupFailure`` decides.

Programs count too: a Docker credential helper or a kubelet credential
provider plugin started for one of the review's lookups is charged to the
review that started it (:func:`controller.registry.programs.processes_charged_to`),
so a review cannot make the process start thousands of them.

Bytes are counted where they are spent, not per call: the registry transport
charges every body it reads and the JSON reader every text it parses
(:class:`controller.registry.limits.ByteAccount`, which a budget is), so a
document fetched once and parsed once costs its size twice, and an answer the
cache holds costs nothing. The transport asks before each request, so once
the review's bytes are spent its queued requests are never sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.errors import LookupFailed
from controller.lineage.referrersmemo import ReferrersMemo
from controller.registry.programs import ProcessLimitReached

#: Defaults of the bounds; the webhook's settings (``max_*_per_review`` and so on)
#: document each and can change it.
MAX_IMAGES = 256
MAX_PLATFORMS = 64
MAX_CANDIDATES = 32
MAX_REQUESTS = 4096
#: Seconds of CPU that judging one review may take, all its images together, and one
#: image of it. Judging is pure computation on the event loop: without a bound, one
#: tenant's policy of thousands of globs held every other review and the health probe.
MAX_CPU_PER_REVIEW = 2.0
MAX_CPU_PER_IMAGE = 0.1
MAX_PROCESSES = 32
#: Bytes one review may fetch and parse, together (128 MiB).
MAX_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Limits on the work one review may cause (see :class:`controller.webhook.settings.Settings`)."""

    max_images: int = MAX_IMAGES
    max_platforms: int = MAX_PLATFORMS
    max_candidates: int = MAX_CANDIDATES
    max_requests: int = MAX_REQUESTS
    max_cpu_per_review: float = MAX_CPU_PER_REVIEW
    max_cpu_per_image: float = MAX_CPU_PER_IMAGE
    max_processes: int = MAX_PROCESSES
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        for name in (
            "max_images", "max_platforms", "max_candidates", "max_requests", "max_processes", "max_bytes"
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("max_cpu_per_review", "max_cpu_per_image"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0, not {getattr(self, name)}")


class BoundExceeded(LookupFailed):
    """A lookup stopped at one of the review's bounds; the message names it."""


class ProcessBoundExceeded(BoundExceeded, ProcessLimitReached):
    """The review started its last credential program; never remembered for another review."""


class ReviewBudget:
    """What one review may still spend: registry requests, bytes fetched and parsed,
    credential programs and evaluation CPU, counted across all its images.

    Shared by every lookup of the review (they run concurrently), so the
    count is of the review as a whole. Once spent, every further request
    fails at once: the lookups still running end quickly instead of queueing.
    """

    def __init__(self, bounds: Bounds | None = None) -> None:
        self.bounds = bounds or Bounds()
        self.requests = 0
        self.cpu = 0.0  # seconds of evaluation CPU charged so far (see charge_cpu)
        self.processes = 0
        self.bytes_fetched = 0
        self.bytes_parsed = 0
        #: The referrers listings this review read (lineage, signatures and evidence share
        #: them): here because the budget is the one object all of a review's lookups share,
        #: and it lives exactly as long as the review.
        self.referrers = ReferrersMemo()

    @property
    def bytes(self) -> int:
        """Bytes fetched and parsed so far, what :attr:`Bounds.max_bytes` bounds."""
        return self.bytes_fetched + self.bytes_parsed

    @property
    def spent(self) -> bool:
        return self.requests >= self.bounds.max_requests or self.bytes >= self.bounds.max_bytes

    def check_bytes(self) -> None:
        """:class:`BoundExceeded` once the review has fetched and parsed its last byte."""
        if self.bytes >= self.bounds.max_bytes:
            limit = self.bounds.max_bytes
            raise BoundExceeded(
                f"this review reached its limit of {limit} bytes fetched and parsed from "
                f"registries (max_bytes_per_review = {limit}); not looked up",
                # Never remembered as a registry failure, nor handed to another review
                # sharing the request: it is this review's bound, not the registry's answer.
                context={"code": "BOUND", "per_review": id(self)},
            )

    def charge_fetched(self, size: int) -> None:
        """Count a body read from a registry (the transport calls this)."""
        self.bytes_fetched += size

    def charge_parsed(self, size: int) -> None:
        """Count a JSON text parsed (the registry's JSON reader calls this)."""
        self.bytes_parsed += size

    def charge(self) -> None:
        """Count one registry request; :class:`BoundExceeded` once the review has made its last."""
        self.check_bytes()
        if self.requests >= self.bounds.max_requests:
            limit = self.bounds.max_requests
            raise BoundExceeded(
                f"this review reached its limit of {limit} registry requests "
                f"(max_requests_per_review = {limit}); not looked up"
            )
        self.requests += 1

    def charge_cpu(self, seconds: float) -> None:
        """Count ``seconds`` of evaluation CPU (what judging an image, or preparing it, took)."""
        self.cpu += max(seconds, 0.0)

    def cpu_exhausted(self, image_seconds: float = 0.0) -> str | None:
        """Why judging must stop now, given that the current image has taken
        ``image_seconds`` (not yet charged); ``None`` while there is CPU left.

        The reason names the bound, as :class:`BoundExceeded` does for requests:
        what is not judged is "not evaluated", and ``onLookupFailure`` decides.
        """
        review, image = self.bounds.max_cpu_per_review, self.bounds.max_cpu_per_image
        if self.cpu + image_seconds >= review:
            return (
                f"this review used its {review:g}s of evaluation CPU "
                f"(max_cpu_per_review = {review:g}); not evaluated"
            )
        if image_seconds >= image:
            return (
                f"judging this image took more than {image:g}s of CPU "
                f"(max_cpu_per_image = {image:g}); not evaluated"
            )
        return None

    def charge_process(self, program: str) -> None:
        """Count one credential program started; :class:`ProcessBoundExceeded` past the last.

        Raised before the program starts, so the lookup fails (``lookup-failed``, and
        ``onLookupFailure`` decides) instead of going on anonymously.
        """
        limit = self.bounds.max_processes
        if self.processes >= limit:
            raise ProcessBoundExceeded(
                f"this review reached its limit of {limit} credential programs run "
                f"(max_processes_per_review = {limit}); {program} was not run and the image "
                "was not looked up"
            )
        self.processes += 1
