{{/*
Names. Every object is called after the release (<release>-baseguard unless the release
name already says baseguard), trimmed to the 63 characters a label value allows.
*/}}
{{- define "baseguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "baseguard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "baseguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "baseguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baseguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "baseguard.labels" -}}
helm.sh/chart: {{ include "baseguard.chart" . }}
{{ include "baseguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: baseguard
{{- end }}

{{- define "baseguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "baseguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate (tls.crt, tls.key; ca.crt when known). */}}
{{- define "baseguard.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" }}
{{- required "certificates.secretName is required when certificates.mode is secret" .Values.certificates.secretName }}
{{- else }}
{{- default (printf "%s-tls" (include "baseguard.fullname" .)) .Values.certificates.secretName }}
{{- end }}
{{- end }}

{{/* Both webhook configurations share the full name: the kind tells them apart. */}}
{{- define "baseguard.webhookConfigName" -}}
{{- include "baseguard.fullname" . }}
{{- end }}

{{- define "baseguard.leaseName" -}}
{{- default (printf "%s-leader" (include "baseguard.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "baseguard.certificateName" -}}
{{- printf "%s-serving" (include "baseguard.fullname" .) }}
{{- end }}

{{- define "baseguard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
clientConfig.caBundle and the cert-manager annotation, per certificates.mode:
  self          nothing here: the operator patches the caBundle in (RBAC allows it to
                patch these two objects, by name, and nothing else);
  cert-manager  cert-manager's cainjector fills it from the Certificate;
  secret        the CA given in values.
*/}}
{{- define "baseguard.caInjection" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "baseguard.certificateName" .) }}
{{- end }}
{{- end }}

{{- define "baseguard.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- with $root.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" .) $path | quote }}
{{- else }}
service:
  name: {{ include "baseguard.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ $path }}
  port: {{ $root.Values.service.port }}
{{- end }}
{{- if eq $root.Values.certificates.mode "secret" }}
caBundle: {{ required "certificates.caBundle (base64 PEM) is required when certificates.mode is secret" $root.Values.certificates.caBundle }}
{{- end }}
{{- end }}

{{/*
Namespaces the workload webhooks never see: kube-system (the cluster's own components
must start even when baseguard is down) and the release namespace (so baseguard's own
pods are never judged by a webhook that needs them to be running). Selected by the
kubernetes.io/metadata.name label the apiserver sets on every namespace.
*/}}
{{- define "baseguard.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- $certManager := ternary (list .Values.certificates.certManager.namespace) (list) (and (eq .Values.certificates.mode "cert-manager") (ne .Values.certificates.certManager.namespace "")) }}
      {{- toYaml (concat (list "kube-system" .Release.Namespace) $certManager .Values.webhook.excludeNamespaces | uniq) | nindent 6 }}
  {{- with .Values.webhook.namespaceSelector.matchExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
The kinds the webhook judges: pods (and the ephemeral containers subresource, which
`kubectl debug` uses to add containers to a running pod) and every pod controller.
*/}}
{{- define "baseguard.workloadRules" -}}
- apiGroups: [""]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [pods, replicationcontrollers, podtemplates]
  scope: Namespaced
- apiGroups: [""]
  apiVersions: [v1]
  operations: [UPDATE]
  resources: [pods/ephemeralcontainers]
  scope: Namespaced
- apiGroups: [apps]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [deployments, replicasets, statefulsets, daemonsets]
  scope: Namespaced
- apiGroups: [batch]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [jobs, cronjobs]
  scope: Namespaced
{{- end }}

{{/*
The command line of `baseguard run` (controller/cli/commands/run.py). Kept in one place so a
renamed flag is a one-line change; docs/cli.md describes each flag.
Certificates: with `self`, every replica reads the serving pair from the Secret through
the API and the leader creates, rotates and publishes it (--manage-certificates);
otherwise the pair is a mounted Secret volume, read from files and reloaded on change.
*/}}
{{- define "baseguard.args" -}}
- run
- --namespace=$(POD_NAMESPACE)
- --service={{ include "baseguard.fullname" . }}
- --port={{ .Values.webhook.port }}
- --lease-name={{ include "baseguard.leaseName" . }}
- --log-level={{ .Values.logLevel }}
{{- if eq .Values.certificates.mode "self" }}
- --tls-secret={{ include "baseguard.tlsSecretName" . }}
- --manage-certificates
- --webhook-configuration={{ include "baseguard.webhookConfigName" . }}
{{- with .Values.webhook.url }}
- --cert-host={{ (urlParse .).hostname }}
{{- end }}
{{- else }}
- --tls-cert=/etc/baseguard/tls/tls.crt
- --tls-key=/etc/baseguard/tls/tls.key
{{- end }}
{{- if and .Values.webhook.mutating.enabled (eq .Values.webhook.mutating.register "WhenNeeded") }}
- --mutating-webhook={{ include "baseguard.webhookConfigName" . }}
{{- end }}
{{- if .Values.webhook.clientAuth.caConfigMap }}
- --client-ca=/etc/baseguard/client-ca/ca.crt
{{- range .Values.webhook.clientAuth.names }}
- --client-name={{ . }}
{{- end }}
{{- end }}
{{- if include "baseguard.registryConfig" . }}
- --registry-config=/etc/baseguard/registries/registries.yaml
{{- end }}
{{- if .Values.registryCredentials.dockerConfigSecret }}
- --docker-config=/etc/baseguard/docker/config.json
{{- end }}
{{- if not .Values.registryCredentials.pullSecrets }}
- --no-pull-secrets
{{- end }}
{{- if .Values.trust.trustedRootsConfigMap }}
{{- range .Values.trust.trustedRoots }}
- --trusted-root={{ . }}=/etc/baseguard/trust/{{ . }}.json
{{- end }}
{{- end }}
{{- with .Values.sharedCache }}
{{- if .url }}
- {{ printf "--shared-cache=%s" .url | quote }}
- --shared-cache-key-file=/etc/baseguard/shared-cache/hmac-key
{{- if .passwordKey }}
- --shared-cache-password-file=/etc/baseguard/shared-cache/password
{{- end }}
{{- if .caConfigMap }}
- --shared-cache-ca=/etc/baseguard/shared-cache-ca/ca.crt
{{- end }}
- {{ printf "--shared-cache-timeout=%s" .timeout | quote }}
- {{ printf "--shared-cache-wait=%s" .wait | quote }}
- {{ printf "--shared-cache-prefix=%s" .prefix | quote }}
{{- end }}
{{- end }}
- --audit-interval={{ .Values.audit.interval }}
{{- if .Values.warmStart.enabled }}
- --warm-start
- --warm-start-rate={{ .Values.warmStart.imagesPerSecond }}
{{- end }}
{{- if .Values.vapBackstop }}
- --vap-backstop
- --vap-owner={{ include "baseguard.fullname" . }}
{{- $certManager := ternary (list .Values.certificates.certManager.namespace) (list) (and (eq .Values.certificates.mode "cert-manager") (ne .Values.certificates.certManager.namespace "")) }}
{{- range (concat (list "kube-system" .Release.Namespace) $certManager .Values.webhook.excludeNamespaces | uniq) }}
- --vap-exclude-namespace={{ . }}
{{- end }}
{{- end }}
{{- if not .Values.audit.policyReports }}
- --no-policy-reports
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The --registry-config YAML: registryConfig, plus the credential provider paths when
registryCredentials.credentialProviders.config is set. Empty when there is nothing to say.
*/}}
{{- define "baseguard.registryConfig" -}}
{{- $config := deepCopy (.Values.registryConfig | default dict) -}}
{{- if .Values.registryCredentials.credentialProviders.config -}}
{{- $_ := set $config "credentialProviderConfig" "/etc/baseguard/credential-provider/config.yaml" -}}
{{- $_ := set $config "credentialProviderBinDir" "/etc/baseguard/credential-provider/bin" -}}
{{- end -}}
{{- if $config -}}
{{- toYaml $config -}}
{{- end -}}
{{- end -}}

{{/*
The mutating webhook entry: rendered into the MutatingWebhookConfiguration (register:
Always) or kept in its baseguard.io/webhook-template annotation for the leader to
install while a policy needs it (register: WhenNeeded).
*/}}
{{- define "baseguard.mutatingWebhook" -}}
name: workloads.mutate.baseguard.io
admissionReviewVersions: [v1]
sideEffects: None
failurePolicy: {{ .Values.webhook.mutating.failurePolicy }}
matchPolicy: {{ .Values.webhook.matchPolicy }}
reinvocationPolicy: {{ .Values.webhook.mutating.reinvocationPolicy }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
clientConfig:
  {{- include "baseguard.clientConfig" (list . "/mutate") | nindent 2 }}
namespaceSelector:
  {{- include "baseguard.namespaceSelector" . | nindent 2 }}
{{- with .Values.webhook.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
rules:
  {{- include "baseguard.workloadRules" . | nindent 2 }}
{{- end }}
