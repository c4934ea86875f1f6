//! Generated inputs: a Helm chart, a Kustomize base and overlay, many small directory apps,
//! a YAML corpus and a repository with a long history. All built by code, deterministic,
//! sized by the caller.

use capstan_repo::tree::SourceFile;
use capstan_testkit::git::GitRepo;

/// Components of the generated chart and kustomization (one Deployment, Service and
/// ConfigMap each).
const COMPONENTS: [&str; 8] = [
    "api",
    "web",
    "worker",
    "scheduler",
    "cache",
    "gateway",
    "auth",
    "billing",
];

const HELPERS_TPL: &str = r#"{{- define "bench.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "bench.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "bench.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "bench.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
"#;

const DEPLOYMENT_TPL: &str = r#"{{- $c := .Values.components.__C__ }}
{{- if $c.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "bench.fullname" . }}-__C__
  labels:
    {{- include "bench.labels" . | nindent 4 }}
    app.kubernetes.io/component: __C__
spec:
  replicas: {{ $c.replicas }}
  selector:
    matchLabels:
      {{- include "bench.selectorLabels" . | nindent 6 }}
      app.kubernetes.io/component: __C__
  template:
    metadata:
      labels:
        {{- include "bench.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/component: __C__
      annotations:
        checksum/config: {{ $c.env | toYaml | sha256sum }}
    spec:
      containers:
        - name: __C__
          image: "{{ $.Values.image.registry }}/__C__:{{ $c.tag | default $.Chart.AppVersion }}"
          ports:
            - name: http
              containerPort: {{ $c.port }}
          env:
            {{- range $k, $v := $c.env }}
            - name: {{ $k }}
              valueFrom:
                configMapKeyRef:
                  name: {{ include "bench.fullname" $ }}-__C__
                  key: {{ $k }}
            {{- end }}
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
          resources:
            {{- toYaml $c.resources | nindent 12 }}
{{- end }}
"#;

const SERVICE_TPL: &str = r#"{{- $c := .Values.components.__C__ }}
{{- if $c.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "bench.fullname" . }}-__C__
  labels:
    {{- include "bench.labels" . | nindent 4 }}
spec:
  selector:
    {{- include "bench.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: __C__
  ports:
    - name: http
      port: 80
      targetPort: {{ $c.port }}
{{- end }}
"#;

const CONFIGMAP_TPL: &str = r#"{{- $c := .Values.components.__C__ }}
{{- if $c.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" . }}-__C__
  labels:
    {{- include "bench.labels" . | nindent 4 }}
data:
  {{- range $k, $v := $c.env }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
{{- end }}
"#;

const EXTRA_TPL: &str = r#"{{- range $cfg := .Values.extraConfigs }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" $ }}-extra-{{ $cfg.name }}
  labels:
    {{- include "bench.labels" $ | nindent 4 }}
data:
  {{- range $k, $v := $cfg.data }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
{{- end }}
"#;

/// A Helm chart under `dir`: 25 templates (a Deployment, Service and ConfigMap for each of
/// 8 components, ranging over their settings, and one template looping over 12 extra
/// ConfigMaps) and a `values.yaml` driving them; 36 manifests in all.
pub(crate) fn helm_chart(dir: &str) -> Vec<(String, String)> {
    let mut files = vec![
        (
            format!("{dir}/Chart.yaml"),
            "apiVersion: v2\nname: shop\nversion: 1.4.2\nappVersion: \"2.7.0\"\n".to_owned(),
        ),
        (
            format!("{dir}/templates/_helpers.tpl"),
            HELPERS_TPL.to_owned(),
        ),
        (
            format!("{dir}/templates/extra-configmaps.yaml"),
            EXTRA_TPL.to_owned(),
        ),
    ];
    let mut values = String::from("image:\n  registry: registry.example.com/shop\ncomponents:\n");
    for (i, c) in COMPONENTS.iter().enumerate() {
        for (kind, tpl) in [
            ("deployment", DEPLOYMENT_TPL),
            ("service", SERVICE_TPL),
            ("configmap", CONFIGMAP_TPL),
        ] {
            files.push((
                format!("{dir}/templates/{c}-{kind}.yaml"),
                tpl.replace("__C__", c),
            ));
        }
        values.push_str(&format!(
            "  {c}:\n    enabled: true\n    replicas: {}\n    port: {}\n    tag: \"\"\n    resources:\n      requests: {{cpu: 100m, memory: 128Mi}}\n      limits: {{cpu: \"1\", memory: 512Mi}}\n    env:\n",
            1 + i % 3,
            8080 + i
        ));
        for k in 0..12 {
            values.push_str(&format!(
                "      {}_SETTING_{k}: \"value-{i}-{k}\"\n",
                c.to_uppercase()
            ));
        }
    }
    values.push_str("extraConfigs:\n");
    for e in 0..12 {
        values.push_str(&format!("  - name: extra-{e}\n    data:\n"));
        for k in 0..8 {
            values.push_str(&format!("      key{k}: \"extra value {e}.{k}\"\n"));
        }
    }
    files.push((format!("{dir}/values.yaml"), values));
    files
}

fn deployment(name: &str, i: usize, env: usize) -> String {
    let mut s = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  replicas: {}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        - name: {name}\n          image: registry.example.com/{name}:1.{i}.0\n          ports:\n            - containerPort: {}\n          env:\n",
        1 + i % 3,
        8000 + i
    );
    for k in 0..env {
        s.push_str(&format!(
            "            - name: SETTING_{k}\n              value: \"{name} setting {k}\"\n"
        ));
    }
    s.push_str("          resources:\n            requests:\n              cpu: 100m\n              memory: 128Mi\n");
    s
}

fn service(name: &str, i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n    - port: 80\n      targetPort: {}\n",
        8000 + i
    )
}

fn configmap(name: &str, keys: usize) -> String {
    let mut s =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\ndata:\n");
    for k in 0..keys {
        s.push_str(&format!(
            "  key-{k}: \"{name} configuration value number {k}\"\n"
        ));
    }
    s
}

/// A Kustomize base under `{dir}/base` (a Deployment, Service and ConfigMap for each of 12
/// components, one file each: 36 resources) and an overlay `{dir}/overlays/prod` with a name
/// prefix, namespace, labels, image and replica overrides, patches and a generated
/// ConfigMap; 37 manifests in all. Returns the files and the overlay's path.
pub(crate) fn kustomize_app(dir: &str) -> (Vec<(String, String)>, String) {
    let mut files = Vec::new();
    let mut resources = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    let names: Vec<String> = COMPONENTS
        .iter()
        .map(|c| (*c).to_owned())
        .chain((0..4).map(|i| format!("extra-{i}")))
        .collect();
    for (i, name) in names.iter().enumerate() {
        for (kind, text) in [
            ("deployment", deployment(name, i, 8)),
            ("service", service(name, i)),
            ("configmap", configmap(name, 10)),
        ] {
            let file = format!("{name}-{kind}.yaml");
            resources.push_str(&format!("  - {file}\n"));
            files.push((format!("{dir}/base/{file}"), text));
        }
    }
    files.push((format!("{dir}/base/kustomization.yaml"), resources));

    let mut overlay = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\nnamePrefix: prod-\nnamespace: shop-prod\nlabels:\n  - pairs:\n      env: prod\n      team: shop\n    includeSelectors: false\ncommonAnnotations:\n  owner: shop-team\nimages:\n",
    );
    for name in &names {
        overlay.push_str(&format!(
            "  - name: registry.example.com/{name}\n    newTag: 2.0.0\n"
        ));
    }
    overlay.push_str("replicas:\n");
    for name in names.iter().take(4) {
        overlay.push_str(&format!("  - name: {name}\n    count: 4\n"));
    }
    overlay.push_str("patches:\n");
    for name in names.iter().take(6) {
        overlay.push_str(&format!(
            "  - target:\n      kind: Deployment\n      name: {name}\n    patch: |-\n      - op: add\n        path: /spec/template/spec/containers/0/resources/limits\n        value: {{cpu: \"2\", memory: 1Gi}}\n"
        ));
    }
    overlay.push_str(
        "configMapGenerator:\n  - name: prod-settings\n    literals:\n      - LOG_LEVEL=info\n      - REGION=eu-west-1\n      - FEATURE_X=on\n",
    );
    let overlay_dir = format!("{dir}/overlays/prod");
    files.push((format!("{overlay_dir}/kustomization.yaml"), overlay));
    (files, overlay_dir)
}

/// `count` directory apps `{dir}/app-NNN/`, each a Deployment and a Service.
pub(crate) fn directory_apps(dir: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .flat_map(|i| {
            let name = format!("app-{i:03}");
            [
                (
                    format!("{dir}/{name}/deployment.yaml"),
                    deployment(&name, i, 4),
                ),
                (format!("{dir}/{name}/service.yaml"), service(&name, i)),
            ]
        })
        .collect()
}

/// `files` multi-document YAML files of about `bytes_per_file` bytes each (a Deployment, a
/// Service and a ConfigMap per component, as many components as fit), spread over 20
/// sub-directories, as the directory renderer receives them.
pub(crate) fn yaml_corpus(files: usize, bytes_per_file: usize) -> Vec<SourceFile> {
    (0..files)
        .map(|f| {
            let mut text = String::new();
            let mut part = 0;
            while text.len() < bytes_per_file {
                let name = format!("svc-{f}-{part}");
                for doc in [
                    deployment(&name, part, 6),
                    service(&name, part),
                    configmap(&name, 12),
                ] {
                    text.push_str("---\n");
                    text.push_str(&doc);
                }
                part += 1;
            }
            let path = format!("team-{:02}/app-{f:04}.yaml", f % 20);
            SourceFile {
                repo_path: format!("corpus/{path}"),
                path,
                data: text.into_bytes(),
            }
        })
        .collect()
}

/// `len` characters of base64-alphabet noise from `seed` (xorshift64*): content that, like
/// certificates, sealed secrets or digests in a real repository, neither compresses nor
/// deltas away.
fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.push(ALPHABET[(r >> 58) as usize] as char);
    }
    out
}

/// One file of the history: a Deployment and a Secret with ~2 KiB of noise; `version`
/// changes the replicas, image, port and the noise.
fn history_file(n: usize, version: usize) -> String {
    let name = format!("svc-{n:05}");
    let mut text = deployment(&name, n + version, 12);
    text.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-tls\ntype: kubernetes.io/tls\ndata:\n  tls.crt: \"{}\"\n",
        noise((n as u64) << 20 | version as u64, 2048)
    ));
    text
}

/// Fills `repo` with a history: `commits` commits, each adding `added` new files (about
/// 3.5 KiB of YAML, more than half of it noise, 30 per directory) and changing `changed`
/// earlier ones, a lightweight tag every 25 commits; then packs it with bitmaps
/// (`git repack -adb`), as a forge serves its repositories. Returns the number of files at
/// the tip.
pub(crate) fn history(
    repo: &GitRepo,
    commits: usize,
    added: usize,
    changed: usize,
) -> anyhow::Result<usize> {
    let mut total = 0usize;
    let path = |n: usize| format!("services/group-{:03}/svc-{n:05}.yaml", n / 30);
    for c in 0..commits {
        for _ in 0..added {
            repo.write(path(total), history_file(total, 0))?;
            total += 1;
        }
        // Change files spread over the history, so the pack holds deltas against old blobs.
        for k in 0..changed.min(total) {
            let n = (c * 7919 + k * 104_729) % total;
            repo.write(path(n), history_file(n, c + 1))?;
        }
        repo.commit(&format!("change {c}"))?;
        if c % 25 == 24 {
            repo.tag(&format!("v0.{}.0", c / 25))?;
        }
    }
    repo.git(["repack", "-adbq"])?;
    Ok(total)
}
