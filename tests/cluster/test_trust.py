"""Signatures on the bases lineage finds, through the apiserver, as ``kubectl run`` prints them.

The publisher's base is signed with a key the test makes (cosign's ``.sig`` tag);
the same base copied into a mirror carries no signature. A namespaced policy
requires the key on every base: the image built on the signed base is created,
the one built on the mirror's copy is refused, and kubectl prints why.
"""

from __future__ import annotations

from cluster.cluster_support import Baseguard, apply_ready, denial, policy
from support import signing
from support.controlplane import ControlPlane
from support.cosign_push import push_signature
from support.images import layer
from support.registry import RegistryProcess

from controller.registry import media

DENIED_BY = 'admission webhook "workloads.validate.baseguard.io" denied the request'


def test_an_image_on_an_unsigned_mirror_copy_of_a_signed_base_is_denied_in_kubectl(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    key = signing.new_key("p256")
    root = f"cluster/{ns}"
    os_layer, app_layer = layer({"etc/os-release": ns}), layer({"app": ns})
    scratch = {media.BASE_NAME: "scratch"}
    base = registry.pusher.push_image(f"{root}/base", "1", [os_layer], annotations=scratch)
    push_signature(registry.pusher, f"{root}/base", base.digest, key)
    mirror = registry.pusher.push_image(f"{root}/mirror/base", "1", [os_layer], annotations=scratch)
    claim = lambda p: {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}  # noqa: E731
    good = registry.pusher.push_image(f"{root}/app", "1.0.0", [os_layer, app_layer], annotations=claim(base))
    bad = registry.pusher.push_image(f"{root}/app", "2.0.0", [os_layer, app_layer], annotations=claim(mirror))
    spec = {
        "mode": "Enforce",
        "pinning": {"disallowedTags": []},
        "trust": {
            "appliesTo": "Bases",
            "authorities": [{"name": "platform", "keys": [{"publicKey": signing.public_pem(key)}]}],
        },
    }
    apply_ready(control_plane, policy("signed-bases", spec, namespace=ns))

    control_plane.kubectl("run", "good", f"--image={good.tagged}", "-n", ns)
    assert control_plane.get_json("pod", "good", "-n", ns)["spec"]["containers"][0]["image"] == good.tagged

    result = control_plane.kubectl("run", "bad", f"--image={bad.tagged}", "-n", ns, check=False)
    printed = denial(result)
    assert f"Error from server (Forbidden): {DENIED_BY}" in printed
    for part in (f"{ns}/signed-bases", "rule unsigned", f"base {mirror.tagged}", "authority platform"):
        assert part in printed, printed
