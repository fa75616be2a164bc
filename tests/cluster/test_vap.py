"""The exported ValidatingAdmissionPolicy, judged by the real kube-apiserver, agrees with baseguard.

``baseguard export vap`` turns a policy's string rules into a ValidatingAdmissionPolicy
and its binding. Here they are applied to the apiserver with no baseguard webhook
involved (the VAP's verdict is read from the apiserver's own message, which names the
ValidatingAdmissionPolicy, so a webhook registered by another test of the session
cannot be mistaken for it), pods are created with a server-side dry run, and the
apiserver's verdict is compared with ``baseguard check --offline`` on the very same
pods: the reference vectors the unit suite replays, plus pod shapes (a Deployment's
template, init and ephemeral containers, image volumes, an image UPDATE), plus a pod
with many containers that must stay inside the apiserver's CEL cost budget.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster.cluster_support import short_name
from support.controlplane import ControlPlane

HEX64 = "a" * 64
_VAP_DENIED = re.compile(r"ValidatingAdmissionPolicy '([^']+)' with binding '[^']+' denied request")


def _vectors() -> list[str]:
    path = pathlib.Path(__file__).parents[1] / "unit" / "test_reference.py"
    spec = importlib.util.spec_from_file_location("reference_vectors_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [t for t, _ in module.ACCEPTED] + [t for t, _ in module.REFUSED]


EXTRA = [
    "nginx",
    "nginx:1.25.3",
    "user/app:1.2.3",
    "docker.io/nginx:1.25.3-alpine",
    "INDEX.DOCKER.IO/library/nginx:1.25.3",
    "registry.corp.example/team/app:v1.2.3",
    "Registry.Corp.Example:5000/team/app:1.2.3",
    f"registry.corp.example/team/app@sha256:{HEX64}",
    f"registry.corp.example/team/app:latest@sha256:{HEX64}",
    "registry.corp.example/team/app:latest",
    "registry.corp.example/team/app:1.2-dev",
    "quay.io/team/app:1.2.3",
    "docker.io/library/redis:7.2.4",
    "localhost:5000/app:1.0.0",
]


def policy_doc(name: str, spec: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """A cluster policy scoped to the test's namespace: another test's VAP, deleted but still
    in the apiserver's informer for a moment, never judges this test's objects."""
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": name},
        "spec": {**spec, "match": {"namespaces": [namespace]}},
    }


def export(tmp_path: Path, doc: Mapping[str, Any], *extra: str) -> list[dict[str, Any]]:
    """``baseguard export vap`` of one policy file, as the objects it prints."""
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(dict(doc)))
    done = subprocess.run(
        [sys.executable, "-m", "controller", "export", "vap", "-p", str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return list(yaml.safe_load_all(done.stdout))


def check(
    tmp_path: Path, doc: Mapping[str, Any], objects: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """``baseguard check --offline`` on ``objects``: the worst verdict per object name."""
    policy_path = tmp_path / "check-policy.yaml"
    policy_path.write_text(yaml.safe_dump(dict(doc)))
    manifest = tmp_path / "check-objects.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "check",
            "-p",
            str(policy_path),
            str(manifest),
            "--offline",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    order = {"allow": 0, "audit": 1, "warn": 2, "deny": 3}
    out: dict[str, str] = {}
    for result in json.loads(done.stdout)["results"]:
        name = result["name"]
        if order[result["verdict"]] >= order[out.get(name, "allow")]:
            out[name] = result["verdict"]
    return out


def dry_run(plane: ControlPlane, objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The apiserver's answer per object name: ``deny`` (by a VAP), ``allow``, or ``invalid``."""
    done = plane.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        "-o",
        "name",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        check=False,
        timeout=120,
    )
    out = {}
    admitted = {line.rsplit("/", 1)[-1] for line in done.stdout.split() if "/" in line}
    for obj in objects:
        name = obj["metadata"]["name"]
        out[name] = "allow" if name in admitted else "invalid"
    for line in done.stderr.splitlines():
        found = re.search(r'"([a-z0-9-]+)" is (?:forbidden|invalid): ', line)
        if found and _VAP_DENIED.search(line):
            # A CEL error denies too (failurePolicy: Fail), but it is no verdict: told apart.
            out[found.group(1)] = "error" if "resulted in error" in line else "deny"
    return out


