"""The shared cache tier: what replicas learn from registries, kept on Redis/Valkey for all.

Optional (``--shared-cache redis://…``; the ``shared-cache`` extra installs the
client). It plugs into the registry client's cache through
:class:`controller.registry.cache.SharedTier`, which decides what is shared and
re-hashes every body read back against its digest; this package keeps the
database side: names and MACs (:mod:`.entries`), each call's timeout and the
circuit breaker (:mod:`.tier`, :mod:`.breaker`), the counters and their
Prometheus collector (:mod:`.stats`), and start-up checks (:mod:`.config`).

Nothing here talks to a registry or judges an image: a tier can only save
requests, never change an answer.
"""

from controller.sharedcache.config import SharedCacheConfig, open_tier, start
from controller.sharedcache.tier import RedisTier

__all__ = ["RedisTier", "SharedCacheConfig", "open_tier", "start"]
