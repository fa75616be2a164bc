"""A token server's answer is registry JSON: a realm is the registry's to name, so what it
answers is bounded like a manifest, and a hostile one is a lookup failure with a message."""

from __future__ import annotations

import pytest

from controller.errors import LookupFailed
from controller.registry.auth import parse_token_response


def test_a_token_answer_nested_50000_deep_is_a_lookup_failure_naming_the_bound() -> None:
    body = ("[" * 50_000 + "]" * 50_000).encode()
    with pytest.raises(LookupFailed, match=r"token server t\.example.*nested more than 100 levels deep"):
        parse_token_response(body, now=0.0, where="t.example")


def test_a_token_answer_that_is_not_json_says_so() -> None:
    with pytest.raises(LookupFailed, match=r"^token server t\.example answered something that is not JSON$"):
        parse_token_response(b"<html>", now=0.0, where="t.example")


def test_a_token_answer_is_read() -> None:
    token = parse_token_response(b'{"token": "abc", "expires_in": 300}', now=100.0, where="t.example")
    assert token.value == "abc" and token.expires_at == 100.0 + 300 - 10
