"""Scan evidence: vulnerability reports attached to an image, and which layers they sit in.

``model`` and the readers (``documents``, ``trivy``, ``vex``, ``choose``) are pure;
``gather`` asks the registry, through the review's charged client, for what the
readers read. The policy core judges the :class:`~controller.evidence.model.Evidence`
it is handed and never imports the readers.
"""
