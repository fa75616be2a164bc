"""What ``baseguard check`` reads from disk, and how it says what is wrong with a file."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from controller.cli.loaders import (
    is_dockerfile,
    load_inputs,
    load_policy_documents,
)
from controller.errors import InputError
from controller.roles import ImageRole

ROOT = Path(__file__).resolve().parents[2]

DATA = Path(__file__).resolve().parent.parent / "data"
WORKLOADS = DATA / "workloads"
DOCKERFILES = DATA / "dockerfiles"

POLICY = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: {name}
spec:
  mode: Warn
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# --- documents ---------------------------------------------------------------------------


def test_a_multi_document_file() -> None:
    path = str(WORKLOADS / "multi.yaml")
    loaded = load_inputs([path], default_namespace="fallback")
    [storefront] = loaded.workloads
    assert (storefront.kind, storefront.name, storefront.namespace) == ("Deployment", "storefront", "shop")
    # Documents count from 0 in data, empty ones included: the 4th document of the stream.
    assert (storefront.source, storefront.document) == (path, 3)
    assert storefront.images[0].path == "/spec/template/spec/containers/0/image"
    assert loaded.namespaces == {
        "shop": {"kubernetes.io/metadata.name": "shop", "env": "prod", "team": "storefront"}
    }
    assert loaded.skipped == [f"{path}#3 ConfigMap/settings (not a workload: runs no containers)"]
    [(policy_file, index, policy)] = loaded.policies
    assert (policy_file, index, policy["metadata"]["name"]) == (path, 4, "no-latest")


def test_unquoted_dates_stay_strings_as_kubectl_keeps_them() -> None:
    [(_, _, policy)] = load_inputs([str(WORKLOADS / "multi.yaml")]).policies
    assert policy["spec"]["exceptions"][0]["until"] == "2026-03-31"


def test_a_list_yields_workloads_and_counts_the_rest_as_skipped() -> None:
    path = str(WORKLOADS / "list.yaml")
    loaded = load_inputs([path])
    assert [(w.kind, w.name, w.images[0].path) for w in loaded.workloads] == [
        ("Deployment", "cart", "/items/1/spec/template/spec/containers/0/image")
    ]
    assert loaded.skipped == [
        f"{path}#1 ConfigMap/settings (not a workload: runs no containers)",
        f"{path}#1 Service/cart (not a workload: runs no containers)",
    ]


def test_a_typed_json_list_without_item_kinds() -> None:
    loaded = load_inputs([str(WORKLOADS / "podlist.json")])
    assert [(w.kind, w.name, w.namespace, w.images[0].image) for w in loaded.workloads] == [
        ("Pod", "coredns-5d78c9869d-4xk2p", "kube-system", "registry.k8s.io/coredns/coredns:v1.10.1"),
        ("Pod", "etcd-control-plane", "kube-system", "registry.k8s.io/etcd:3.5.9-0"),
    ]


def test_the_default_namespace_fills_in_for_objects_without_one() -> None:
    loaded = load_inputs([str(WORKLOADS / "replicaset.yaml")], default_namespace="team-a")
    assert loaded.workloads[0].namespace == "team-a"


def test_empty_documents_and_empty_files_are_ignored(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "")
    seps = write(tmp_path / "seps.yaml", "---\n---\n# only a comment\n---\n~\n...\n")
    loaded = load_inputs([empty, seps])
    assert (loaded.workloads, loaded.skipped, loaded.namespaces) == ([], [], {})


def test_stdin_is_read_as_yaml() -> None:
    loaded = load_inputs(["-"], stdin=io.StringIO(DEPLOYMENT.format(name="piped", image="nginx:1.27")))
    assert [(w.name, w.source) for w in loaded.workloads] == [("piped", "<stdin>")]


# --- errors name the file, the document and the problem -----------------------------------

ERRORS = [
    (
        "bad-yaml",
        "a.yaml",
        "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n spec: {}\n",
        "{path}: document 2: invalid YAML at line 8, column 2: "
        "while parsing a block mapping did not find expected key",
    ),
    (
        "tab-indent",
        "a.yml",
        "apiVersion: v1\nkind: Pod\nspec:\n\tcontainers: []\n",
        "{path}: document 1: invalid YAML at line 4, column 1: "
        "while scanning for the next token found character",  # libyaml and PyYAML differ after
    ),
    (
        "not-a-mapping",
        "a.yaml",
        "apiVersion: v1\nkind: Pod\n---\n- just\n- a list\n",
        "{path}: document 2 (line 4): expected a Kubernetes object "
        "(a mapping with apiVersion and kind), found a list",
    ),
    (
        "a-bare-string",
        "a.yaml",
        "hello\n",
        "{path}: document 1 (line 1): expected a Kubernetes object "
        "(a mapping with apiVersion and kind), found a string 'hello'",
    ),
    (
        "no-kind",
        "a.yaml",
        "apiVersion: v1\nmetadata: {name: x}\n",
        "{path}: document 1 (line 1): no kind; every Kubernetes object has one",
    ),
    (
        "no-apiversion",
        "a.yaml",
        "---\n# a comment\nkind: Pod\n",
        "{path}: document 1 (line 3): no apiVersion; every Kubernetes object has one",
    ),
    (
        "kind-not-a-string",
        "a.yaml",
        "apiVersion: v1\nkind: [Pod]\n",
        "{path}: document 1 (line 1): a non-string (a list) kind; every Kubernetes object has one",
    ),
    (
        "list-item-without-kind",
        "a.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n- metadata: {name: x}\n",
        "{path}: document 1 (line 1): items[1] has no kind",
    ),
    (
        "list-items-not-a-list",
        "a.yaml",
        "apiVersion: v1\nkind: List\nitems: {a: 1}\n",
        "{path}: document 1 (line 1): items of a List must be a list, found a dict",
    ),
    (
        "bad-json",
        "a.json",
        '{"apiVersion": "v1",\n "kind": "Pod",}\n',
        "{path}: invalid JSON at line 2, column 16: Expecting property name enclosed in double quotes",
    ),
    (
        "bad-dockerfile",
        "Dockerfile",
        "RUN echo no base\n",
        "{path}: no FROM instruction: not a Dockerfile, or an empty one",
    ),
    (
        "not-utf8",
        "a.yaml",
        b"kind: \xff\n",
        "{path}: not UTF-8 text (byte 6)",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_input_errors_say_where_and_what(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputError) as caught:
        load_inputs([str(path)], strict=True)
    assert str(caught.value).startswith(message.format(path=path))


def test_a_missing_path_is_an_input_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=f"^{missing}: no such file or directory$"):
        load_inputs([missing])


def test_an_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        path = write(tmp_path / "secret.yaml", "kind: Pod\n")
        os.chmod(path, 0)
        with pytest.raises(InputError, match=f"^{path}: cannot read: Permission denied$"):
            load_inputs([path])
        return
    # Root reads any file, so the reader is a child process that drops to an unprivileged
    # user (nobody) once its imports are done, on a file in a directory it may enter.
    folder = Path(tempfile.mkdtemp(prefix="baseguard-unreadable-"))
    try:
        folder.chmod(0o755)
        path = write(folder / "secret.yaml", "kind: Pod\n")
        os.chmod(path, 0)
        code = (
            "import os, sys\n"
            "from controller.cli.loaders import load_inputs\n"
            "from controller.errors import InputError\n"
            "os.setuid(65534)\n"
            "try:\n"
            "    load_inputs([sys.argv[1]])\n"
            "except InputError as exc:\n"
            "    print(exc)\n"
        )
        child = subprocess.run(
            [sys.executable, "-c", code, path], capture_output=True, text=True,
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
        )
        assert child.stdout.strip() == f"{path}: cannot read: Permission denied", child.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_explicit_file_of_unknown_type_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "FROM alpine\n")
    with pytest.raises(InputError, match=r"notes.txt: not a Kubernetes manifest \(.yaml, .yml, .json\)"):
        load_inputs([path])


# --- Dockerfiles and directories -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Dockerfile", True),
        ("Dockerfile.prod", True),
        ("Dockerfile-dev", True),
        ("api.Dockerfile", True),
        ("dockerfile", True),
        ("Containerfile", True),
        ("worker.Containerfile", True),
        ("Dockerfile.dockerignore", False),
        ("api.Dockerfile.dockerignore", False),
        ("dockerfile.go", False),
        ("my-dockerfile.md", False),
        ("Dockerfile.yaml", True),
    ],
    ids=lambda v: str(v),
)
def test_dockerfile_name_patterns(name: str, expected: bool) -> None:
    assert is_dockerfile(name) is expected


def test_a_directory_is_walked_sorted_skipping_hidden_and_unknown_files(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "k8s" / "b.yaml", DEPLOYMENT.format(name="b", image="b:1"))
    write(root / "k8s" / "a.yml", DEPLOYMENT.format(name="a", image="a:1"))
    write(root / "k8s" / "c.json", '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"},\n"spec": {"containers": [{"name": "c", "image": "c:1"}]}}')
    write(root / "k8s" / "d.json", '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d"}}')
    write(root / "Dockerfile", "FROM python:3.12-slim\n")
    write(root / "svc" / "api.Dockerfile", "FROM golang:1.22 AS b\nFROM alpine:3.20\n")
    write(root / "Dockerfile.dockerignore", "node_modules\n")
    write(root / "README.md", "# not an input\n")
    write(root / ".github" / "workflows" / "ci.yaml", "on: push\n")  # not Kubernetes: never read
    write(root / ".hidden.yaml", "on: push\n")
    loaded = load_inputs([str(root)])
    assert [(w.kind, w.name) for w in loaded.workloads] == [
        ("Dockerfile", str(root / "Dockerfile")),
        ("Deployment", "a"),
        ("Deployment", "b"),
        ("Pod", "c"),
        ("Dockerfile", str(root / "svc" / "api.Dockerfile")),
    ]
    api = loaded.workloads[-1]
    assert [(i.image, i.role, i.path) for i in api.images] == [
        ("golang:1.22", ImageRole.BUILD, "line:1"),
        ("alpine:3.20", ImageRole.BASE, "line:2"),
    ]
    assert loaded.skipped == [
        f"{root / 'k8s' / 'd.json'}#1 Pod/d (no containers: spec.containers is missing or not a list)"
    ]
    assert loaded.lines[(str(root / "k8s" / "c.json"), 0, "/spec/containers/0/image")] == 2


def test_a_file_reached_twice_is_read_once(tmp_path: Path) -> None:
    path = write(tmp_path / "app.yaml", DEPLOYMENT.format(name="app", image="app:1"))
    loaded = load_inputs([path, str(tmp_path), path])
    assert [w.name for w in loaded.workloads] == ["app"]


def test_build_args_reach_dockerfiles() -> None:
    loaded = load_inputs([str(DOCKERFILES / "Dockerfile.unresolved")], build_args={"BASE": "alpine:3.20"})
    assert [i.image for i in loaded.workloads[0].images] == ["alpine:3.20"]


def test_the_fixture_folders_load_whole() -> None:
    loaded = load_inputs([str(WORKLOADS), str(DOCKERFILES)], build_args={"BASE": "alpine:3.20"})
    kinds = sorted({w.kind for w in loaded.workloads})
    assert kinds == sorted(
        [
            "CronJob",
            "DaemonSet",
            "Deployment",
            "Dockerfile",
            "Job",
            "Pod",
            "PodTemplate",
            "ReplicaSet",
            "ReplicationController",
            "StatefulSet",
        ]
    )
    assert len([w for w in loaded.workloads if w.kind == "Dockerfile"]) == 5
    assert sorted(s.split(" ", 1)[1] for s in loaded.skipped) == [
        "ConfigMap/settings (not a workload: runs no containers)",
        "ConfigMap/settings (not a workload: runs no containers)",
        "ConfigMap/settings (not a workload: runs no containers)",
        "Service/cart (not a workload: runs no containers)",
    ]


# --- policies (-p) ---------------------------------------------------------------------------


def test_policy_folders_are_walked_leaving_out_tests(tmp_path: Path) -> None:
    lib = tmp_path / "policies"
    write(lib / "python" / "eol.yaml", POLICY.format(name="python-eol"))
    write(lib / "python" / "tests" / "resources.yaml", DEPLOYMENT.format(name="x", image="python:3.7"))
    write(lib / "pinning.yml", POLICY.format(name="pin") + "---\n" + POLICY.format(name="pin-2"))
    write(lib / "README.md", "# docs\n")
    write(lib / ".draft.yaml", "kind: Broken\n")
    documents = load_policy_documents([str(lib)])
    assert [(Path(f).name, i, d["metadata"]["name"]) for f, i, d in documents] == [
        ("pinning.yml", 0, "pin"),
        ("pinning.yml", 1, "pin-2"),
        ("eol.yaml", 0, "python-eol"),
    ]


def test_a_folder_named_tests_can_still_be_handed_over_itself(tmp_path: Path) -> None:
    write(tmp_path / "tests" / "policy.yaml", POLICY.format(name="p"))
    assert len(load_policy_documents([str(tmp_path / "tests")])) == 1


def test_a_list_of_policies_as_kubectl_prints_it(tmp_path: Path) -> None:
    items = "".join(
        "  - " + POLICY.format(name=n).replace("\n", "\n    ").rstrip() + "\n" for n in ("a", "b")
    )
    path = write(tmp_path / "all.yaml", "apiVersion: v1\nkind: List\nitems:\n" + items)
    assert [d["metadata"]["name"] for _, _, d in load_policy_documents([path])] == ["a", "b"]


def test_a_workload_in_a_policy_file_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path / "policy.yaml",
        POLICY.format(name="p") + "---\n" + DEPLOYMENT.format(name="oops", image="x:1"),
    )
    with pytest.raises(InputError) as caught:
        load_policy_documents([path])
    assert str(caught.value) == (
        f"{path}: document 2 (line 8): a Deployment is not a policy "
        "(expected BaseImagePolicy, BaseImagePolicyException, ClusterBaseImagePolicy)"
    )


def test_a_policy_file_with_bad_yaml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.yaml", "kind: ClusterBaseImagePolicy\nspec: [unclosed\n")
    with pytest.raises(InputError, match=r"policy.yaml: document 1: invalid YAML at line 3, column 1"):
        load_policy_documents([path])


# --- a real repository: YAML that is not Kubernetes, charts, pods without containers -------


def test_a_repository_s_other_yaml_is_skipped_with_a_note_and_strict_refuses_it(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "docker-compose.yml", "services:\n  web: {image: 'nginx:1.27'}\n")
    write(root / "deploy" / "app.yaml", DEPLOYMENT.format(name="app", image="app:1"))
    write(root / "deploy" / "list.yaml", "- not\n- an object\n")
    write(root / "chart" / "Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.0.0\n")
    write(root / "chart" / "values.yaml", "image: {repository: shop, tag: latest}\n")
    write(root / "chart" / "templates" / "deploy.yaml", "{{- if .Values.enabled }}\nkind: Deployment\n")
    loaded = load_inputs([str(root)])
    assert [w.name for w in loaded.workloads] == ["app"]
    assert loaded.skipped == [
        f"{root / 'docker-compose.yml'}#1 (not a Kubernetes object: no apiVersion and no kind)",
        f"{root / 'chart'}/ (a Helm chart: its templates are YAML only once rendered; "
        f"helm template {root / 'chart'} | baseguard check -)",
        f"{root / 'deploy' / 'list.yaml'}#1 (not a Kubernetes object: a list, not a mapping)",
    ]
    with pytest.raises(InputError, match=r"docker-compose.yml: document 1 .line 1.: no apiVersion; every Kubernetes"):
        load_inputs([str(root)], strict=True)


def test_a_chart_s_files_named_one_by_one_are_skipped_as_a_walk_skips_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-commit hook names changed files one by one: `chart/Chart.yaml: … no kind` and
    template errors (exit 2) failed every commit of a repository holding a chart."""
    root = tmp_path / "repo"
    write(root / "chart" / "Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.0.0\n")
    write(root / "chart" / "values.yaml", "image: {repository: shop, tag: latest}\n")
    write(root / "chart" / "templates" / "deploy.yaml", "{{- if .Values.enabled }}\nkind: Deployment\n")
    write(root / "chart" / "Dockerfile", "FROM python:3.12.7-slim\n")
    write(root / "app.yaml", DEPLOYMENT.format(name="app", image="app:1"))
    monkeypatch.chdir(root)
    named = ["chart/Chart.yaml", "chart/values.yaml", "chart/templates/deploy.yaml", "chart/Dockerfile", "app.yaml"]
    by_name = load_inputs(named)
    walked = load_inputs(["."])
    note = "(a Helm chart: its templates are YAML only once rendered; helm template {0} | baseguard check -)"
    assert by_name.skipped == [f"chart/ {note.format('chart')}"]
    assert walked.skipped == [f"./chart/ {note.format('./chart')}"]
    for loaded in (by_name, walked):
        assert sorted(w.kind for w in loaded.workloads) == ["Deployment", "Dockerfile"]  # never templated
    with pytest.raises(InputError):
        load_inputs(named, strict=True)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ("", "spec.containers"),
        ("spec: {containers: oops}\n", "spec.containers"),
    ],
    ids=["pod-without-spec", "containers-a-string"],
)
def test_a_pod_without_containers_is_counted_as_skipped(tmp_path: Path, spec: str, where: str) -> None:
    path = write(tmp_path / "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n" + spec)
    loaded = load_inputs([path])
    assert loaded.workloads == []
    assert loaded.skipped == [f"{path}#1 Pod/p (no containers: {where} is missing or not a list)"]


def test_each_image_has_its_line() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- " + DEPLOYMENT.replace("\n", "\n  ").format(name="a", image="a:1")
    loaded = load_inputs(["-"], stdin=io.StringIO(text))
    assert loaded.lines == {("<stdin>", 0, "/items/0/spec/template/spec/containers/0/image"): 13}
    assert text.splitlines()[12].strip() == "image: a:1"
