"""Real parts for registry tests: a docker-registry process, an image pusher,
a token server and a fault-injecting proxy. No mocks: each piece speaks HTTP.

Import as ``from support.registry import ...`` (pytest puts ``tests/`` on
``sys.path`` because ``tests/`` has no ``__init__.py``).
"""
