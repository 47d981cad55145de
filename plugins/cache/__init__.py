"""The response cache: exact-match, per route, in memory or in Redis.

``key`` builds the cache key, ``memory`` and ``redis`` are the backends
(``store.CacheStore``), and ``plugin`` is the hook plugin that looks up,
answers and stores.
"""
