"""The chart's ``trust`` values: trusted roots mounted from a ConfigMap, one ``--trusted-root`` each."""

from __future__ import annotations

import pytest
from support.chart import render

from controller.cli.main import build_parser


def test_trusted_roots_are_mounted_read_only_and_named_in_the_args() -> None:
    chart = render({"trust": {"trustedRootsConfigMap": "sigstore-roots", "trustedRoots": ["default", "corp"]}})
    spec = chart.one("Deployment")["spec"]["template"]["spec"]
    [main] = spec["containers"]
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["trusted-roots"] == {"name": "trusted-roots", "mountPath": "/etc/baseguard/trust", "readOnly": True}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["trusted-roots"] == {"name": "trusted-roots", "configMap": {"name": "sigstore-roots"}}
    roots = [a for a in main["args"] if a.startswith("--trusted-root=")]
    assert roots == [
        "--trusted-root=default=/etc/baseguard/trust/default.json",
        "--trusted-root=corp=/etc/baseguard/trust/corp.json",
    ]
    parsed = build_parser().parse_args(main["args"])  # `baseguard run` takes them as rendered
    assert parsed.trusted_root == [r.split("=", 1)[1] for r in roots]


def test_no_configmap_no_roots() -> None:
    chart = render({})
    [main] = chart.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert not any(a.startswith("--trusted-root") for a in main["args"])


def test_a_root_name_the_cli_could_not_read_is_refused_by_the_schema() -> None:
    with pytest.raises(Exception, match=r"trustedRoots|pattern"):
        render({"trust": {"trustedRootsConfigMap": "r", "trustedRoots": ["Bad Name"]}})
