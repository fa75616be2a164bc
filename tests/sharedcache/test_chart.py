"""The chart's shared-cache values: the flags ``baseguard run`` gets, the Secret it mounts,
the egress it opens; rendered by the real Helm engine."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from support.chart import Rendered, render, rendered

from controller.cli.commands.run import add_arguments
from controller.cli.options import webhook_settings


def main(chart: Rendered) -> dict[str, Any]:
    [only] = chart.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def test_without_a_url_nothing_of_the_shared_cache_is_rendered() -> None:
    chart = rendered("defaults")
    assert not [a for a in main(chart)["args"] if a.startswith("--shared-cache")]
    volumes = chart.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert "shared-cache" not in {v["name"] for v in volumes}


def test_the_shared_cache_flags_mounts_and_egress() -> None:
    chart = rendered("shared-cache")
    container = main(chart)
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    settings = webhook_settings(parser.parse_args(container["args"][1:]))
    assert settings.shared_cache_url == "rediss://baseguard@valkey.cache.svc:6380/2"
    assert settings.shared_cache_timeout == pytest.approx(0.05)
    assert settings.shared_cache_wait == pytest.approx(0.5)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["shared-cache"]["readOnly"] is True
    directory = mounts["shared-cache"]["mountPath"]
    assert settings.shared_cache_key_file == f"{directory}/hmac-key"
    assert settings.shared_cache_password_file == f"{directory}/password"
    assert settings.shared_cache_ca_file == f"{mounts['shared-cache-ca']['mountPath']}/ca.crt"
    volumes = {v["name"]: v for v in chart.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shared-cache"]["secret"]["secretName"] == "baseguard-shared-cache"
    assert {i["path"] for i in volumes["shared-cache"]["secret"]["items"]} == {"hmac-key", "password"}
    # no secret value in the pod spec: only file paths
    assert not [a for a in container["args"] if "password=" in a.lower() or ":@" in a]
    egress = chart.one("NetworkPolicy")["spec"]["egress"]
    assert any([p["port"] for p in rule.get("ports", [])] == [6379] for rule in egress)


def test_a_url_without_a_secret_is_refused_at_install() -> None:
    with pytest.raises(Exception, match=r"sharedCache\.secretName"):
        render({"sharedCache": {"url": "redis://valkey:6379"}})


def test_a_password_in_the_url_is_refused_by_the_schema() -> None:
    with pytest.raises(Exception, match="sharedCache"):
        render({"sharedCache": {"url": "redis://:hunter2@valkey:6379", "secretName": "s"}})
