"""``baseguard fix``: edit Dockerfiles and manifests into compliance, one image reference at a time.

The package is split by what each module knows:

- :mod:`.sites` finds nothing; it holds the shapes every finder returns (a
  :class:`~.sites.Site` is one place a file writes an image reference, with the
  exact span of text that holds it) and applies text edits;
- :mod:`.dockerfile`, :mod:`.manifests` and :mod:`.kustomize` find the sites
  of one kind of file, without I/O;
- :mod:`.choose` decides, without I/O, which reference replaces another, given
  the policies and what the registry said;
- :mod:`.plan` asks the registry (or not, offline) and turns choices into edits.

Edits replace only the characters of a reference (or a kustomize field): every
other byte of the file, comments, line endings and all, is kept as it was.
"""
