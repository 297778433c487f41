{{/*
Egress of the service's pods: DNS, then the database, Redis, Kafka and the OTLP collector as
configured. With databaseOnly set (the migrations Job), DNS and the database only.
*/}}
{{- define "llm-optimizer.egressRules" -}}
{{- $np := .Values.networkPolicy }}
{{- $db := include "llm-optimizer.databaseSource" . }}
{{- $redis := ternary "" (include "llm-optimizer.redisSource" .) (hasKey . "databaseOnly") -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $np.dnsNamespace }}
{{- if eq $db "inChart" }}
- ports:
    - port: 5432
      protocol: TCP
  to:
    - podSelector:
        matchLabels:
          {{- include "llm-optimizer.componentSelectorLabels" (dict "root" . "component" "postgresql") | nindent 10 }}
{{- else if $db }}
- ports:
    - port: {{ $np.egress.database.port }}
      protocol: TCP
  {{- with $np.egress.database.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if eq $redis "inChart" }}
- ports:
    - port: 6379
      protocol: TCP
  to:
    - podSelector:
        matchLabels:
          {{- include "llm-optimizer.componentSelectorLabels" (dict "root" . "component" "redis") | nindent 10 }}
{{- else if $redis }}
- ports:
    - port: {{ $np.egress.redis.port }}
      protocol: TCP
  {{- with $np.egress.redis.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if and .Values.config.kafkaBrokers (not (hasKey . "databaseOnly")) }}
- ports:
    - port: {{ $np.egress.kafka.port }}
      protocol: TCP
  {{- with $np.egress.kafka.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if and .Values.config.otelEndpoint (not (hasKey . "databaseOnly")) }}
- ports:
    - port: {{ $np.egress.otel.port }}
      protocol: TCP
  {{- with $np.egress.otel.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
