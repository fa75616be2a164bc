"""Certificates and TLS in one place: issuing them (:mod:`.issuing`) and serving with them (:mod:`.serving`).

Shared by ``serve`` (a throw-away local pair), the operator (managed
certificates, rotated) and the webhook (the ``SSLContext``), none of which
owns the others. Kept empty so importing the package loads nothing.
"""
