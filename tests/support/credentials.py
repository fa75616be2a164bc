"""Test-only credentials the registry fixtures are started with (never real secrets)."""

from __future__ import annotations

TLS_USER = ("tester", "tester-Pa55word")  # htpasswd user of the TLS registry
TOKEN_USER = ("alice", "alice-secret")  # token-server user: pulls everything but secret/
IDENTITY_TOKEN = "alice-identity-token"  # OAuth2 refresh token the token server maps to alice
