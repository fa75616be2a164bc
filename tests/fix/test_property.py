"""Property: ``fix`` finds exactly the image references, so no other byte of a file can change.

Files are generated with their references' positions recorded as they are
written (comments that mention FROM and images, parser directives, CRLF,
continuations, casing, flow and block YAML, quoting, several documents); the
finders must return those spans and nothing else, and an edit of every span
leaves every byte outside them as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.fix.dockerfile import dockerfile_sites
from controller.fix.manifests import manifest_sites
from controller.fix.sites import Edit, apply_edits

IMAGES = [
    "python:3.12-slim",
    "registry.example:5000/team/app:1.2.3",
    "alpine@sha256:" + "a" * 64,
    "localhost/x/y:v1",
    "golang:1.22-alpine3.20",
]
WORDS = st.sampled_from(["FROM python:3.8", "image: nginx", "hello", "# x", "AS build", "scratch", "${BASE}"])


@dataclass
class Written:
    """Text being generated, with the spans where references were written."""

    parts: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(map(len, self.parts))

    def text(self, value: str) -> None:
        self.parts.append(value)

    def reference(self, value: str) -> None:
        self.spans.append((self.size, self.size + len(value)))
        self.parts.append(value)


def check_only_spans_change(text: str, found_spans: list[tuple[int, int]], written: list[tuple[int, int]]) -> None:
    assert sorted(found_spans) == sorted(written)
    new = apply_edits(text, [Edit(a, b, "NEW/REF:1@sha256:" + "f" * 64) for a, b in found_spans])
    # Every byte outside the spans, in order, is the same.
    outside_old = "".join(text[b:a] for (_, b), (a, _) in zip([(0, 0), *sorted(found_spans)], [*sorted(found_spans), (len(text), 0)], strict=True))
    assert new.replace("NEW/REF:1@sha256:" + "f" * 64, "") == outside_old


@st.composite
def dockerfiles(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    w = Written()
    if draw(st.booleans()):
        w.text(f"# syntax=docker/dockerfile:1{eol}")
    args: dict[str, str] = {}
    for index in range(draw(st.integers(0, 2))):
        name = f"BASE{index}"
        value = draw(st.sampled_from(IMAGES))
        quote = draw(st.sampled_from(["", '"']))
        w.text(f"ARG {name}={quote}")
        args[name] = value
        start = w.size
        w.text(value)
        args[name + "@"] = str(start)
        w.text(f"{quote}{eol}")
    used: set[str] = set()
    stages: list[str] = []
    for index in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(0, 2))):
            w.text(draw(st.sampled_from([f"# {draw(WORDS)}{eol}", eol, f"RUN echo {draw(WORDS)}{eol}"])))
        w.text(draw(st.sampled_from(["FROM", "from", "From"])) + " ")
        if draw(st.booleans()):
            w.text("--platform=$BUILDPLATFORM " + ("\\" + eol + "  " if draw(st.booleans()) else ""))
        kind = draw(st.sampled_from(["image", "scratch", "stage", "arg"]))
        if kind == "stage" and stages:
            w.text(draw(st.sampled_from(stages)))
        elif kind == "arg" and args:
            name = draw(st.sampled_from(sorted(k for k in args if not k.endswith("@"))))
            w.text(draw(st.sampled_from([f"${{{name}}}", f"${name}"])))
            if name not in used:
                used.add(name)
                start = int(args[name + "@"])
                w.spans.append((start, start + len(args[name])))
        elif kind == "scratch":
            w.text("scratch")
        else:
            w.reference(draw(st.sampled_from(IMAGES)))
        stage = f"stage{index}"
        stages.append(stage)
        w.text(f" {draw(st.sampled_from(['AS', 'as']))} {stage}{eol}")
        copy = draw(st.sampled_from(["none", "stage", "image"]))
        if copy == "stage":
            w.text(f"COPY --from={stage} /a /a{eol}")
        elif copy == "image":
            w.text(f"{draw(st.sampled_from(['COPY', 'copy']))} --link --from=")
            w.reference(draw(st.sampled_from(IMAGES)))
            w.text(f" /b /b{eol}")
    return "".join(w.parts), w.spans


@settings(max_examples=150, deadline=None)
@given(dockerfiles())
def test_a_dockerfile_changes_only_at_its_references(case: tuple[str, list[tuple[int, int]]]) -> None:
    text, spans = case
    found = dockerfile_sites(text, "Dockerfile")
    assert all(text[s.span[0] : s.span[1]] == s.image for s in found.sites if s.span)
    check_only_spans_change(text, [s.span for s in found.sites if s.span], spans)


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    w = Written()
    for doc in range(draw(st.integers(1, 3))):
        if doc:
            w.text(f"---{eol}")
        if draw(st.booleans()):
            w.text(f"# {draw(WORDS)}{eol}")
        if draw(st.booleans()):
            w.text(f'apiVersion: v1{eol}kind: ConfigMap{eol}metadata: {{name: c{doc}}}{eol}data: {{image: "python:3.12"}}{eol}')
            continue
        w.text(f"apiVersion: v1{eol}kind: Pod{eol}metadata:{eol}  name: p{doc}  # {draw(WORDS)}{eol}spec:{eol}")
        for section in draw(st.lists(st.sampled_from(["containers", "initContainers"]), min_size=1, max_size=2, unique=True)):
            w.text(f"  {section}:{eol}")
            for index in range(draw(st.integers(1, 3))):
                quote = draw(st.sampled_from(["", "'", '"']))
                image = draw(st.sampled_from(IMAGES))
                if draw(st.booleans()):
                    w.text(f"  - {{name: c{index}, image: {quote}")
                    w.reference(image)
                    w.text(f"{quote}}}{eol}")
                else:
                    w.text(f"  - name: c{index}{eol}    # {draw(WORDS)}{eol}    image: {quote}")
                    w.reference(image)
                    w.text(f"{quote}{draw(st.sampled_from(['', '  # pinned', ' ']))}{eol}")
    return "".join(w.parts), w.spans


@settings(max_examples=150, deadline=None)
@given(manifests())
def test_a_manifest_changes_only_at_its_references(case: tuple[str, list[tuple[int, int]]]) -> None:
    text, spans = case
    found = manifest_sites(text, "app.yaml")
    check_only_spans_change(text, [s.span for s in found.sites if s.span], spans)
