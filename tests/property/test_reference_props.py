"""The reference parser: every string parses or raises ``InvalidReference``, nothing else.

An image name is the one input every pod author controls. Whatever it is, the
parser must answer with a :class:`Reference` or with the one error the rules
turn into ``invalid-reference``; and what it accepts must be what Docker
accepts, since the name is later put into registry URLs.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from controller.errors import InvalidReference
from controller.reference import Reference, normalize, parse

# The distribution reference grammar (distribution/reference/regexp.go), written
# out again here as an independent oracle: ASCII only, anchored.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
GRAMMAR = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)
NORMALIZED = re.compile(
    rf"{_DOMAIN}/{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII
)

# Characters that occur in references, plus a few that must not.
REFERENCE_ALPHABET = "abcz019ABZ._-/:@[]" + "+ \t\n%#?*~\\\x00"
HEX = "0123456789abcdef"

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
DOMAIN_CHARS = ALNUM + "ABCXYZ"
_alnum = st.text(ALNUM, min_size=1, max_size=6)
components = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _alnum), max_size=2),
)
_domain_component = st.one_of(
    st.text(DOMAIN_CHARS, min_size=1, max_size=1),
    st.builds(
        lambda a, mid, b: a + mid + b,
        st.text(DOMAIN_CHARS, min_size=1, max_size=1),
        st.text(DOMAIN_CHARS + "-", max_size=6),
        st.text(DOMAIN_CHARS, min_size=1, max_size=1),
    ),
)
hosts = st.one_of(
    st.sampled_from(
        ["docker.io", "index.docker.io", "registry-1.docker.io", "ghcr.io", "localhost",
         "Reg.Example.com", "127.0.0.1", "[::1]", "[fd00::1]"]
    ),
    st.builds(lambda a, b: f"{a}.{b}", _domain_component, _domain_component),
)
ports = st.none() | st.integers(min_value=1, max_value=65535)
tags = st.builds(
    lambda first, rest: first + rest,
    st.text(ALNUM + "ABZ_", min_size=1, max_size=1),
    st.text(ALNUM + "ABZ_.-", max_size=20) | st.text("a", min_size=127, max_size=127),
)
digests = st.one_of(
    st.text(HEX, min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text(HEX, min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def valid_references(draw: st.DrawFn) -> tuple[str, str | None, list[str], str | None, str | None]:
    """(text, host, path, tag, digest), built from the grammar."""
    host = draw(st.none() | hosts)
    if host is not None:
        port = draw(ports)
        host = host if port is None else f"{host}:{port}"
    path = draw(st.lists(components, min_size=1, max_size=4))
    if host is None and len(path) > 1 and "." in path[0]:
        # a first component with a dot is a host (the grammar's rule), so it must be one
        assume(re.fullmatch(_DOMAIN, path[0], re.ASCII))
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    text = "/".join(([host] if host else []) + path)
    assume(len(text) <= 255)
    text += (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return text, host, path, tag, digest


any_text = st.one_of(
    st.text(max_size=80),
    st.text(REFERENCE_ALPHABET, max_size=80),
    valid_references().map(lambda v: v[0]),
    st.tuples(valid_references().map(lambda v: v[0]), st.text(REFERENCE_ALPHABET, max_size=4)).map(
        lambda pair: pair[0] + pair[1]
    ),
)


def parsed_or_refused(text: str) -> Reference | None:
    """``parse(text)``, ``None`` when refused; anything but InvalidReference fails the test."""
    try:
        return parse(text)
    except InvalidReference as exc:
        assert exc.message.startswith("invalid reference "), exc.message
        return None


@given(any_text)
@example("python")
@example("")
@example("a" * 256)
@example("python:" + "x" * 129)
@example("localhost:5000/a/b@sha256:" + "0" * 64)
@example("[::1]:5000/x")
def test_every_string_parses_or_is_an_invalid_reference(text: str) -> None:
    ref = parsed_or_refused(text)
    if ref is None:
        return
    normalized = ref.normalized
    again = parse(normalized)
    assert again.normalized == normalized  # normalizing twice changes nothing
    assert normalize(normalized) == normalize(text) == normalized
    assert (again.registry, again.repository, again.digest) == (
        ref.registry,
        ref.repository,
        ref.digest,
    )
    assert again.effective_tag == ref.effective_tag


@given(st.one_of(st.text(REFERENCE_ALPHABET, max_size=80), any_text.filter(str.isascii)))
def test_what_parses_is_in_the_distribution_grammar(text: str) -> None:
    """Soundness against Docker's grammar, on ASCII: nothing Docker refuses gets through."""
    ref = parsed_or_refused(text)
    if ref is None:
        return
    assert GRAMMAR.fullmatch(text), text
    assert NORMALIZED.fullmatch(ref.normalized), ref.normalized
    assert ref.repository == ref.repository.lower()


@given(valid_references())
def test_every_grammatical_reference_parses_to_its_parts(
    built: tuple[str, str | None, list[str], str | None, str | None],
) -> None:
    text, host, path, tag, digest = built
    ref = parse(text)
    if host is None and len(path) > 1 and ("." in path[0] or path[0] == "localhost"):
        host, path = path[0], path[1:]  # the grammar's rule: such a first component is a host
    # Host names are case-insensitive: the normalized host is lower case.
    host = None if host is None else host.lower()
    hub = host is None or host in ("docker.io", "index.docker.io", "registry-1.docker.io")
    assert ref.registry == ("docker.io" if hub else host)
    expected_path = "/".join(path)
    if hub and len(path) == 1:
        expected_path = f"library/{expected_path}"
    assert ref.repository == expected_path
    assert (ref.tag, ref.digest) == (tag, digest)
    assert ref.effective_tag == (tag if tag or digest else "latest")


@pytest.mark.parametrize("image", ["python:café", "python:٣", "python:²"], ids=["latin", "arabic-digit", "superscript"])
def test_a_non_ascii_tag_is_an_invalid_reference(image: str) -> None:
    """Python's ``\\w`` takes any Unicode letter or digit; Docker's grammar is ASCII."""
    with pytest.raises(InvalidReference, match="bad tag"):
        parse(image)