def pod(name: str, namespace: str, image: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = (
        {"containers": [{"name": "c", "image": image}]} if image is not None else {}
    )
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


@pytest.fixture
def applied(control_plane: ControlPlane) -> Iterator[list[dict[str, Any]]]:
    """The VAP objects a test applies, deleted afterwards (they are cluster-wide)."""
    objects: list[dict[str, Any]] = []
    yield objects
    for obj in reversed(objects):
        control_plane.kubectl(
            "delete", obj["kind"].lower(), obj["metadata"]["name"], "--wait=false", check=False
        )


def activate(
    plane: ControlPlane, objects: list[dict[str, Any]], applied: list[dict[str, Any]], ns: str
) -> None:
    """Apply the objects and wait until the apiserver judges with them (its informer is async)."""
    plane.apply(objects)
    applied.extend(objects)
    probe = pod("probe-x", ns, "Invalid:ref")  # upper case: invalid-reference under every policy
    deadline = time.monotonic() + 30
    while dry_run(plane, [probe])["probe-x"] != "deny":
        if time.monotonic() > deadline:
            said = plane.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            )
            status = plane.get_json("validatingadmissionpolicy", objects[0]["metadata"]["name"])
            pytest.fail(
                f"the ValidatingAdmissionPolicy never took effect: {said.stderr}{said.stdout}\n"
                f"{json.dumps(status.get('status'))[:3000]}"
            )
        time.sleep(0.3)


ENFORCE = {
    "mode": "Enforce",
    "registries": {
        "allowed": ["docker.io/library/*", "registry.corp.example*/team/*", "localhost:5000/*"]
    },
    "pinning": {"require": "Version", "disallowedTags": ["latest", "*-dev"]},
    "exclude": {"images": ["docker.io/library/redis"]},
    "exceptions": [
        {"images": ["docker.io/library/nginx"], "until": "2999-12-31", "reason": "migrating"},
        {"images": ["quay.io/*"], "until": "2000-01-01", "reason": "expired long ago"},
    ],
}


def test_the_apiserver_and_baseguard_agree_on_every_reference(
    control_plane: ControlPlane, ns: str, tmp_path: Path, applied: list[dict[str, Any]]
) -> None:
    doc = policy_doc(short_name(ns, "vap"), ENFORCE, ns)
    objects = export(tmp_path, doc)
    assert [o["kind"] for o in objects] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert objects[1]["spec"]["validationActions"] == ["Deny"]
    activate(control_plane, objects, applied, ns)
    images = list(dict.fromkeys([*_vectors(), *EXTRA]))
    pods = [pod(f"p{i}", ns, image) for i, image in enumerate(images)]
    apiserver = dry_run(control_plane, pods)
    baseguard = check(tmp_path, doc, pods)
    judged = {n: v for n, v in apiserver.items() if v != "invalid"}
    # The apiserver refuses a few pods before admission (an empty image): baseguard denies those too.
    for name, verdict in apiserver.items():
        if verdict == "invalid":
            assert baseguard[name] == "deny", images[int(name[1:])]
    disagree = {
        images[int(n[1:])]: (v, baseguard[n]) for n, v in judged.items() if v != baseguard[n]
    }
    assert not disagree
    assert len(judged) >= 40
    verdicts = set(judged.values())
    assert verdicts == {"allow", "deny"}  # both sides of the line are exercised


