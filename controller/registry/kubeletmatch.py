"""How the kubelet matches images to credentials: ``matchImages`` globs, ``auth`` keys, durations.

A kubelet credential provider plugin's answer is only as safe as the matching
that hands it out: these are the kubelet's own rules (Go's ``filepath.Match``
per host label, its keyring's key normalisation, Go durations), kept apart
from the program running in :mod:`controller.registry.helpers` so they can be
read (and tested) as the pure functions they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from controller.errors import InputError
from controller.registry.config import Credentials

__all__ = ["AuthMap", "go_duration", "go_glob", "image_matches"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str, *, where: str) -> float:
    """``12h``, ``1h30m``, ``90s`` (Go's ``time.ParseDuration``) → seconds."""
    value = text.strip()
    if value in ("0", ""):
        return 0.0
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InputError(f"{where}: {text!r} is not a duration like 12h, 1h30m or 90s")
    return sum(float(n) * _UNITS[u] for n, u in parts)


# ------------------------------------------------------------------ matchImages and auth keys


def go_glob(pattern: str) -> re.Pattern[str] | None:
    """Go's ``path/filepath.Match`` pattern as a regular expression; ``None`` when malformed.

    The kubelet matches every ``matchImages`` entry and every key of a plugin's
    ``auth`` with ``filepath.Match``, whose syntax is not :mod:`fnmatch`'s: ``[^a]``
    negates (``[!a]`` is a class holding ``!``), ``\\`` escapes, and a malformed
    pattern (an unclosed ``[``, ``[]``, ``[a-]``) is an error the kubelet treats as
    "does not match". Doing the same here means a key the kubelet would never
    use for an image is never used by us either.
    """
    out: list[str] = []
    i, n = 0, len(pattern)

    def char(at: int) -> tuple[str, int] | None:
        if at >= n or pattern[at] in "-]":
            return None
        if pattern[at] == "\\":
            at += 1
            if at >= n:
                return None
        return pattern[at], at + 1

    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            i += 1 if negated else 0
            ranges: list[str] = []
            count = 0
            while True:
                if i < n and pattern[i] == "]" and count > 0:
                    i += 1
                    break
                low = char(i)
                if low is None:
                    return None
                lo, i = low
                hi = lo
                if i < n and pattern[i] == "-":
                    high = char(i + 1)
                    if high is None:
                        return None
                    hi, i = high
                if i >= n:
                    return None
                count += 1
                if lo <= hi:  # Go compares lo <= r <= hi: a reversed range matches nothing
                    ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
            if ranges:
                out.append(("[^" if negated else "[") + "".join(ranges) + "]")
            else:
                out.append("." if negated else "(?!)")
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


#: What Go's ``url.Parse`` accepts in a host besides letters, digits and non-ASCII.
_HOST_CHARS = frozenset("-_.~!$&'()*+,;=:[]<>\"%")


def _split_image(image: str) -> tuple[str, str, str] | None:
    """``[scheme://]host[:port]/path`` → (host, port, /path), as the kubelet's ``url.Parse`` and
    ``net.SplitHostPort`` read it; ``None`` where Go fails to parse it (the kubelet: no match).

    Hand-written rather than :func:`urllib.parse.urlsplit`, which reads ``[`` in a host
    as the start of an IPv6 literal where Go reads a glob's character class.
    """
    text = image.split("://", 1)[1] if "://" in image else image
    for stop in "?#":  # Go's query and fragment: not part of host or path
        text = text.split(stop, 1)[0]
    hostport, slash, path = text.partition("/")
    if any(ord(c) < 0x80 and not c.isalnum() and c not in _HOST_CHARS for c in hostport):
        return None
    host, port = hostport, ""
    if not hostport.endswith("]") and ":" in hostport:
        host, _, port = hostport.rpartition(":")
        if not port.isdigit():
            return None
    return host.lower(), port, slash + path


def image_matches(pattern: str, image: str) -> bool:
    """The kubelet's ``URLsMatch``: same number of host labels, each a Go glob; equal ports;
    the pattern's path a prefix of the image's (a string prefix, as the kubelet's).

    ``*.dkr.ecr.*.amazonaws.com`` matches ``1234.dkr.ecr.eu-west-1.amazonaws.com/app`` but
    not ``dkr.ecr.eu-west-1.amazonaws.com``; ``registry.io:5000/team`` matches
    ``registry.io:5000/team/app`` but not ``registry.io/team/app``; a malformed glob
    (``registry.[io``) matches nothing.
    """
    glob, target = _split_image(pattern), _split_image(image)
    if glob is None or target is None:
        return False
    g_host, g_port, g_path = glob
    t_host, t_port, t_path = target
    if not g_host or not t_host or g_port != t_port:
        return False
    g_labels, t_labels = g_host.split("."), t_host.split(".")
    if len(g_labels) != len(t_labels):
        return False
    for part, label in zip(g_labels, t_labels, strict=True):
        compiled = go_glob(part)
        if compiled is None or compiled.fullmatch(label) is None:
            return False
    return t_path.startswith(g_path)


def _keyring_key(key: str) -> str:
    """An ``auth`` key as the kubelet's keyring files it: no scheme, ``/v1/`` and ``/v2/`` dropped."""
    text = key if key.startswith(("https://", "http://")) else f"https://{key}"
    try:
        parts = urlsplit(text)
    except ValueError:
        return key
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return parts.netloc + path if path not in ("", "/") else parts.netloc


def _default_registry_image(image: str) -> bool:
    """The kubelet's ``isDefaultRegistryMatch``: an image on Docker Hub."""
    first, _, rest = image.partition("/")
    if not first:
        return False
    return not rest or first in ("docker.io", "index.docker.io") or not any(c in first for c in ".:")


@dataclass(frozen=True)
class AuthMap:
    """A plugin's whole ``auth`` answer, kept as the kubelet keeps it: every key, most specific first.

    The answer is cached under its ``cacheKeyType`` key *as a map*, and each image
    is matched against the map when it is looked up. Caching only the entry the
    first image matched would hand a ``Global`` answer's credentials for host A to
    host B, or remember "nothing" for every host because the first image had none.
    """

    entries: tuple[tuple[str, Credentials], ...] = ()

    @classmethod
    def parse(cls, auth: Mapping[str, Any]) -> AuthMap:
        """``{"<pattern>": {"username", "password"}}``; entries of another shape are skipped."""
        found: dict[str, Credentials] = {}
        for pattern, entry in auth.items():
            if not isinstance(pattern, str) or not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password", "")
            if not isinstance(user, str) or not isinstance(password, str):
                continue
            found.setdefault(_keyring_key(pattern), Credentials(username=user, password=password))
        # The kubelet sorts its keys in reverse lexicographic order: longer (more specific) first.
        return cls(tuple(sorted(found.items(), key=lambda kv: kv[0], reverse=True)))

    def lookup(self, image: str) -> Credentials:
        """The credentials of the first key (most specific) matching ``image``; empty if none does."""
        for key, creds in self.entries:
            if image_matches(key, image):
                return creds
        if _default_registry_image(image):
            for key, creds in self.entries:
                if key == "index.docker.io":
                    return creds
        return Credentials()
