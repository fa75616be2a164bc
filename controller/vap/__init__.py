"""The string rules of a policy as a ValidatingAdmissionPolicy: judged by the apiserver itself.

PURE: compiled policies in, Kubernetes objects (dicts) out. The webhook stays the
authority; the generated objects are a backstop for the rules that need no
registry, so that ``failurePolicy: Ignore`` no longer means "no rules" while the
webhook is unreachable. docs/vap.md says what is exported and what is not.
"""
