#!/usr/bin/env bash
# baseguard end to end, on a real cluster in kind: install the chart, apply policies,
# admit and refuse workloads, read the audit's results, rotate the certificate, fail
# the leader over, and run `baseguard audit` from outside the cluster.
#
#   tests/e2e/run.sh               # create a kind cluster, test, delete it
#   KEEP_CLUSTER=1 tests/e2e/run.sh  # leave the cluster up to look around
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
export KUBECONFIG="$WORK/kubeconfig"
FAILED=0

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok()   { printf '  \033[32mok\033[0m   %s\n' "$*"; }
bad()  { printf '  \033[31mFAIL\033[0m %s\n' "$*"; FAILED=$((FAILED + 1)); }
need() { command -v "$1" >/dev/null 2>&1 || { echo "tests/e2e: $1 is not installed (see tests/e2e/README.md)" >&2; exit 2; }; }

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 2 s until it succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then bad "$what (after ${limit}s)"; return 1; fi
    sleep 2
  done
  ok "$what"
}

cleanup() {
  local code=$?
  if ((FAILED > 0 || code != 0)); then
    say "diagnostics"
    kubectl -n "$NS" get pods,lease,secret -o wide 2>/dev/null || true
    kubectl -n "$NS" logs -l app.kubernetes.io/name=baseguard --tail=80 --prefix 2>/dev/null || true
  fi
  if [[ -z "${KEEP_CLUSTER:-}" ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  else
    echo "cluster kept: export KUBECONFIG=$KUBECONFIG"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in docker kind kubectl helm; do need "$tool"; done

# ------------------------------------------------------------------------------ cluster
say "cluster and image"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" ${KIND_IMAGE:+--image "$KIND_IMAGE"} --wait 120s
fi
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image --name "$CLUSTER" "$IMAGE"
kubectl apply -f "$M/policyreport-crds.yaml" >/dev/null
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
  --set audit.interval=20s \
  --set-json 'extraArgs=["--cert-validity=10m","--cert-renew-before=8m","--cert-check-interval=15s","--tls-poll-interval=5s"]' \
  --wait --timeout 180s
wait_for 120 "both replicas ready" kubectl -n "$NS" rollout status deploy/"$RELEASE" --timeout=5s
kubectl -n "$NS" get secret "$RELEASE-tls" >/dev/null && ok "serving Secret $RELEASE-tls made by the leader" || bad "no serving Secret"
CA_SECRET="$(kubectl -n "$NS" get secret "$RELEASE-tls" -o jsonpath='{.data.ca\.crt}')"
CA_HOOK="$(kubectl get validatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')"
if [[ -n "$CA_HOOK" ]] && printf '%s' "$CA_HOOK" | base64 -d | grep -q "$(printf '%s' "$CA_SECRET" | base64 -d | sed -n 2p)"; then
  ok "caBundle patched into the ValidatingWebhookConfiguration"
else
  bad "caBundle of the ValidatingWebhookConfiguration does not hold the Secret's CA"
fi
CA_MUTATE="$(kubectl get mutatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null || true)"
[[ -z "$(kubectl get mutatingwebhookconfiguration "$RELEASE" -o name 2>/dev/null)" || "$CA_MUTATE" == "$CA_HOOK" ]] \
  && ok "caBundle of the MutatingWebhookConfiguration matches" || bad "MutatingWebhookConfiguration caBundle differs"

# ------------------------------------------------------------------------------ policies
say "policies"
kubectl apply -f "$M/policies.yaml" >/dev/null && ok "policies applied"
if out="$(kubectl apply -f "$M/broken-policy.yaml" 2>&1)"; then
  bad "a broken policy was accepted"
else
  grep -q 'spec.registries.allowed\[0\]' <<<"$out" && ok "broken policy refused with its field path" || bad "refusal without the field path: $out"
fi
ready() { [[ "$(kubectl get "$1" "$2" ${3:+-n "$3"} -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
wait_for 60 "ClusterBaseImagePolicy e2e-no-latest Ready=True" ready clusterbaseimagepolicy e2e-no-latest
wait_for 60 "BaseImagePolicy e2e-warn/e2e-hub-only Ready=True" ready baseimagepolicy e2e-hub-only e2e-warn
gen="$(kubectl get cbip e2e-no-latest -o jsonpath='{.metadata.generation}')"
[[ "$(kubectl get cbip e2e-no-latest -o jsonpath='{.status.observedGeneration}')" == "$gen" ]] && ok "observedGeneration $gen" || bad "observedGeneration lags"

# ------------------------------------------------------------------------------ admission
say "admission"
# the webhook watches policies: give the store a moment after Ready
sleep 3
kubectl apply -f "$M/good.yaml" >/dev/null 2>&1 && ok "pinned Deployment admitted" || bad "pinned Deployment refused"
if out="$(kubectl apply -f "$M/bad.yaml" 2>&1)"; then
  bad "nginx:latest admitted in a production namespace"
else
  grep -q 'disallowed-tag' <<<"$out" && grep -q 'e2e-no-latest' <<<"$out" \
    && ok "nginx:latest refused: policy and rule named" || bad "refused, but the message lacks policy/rule: $out"
fi
out="$(kubectl apply -f "$M/warned.yaml" 2>&1)" && grep -qi 'warning' <<<"$out" && grep -q 'registry-not-allowed' <<<"$out" \
  && ok "ghcr.io image admitted in e2e-warn with a warning" || bad "no warning for the namespaced Warn policy: $out"
out="$(kubectl -n e2e-warn run unpinned-elsewhere --image=docker.io/library/nginx:latest --restart=Never 2>&1)" \
  && ok "nginx:latest admitted where no Enforce policy's namespaceSelector matches" || bad "refused outside the selector: $out"
kubectl label namespace e2e-warn tier=production --overwrite >/dev/null
sleep 3
if kubectl -n e2e-warn run relabelled --image=docker.io/library/nginx:latest --restart=Never >/dev/null 2>&1; then
  bad "a relabelled namespace was not picked up"
else
  ok "namespace label change picked up (namespaceSelector from the watch)"
fi
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
sleep 45  # two more audits
events_after="$(kubectl -n e2e-enforce get events --field-selector reason=PolicyViolation -o name | wc -l)"
((events_after == events_before)) && ok "Events not repeated by later audits ($events_after)" || bad "Events grew from $events_before to $events_after"

# ------------------------------------------------------------------------------ CLI
say "baseguard audit from outside the cluster"
if command -v baseguard >/dev/null 2>&1; then
  set +e
  baseguard audit --kubeconfig "$KUBECONFIG" --offline >"$WORK/audit.txt" 2>&1; code=$?
  baseguard audit --kubeconfig "$KUBECONFIG" --offline --uses 'nginx:latest' --format json >"$WORK/uses.json" 2>/dev/null; uses=$?
  set -e
  ((code == 1)) && grep -q 'legacy-latest' "$WORK/audit.txt" && ok "audit: exit 1, legacy-latest listed" || bad "audit exit $code: $(cat "$WORK/audit.txt")"
  ((uses == 1)) && grep -q '"legacy-latest"' "$WORK/uses.json" && ok "audit --uses nginx:latest finds legacy-latest" || bad "--uses exit $uses"
else
  echo "  skip baseguard is not on PATH (pip install -e '.[operator]' to run this part)"
fi

# ------------------------------------------------------------------------------ certificates
say "certificate rotation (no restart)"
first="$(kubectl -n "$NS" get secret "$RELEASE-tls" -o jsonpath='{.data.tls\.crt}')"
restarts_before="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=baseguard -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{" "}{end}')"
rotated() { [[ "$(kubectl -n "$NS" get secret "$RELEASE-tls" -o jsonpath='{.data.tls\.crt}')" != "$first" ]]; }
wait_for 240 "serving certificate rotated by the leader" rotated
sleep 12  # every replica re-reads the Secret within --tls-poll-interval
ok_after=0
for i in 1 2 3 4 5 6; do
  kubectl -n e2e-enforce run "after-rotation-$i" --image=docker.io/library/nginx:1.27.3 --restart=Never >/dev/null 2>&1 && ok_after=$((ok_after + 1))
done
((ok_after == 6)) && ok "admission keeps working after the rotation (6/6, both replicas)" || bad "only $ok_after/6 admissions after the rotation"
restarts_after="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=baseguard -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{" "}{end}')"
[[ "$restarts_before" == "$restarts_after" ]] && ok "no restarts ($restarts_after)" || bad "restarts went from $restarts_before to $restarts_after"

# ------------------------------------------------------------------------------ leader
say "leader failover"
leader="$(kubectl -n "$NS" get lease "$RELEASE-leader" -o jsonpath='{.spec.holderIdentity}')"
[[ -n "$leader" ]] && ok "leader: $leader" || bad "nobody holds the Lease"
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
