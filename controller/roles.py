"""What an image is to the thing that names it: a running container, a base, a build stage.

Its own module because both sides need it and neither owns it: the parsers
(:mod:`controller.workloads`, :mod:`controller.dockerfile`) label each image
with a role, and the policy core decides by it which rules apply. Living in
``policy/`` it made the parsers depend on the policy package.
"""

from __future__ import annotations

from enum import StrEnum


class ImageRole(StrEnum):
    CONTAINER = "container"  # an image that runs: every rule applies
    BASE = "base"  # a Dockerfile FROM in the final stage's ancestry: the image *is* the base
    BUILD = "build"  # a FROM of a stage the final image does not descend from: reference rules only
