#!/usr/bin/env python3
"""Write the bundled end-of-life policies (``eol-*.yaml``) from the dated catalog.

The catalog, ``eol-data.toml`` beside this script, holds facts: release cycles,
codenames and dates, each with its source. This script holds the *mapping*:
which Docker Official Image tags belong to a cycle (``python:3.8-slim``,
``node:gallium``, ``golang:1.21rc2``, ``*-buster``, ``*-alpine3.18``), how
the reason reads, and which date becomes ``enforceAfter``. Keeping the two
apart means a date refresh is a data edit reviewed as a data diff, and the
YAML can never drift from the data: CI runs ``generate.py --check``.

Stdlib only, no network, deterministic (the output depends on the data file
alone, never on today's date).

Usage::

    python policies/eol/generate.py            # rewrite policies/eol/eol-*.yaml
    python policies/eol/generate.py --check    # exit 1 if they differ from the data
    python policies/eol/generate.py --mode Enforce --out my-policies/
                                               # an Enforce copy to adapt and apply

Tag globs know only ``*`` (any run, ``/`` included) and ``?`` (one
character), so every family is spelled out: ``3.1`` would be ``3.1``,
``3.1.*`` and ``3.1-*`` -- never ``3.1*``, which also matches ``3.10`` and
``3.11``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "eol-data.toml"
MODES = ("Enforce", "Warn", "Audit")

#: Docker Official Images, and every mirror or pull-through cache of them
#: (``mirror.gcr.io/library/python``, ``harbor.example.com/dockerhub/library/python``,
#: ``public.ecr.aws/docker/library/python``): they all keep the ``library/<name>``
#: path, and an EOL Python is EOL wherever it was pulled from. A deny-list can be
#: this broad; the allowlist (policies/allowlists) deliberately is not.
LIBRARY = "*/library/"
DISTROLESS = "*/distroless/"


Cycle = dict[str, Any]

#: Every copy, whatever its mode, judges only what it can establish. A deny-list
#: must not deny every image while the registry cannot be read (the default
#: ``onLookupFailure: Deny`` would, once a copy runs in Enforce mode, as
#: ``--mode Enforce`` and the chart's ``policies.mode=Enforce`` make it), and an
#: image with no known base is for an allowlist to refuse, not an EOL list.
LINEAGE = (
    "  lineage:",
    "    # An end-of-life list judges the bases it can establish. A registry it cannot read",
    "    # warns (even in Enforce mode) instead of denying every image; an image whose base",
    "    # is unknown is left to allowlists (policies/allowlists).",
    "    onLookupFailure: Warn",
    "    onUnknownBase: Allow",
)


@dataclass
class Entry:
    """One ``spec.bases.deprecated[]`` item, plus a comment line for readers."""

    comment: str
    image: str
    tags: list[str]
    reason: str
    enforce_after: str
    replacement: str | None = None


@dataclass
class Product:
    id: str
    title: str
    policy: str
    replacement: str
    enforce_field: str
    cycles: list[Cycle] = field(default_factory=list)

    def current(self, horizon: dt.date, *, lts_only: bool = False) -> Cycle:
        """The oldest cycle that stays supported past the horizon: what to move to."""
        for cycle in self.cycles:
            if lts_only and not cycle.get("lts"):
                continue
            if cycle["eol"] is None or _date(cycle["eol"]) > horizon:
                return cycle
        raise SystemExit(f"eol-data.toml: {self.id} has no supported cycle after the horizon")


# --------------------------------------------------------------------------- data


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _plain(value: Any) -> Any:
    """TOML dates as ``YYYY-MM-DD`` strings, so the rest handles one type."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _version_key(cycle: Cycle) -> tuple[int, ...]:
    return tuple(int(part) for part in str(cycle["cycle"]).split("."))


def load(path: Path = DATA) -> tuple[dict[str, Any], list[Product]]:
    """Read and check the catalog: dates parse, cycles are unique and in order."""
    data = _plain(tomllib.loads(path.read_text(encoding="utf-8")))
    products = []
    for raw in data["products"]:
        product = Product(
            id=raw["id"],
            title=raw["title"],
            policy=raw["policy"],
            replacement=raw["replacement"],
            enforce_field=raw["enforceAfter"],
            cycles=[{"eol": None, **cycle} for cycle in raw["cycles"]],
        )
        seen: set[str] = set()
        for cycle in product.cycles:
            name = str(cycle["cycle"])
            if name in seen:
                raise SystemExit(f"eol-data.toml: {product.id} {name} is listed twice")
            seen.add(name)
            for key in ("eol", "ltsEnd", "esmEnd"):
                if cycle.get(key) is not None:
                    _date(cycle[key])
        if [_version_key(c) for c in product.cycles] != sorted(
            _version_key(c) for c in product.cycles
        ):
            raise SystemExit(f"eol-data.toml: {product.id} cycles are not in version order")
        products.append(product)
    _date(data["horizon"])
    return data, products


# --------------------------------------------------------------------------- tag families


