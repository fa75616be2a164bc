"""The background audit: every existing workload judged on an interval, the admission way.

* :mod:`.plan` (pure): what is audited, and what was found (per policy counts);
* :mod:`.runner` (I/O): lists the objects, assesses them in batches through
  the one :class:`~controller.assess.Assessor`, publishes what :mod:`.events`
  and :mod:`.reports` make of it;
* :mod:`.events` (pure): Kubernetes Events on offending objects, de-duplicated;
* :mod:`.reports` (pure): PolicyReport bodies (``wgpolicyk8s.io``, OpenReports);
* :mod:`.uses` (pure): "who runs on this base?" (``baseguard audit --uses``).
"""
