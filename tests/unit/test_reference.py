"""The reference grammar, replayed against the public test vectors of the parsers the
runtime uses: distribution/reference (Docker, containerd), go-containerregistry and the
kubelet's ``parsers.ParseImageName``. Where baseguard refuses what they refuse, a pod
cannot pass a name the runtime would read differently from the policy.
"""

from __future__ import annotations

import pytest

from controller.errors import InvalidReference
from controller.reference import parse

HEX64 = "f" * 64
SHA256 = f"sha256:{HEX64}"
SHA384 = "sha384:" + "a" * 96
SHA512 = "sha512:" + "f" * 128

# (input, normalized) — accepted by all three parsers.
ACCEPTED = [
    ("test_com", "docker.io/library/test_com:latest"),
    ("test.com:tag", "docker.io/library/test.com:tag"),
    ("test.com:5000", "docker.io/library/test.com:5000"),
    ("test.com/repo:tag", "test.com/repo:tag"),
    ("test:5000/repo", "test:5000/repo:latest"),
    (f"test:5000/repo@{SHA256}", f"test:5000/repo@{SHA256}"),
    (f"test:5000/repo:tag@{SHA256}", f"test:5000/repo:tag@{SHA256}"),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io/test.example.com/my-app:test.example.com"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}"),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050"),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo:tag"),
    ("[::1]:5000/repo", "[::1]:5000/repo:latest"),
    (f"ubuntu@{SHA384}", f"docker.io/library/ubuntu@{SHA384}"),  # go-digest knows sha384
    ("docker.io/library/ubuntu:latest", "docker.io/library/ubuntu:latest"),  # kubelet
    ("index.docker.io/user/repo", "docker.io/user/repo:latest"),
    # Host names are case-insensitive (DNS): one identity, whatever the spelling.
    ("REGISTRY.corp.example/base/python:3.8-slim", "registry.corp.example/base/python:3.8-slim"),
    ("Registry.Corp.Example:5000/base/python", "registry.corp.example:5000/base/python:latest"),
    ("INDEX.DOCKER.IO/library/python:3.8", "docker.io/library/python:3.8"),
    ("Docker.io/python:3.8", "docker.io/library/python:3.8"),
    ("Registry-1.Docker.IO/library/python", "docker.io/library/python:latest"),
    ("LOCALHOST:5000/app", "localhost:5000/app:latest"),
    # A 64-hex *component* inside a path is a name like any other.
    (f"docker.io/library/{HEX64}", f"docker.io/library/{HEX64}:latest"),
    (f"team/{HEX64}:v1", f"docker.io/team/{HEX64}:v1"),
]

# (input, what the refusal says)
REFUSED = [
    ("", "empty"),
    (":justtag", "no repository name"),
    (f"@{SHA256}", "no repository name"),
    ("repo@sha256:" + "f" * 34, "64 lower-case hex"),
    (f"validname@invaliddigest:{HEX64}", "unsupported digest algorithm 'invaliddigest'"),
    (f"validname@sha1:{'f' * 40}", "unsupported digest algorithm 'sha1'"),
    (f"validname@md5:{'f' * 32}", "unsupported digest algorithm 'md5'"),
    (f"validname@sha256:{'F' * 64}", "lower-case hex"),
    ("Uppercase:tag", "lower case"),
    ("test:5000/Uppercase/lowercase:tag", "must be lower case"),
    ("aa/asdf$$^/aa", "bad path component"),
    ("[2001:db8::1]:5000", "bad path component"),
    ("[fe80::1%eth0]:5000/repo", "bad registry host"),
    # Docker and the kubelet: a bare 64-hex name is an image ID, never a repository.
    (HEX64, "image ID"),
    (f"{HEX64}:latest", "image ID"),
    (f"{HEX64}@{SHA256}", "image ID"),
]


@pytest.mark.parametrize(("text", "normalized"), ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_accepted_references_normalize(text: str, normalized: str) -> None:
    ref = parse(text)
    assert ref.normalized == normalized
    again = parse(ref.normalized)  # the normalized form reads back as the same image
    assert (again.registry, again.repository, again.digest) == (ref.registry, ref.repository, ref.digest)


@pytest.mark.parametrize(("text", "reason"), REFUSED, ids=[t[:40] or "empty" for t, _ in REFUSED])
def test_refused_references_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(text)
    assert reason in caught.value.message


def test_the_255_limit_counts_the_path_only() -> None:
    """distribution/reference ≥ v0.6.0: the host does not count toward the 255 characters."""
    path = "/".join(["a"] * 127) + "/b"  # 255 characters
    assert len(path) == 255
    host = "registry." + "x" * 50 + ".example"
    assert parse(f"{host}/{path}:tag").repository == path  # 255-char path behind a long host
    with pytest.raises(InvalidReference, match="repository path longer than 255"):
        parse(f"{host}/{path}b:tag")  # 256
    # Docker Hub's short form counts with its implied library/ namespace.
    short = "a" * 247  # library/ + 247 = 255
    assert parse(short).repository == f"library/{short}"
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse(short + "a")


def test_a_host_that_is_one_only_by_its_case_keeps_its_spelling() -> None:
    """``FOO/bar`` names the host FOO; lower-cased it would read back as Docker Hub's foo/bar."""
    ref = parse("FOO/bar:1")
    assert ref.registry == "FOO"
    assert parse(ref.normalized).registry == "FOO"
    assert parse("foo/bar:1").registry == "docker.io"
