"""The generated ValidatingAdmissionPolicy evaluated by cel-python: the fast pre-check.

cel-python has RE2 ``matches`` but not the apiserver's string extension, so the
few functions the generated CEL uses from it are given here with the semantics
cel-go documents (code-point indexes, ``-1`` when absent). The extraction of the
images from the object (``transformList``, two-variable comprehensions) is not in
cel-python: the test hands in ``variables.images`` itself, from baseguard's own
extraction, and the cluster suite checks the apiserver's extraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import celpy
import celpy.celtypes as ct

_FUNCTIONS = {
    "indexOf": lambda s, x: ct.IntType(str(s).find(str(x))),
    "lastIndexOf": lambda s, x: ct.IntType(str(s).rfind(str(x))),
    "substring": lambda s, a, b=None: ct.StringType(
        str(s)[int(a) :] if b is None else str(s)[int(a) : int(b)]
    ),
    "lowerAscii": lambda s: ct.StringType("".join(c.lower() if c.isascii() else c for c in str(s))),
    "join": lambda items, sep="": ct.StringType(str(sep).join(str(i) for i in items)),
}

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(text: str) -> Any:
    program = _PROGRAMS.get(text)
    if program is None:
        program = _PROGRAMS[text] = _ENV.program(_ENV.compile(text), functions=_FUNCTIONS)
    return program


def evaluate(
    vap: Mapping[str, Any], images: Sequence[str], *, namespace: str, labels: Mapping[str, str]
) -> tuple[bool, list[str]]:
    """(whether the match conditions hold, the messages of the validations that fail)."""
    request = {"namespace": namespace, "subResource": "", "kind": {"kind": "Pod"}}
    obj = {"metadata": {"labels": dict(labels)}}
    activation: dict[str, Any] = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
    }
    spec = vap["spec"]
    for condition in spec.get("matchConditions", []):
        if not bool(_program(condition["expression"]).evaluate(activation)):
            return False, []
    variables: dict[str, Any] = {"images": celpy.json_to_cel(list(images))}
    for variable in spec["variables"]:
        if variable["name"] in ("spec", "old", "images"):
            continue
        activation["variables"] = ct.MapType({ct.StringType(k): v for k, v in variables.items()})
        value = _program(variable["expression"]).evaluate(activation)
        if isinstance(value, Exception):
            raise value
        variables[variable["name"]] = value
    activation["variables"] = ct.MapType({ct.StringType(k): v for k, v in variables.items()})
    failed = []
    for validation in spec["validations"]:
        result = _program(validation["expression"]).evaluate(activation)
        if isinstance(result, Exception):
            raise result
        if not bool(result):
            failed.append(str(_program(validation["messageExpression"]).evaluate(activation)))
    return True, failed
