"""Leader election: the decision (pure), expiry by the observer's clock, and the Elector on a Lease
served over HTTP by the API double."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from support.kube_api import ApiDouble

from controller.operator.kube import Kube
from controller.operator.leader import Elector, LeaseRecord, Observer, Step, decide, micro_time

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
STAMP = micro_time(NOW)
LEASE = "/apis/coordination.k8s.io/v1/namespaces/baseguard/leases/baseguard-leader"


def held(holder: str | None, *, transitions: int = 3) -> LeaseRecord:
    return LeaseRecord(
        holder=holder,
        duration=15,
        renew_time="2026-03-01T11:59:58.000000Z",
        acquire_time="2026-03-01T10:00:00.000000Z",
        transitions=transitions,
        resource_version="7",
    )


@pytest.mark.parametrize(
    ("lease", "expired", "step", "holder", "transitions"),
    [
        (None, False, Step.CREATE, "me", 0),
        (held("me"), False, Step.RENEW, "me", 3),
        (held("other"), False, Step.FOLLOW, "other", None),
        (held("other"), True, Step.ACQUIRE, "me", 4),
        (held(None), False, Step.ACQUIRE, "me", 4),
    ],
    ids=[
        "no-lease-create",
        "ours-renew",
        "theirs-live-follow",
        "theirs-expired-acquire",
        "released-acquire",
    ],
)
def test_decide(
    lease: LeaseRecord | None, expired: bool, step: Step, holder: str, transitions: int | None
) -> None:
    decision = decide(lease, identity="me", now=NOW, expired=expired, duration=15)
    assert (decision.step, decision.holder) == (step, holder)
    if transitions is None:
        assert decision.spec is None
    else:
        assert decision.spec is not None
        assert decision.spec["holderIdentity"] == "me"
        assert decision.spec["renewTime"] == STAMP
        assert decision.spec["leaseTransitions"] == transitions


def test_renewing_keeps_the_acquire_time_and_taking_over_resets_it() -> None:
    renew = decide(held("me"), identity="me", now=NOW, expired=False, duration=15)
    take = decide(held("other"), identity="me", now=NOW, expired=True, duration=15)
    assert renew.spec is not None and take.spec is not None
    assert renew.spec["acquireTime"] == "2026-03-01T10:00:00.000000Z"
    assert take.spec["acquireTime"] == STAMP


def test_expiry_is_judged_by_the_observers_clock_not_the_renew_time_written() -> None:
    observer = Observer()
    stale = held("other")
    assert observer.expired(stale, 100.0) is False  # first sight: assume just renewed
    assert observer.expired(stale, 114.9) is False
    assert observer.expired(stale, 115.0) is True
    renewed = replace(stale, renew_time="2026-03-01T12:00:10.000000Z")
    assert observer.expired(renewed, 116.0) is False  # it moved: the clock starts again


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0

    def wall(self) -> dt.datetime:
        return NOW + dt.timedelta(seconds=self.mono - 1000)


def elector(kube: Kube, identity: str, clock: Clock, log: list[str]) -> Elector:
    return Elector(
        kube,
        namespace="baseguard",
        name="baseguard-leader",
        identity=identity,
        duration=15,
        renew_deadline=10.0,
        retry=2.0,
        on_start=lambda: log.append(f"{identity} leads"),
        on_stop=lambda: log.append(f"{identity} stops"),
        wall=clock.wall,
        mono=lambda: clock.mono,
    )


async def test_one_leader_and_a_takeover_when_it_stops_renewing(
    double: ApiDouble, kube: Kube
) -> None:
    clock, log = Clock(), []
    a, b = elector(kube, "pod-a", clock, log), elector(kube, "pod-b", clock, log)
    assert await a.try_once() is True
    assert await b.try_once() is False
    assert (a.is_leader, b.is_leader, b.holder) == (True, False, "pod-a")
    created = double.recorded("POST", "/apis/coordination.k8s.io/v1/namespaces/baseguard/leases")
    assert [r.body["spec"]["holderIdentity"] for r in created] == ["pod-a"]

    clock.mono += 5
    assert await a.try_once() is True  # renews: PUT with the resourceVersion it read
    renew = double.recorded("PUT", LEASE)[-1]
    assert renew.body["metadata"]["resourceVersion"]
    assert renew.body["spec"]["renewTime"] == micro_time(clock.wall())

    assert await b.try_once() is False  # sees the renewal: pod-a is alive
    clock.mono += 14
    assert await b.try_once() is False  # 14 s without a renewal: not yet
    clock.mono += 1
    assert await b.try_once() is True  # 15 s: expired, taken over
    lease = double.get("coordination.k8s.io/v1", "Lease", "baseguard-leader", "baseguard")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "pod-b"
    assert lease["spec"]["leaseTransitions"] == 1

    assert await a.try_once() is False  # the old leader finds out and steps down
    assert log == ["pod-a leads", "pod-b leads", "pod-a stops"]


async def test_of_two_candidates_racing_for_an_expired_lease_one_wins(
    double: ApiDouble, kube: Kube
) -> None:
    clock, log = Clock(), []
    a, b, c = (elector(kube, name, clock, log) for name in ("pod-a", "pod-b", "pod-c"))
    await a.try_once()
    await b.try_once()
    await c.try_once()
    clock.mono += 16
    # both read the same expired Lease; the second write carries a stale resourceVersion
    double.fail[("PUT", LEASE)] = 409
    assert await b.try_once() is False
    assert await c.try_once() is True
    assert (b.is_leader, c.is_leader) == (False, True)
    assert log == ["pod-a leads", "pod-c leads"]


async def test_a_released_lease_is_taken_at_once(double: ApiDouble, kube: Kube) -> None:
    clock, log = Clock(), []
    a, b = elector(kube, "pod-a", clock, log), elector(kube, "pod-b", clock, log)
    await a.try_once()
    await b.try_once()
    await a.release()
    lease = double.get("coordination.k8s.io/v1", "Lease", "baseguard-leader", "baseguard")
    assert lease is not None and lease["spec"].get("holderIdentity") is None
    assert await b.try_once() is True  # no waiting for the lease duration
    assert log == ["pod-a leads", "pod-a stops", "pod-b leads"]


async def test_a_leader_that_cannot_renew_steps_down_after_the_deadline(
    double: ApiDouble, kube: Kube
) -> None:
    clock, log = Clock(), []
    a = elector(kube, "pod-a", clock, log)
    await a.try_once()
    for step in (4.0, 4.0):
        clock.mono += step
        double.fail[("GET", LEASE)] = 500
        assert await a.try_once() is True  # still within the renew deadline
    clock.mono += 2.0
    double.fail[("GET", LEASE)] = 500
    assert await a.try_once() is False
    assert log == ["pod-a leads", "pod-a stops"]


def test_the_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease duration"):
        Elector(
            None, namespace="n", name="l", identity="i", duration=10, renew_deadline=12.0, retry=2.0
        )  # type: ignore[arg-type]
