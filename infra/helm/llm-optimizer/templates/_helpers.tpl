{{/*
Expand the name of the chart.
*/}}
{{- define "llm-optimizer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "llm-optimizer.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "llm-optimizer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels (never used as selectors: they carry the chart version).
*/}}
{{- define "llm-optimizer.labels" -}}
helm.sh/chart: {{ include "llm-optimizer.chart" . }}
{{ include "llm-optimizer.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-optimizer
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable across chart versions (no version, no chart label).
*/}}
{{- define "llm-optimizer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-optimizer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one component: pass (dict "root" $ "component" "server").
*/}}
{{- define "llm-optimizer.componentSelectorLabels" -}}
{{ include "llm-optimizer.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Labels of one component: pass (dict "root" $ "component" "server").
*/}}
{{- define "llm-optimizer.componentLabels" -}}
{{ include "llm-optimizer.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "llm-optimizer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-optimizer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The service image: registry/repository, then @digest or :tag (the tag defaults to appVersion).
*/}}
{{- define "llm-optimizer.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must not be 'latest': pin a version (empty means the chart's appVersion)" }}
{{- end }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/*
A pinned third-party image from a {registry, repository, tag} dict.
*/}}
{{- define "llm-optimizer.thirdPartyImage" -}}
{{- if eq (toString .tag) "latest" }}
{{- fail (printf "the %s image tag must not be 'latest': pin a version" .repository) }}
{{- end }}
{{- if .registry }}
{{- printf "%s/%s:%s" .registry .repository (toString .tag) }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{/* Names of the objects the templates refer to each other by. */}}
{{- define "llm-optimizer.configMapName" -}}
{{- include "llm-optimizer.fullname" . }}
{{- end }}
{{- define "llm-optimizer.secretName" -}}
{{- include "llm-optimizer.fullname" . }}
{{- end }}
{{- define "llm-optimizer.postgresqlName" -}}
{{- printf "%s-postgresql" (include "llm-optimizer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "llm-optimizer.redisName" -}}
{{- printf "%s-redis" (include "llm-optimizer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Where the database comes from: "existingSecret", "url", "inChart" or "" (none: the service's
embedded SQLite under the data dir, one pod only).
*/}}
{{- define "llm-optimizer.databaseSource" -}}
{{- if .Values.database.existingSecret }}existingSecret
{{- else if .Values.database.url }}url
{{- else if .Values.postgresql.enabled }}inChart
{{- end }}
{{- end }}

{{- define "llm-optimizer.redisSource" -}}
{{- if .Values.redis.existingSecret }}existingSecret
{{- else if .Values.redis.url }}url
{{- else if .Values.redisServer.enabled }}inChart
{{- end }}
{{- end }}

{{/*
The migrations run as a hook Job only when the database exists before the release (external);
an in-chart or embedded database is migrated by an init container of the Deployment, because a
pre-install hook would wait for a database the release has not created yet.
*/}}
{{- define "llm-optimizer.migrationsAsJob" -}}
{{- $source := include "llm-optimizer.databaseSource" . }}
{{- if or (eq $source "existingSecret") (eq $source "url") }}true{{- end }}
{{- end }}

{{/* True when the chart creates the Secret (some secret value is given inline). */}}
{{- define "llm-optimizer.createSecret" -}}
{{- $db := include "llm-optimizer.databaseSource" . }}
{{- $redis := include "llm-optimizer.redisSource" . }}
{{- if or (and .Values.auth.apiKeys (not .Values.auth.existingSecret)) (eq $db "url") (eq $db "inChart") (eq $redis "url") (eq $redis "inChart") }}true{{- end }}
{{- end }}

{{/* Data of the chart's Secret; shared by the Secret and its migrations-hook copy. */}}
{{- define "llm-optimizer.secretData" -}}
{{- $db := include "llm-optimizer.databaseSource" . }}
{{- $redis := include "llm-optimizer.redisSource" . }}
{{- if and .Values.auth.apiKeys (not .Values.auth.existingSecret) }}
{{ .Values.auth.existingSecretKey }}: {{ printf "%s\n" (join "\n" .Values.auth.apiKeys) | b64enc | quote }}
{{- end }}
{{- if eq $db "url" }}
{{ .Values.database.existingSecretKey }}: {{ .Values.database.url | b64enc | quote }}
{{- else if eq $db "inChart" }}
{{- $auth := .Values.postgresql.auth }}
{{- if not $auth.password }}
{{- fail "postgresql.enabled needs postgresql.auth.password (the in-chart database is for development; use database.existingSecret for a real one)" }}
{{- end }}
{{- $url := printf "%s://%s:%s@%s:5432/%s" .Values.postgresql.urlScheme (urlquery $auth.username) (urlquery $auth.password) (include "llm-optimizer.postgresqlName" .) $auth.database }}
{{ .Values.database.existingSecretKey }}: {{ $url | b64enc | quote }}
{{- end }}
{{- if eq $redis "url" }}
{{ .Values.redis.existingSecretKey }}: {{ .Values.redis.url | b64enc | quote }}
{{- else if eq $redis "inChart" }}
{{ .Values.redis.existingSecretKey }}: {{ printf "redis://%s:6379/0" (include "llm-optimizer.redisName" .) | b64enc | quote }}
{{- end }}
{{- end }}

{{/* Data of the chart's ConfigMap; shared by the ConfigMap and its migrations-hook copy. */}}
{{- define "llm-optimizer.configData" -}}
LLM_OPTIMIZER_ENVIRONMENT: {{ .Values.config.environment | quote }}
LLM_OPTIMIZER_DATA_DIR: {{ .Values.config.dataDir | quote }}
LLM_OPTIMIZER_SERVER__HOST: "0.0.0.0"
LLM_OPTIMIZER_SERVER__HTTP_PORT: {{ .Values.containerPorts.http | quote }}
LLM_OPTIMIZER_SERVER__GRPC_PORT: {{ .Values.containerPorts.grpc | quote }}
LLM_OPTIMIZER_SERVER__METRICS_PORT: {{ .Values.containerPorts.metrics | quote }}
LLM_OPTIMIZER_SERVER__SHUTDOWN_DELAY: {{ .Values.config.shutdownDelaySeconds | quote }}
LLM_OPTIMIZER_LOG__LEVEL: {{ .Values.config.logLevel | quote }}
LLM_OPTIMIZER_LOG__JSON: {{ .Values.config.logJson | quote }}
{{- with .Values.config.kafkaBrokers }}
LLM_OPTIMIZER_KAFKA__BROKERS: {{ . | quote }}
{{- end }}
{{- with .Values.config.otelEndpoint }}
LLM_OPTIMIZER_OTEL__ENDPOINT: {{ . | quote }}
{{- end }}
{{- range $file := include "llm-optimizer.secretFiles" . | fromYamlArray }}
{{ $file.env }}: {{ printf "%s/%s" (include "llm-optimizer.secretsDir" $) $file.path | quote }}
{{- end }}
{{- end }}

{{- define "llm-optimizer.secretsDir" -}}/etc/llm-optimizer/secrets{{- end }}

{{/*
The secret files the service reads through its *_FILE settings: a YAML list of
{env, path, secret ("" = the chart's Secret), key}.
*/}}
{{- define "llm-optimizer.secretFiles" -}}
{{- $db := include "llm-optimizer.databaseSource" . }}
{{- $redis := include "llm-optimizer.redisSource" . }}
{{- if or .Values.auth.apiKeys .Values.auth.existingSecret }}
- env: LLM_OPTIMIZER_AUTH__API_KEYS_FILE
  path: api-keys
  secret: {{ .Values.auth.existingSecret | quote }}
  key: {{ .Values.auth.existingSecretKey | quote }}
{{- end }}
{{- if $db }}
- env: LLM_OPTIMIZER_DATABASE__URL_FILE
  path: database-url
  secret: {{ .Values.database.existingSecret | quote }}
  key: {{ .Values.database.existingSecretKey | quote }}
{{- end }}
{{- if $redis }}
- env: LLM_OPTIMIZER_REDIS__URL_FILE
  path: redis-url
  secret: {{ .Values.redis.existingSecret | quote }}
  key: {{ .Values.redis.existingSecretKey | quote }}
{{- end }}
{{- end }}

{{- define "llm-optimizer.envFrom" -}}
- configMapRef:
    name: {{ .configMap }}
{{- end }}

{{- define "llm-optimizer.volumeMounts" -}}
- name: data
  mountPath: {{ .root.Values.config.dataDir }}
- name: tmp
  mountPath: /tmp
{{- if include "llm-optimizer.secretFiles" .root }}
- name: secrets
  mountPath: {{ include "llm-optimizer.secretsDir" .root }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Secrets are files (the service's *_FILE settings), never environment variables. */}}
{{- define "llm-optimizer.volumes" -}}
{{- $secret := .secret -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if include "llm-optimizer.secretFiles" .root }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- range $file := include "llm-optimizer.secretFiles" .root | fromYamlArray }}
      - secret:
          name: {{ $file.secret | default $secret }}
          items:
            - key: {{ $file.key }}
              path: {{ $file.path }}
      {{- end }}
{{- end }}
{{- end }}

{{/*
The migrations container (Job or init container): waits for the database by retrying
`db upgrade` until waitForDatabaseSeconds, then fails loudly with a non-zero exit. The service
takes a PostgreSQL advisory lock, so parallel runs never race.
*/}}
{{- define "llm-optimizer.migrationsContainer" -}}
- name: migrations
  image: {{ include "llm-optimizer.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command:
    - /bin/sh
    - -c
    - |
      deadline=$(( $(date +%s) + {{ .root.Values.migrations.waitForDatabaseSeconds | int }} ))
      until llm-optimizer-service db upgrade; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
          echo "FATAL: database migrations failed for {{ .root.Values.migrations.waitForDatabaseSeconds | int }}s; see the errors above" >&2
          exit 1
        fi
        echo "db upgrade failed (database not reachable yet?); retrying in 5s" >&2
        sleep 5
      done
  {{- with .root.Values.extraEnv }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  envFrom:
    {{- include "llm-optimizer.envFrom" . | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  volumeMounts:
    {{- include "llm-optimizer.volumeMounts" . | nindent 4 }}
{{- end }}

{{/*
Fail early on combinations that cannot work. The first two checks answer the seed's install line
(`--set postgresql.auth.password=... --set redis.auth.password=...`, the Bitnami subcharts'
keys): this chart has no subcharts (docs/kubernetes.md says why), so say what to set instead of
silently running on the embedded SQLite. values.schema.json permits redis.auth only for this.
*/}}
{{- define "llm-optimizer.validate" -}}
{{- $subchartKeys := list }}
{{- if and .Values.postgresql.auth.password (not .Values.postgresql.enabled) }}
{{- $subchartKeys = append $subchartKeys "postgresql.auth.password is set but postgresql.enabled is false. Production: store the URL (postgresql+psycopg://USER:PASSWORD@HOST:5432/DB) under key database-url of an existing Secret and --set database.existingSecret=NAME; development only: add --set postgresql.enabled=true (the in-chart PostgreSQL)" }}
{{- end }}
{{- if hasKey .Values.redis "auth" }}
{{- $subchartKeys = append $subchartKeys "redis.auth.* is not a value of this chart. Production: store the URL (redis://:PASSWORD@HOST:6379/0) under key redis-url of an existing Secret and --set redis.existingSecret=NAME; development only: --set redisServer.enabled=true (an in-chart Redis without a password) instead" }}
{{- end }}
{{- if $subchartKeys }}
{{- fail (printf "this chart has no Bitnami PostgreSQL/Redis subcharts (docs/kubernetes.md says why): %s" (join "; and " $subchartKeys)) }}
{{- end }}
{{- if and (not (include "llm-optimizer.databaseSource" .)) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "several replicas need a shared database: set database.url, database.existingSecret or postgresql.enabled=true (the embedded SQLite is per pod)" }}
{{- end }}
{{- if and .Values.postgresql.enabled (or .Values.database.url .Values.database.existingSecret) }}
{{- fail "postgresql.enabled conflicts with database.url/database.existingSecret: choose the in-chart database or an external one" }}
{{- end }}
{{- if and .Values.redisServer.enabled (or .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "redisServer.enabled conflicts with redis.url/redis.existingSecret: choose the in-chart Redis or an external one" }}
{{- end }}
{{- end }}
