{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "ringwise.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<component>; call with (list $ "component"). */}}
{{- define "ringwise.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "ringwise.fullname" $root) (index . 1) -}}
{{- end -}}

{{/* Labels: app.kubernetes.io/* on every object; call with (list $ "component"). */}}
{{- define "ringwise.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "ringwise.labels" -}}
{{- $root := index . 0 -}}
{{ include "ringwise.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ringwise
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
Images: <image.registry>/<repository>:<image.tag>, unless imageOverrides names the component's
full reference (skaffold sets those per build). Call with (list $ "component" "repository").
*/}}
{{- define "ringwise.image" -}}
{{- $root := index . 0 -}}
{{- $override := get $root.Values.imageOverrides (index . 1) -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- printf "%s/%s:%s" $root.Values.image.registry (index . 2) $root.Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Pod spec lines for pulling from a private registry; call with (list $ indent). */}}
{{- define "ringwise.imagePullSecrets" -}}
{{- $root := index . 0 -}}
{{- with $root.Values.imagePullSecrets }}
{{- printf "imagePullSecrets:\n%s" (toYaml . | indent 2) | nindent (index $ 1) }}
{{- end }}
{{- end -}}

{{/* Security contexts; the pod's user is the image's (call with (list $ uid)). */}}
{{- define "ringwise.podSecurityContext" -}}
{{- $root := index . 0 -}}
{{- $uid := index . 1 -}}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
  runAsUser: {{ $uid }}
  runAsGroup: {{ $uid }}
  fsGroup: {{ $uid }}
{{- end -}}

{{- define "ringwise.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Environment ------------------------------------------------------------------------ */}}

{{- define "ringwise.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $key := index . 2 -}}
{{- $optional := index . 3 -}}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.existingSecret }}
      key: {{ index $root.Values.secrets.keys $key }}
      optional: {{ $optional }}
{{- end -}}

{{/*
What each service reads beyond the shared settings (its settings.py). S3 and SMTP settings go
to the services whose issues use them (voicemail #6, recording #7); a service ignores
RINGWISE_* variables it does not know.
*/}}
{{- define "ringwise.dependencies" -}}
gateway: [nats, redis]
directory: [nats, mongo]
billing: [nats, mongo]
voicemail: [nats, mongo, s3, smtp, ari]
recording: [nats, mongo, s3, ari]
messaging: [nats]
routing: [nats, redis, mongo]
{{- end -}}

{{/* Env of a service; call with (list $ "name" port). */}}
{{- define "ringwise.serviceEnv" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $deps := get (include "ringwise.dependencies" $root | fromYaml) $name -}}
- name: RINGWISE_HTTP_HOST
  value: "0.0.0.0"
- name: RINGWISE_HTTP_PORT
  value: {{ index . 2 | quote }}
{{- if has "nats" $deps }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_NATS_URL" "natsUrl" false) }}
{{- end }}
{{- if has "redis" $deps }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_REDIS_URL" "redisUrl" false) }}
{{- end }}
{{- if has "mongo" $deps }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_MONGO_URL" "mongoUrl" false) }}
{{- end }}
{{- if eq $name "directory" }}
- name: RINGWISE_DIRECTORY_DB
  value: {{ $root.Values.mongo.directoryDatabase | quote }}
{{- end }}
{{- if eq $name "billing" }}
- name: RINGWISE_BILLING_DB
  value: {{ $root.Values.mongo.billingDatabase | quote }}
{{- end }}
{{- if eq $name "routing" }}
- name: RINGWISE_ROUTING_DB
  value: {{ $root.Values.mongo.routingDatabase | quote }}
{{- end }}
{{- if eq $name "gateway" }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_TOKEN_SIGNING_KEY" "tokenSigningKey" false) }}
{{- end }}
{{- if and (eq $name "directory") $root.Values.operatorEmail }}
- name: RINGWISE_OPERATOR_EMAIL
  value: {{ $root.Values.operatorEmail | quote }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_OPERATOR_PASSWORD" "operatorPassword" true) }}
{{- end }}
{{- if eq $name "recording" }}
- name: RINGWISE_RECORDINGS_BUCKET
  value: {{ $root.Values.s3.bucket | quote }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_RECORDING_PLATFORM_KEY" "recordingPlatformKey" false) }}
{{- end }}
{{- if eq $name "voicemail" }}
- name: RINGWISE_S3_BUCKET
  value: {{ $root.Values.s3.voicemailBucket | quote }}
# MWI to a phone registered with another Asterisk pod: through the edge's location table.
- name: RINGWISE_PHONES_VIA_EDGE
  value: {{ include "ringwise.phonesViaEdge" $root | quote }}
{{- end }}
{{- if has "s3" $deps }}
- name: RINGWISE_S3_ENDPOINT
  value: {{ $root.Values.s3.endpoint | quote }}
- name: RINGWISE_S3_REGION
  value: {{ $root.Values.s3.region | quote }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_S3_ACCESS_KEY" "s3AccessKeyId" false) }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_S3_SECRET_KEY" "s3SecretAccessKey" false) }}
{{- end }}
{{- if has "ari" $deps }}
{{- $a := $root.Values.asterisk }}
{{- $svc := printf "%s.%s.svc.%s" (include "ringwise.componentName" (list $root "asterisk")) $root.Release.Namespace $root.Values.clusterDomain }}
# Recordings are fetched from the Asterisk pod that recorded them (the event names it):
# <pod>.<headless Service>. The plain URL (any pod) serves events naming none, and MWI.
- name: RINGWISE_ARI_URL_TEMPLATE
  value: {{ printf "http://{instance}.%s:%v" $svc $a.ariPort | quote }}
- name: RINGWISE_ARI_URL
  value: {{ printf "http://%s:%v" $svc $a.ariPort | quote }}
- name: RINGWISE_ARI_USER
  value: {{ $a.ariUser | quote }}
- name: RINGWISE_ARI_APP
  value: {{ $a.ariApp | quote }}
{{ include "ringwise.secretEnv" (list $root "RINGWISE_ARI_PASSWORD" "ariPassword" false) }}
{{- end }}
{{- if has "smtp" $deps }}
- name: RINGWISE_SMTP_HOST
  value: {{ $root.Values.smtp.host | quote }}
- name: RINGWISE_SMTP_PORT
  value: {{ $root.Values.smtp.port | quote }}
- name: RINGWISE_MAIL_FROM
  value: {{ $root.Values.smtp.from | quote }}
- name: RINGWISE_SMTP_SECURITY
  value: {{ $root.Values.smtp.security | quote }}
- name: RINGWISE_SMTP_VERIFY_TLS
  value: {{ $root.Values.smtp.verifyTls | quote }}
{{- if $root.Values.smtp.caBundle.configMap }}
- name: RINGWISE_SMTP_CA_FILE
  value: {{ printf "/etc/ringwise/smtp-ca/%s" $root.Values.smtp.caBundle.key | quote }}
{{- end }}
{{- if $root.Values.smtp.auth.enabled }}
{{- $secret := $root.Values.smtp.auth.existingSecret | default $root.Values.secrets.existingSecret }}
- name: RINGWISE_SMTP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.smtpUsername }}
      optional: false
- name: RINGWISE_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.smtpPassword }}
      optional: false
{{- end }}
{{- end }}
{{- end -}}

{{/* Probes of a kit service (its ops port serves /healthz and /readyz). */}}
{{- define "ringwise.httpProbes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* The Asterisk pods' DNS names, as the SIP edge dispatches to them. */}}
{{- define "ringwise.asteriskHosts" -}}
{{- $root := . -}}
{{- $set := include "ringwise.componentName" (list $root "asterisk") -}}
{{- range $i := until (int $root.Values.asterisk.replicas) }}
- {{ printf "%s-%d.%s.%s.svc.%s" $set $i $set $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}
{{- end -}}

{{/* asterisk.trustedSipSources with the edge's trunk port (5090): "10.244.0.0:5090/16", the
form Asterisk's identify `match` takes for "this network, this source port". */}}
{{- define "ringwise.trunkSources" -}}
{{- $out := list -}}
{{- range $src := .Values.asterisk.trustedSipSources -}}
{{- $parts := splitList "/" $src -}}
{{- $host := index $parts 0 -}}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end -}}
{{- if eq (len $parts) 2 -}}
{{- $out = append $out (printf "%s:5090/%s" $host (index $parts 1)) -}}
{{- else -}}
{{- $out = append $out (printf "%s:5090" $host) -}}
{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
The SIP edge's phone socket (its internal Service, 5091) when phones are reached through the
edge's location table (sipEdge.phonesViaEdge), else "": RINGWISE_PHONES_VIA_EDGE of routing
and voicemail.
*/}}
{{- define "ringwise.phonesViaEdge" -}}
{{- if .Values.sipEdge.phonesViaEdge -}}
{{- printf "%s.%s.svc.%s:5091" (include "ringwise.componentName" (list . "sip-edge-internal")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- end }}