def test_every_container_list_and_workload_kind_is_judged(
    control_plane: ControlPlane, ns: str, tmp_path: Path, applied: list[dict[str, Any]]
) -> None:
    doc = policy_doc(short_name(ns, "vapk"), {"pinning": {"require": "Digest"}}, ns)
    activate(control_plane, export(tmp_path, doc), applied, ns)
    good = f"docker.io/library/python@sha256:{HEX64}"
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "python:3.12.3"}]},
    }
    objects = [
        pod("init", ns, good, initContainers=[{"name": "i", "image": "busybox:1.36.1"}]),
        pod("volume", ns, good, volumes=[{"name": "v", "image": {"reference": "data:1.0.0"}}]),
        pod(
            "fine",
            ns,
            good,
            initContainers=[{"name": "i", "image": good}],
            volumes=[{"name": "v", "image": {"reference": good}}],
        ),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "deploy", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "cron", "namespace": ns},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "python:3.12.3"}],
                            }
                        }
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "tmpl", "namespace": ns},
            "template": template,
        },
    ]
    apiserver = dry_run(control_plane, objects)
    assert apiserver == check(tmp_path, doc, objects)
    assert apiserver == {
        "init": "deny",
        "volume": "deny",
        "fine": "allow",
        "deploy": "deny",
        "cron": "deny",
        "tmpl": "deny",
    }


def test_update_judges_only_changed_images_and_kubectl_debug_too(
    control_plane: ControlPlane, ns: str, tmp_path: Path, applied: list[dict[str, Any]]
) -> None:
    """As the webhook: an unrelated edit of an old object passes; a changed image is judged."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "old", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "old"}},
            "template": {
                "metadata": {"labels": {"app": "old"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "python"},
                        {"name": "b", "image": "python:3.12.3"},
                    ]
                },
            },
        },
    }
    control_plane.apply([deployment, pod("running", ns, "python:3.12.3")])
    doc = policy_doc(short_name(ns, "vapu"), {"pinning": {"require": "Version"}}, ns)
    activate(control_plane, export(tmp_path, doc), applied, ns)
    scaled = control_plane.kubectl(
        "scale", "deployment", "old", "-n", ns, "--replicas=2", check=False
    )
    assert scaled.returncode == 0, scaled.stderr
    swapped = control_plane.kubectl(
        "set", "image", "deployment/old", "-n", ns, "b=python:3.12", check=False
    )
    assert swapped.returncode != 0 and _VAP_DENIED.search(swapped.stderr), swapped.stderr
    debug = control_plane.kubectl(
        "debug",
        "running",
        "-n",
        ns,
        "--image=busybox",
        "--container=dbg",
        "--attach=false",
        check=False,
    )
    assert debug.returncode != 0 and _VAP_DENIED.search(debug.stderr), debug.stderr
    debug = control_plane.kubectl(
        "debug",
        "running",
        "-n",
        ns,
        "--image=busybox:1.36.1",
        "--container=dbg2",
        "--attach=false",
        check=False,
    )
    assert debug.returncode == 0, debug.stderr


def test_warn_mode_warns_and_admits(
    control_plane: ControlPlane, ns: str, tmp_path: Path, applied: list[dict[str, Any]]
) -> None:
    doc = policy_doc(short_name(ns, "vapw"), {"mode": "Warn", "pinning": {}}, ns)
    objects = export(tmp_path, doc)
    assert objects[1]["spec"]["validationActions"] == ["Warn"]
    control_plane.apply(objects)
    applied.extend(objects)
    deadline = time.monotonic() + 30
    while True:
        done = control_plane.kubectl(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(pod("w", ns, "nginx")),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        if "disallowed-tag" in done.stderr:
            break
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.3)
    assert (
        "Warning:" in done.stderr and "image nginx uses a tag the policy disallows" in done.stderr
    )


def _many(ns: str, containers: int, last: str | None = None) -> dict[str, Any]:
    """A pod with ``containers`` images of 300 characters in each of three lists."""
    image = "registry.corp.example/team/" + "a" * 180 + ":1.2.3-" + "b" * 86
    lists = [{"name": f"c{i}", "image": image} for i in range(containers)]
    if last is not None:
        lists[-1] = {"name": "last", "image": last}
    spec = {
        "containers": lists,
        "initContainers": [{"name": f"i{i}", "image": image} for i in range(containers)],
        "volumes": [{"name": f"v{i}", "image": {"reference": image}} for i in range(containers)],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "many", "namespace": ns},
        "spec": spec,
    }


@pytest.fixture
def large_policy(
    control_plane: ControlPlane, ns: str, tmp_path: Path, applied: list[dict[str, Any]]
) -> None:
    """The exported form of a policy with a 51-glob allowlist, tags, Version pinning, exceptions."""
    globs = [f"registry{i}.corp.example/team-{i}/*" for i in range(50)]
    doc = policy_doc(
        short_name(ns, "vapc"),
        {**ENFORCE, "registries": {"allowed": [*globs, "registry.corp.example/*"]}},
        ns,
    )
    activate(control_plane, export(tmp_path, doc), applied, ns)


def test_many_containers_stay_inside_the_cel_cost_budget(
    control_plane: ControlPlane, ns: str, large_policy: None
) -> None:
    """1,200 images of 300 characters (400 in each list) are judged, not refused for cost."""
    done = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(_many(ns, 400)), check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    bad = _many(ns, 400, last="quay.io/x:1.2.3")
    done = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert done.returncode != 0 and "(registry-not-allowed): image quay.io/x:1.2.3" in done.stderr
    assert "cost" not in done.stderr.lower()


def test_past_the_cost_budget_the_apiserver_refuses_never_admits(
    control_plane: ControlPlane, ns: str, large_policy: None
) -> None:
    """1,500 such images cost more than the apiserver lets one CEL expression spend: refused
    (failurePolicy: Fail), with the apiserver's reason, even though every image is allowed."""
    done = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(_many(ns, 500)), check=False
    )
    assert done.returncode != 0
    assert "cost limit exceeded" in done.stderr and _VAP_DENIED.search(done.stderr)


