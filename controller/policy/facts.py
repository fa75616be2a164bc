"""The facts the evaluator judges: about the object, and about each of its images.

Adapters gather these (from a manifest, an AdmissionReview, a Dockerfile, the
registry) and hand them over; the evaluator never looks anything up itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.lineage.identity import KnownTags
from controller.lineage.model import Lineage
from controller.policy.trustspec import AnswerKey
from controller.reference import Reference
from controller.roles import ImageRole
from controller.trust.results import TrustAnswer


@dataclass(frozen=True)
class ObjectFacts:
    """The object being admitted or checked.

    ``namespace`` is ``None`` for things that live outside the cluster (a
    Dockerfile): then namespace and object selectors do not constrain.
    ``namespace_labels`` defaults to what every namespace carries since 1.21.
    """

    kind: str
    name: str | None = None
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] | None = None
    operation: str = "CREATE"

    @property
    def effective_namespace_labels(self) -> Mapping[str, str]:
        if self.namespace_labels is not None:
            return self.namespace_labels
        if self.namespace is None:
            return {}
        return {"kubernetes.io/metadata.name": self.namespace}


@dataclass(frozen=True)
class ImageFacts:
    """One image of the object, with whatever the registry said of it.

    ``lineage is None`` means nobody looked (``--offline``, or no matching
    policy needed it): the lineage rules are then *not evaluated*, never passed.
    ``identities`` holds what the identity index knows of the digests in these
    facts (keyed by :func:`~controller.lineage.identity.identity_key`): the tags a
    pinned digest really has. A digest missing from it is judged by its stated tag.
    """

    image: str
    container: str | None = None
    role: ImageRole = ImageRole.CONTAINER
    reference: Reference | None = None
    invalid: str | None = None
    lineage: Lineage | None = None
    identities: Mapping[str, KnownTags] = field(default_factory=dict, compare=False)
    #: Signatures judged for ``spec.trust`` (:func:`controller.policy.trustspec.answer_key`):
    #: a subject missing here was not looked at, and its trust rules are not evaluated.
    trust: Mapping[AnswerKey, TrustAnswer] = field(default_factory=dict, compare=False)