def versions(version: str) -> list[str]:
    """``3.8``, ``3.8.19``, ``3.8-slim``, ``3.8.19-slim-bookworm``, ``3.8-alpine3.18``."""
    return [version, f"{version}.*", f"{version}-*"]


def named(name: str) -> list[str]:
    """``gallium``, ``gallium-alpine``, ``buster-slim``, ``focal-20240530``."""
    return [name, f"{name}-*"]


def suffixed(name: str) -> list[str]:
    """``3.12-slim-buster``, ``18-buster-slim``: the OS named at the end or in the middle."""
    return [f"*-{name}", f"*-{name}-*"]


def _source(cycle: Cycle, snapshot: str) -> str:
    """Where the date comes from, as the last clause of a reason."""
    if cycle.get("derived"):
        return f"derived from the {cycle['derived']}"
    if cycle.get("revision"):
        return f"source: endoflife.date rev {cycle['revision']}"
    return f"source: endoflife.date, snapshot {snapshot}"


# --------------------------------------------------------------------------- per family


def python_entries(p: Product, c: Cycle, src: str, horizon: dt.date) -> list[Entry]:
    v = c["cycle"]
    tags = versions(v)
    for alias in c.get("extraTags", []):
        tags += named(alias)
    return [
        Entry(
            f"Python {v}",
            f"{LIBRARY}python",
            tags,
            f"Python {v}: end of life {c['eol']}; {src}",
            c["eol"],
            p.replacement,
        )
    ]


def node_entries(p: Product, c: Cycle, src: str, horizon: dt.date) -> list[Entry]:
    v, code = c["cycle"], c.get("codename")
    title = f"Node.js {v}" + (f" {code}" if code else "")
    tags = versions(v) + (named(code) if code else [])
    return [
        Entry(
            title,
            f"{LIBRARY}node",
            tags,
            f"{title}: end of life {c['eol']}; {src}",
            c["eol"],
            p.replacement,
        )
    ]


def golang_entries(p: Product, c: Cycle, src: str, horizon: dt.date) -> list[Entry]:
    v = c["cycle"]
    return [
        Entry(
            f"Go {v}",
            f"{LIBRARY}golang",
            [*versions(v), f"{v}rc*"],
            f"Go {v}: end of support {c['eol']}; {src}",
            c["eol"],
            p.replacement,
        )
    ]


def alpine_entries(p: Product, c: Cycle, src: str, horizon: dt.date) -> list[Entry]:
    v = c["cycle"]
    base = f"Alpine Linux {v}: end of support {c['eol']}"
    newer = p.current(horizon)["cycle"]
    return [
        Entry(
            f"Alpine Linux {v}",
            f"{LIBRARY}alpine",
            [v, f"{v}.*"],
            f"{base}; {src}",
            c["eol"],
            p.replacement,
        ),
        Entry(
            f"Alpine Linux {v} under other official images (python:3.12-alpine{v}, nginx:alpine{v}-slim)",
            f"{LIBRARY}*",
            named(f"alpine{v}") + suffixed(f"alpine{v}"),
            f"{base}; images tagged alpine{v} are built on it, use a variant on Alpine {newer} or newer; {src}",
            c["eol"],
        ),
    ]


def debian_entries(p: Product, c: Cycle, src: str, horizon: dt.date) -> list[Entry]:
    v, code = c["cycle"], c["codename"]
    after = c[p.enforce_field]
    base = f"Debian {v} {code}: end of security support {c['eol']}, end of LTS {c['ltsEnd']}"
    current = p.current(horizon)
    entries = [
        Entry(
            f"Debian {v} {code}",
            f"{LIBRARY}debian",
            versions(v) + named(code),
            f"{base}; {src}",
            after,
            p.replacement,
        ),
        Entry(
            f"Debian {v} under other official images (python:3.9-slim-{code}, buildpack-deps:{code})",
            f"{LIBRARY}*",
            named(code) + suffixed(code),
            f"{base}; images tagged {code} or -{code} are built on it, use their "
            f"-{current['codename']} variant; {src}",
            after,
        ),
    ]
    if int(v) >= 9:
        entries.append(
            Entry(
                f"distroless on Debian {v}",
                f"{DISTROLESS}*-debian{v}",
                [],
                f"{base}; distroless -debian{v} images are built on it, use the "
                f"-debian{current['cycle']} flavour; {src}",
                after,
            )
        )
    return entries


def ubuntu_entries(p: Product, c: Cycle, src: str, horizon: dt.date) -> list[Entry]:
    v, code = c["cycle"], c["codename"]
    if c.get("lts"):
        title = f"Ubuntu {v} LTS {code}"
        base = (
            f"{title}: end of standard support {c['eol']}, security updates after that only "
            f"with Ubuntu Pro ESM until {c['esmEnd']}"
        )
    else:
        title = f"Ubuntu {v} {code}"
        base = f"{title}: end of life {c['eol']}"
    current = p.current(horizon, lts_only=True)
    # Bare codenames as tags of *other* official images only for LTS releases:
    # interim names collide (ros:kinetic is ROS Kinetic, not Ubuntu 22.10).
    other_tags = (named(code) if c.get("lts") else []) + suffixed(code)
    return [
        Entry(
            title,
            f"{LIBRARY}ubuntu",
            [v, f"{v}.*", *named(code)],
            f"{base}; {src}",
            c["eol"],
            p.replacement,
        ),
        Entry(
            f"{title} under other official images (eclipse-temurin:17-jre-{code})",
            f"{LIBRARY}*",
            other_tags,
            f"{base}; images tagged -{code} are built on it, use their -{current['codename']} variant; {src}",
            c["eol"],
        ),
    ]


