"""The HTTP transport: aiohttp routes around a :class:`~controller.webhook.handlers.Reviewer`.

Routes: ``POST /validate``, ``POST /mutate`` (AdmissionReview v1), ``GET
/healthz`` (the process answers), ``GET /readyz`` (policies loaded), ``GET
/metrics`` (Prometheus text).

Status codes, and why:

* 200 for every review we understood, whatever the verdict: the verdict is
  in the body. Anything else makes the apiserver apply ``failurePolicy``.
* 400 with a reason for a body that is not an AdmissionReview v1 (not JSON, no
  ``request``, no ``uid``, another ``apiVersion``), 413 for a body over
  ``Settings.max_body``, 408 for a body that does not arrive within
  ``Settings.body_timeout``.
* 401/403 with mutual TLS on (``Settings.client_ca``): a client without a
  certificate from the client CA, or without one of ``Settings.client_names``.
* 429 at once when ``Settings.max_in_flight`` reviews are being answered: a
  quick refusal, to which the apiserver applies the webhook's
  ``failurePolicy`` (``Fail``: the request is refused with our reason;
  ``Ignore``: admitted unjudged). Queueing it instead would hold memory and
  answer it late, after the apiserver stopped waiting, with the same result. Both carry a ``metav1.Status`` JSON body, which the
  apiserver's client turns into a readable "failed calling webhook" message.
* never 500: review handling never raises (see :mod:`.handlers`), and a
  middleware turns anything unexpected elsewhere into a logged 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from controller.errors import BadReview
from controller.policy.store import PolicyStore
from controller.webhook.handlers import Admission, Endpoint, Reviewer, utc_now
from controller.webhook.metrics import CONTENT_TYPE, Metrics
from controller.webhook.review import dumps, parse_review, status_body
from controller.webhook.settings import Settings

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Awaitable, Callable

    from controller.assess import Assessor

log = logging.getLogger("baseguard.webhook")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", PolicyStore)
METRICS = web.AppKey("metrics", Metrics)
REVIEWER = web.AppKey("reviewer", Reviewer)


class InFlight:
    """How many reviews are being answered now (the event loop is the only writer)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


IN_FLIGHT = web.AppKey("in_flight", InFlight)

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


@functools.lru_cache(maxsize=64)  # the apiserver sends the same few values every time
def parse_timeout(text: str | None) -> float | None:
    """The apiserver's ``?timeout=`` (a Go duration: ``10s``, ``1m0s``, ``2.5s``) in seconds.

    ``None`` when absent or unreadable: a strange query parameter is no reason
    to refuse a review, the configured budget applies instead.
    """
    if not text:
        return None
    text = text.strip()
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        return None
    return total


@functools.lru_cache(maxsize=64)
def _query_timeout(query: str) -> float | None:
    """``timeout`` from the raw query string (the apiserver sends only ``timeout=Ns``)."""
    if not query:
        return None
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "timeout":
            return parse_timeout(urllib.parse.unquote(value))
    return None


def make_app(
    *,
    store: PolicyStore,
    assessor: Assessor,
    settings: Settings,
    metrics: Metrics | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    reviewer: Reviewer | None = None,
) -> web.Application:
    """The webhook application. ``reviewer`` replaces the default :class:`Admission` (tests)."""
    metrics = metrics if metrics is not None else Metrics(snapshot=lambda: store.snapshot)
    app = web.Application(client_max_size=settings.max_body)
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = metrics
    app[IN_FLIGHT] = InFlight()
    app[REVIEWER] = reviewer or Admission(
        store=store, assessor=assessor, metrics=metrics, clock=clock
    )
    app.router.add_post("/validate", _guarded(validate))
    app.router.add_post("/mutate", _guarded(mutate))
    app.router.add_get("/healthz", _guarded(healthz))
    app.router.add_get("/readyz", _guarded(readyz))
    app.router.add_get("/metrics", _guarded(metrics_handler))
    return app


# --------------------------------------------------------------------------- reviews


async def validate(request: web.Request) -> web.Response:
    return await _review(request, Endpoint.VALIDATE)


async def mutate(request: web.Request) -> web.Response:
    return await _review(request, Endpoint.MUTATE)