def test_scope_namespace_kind_selectors_and_globs(
    control_plane: ControlPlane, tmp_path: Path, applied: list[dict[str, Any]], ns: str
) -> None:
    """A BaseImagePolicy judges its namespace only; object and namespace selectors as the webhook."""
    other = control_plane.namespace(short_name(ns, "other"), labels={"tier": "free"})
    mine = control_plane.namespace(short_name(ns, "mine"), labels={"tier": "paid"})
    try:
        doc = {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "BaseImagePolicy",
            "metadata": {"name": "scoped", "namespace": mine},
            "spec": {
                "pinning": {},
                "match": {
                    "namespaceSelector": {"matchLabels": {"tier": "paid"}},
                    "objectSelector": {
                        "matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]
                    },
                },
            },
        }
        activate(control_plane, export(tmp_path, doc), applied, mine)
        labelled = pod("labelled", mine, "nginx")
        labelled["metadata"]["labels"] = {"skip": "yes"}
        verdicts = dry_run(control_plane, [pod("plain", mine, "nginx"), labelled])
        assert verdicts == {"plain": "deny", "labelled": "allow"}
        assert dry_run(control_plane, [pod("elsewhere", other, "nginx")]) == {"elsewhere": "allow"}
        # `check` cannot see a namespace's labels (it judges files): it agrees without that selector.
        offline = {
            **doc,
            "spec": {
                **doc["spec"],
                "match": {"objectSelector": doc["spec"]["match"]["objectSelector"]},
            },
        }
        assert check(tmp_path, offline, [pod("plain", mine, "nginx"), labelled]) == verdicts
    finally:
        for name in (other, mine):
            control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_audit_mode_admits_and_records_in_the_audit_log(
    control_plane: ControlPlane, ns: str, tmp_path: Path, applied: list[dict[str, Any]]
) -> None:
    doc = policy_doc(short_name(ns, "vapa"), {"mode": "Audit", "pinning": {}}, ns)
    objects = export(tmp_path, doc)
    assert objects[1]["spec"]["validationActions"] == ["Audit"]
    control_plane.apply(objects)
    applied.extend(objects)
    name = objects[0]["metadata"]["name"]
    deadline = time.monotonic() + 30
    while True:
        done = control_plane.kubectl(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(pod("audited", ns, "nginx")),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        found = [
            value
            for event in control_plane.audit_events()
            if (event.get("objectRef") or {}).get("namespace") == ns
            for key, value in (event.get("annotations") or {}).items()
            if key == "validation.policy.admission.k8s.io/validation_failure" and name in value
        ]
        if found:
            break
        assert time.monotonic() < deadline, "no validation failure in the audit log"
        time.sleep(0.5)
    assert "disallowed-tag" in found[0] and "Audit" in found[0]
