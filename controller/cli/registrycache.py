"""The registry client's cache for ``serve`` and ``run``: with the shared tier when asked.

Its own module, so that ``check``, ``lineage`` and the other one-shot commands,
which share :mod:`controller.cli.options`, never load the database client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.errors import InputError

if TYPE_CHECKING:
    from controller.registry.cache import RegistryCache
    from controller.sharedcache import RedisTier
    from controller.webhook.settings import Settings


async def open_registry_cache(settings: Settings) -> tuple[RegistryCache, RedisTier | None]:
    """The registry client's cache, with the shared tier when ``settings`` name one.

    Bad shared-cache settings are an :class:`InputError`; a database that does not
    answer is not (the tier is used once it does).
    """
    from controller.registry.cache import RegistryCache

    if settings.shared_cache_url is None:
        if settings.shared_cache_key_file or settings.shared_cache_password_file:
            raise InputError("--shared-cache-key-file and --shared-cache-password-file need --shared-cache URL")
        return RegistryCache(), None
    from controller.sharedcache import SharedCacheConfig, start

    tier = await start(
        SharedCacheConfig(
            url=settings.shared_cache_url,
            key_file=settings.shared_cache_key_file,
            password_file=settings.shared_cache_password_file,
            ca_file=settings.shared_cache_ca_file,
            prefix=settings.shared_cache_prefix,
            timeout=settings.shared_cache_timeout,
            wait=settings.shared_cache_wait,
        )
    )
    return RegistryCache(shared=tier), tier