def _refuse(
    request: web.Request,
    endpoint: Endpoint,
    code: int,
    reason: str,
    message: str,
    *,
    verdict: str = "invalid",
) -> web.Response:
    request.app[METRICS].refused(endpoint.value, verdict)
    log.info(
        "refused",
        extra={"fields": {"endpoint": endpoint.value, "status": code, "reason": message}},
    )
    return _json(status_body(code, reason, message), status=code)


def _client_refusal(request: web.Request, settings: Settings) -> tuple[int, str, str] | None:
    """Mutual TLS: (status, reason, message) when the client may not send reviews, else ``None``.

    The TLS layer asked for a certificate and verified any it got against
    ``client_ca``; here a missing one is refused (401) and, with
    ``client_names``, one that carries none of them (403).
    """
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return (
            401,
            "Unauthorized",
            "a client certificate signed by the configured client CA is required "
            "(mutual TLS: the apiserver presents one through its AdmissionConfiguration)",
        )
    if not settings.client_names:
        return None
    names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}
    if names & set(settings.client_names):
        return None
    shown = ", ".join(sorted(names)) or "no name"
    return 403, "Forbidden", f"the client certificate ({shown}) is not one of the allowed names"


async def _review(request: web.Request, endpoint: Endpoint) -> web.Response:
    """One review, counted in flight from its head to its answer (see :func:`_bounded_review`)."""
    settings = request.app[SETTINGS]
    if settings.client_ca is not None:
        refusal = _client_refusal(request, settings)
        if refusal is not None:
            return _refuse(request, endpoint, *refusal, verdict="unauthorized")
    flight = request.app[IN_FLIGHT]
    limit = request.app[SETTINGS].max_in_flight
    if flight.count >= limit:
        return _refuse(
            request,
            endpoint,
            429,
            "TooManyRequests",
            f"baseguard is answering {flight.count} reviews, its limit (max_in_flight); "
            "the webhook's failurePolicy applies to this one",
            verdict="busy",
        )
    flight.count += 1
    try:
        return await _bounded_review(request, endpoint)
    finally:
        flight.count -= 1


async def _bounded_review(request: web.Request, endpoint: Endpoint) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    limit = settings.max_body
    if request.content_length is not None and request.content_length > limit:
        return _refuse(
            request,
            endpoint,
            413,
            "RequestEntityTooLarge",
            f"the AdmissionReview is {request.content_length} bytes; the limit is {limit}",
        )
    # A body that has all arrived (the apiserver's usually has, with its head) is read
    # without arming a timer: the timeout bounds waiting for bytes, and none is awaited.
    waiting = contextlib.nullcontext() if request.content.is_eof() else asyncio.timeout(settings.body_timeout)
    try:
        async with waiting:
            body = await request.read()
    except TimeoutError:
        late = _refuse(
            request,
            endpoint,
            408,
            "Timeout",
            f"the AdmissionReview body did not arrive within {settings.body_timeout:g}s",
        )
        late.force_close()  # what the client sends next is the rest of a body, not a request
        return late
    except web.HTTPRequestEntityTooLarge:
        return _refuse(
            request,
            endpoint,
            413,
            "RequestEntityTooLarge",
            f"the AdmissionReview is over the limit of {limit} bytes",
        )
    try:
        review = parse_review(body)
    except BadReview as exc:
        return _refuse(request, endpoint, 400, "BadRequest", f"bad AdmissionReview: {exc.message}")
    budget = settings.budget_for(_query_timeout(request.query_string))
    answer = await request.app[REVIEWER](review, endpoint=endpoint, budget=budget, started=started)
    return _json(answer)


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type="application/json")


# --------------------------------------------------------------------------- probes and metrics


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers; nothing more (a liveness probe)."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 once policies are loaded, listing any that are broken; 503 before."""
    snap = request.app[STORE].snapshot
    body = {
        "ready": snap.loaded,
        "policies": len(snap.policies),
        "generation": snap.generation,
        "errors": dict(snap.errors),
        "message": snap.summary() if snap.loaded else "policies are not loaded yet",
    }
    return _json(body, status=200 if snap.loaded else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    data = request.app[METRICS].render()
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE})


def _guarded(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Whatever slips through ``handler`` becomes a logged 503, never aiohttp's bare 500.

    A wrapper per route rather than a middleware: aiohttp runs no middleware
    machinery at all for an app without one, and every review goes through here.
    """

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("internal error", extra={"fields": {"path": request.path}})
            return _json(
                status_body(503, "ServiceUnavailable", "baseguard internal error; see its log"),
                status=503,
            )

    return guarded
