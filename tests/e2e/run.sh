#!/usr/bin/env bash
# baseguard end to end, on a real cluster in kind: install the chart, apply policies,
# admit and refuse workloads, read the audit's results, rotate the certificate, fail
# the leader over, and run `baseguard audit` from outside the cluster.
#
#   tests/e2e/run.sh               # create a kind cluster, test, delete it
#   KEEP_CLUSTER=1 tests/e2e/run.sh  # leave the cluster up to look around
#
# It only ever deletes a cluster it created itself, and refuses to run on an existing
# cluster of the same name (its checks assume a fresh one): pick another CLUSTER=.
# The chart is installed with failurePolicy Fail, so "admitted" means "judged and
# admitted by baseguard", never "admitted because the webhook was down".
#
# The control-plane suite (tests/cluster, part of `make test`) covers most of this
# against a kube-apiserver built from source; what only this script covers is the
# kubelet side: the controller's image, pods, probes, the Service, pod deletion.
#
# Needs docker, kind, kubectl and helm on PATH (and network access for the kind node
# image and the public images the workloads use). See tests/e2e/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
M="$HERE/manifests"
CLUSTER="${CLUSTER:-baseguard-e2e}"
NS="${NS:-baseguard}"            # release namespace
RELEASE="baseguard"              # fullname, Service, Secret, Lease and webhook names derive from it
IMAGE="${IMAGE:-baseguard:e2e}"
KIND_IMAGE="${KIND_IMAGE:-}"     # e.g. kindest/node:v1.31.0; empty: kind's default
WORK="$(mktemp -d)"
# Outside $WORK: with KEEP_CLUSTER=1 the kubeconfig printed at the end must survive.
KUBECONFIG_FILE="${KUBECONFIG_FILE:-${TMPDIR:-/tmp}/$CLUSTER.kubeconfig}"
export KUBECONFIG="$KUBECONFIG_FILE"
FAILED=0
CREATED=0

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok()   { printf '  \033[32mok\033[0m   %s\n' "$*"; }
bad()  { printf '  \033[31mFAIL\033[0m %s\n' "$*"; FAILED=$((FAILED + 1)); }
need() { command -v "$1" >/dev/null 2>&1 || { echo "tests/e2e: $1 is not installed (see tests/e2e/README.md)" >&2; exit 2; }; }

# check DESCRIPTION COMMAND...: ok when COMMAND succeeds, else a counted failure
# (never `cmd && ok`, which under `set -e` neither counts nor reports a failure).
check() {
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND (every 0.5 s) until it succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then bad "$what (after ${limit}s)"; return 1; fi
    sleep 0.5
  done
  ok "$what"
}

# denied OUTPUT POLICY RULE: OUTPUT is baseguard's refusal naming POLICY and RULE (any
# other failure -- a typo, an unreachable apiserver -- is not a denial).
denied() {
  grep -q 'admission webhook "workloads.validate.baseguard.io" denied the request' <<<"$1" \
    && grep -q "$2" <<<"$1" && grep -q "$3" <<<"$1"
}

