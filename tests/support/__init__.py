"""Helpers for every suite, one module per thing they hold. Real parts, no mocks: each piece speaks HTTP.

* ``registry``: a docker-registry process; ``images``: an image pusher and layers;
  ``token_server``, ``credentials``: registry auth; ``faulty_proxy``: a fault-injecting proxy;
  ``referrers``: an OCI referrers front; ``provenance``: build provenance statements and pushes;
  ``preconditions``: skip locally, fail under ``CI=true``.
* ``webhook``: admission review fixtures, policy stores, a client for the real webhook server.
* ``hardening``: image families, policies and witness listeners for the hardening suite.
* ``chart``: the Helm chart rendered for named value sets.
* ``kube_api``: a Kubernetes API double the real operator runs against; ``kube_objects``: the
  namespaces, policies, pods, webhook configurations and reviews applied to it; ``replicas``:
  one ``baseguard run`` against it, and calls to its webhook.
* ``policy_builders``: compiled policies, lineages and image facts for the pure policy core.

Import as ``from support.registry import ...`` (``pyproject.toml`` puts ``tests/`` on ``sys.path``).
"""
