{{/* Names and labels shared by every template. */}}

{{- define "medfl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or the release alone when it already holds the chart's name. */}}
{{- define "medfl.fullname" -}}
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

{{- define "medfl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "medfl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: medfl
{{- end }}

{{- define "medfl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "medfl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "medfl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "medfl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "medfl.resultsClaim" -}}
{{- if .Values.results.pvc.create }}
{{- default (printf "%s-results" (include "medfl.fullname" .)) .Values.results.pvc.name }}
{{- else }}
{{- required "results.pvc.name is required when results.pvc.create is false" .Values.results.pvc.name }}
{{- end }}
{{- end }}

{{- define "medfl.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) }}
{{- end }}

{{/* What the operator reads (medfl.k8s.OperatorConfig): kept in one place, so the
     ConfigMap and the Deployment's checksum annotation cannot disagree. */}}
{{- define "medfl.operatorConfig" -}}
runtime:
  image: {{ include "medfl.image" (dict "repository" .Values.runtime.image.repository "tag" .Values.runtime.image.tag "appVersion" .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ .Values.runtime.image.pullPolicy }}
gpuPool:
  nodeSelector: {{- toYaml .Values.gpuPool.nodeSelector | nindent 4 }}
  tolerations: {{- toYaml .Values.gpuPool.tolerations | nindent 4 }}
results:
  claimName: {{ include "medfl.resultsClaim" . }}
{{- with .Values.watchNamespace }}
watchNamespace: {{ . }}
{{- end }}
{{- with .Values.ray.clusterName }}
ray:
  clusterName: {{ . }}
{{- end }}
{{- with .Values.sitePolicies }}
sitePolicies: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The API's objects: their own component label, so the operator's selector never
     matches the API's pod. */}}
{{- define "medfl.apiSelectorLabels" -}}
app.kubernetes.io/name: {{ include "medfl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api
{{- end }}

{{- define "medfl.apiLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "medfl.apiSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: medfl
{{- end }}