cleanup() {
  local code=$?
  if ((FAILED > 0 || code != 0)); then
    say "diagnostics"
    kubectl -n "$NS" get pods,lease,secret -o wide 2>/dev/null || true
    kubectl -n "$NS" logs -l app.kubernetes.io/name=baseguard --tail=80 --prefix 2>/dev/null || true
  fi
  if [[ -n "${KEEP_CLUSTER:-}" ]]; then
    echo "cluster kept: export KUBECONFIG=$KUBECONFIG"
  elif ((CREATED)); then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -f "$KUBECONFIG_FILE"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in docker kind kubectl helm; do need "$tool"; done

# ------------------------------------------------------------------------------ cluster
say "cluster and image"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "tests/e2e: a kind cluster named $CLUSTER exists already; this script neither reuses" >&2
  echo "nor deletes a cluster it did not create. Delete it, or run with CLUSTER=another-name." >&2
  exit 2
fi
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" ${KIND_IMAGE:+--image "$KIND_IMAGE"} --wait 120s
CREATED=1
docker build -t "$IMAGE" "$ROOT"
kind load docker-image --name "$CLUSTER" "$IMAGE"
# The real wgpolicyk8s.io CRDs (the cluster suite installs the same files).
kubectl apply -f "$ROOT/tests/data/crds/wgpolicyk8s.io_policyreports.yaml" \
  -f "$ROOT/tests/data/crds/wgpolicyk8s.io_clusterpolicyreports.yaml" >/dev/null
kubectl apply -f "$M/namespaces.yaml" >/dev/null
# before baseguard exists: only the background audit can find it
kubectl apply -f "$M/preexisting.yaml" >/dev/null
ok "kind cluster $CLUSTER, image $IMAGE loaded"

# ------------------------------------------------------------------------------ install
say "install the chart (two replicas, self-managed certificates)"
# A 10-minute serving certificate renewed 8 minutes early: the leader rotates it within
# about two minutes of the install, which the rotation check below waits for.
helm upgrade --install "$RELEASE" "$ROOT/charts/baseguard" \
  --namespace "$NS" --create-namespace \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set audit.interval=20s --set webhook.failurePolicy=Fail \
  --set-json 'extraArgs=["--cert-validity=10m","--cert-renew-before=8m","--cert-check-interval=15s","--tls-poll-interval=5s"]' \
  --wait --timeout 180s
wait_for 120 "both replicas ready" kubectl -n "$NS" rollout status deploy/"$RELEASE" --timeout=5s
check "serving Secret $RELEASE-tls made by the leader" kubectl -n "$NS" get secret "$RELEASE-tls" -o name
CA_SECRET="$(kubectl -n "$NS" get secret "$RELEASE-tls" -o jsonpath='{.data.ca\.crt}' | base64 -d)"
CA_HOOK="$(kubectl get validatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | base64 -d)"
# Both non-empty and the Secret's whole CA certificate inside the bundle (an empty
# ca.crt would otherwise "match" anything).
if grep -q 'BEGIN CERTIFICATE' <<<"$CA_SECRET" && [[ "$CA_HOOK" == *"$CA_SECRET"* ]]; then
  ok "caBundle patched into the ValidatingWebhookConfiguration"
else
  bad "caBundle of the ValidatingWebhookConfiguration does not hold the Secret's CA"
fi
# webhook.mutating.register: WhenNeeded (the default): no policy pins yet, so the
# mutating configuration holds no webhook (one apiserver call per pod, not two).
MUTATE_HOOKS="$(kubectl get mutatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[*].name}' 2>/dev/null || true)"
if [[ -z "$MUTATE_HOOKS" ]]; then
  ok "MutatingWebhookConfiguration holds no webhook while no policy pins"
else
  bad "MutatingWebhookConfiguration registered without a pinning policy: $MUTATE_HOOKS"
fi

# ------------------------------------------------------------------------------ policies
say "policies"
check "policies applied" kubectl apply -f "$M/policies.yaml"
if out="$(kubectl apply -f "$M/broken-policy.yaml" 2>&1)"; then
  bad "a broken policy was accepted"
else
  grep -q 'spec.registries.allowed\[0\]' <<<"$out" && ok "broken policy refused with its field path" || bad "refusal without the field path: $out"
fi
ready() { [[ "$(kubectl get "$1" "$2" ${3:+-n "$3"} -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
wait_for 60 "ClusterBaseImagePolicy e2e-no-latest Ready=True" ready clusterbaseimagepolicy e2e-no-latest
wait_for 60 "BaseImagePolicy e2e-warn/e2e-hub-only Ready=True" ready baseimagepolicy e2e-hub-only e2e-warn
gen="$(kubectl get cbip e2e-no-latest -o jsonpath='{.metadata.generation}')"
if [[ -n "$gen" && "$(kubectl get cbip e2e-no-latest -o jsonpath='{.status.observedGeneration}')" == "$gen" ]]; then ok "observedGeneration $gen"; else bad "observedGeneration lags"; fi

# ------------------------------------------------------------------------------ admission
say "admission"
# Every replica watches the policies: wait until a server-side dry run is refused
# (a Ready status only says the leader has compiled them).
refused_dry() { ! out="$(kubectl apply --dry-run=server -f "$M/bad.yaml" 2>&1)" && denied "$out" e2e-no-latest disallowed-tag; }
wait_for 30 "the webhook enforces the new policies (dry run refused)" refused_dry
check "pinned Deployment admitted" kubectl apply -f "$M/good.yaml"
if out="$(kubectl apply -f "$M/bad.yaml" 2>&1)"; then
  bad "nginx:latest admitted in a production namespace"
else
  check "nginx:latest refused: policy and rule named ($out)" denied "$out" e2e-no-latest disallowed-tag
fi
if out="$(kubectl apply -f "$M/warned.yaml" 2>&1)"; then
  check "ghcr.io image admitted in e2e-warn with a warning" grep -q 'Warning:.*registry-not-allowed' <<<"$out"
else
  bad "the warned Pod was refused: $out"
fi
if out="$(kubectl -n e2e-warn run unpinned-elsewhere --image=docker.io/library/nginx:latest --restart=Never 2>&1)"; then
  ok "nginx:latest admitted where no Enforce policy's namespaceSelector matches"
else
  bad "refused outside the selector: $out"
fi
kubectl label namespace e2e-warn tier=production --overwrite >/dev/null
relabelled() { ! out="$(kubectl -n e2e-warn run relabelled --image=docker.io/library/nginx:latest --restart=Never --dry-run=server 2>&1)" && denied "$out" e2e-no-latest disallowed-tag; }
wait_for 30 "namespace label change picked up (namespaceSelector from the watch)" relabelled
kubectl label namespace e2e-warn tier- >/dev/null

# ------------------------------------------------------------------------------ audit
say "background audit"
violations() { [[ "$(kubectl get cbip e2e-no-latest -o jsonpath='{.status.audit.violations}')" -ge 1 ]]; }
wait_for 90 "status.audit reports the pre-existing Deployment" violations
kubectl get cbip e2e-no-latest -o jsonpath='  lastRun={.status.audit.lastRun} objects={.status.audit.objects} violations={.status.audit.violations}{"\n"}'
event() { kubectl -n e2e-enforce get events --field-selector reason=PolicyViolation,involvedObject.name=legacy-latest -o name | grep -q .; }
wait_for 60 "PolicyViolation Event on deploy/legacy-latest" event
report() { kubectl -n e2e-enforce get policyreport baseguard-audit -o jsonpath='{.results[?(@.result=="fail")].resources[0].name}' | grep -q legacy-latest; }
wait_for 60 "PolicyReport e2e-enforce/baseguard-audit has a fail result for legacy-latest" report
events_before="$(kubectl -n e2e-enforce get events --field-selector reason=PolicyViolation -o name | wc -l)"
# status.audit is rewritten only when its figures change (or hourly): count the leader's
# "audit published" log lines instead.
audits() { kubectl -n "$NS" logs -l app.kubernetes.io/name=baseguard --tail=-1 2>/dev/null | grep -c '"audit published"' || true; }
run0="$(audits)"
more_than() { (( $(audits) > $1 )); }
wait_for 60 "another audit ran" more_than "$run0"
run1="$(audits)"
wait_for 60 "and one more" more_than "$run1"
events_after="$(kubectl -n e2e-enforce get events --field-selector reason=PolicyViolation -o name | wc -l)"
((events_after == events_before)) && ok "Events not repeated by later audits ($events_after)" || bad "Events grew from $events_before to $events_after"

# ------------------------------------------------------------------------------ CLI
say "baseguard audit from outside the cluster"
if command -v baseguard >/dev/null 2>&1; then
  set +e
  baseguard audit --kubeconfig "$KUBECONFIG" --offline >"$WORK/audit.txt" 2>&1; code=$?
  baseguard audit --kubeconfig "$KUBECONFIG" --offline --uses 'nginx:latest' --format json >"$WORK/uses.json" 2>/dev/null; uses=$?
  set -e
  if ((code == 1)) && grep -q 'legacy-latest' "$WORK/audit.txt"; then ok "audit: exit 1, legacy-latest listed"; else bad "audit exit $code: $(cat "$WORK/audit.txt")"; fi
  if ((uses == 1)) && grep -q '"legacy-latest"' "$WORK/uses.json"; then ok "audit --uses nginx:latest finds legacy-latest"; else bad "--uses exit $uses"; fi
else
  echo "  skip baseguard is not on PATH (pip install -e '.[operator]' to run this part)"
fi

# ------------------------------------------------------------------------------ certificates
say "certificate rotation (no restart)"
first="$(kubectl -n "$NS" get secret "$RELEASE-tls" -o jsonpath='{.data.tls\.crt}')"
restarts_before="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=baseguard -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{" "}{end}')"
rotated() { [[ "$(kubectl -n "$NS" get secret "$RELEASE-tls" -o jsonpath='{.data.tls\.crt}')" != "$first" ]]; }
wait_for 240 "serving certificate rotated by the leader" rotated
# Admissions through the Service until each replica has logged one (failurePolicy is
# Fail, so an admission is an answer from baseguard); every one must be admitted.
served_by_all() {
  local pod
  for pod in $(kubectl -n "$NS" get pods -l app.kubernetes.io/name=baseguard -o name); do
    kubectl -n "$NS" logs "$pod" | grep -q '"name": *"after-rotation-' || return 1
  done
}
ok_after=0 tried=0
until served_by_all || ((tried >= 40)); do
  tried=$((tried + 1))
  if kubectl -n e2e-enforce run "after-rotation-$tried" --image=docker.io/library/nginx:1.27.3 --restart=Never >/dev/null 2>&1; then
    ok_after=$((ok_after + 1))
  fi
done
if served_by_all && ((ok_after == tried)); then
  ok "admission keeps working after the rotation ($ok_after/$tried admitted, both replicas served)"
else
  bad "after the rotation: $ok_after/$tried admitted; every replica served: $(served_by_all && echo yes || echo no)"
fi
restarts_after="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=baseguard -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{" "}{end}')"
if [[ "$restarts_before" == "$restarts_after" ]]; then ok "no restarts ($restarts_after)"; else bad "restarts went from $restarts_before to $restarts_after"; fi

# ------------------------------------------------------------------------------ leader
say "leader failover"
leader="$(kubectl -n "$NS" get lease "$RELEASE-leader" -o jsonpath='{.spec.holderIdentity}')"
if [[ -n "$leader" ]]; then ok "leader: $leader"; else bad "nobody holds the Lease"; fi
kubectl -n "$NS" delete pod "$leader" --wait=false >/dev/null
new_leader() { local h; h="$(kubectl -n "$NS" get lease "$RELEASE-leader" -o jsonpath='{.spec.holderIdentity}')"; [[ -n "$h" && "$h" != "$leader" ]]; }
wait_for 60 "another replica took the Lease" new_leader
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: e2e-after-failover
spec:
  mode: Audit
  pinning: {}
EOF
wait_for 60 "the new leader writes status" ready clusterbaseimagepolicy e2e-after-failover

say "done"
if ((FAILED > 0)); then
  echo "$FAILED check(s) failed"
  exit 1
fi
echo "all checks passed"