FAMILIES: dict[str, Callable[[Product, Cycle, str, dt.date], list[Entry]]] = {
    "python": python_entries,
    "node": node_entries,
    "golang": golang_entries,
    "alpine": alpine_entries,
    "debian": debian_entries,
    "ubuntu": ubuntu_entries,
}


# --------------------------------------------------------------------------- YAML


def _q(value: str) -> str:
    """A double-quoted YAML scalar (JSON string syntax is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _flow(values: Iterable[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def render(data: dict[str, Any], product: Product, *, mode: str, horizon: dt.date) -> str:
    """The policy YAML for one product: every cycle whose EOL is on or before ``horizon``."""
    source = data["source"]
    snapshot = source["snapshot"]
    defaults = data["policyDefaults"]
    listed = [
        c for c in reversed(product.cycles) if c["eol"] is not None and _date(c["eol"]) <= horizon
    ]
    family = FAMILIES[product.id]
    annotation = f"endoflife.date {source['commit']} (snapshot {snapshot}), MIT"
    lines = [
        "# GENERATED by policies/eol/generate.py from policies/eol/eol-data.toml:",
        "# edit those two files, then run `python policies/eol/generate.py`.",
        f"# {product.title} release cycles whose end of life is on or before {horizon.isoformat()}, newest first.",
        f"# Dates: {source['attribution']}",
        f"# Snapshot: {source['repository']} commit {source['commit']} ({snapshot}).",
        "apiVersion: baseguard.io/v1alpha1",
        "kind: ClusterBaseImagePolicy",
        "metadata:",
        f"  name: {product.policy}",
        "  labels:",
        "    app.kubernetes.io/part-of: baseguard",
        "    baseguard.io/library: eol",
        "  annotations:",
        f"    baseguard.io/source: {_q(annotation)}",
        f"    baseguard.io/horizon: {_q(horizon.isoformat())}",
        "spec:",
        f"  mode: {mode}",
        "  match:",
        f"    excludeNamespaces: {_flow(defaults['excludeNamespaces'])}",
        *LINEAGE,
        "  bases:",
        "    deprecated:",
    ]
    for cycle in listed:
        for entry in family(product, cycle, _source(cycle, snapshot), horizon):
            lines.append(f"      # {entry.comment}")
            lines.append(f"      - image: {_q(entry.image)}")
            if entry.tags:
                lines.append(f"        tags: {_flow(entry.tags)}")
            lines.append(f"        reason: {_q(entry.reason)}")
            if entry.replacement:
                lines.append(f"        replacement: {_q(entry.replacement)}")
            lines.append(f"        enforceAfter: {_q(entry.enforce_after)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def generate(*, mode: str | None = None, horizon: str | None = None) -> dict[str, str]:
    """``{file name: YAML text}`` for every product in the catalog."""
    data, products = load()
    chosen_mode = mode or data["policyDefaults"]["mode"]
    chosen_horizon = _date(horizon or data["horizon"])
    return {
        f"{p.policy}.yaml": render(data, p, mode=chosen_mode, horizon=chosen_horizon)
        for p in products
    }


def check(files: dict[str, str], directory: Path) -> list[str]:
    """What differs between ``files`` and ``directory`` (empty when they agree)."""
    problems = []
    for name, text in files.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        current = path.read_text(encoding="utf-8")
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{name} (on disk)",
                f"{name} (generated)",
                n=1,
            )
            problems.append(f"{path}: differs from eol-data.toml\n" + "".join(list(diff)[:40]))
    for path in sorted(directory.glob("eol-*.yaml")):
        if path.name not in files:
            problems.append(f"{path}: not generated from eol-data.toml (a product was removed?)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on a difference"
    )
    parser.add_argument(
        "--mode", choices=MODES, help="spec.mode of the output (default: the catalog's, Warn)"
    )
    parser.add_argument(
        "--horizon", help="list cycles whose EOL is on or before this date (default: the catalog's)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write here instead of policies/eol/ (needed with --mode/--horizon)",
    )
    args = parser.parse_args(argv)

    if (args.mode or args.horizon) and args.out is None and not args.check:
        parser.error(
            "--mode and --horizon change the shipped policies: write the copy elsewhere with --out DIR"
        )
    files = generate(mode=args.mode, horizon=args.horizon)
    directory = args.out or HERE
    if args.check:
        problems = check(files, directory)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python policies/eol/generate.py", file=sys.stderr)
            return 1
        print(f"{len(files)} EOL policies match eol-data.toml")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} policies to {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
