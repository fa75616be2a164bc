"""Signatures and attestations, verified offline: the verification room.

PURE with respect to I/O: every function here takes bytes already fetched (a
cosign simple-signing payload and its signature, a DSSE envelope, a Sigstore
bundle) and an authority (public keys, or a keyless identity with the trusted
root file read at start), and answers a :class:`~controller.trust.results.TrustResult`
that says verified or refused, by which authority and key, and why. Nothing
here talks to a registry or to the network: fetching the artifacts is the
caller's, counted against its review budget.

What is a library's and what is ours: keyless Sigstore bundles (certificate
chain, SCT, transparency-log inclusion proof and checkpoint, identity) are
verified by ``sigstore.verify.Verifier``; the subject digest of what it returns
is checked here. Key-based signatures (cosign simple signing, DSSE, key-based
bundles) and cosign's keyless simple signing (whose log promise ``sigstore``
cannot take, see :mod:`controller.trust.cosignkeyless`) are verified here with
``cryptography``.
"""
