#!/usr/bin/env bash
# Build the Kubernetes control plane the cluster suite runs against.
#
# kube-apiserver, kube-controller-manager and kubectl come from
# k8s.io/kubernetes at one pinned release; etcd is the server module that very
# release depends on (Debian's etcd-server is 3.4, older than Kubernetes
# supports).  k8s.io/kubernetes cannot be built with `go install pkg@version`
# because its go.mod replaces every k8s.io/* staging module with a local
# directory, so a throw-away wrapper module requires it and pins each staging
# module to the matching v0.x.y release instead.
#
# Binaries land in ${BASEGUARD_K8S_CACHE:-$HOME/.cache/baseguard}/kubernetes-vX.Y.Z/
# and a warm run (all four present) builds nothing and needs no network.
# Prints the directory on stdout; progress goes to stderr.
# `build.sh --where` only prints the directory, and exits 1 when it is not complete
# (the test fixture asks this way, so the version lives in this file alone).
set -euo pipefail

K8S_VERSION="${BASEGUARD_K8S_VERSION:-v1.37.2}"
CACHE_ROOT="${BASEGUARD_K8S_CACHE:-${HOME}/.cache/baseguard}"
DEST="${CACHE_ROOT}/kubernetes-${K8S_VERSION}"
BINARIES=(kube-apiserver kube-controller-manager kubectl etcd)

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "${DEST}/${b}" ]] || return 1
    done
}

if [[ "${1:-}" == "--where" ]]; then
    echo "${DEST}"
    have_all
    exit
fi

if have_all; then
    echo "${DEST}"
    exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "${GO}" ]]; then
    echo "build.sh: no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go)" >&2
    exit 2
fi

STAGING_VERSION="v0.${K8S_VERSION#v1.}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/baseguard-k8s-build.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT
cd "${WORK}"

echo "build.sh: building Kubernetes ${K8S_VERSION} (staging ${STAGING_VERSION}) in ${WORK}" >&2
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

"${GO}" mod init baseguard.test/k8s-build >/dev/null 2>&1
"${GO}" mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
# Every staging module named in k8s.io/kubernetes' own replace block, pinned
# to the published release of the same minor.
"${GO}" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null
MODFILE="$("${GO}" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
mapfile -t STAGING < <(sed -n 's#^\s*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "${MODFILE}")
if [[ ${#STAGING[@]} -lt 20 ]]; then
    echo "build.sh: found only ${#STAGING[@]} staging modules in ${MODFILE}" >&2
    exit 1
fi
for m in "${STAGING[@]}"; do
    "${GO}" mod edit -replace="${m}=${m}@${STAGING_VERSION}"
done
# etcd at the version Kubernetes itself requires.
ETCD_VERSION="$(sed -n 's#^\s*go\.etcd\.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "${MODFILE}" | head -1)"
"${GO}" mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
"${GO}" mod tidy -e >&2 || true

# The version the binaries report (kubectl version, /version, emulation
# version checks) instead of v0.0.0-master.
MINOR="${K8S_VERSION#v1.}"; MINOR="${MINOR%%.*}"
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${MINOR}"
    LDFLAGS+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "${DEST}.partial"
build() {
    echo "build.sh: go build $2" >&2
    "${GO}" build -trimpath -ldflags "${LDFLAGS}" -o "${DEST}.partial/$1" "$2"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
echo "${K8S_VERSION} etcd ${ETCD_VERSION}" > "${DEST}.partial/VERSION"
rm -rf "${DEST}"
mv "${DEST}.partial" "${DEST}"
echo "${DEST}"
