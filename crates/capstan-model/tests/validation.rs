//! Every validation rule: a case that breaks it (with the path and message users see) and a
//! case that meets it.

use capstan_model::*;

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{}{l}\n", " ".repeat(by))
            }
        })
        .collect()
}

/// An Application with a valid spec, plus `extra` (YAML at spec level) appended.
fn app_with(extra: &str) -> Application {
    app_spec(&format!(
        "project: default\nsource:\n  repoURL: https://github.com/acme/a.git\n  path: app\ndestination:\n  server: https://kubernetes.default.svc\n  namespace: app\n{extra}"
    ))
}

/// An Application whose whole spec is `spec`.
fn app_spec(spec: &str) -> Application {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: app\nspec:\n{}",
        indent(spec, 2)
    );
    parse_application_yaml(&yaml).unwrap_or_else(|e| panic!("test input parses: {e}\n{yaml}"))
}

/// An Application with `source` replaced by `source` (YAML at source level).
fn app_source(source: &str) -> Application {
    app_spec(&format!(
        "project: default\nsource:\n{}destination:\n  server: https://kubernetes.default.svc\n  namespace: app\n",
        indent(source, 2)
    ))
}

fn project(spec: &str) -> AppProject {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team\nspec:\n{}",
        indent(spec, 2)
    );
    parse_app_project_yaml(&yaml).unwrap_or_else(|e| panic!("test input parses: {e}\n{yaml}"))
}

fn cluster(spec: &str) -> Cluster {
    let yaml = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n{}",
        indent(spec, 2)
    );
    parse_cluster_yaml(&yaml).unwrap_or_else(|e| panic!("test input parses: {e}\n{yaml}"))
}

fn repo(spec: &str) -> Repository {
    let yaml = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata:\n  name: r\nspec:\n{}",
        indent(spec, 2)
    );
    parse_repository_yaml(&yaml).unwrap_or_else(|e| panic!("test input parses: {e}\n{yaml}"))
}

#[track_caller]
fn fails(result: Result<(), ValidationErrors>, path: &str, message: &str) {
    let errors = result.expect_err("expected a validation error");
    let at_path = errors.messages_at(path);
    assert!(
        at_path.iter().any(|m| m.contains(message)),
        "no error at {path} containing {message:?}; got:\n{errors}"
    );
}

#[track_caller]
fn passes(result: Result<(), ValidationErrors>) {
    if let Err(e) = result {
        panic!("expected no problems, got:\n{e}");
    }
}

#[test]
fn every_problem_is_reported_at_once_as_a_list() {
    let app = app_spec(
        "source:\n  repoURL: https://github.com/acme/a.git\nsources:\n  - repoURL: https://github.com/acme/b.git\ndestination:\n  server: https://kubernetes.default.svc\n  name: in-cluster\nrevisionHistoryLimit: -1\n",
    );
    let errors = app.validate().expect_err("invalid");
    assert_eq!(errors.len(), 3, "{errors}");
    assert_eq!(
        errors.to_string(),
        "3 problems:\n  - spec.source: set either source or sources, not both\n  - spec.destination: set either server or name, not both\n  - spec.revisionHistoryLimit: -1 is negative; use 0 to keep no history, or a positive number"
    );
}

#[test]
fn metadata_names_labels_annotations_finalizers() {
    let mut app = app_with("");
    passes(app.validate());
    app.metadata.name = "My_App".into();
    fails(app.validate(), "metadata.name", "not a valid name");
    app.metadata.name.clear();
    fails(app.validate(), "metadata.name", "required");
    app.metadata.name = "app".into();
    app.metadata.namespace = "Team.A".into();
    fails(app.validate(), "metadata.namespace", "DNS-1123 label");
    app.metadata.namespace = "argocd".into();
    app.metadata
        .labels
        .insert("app.kubernetes.io/name".into(), "has space".into());
    fails(
        app.validate(),
        "metadata.labels[\"app.kubernetes.io/name\"]",
        "not a valid label value",
    );
    app.metadata.labels.clear();
    app.metadata
        .annotations
        .insert("bad key!".into(), "x".into());
    fails(
        app.validate(),
        "metadata.annotations[\"bad key!\"]",
        "not a valid key",
    );
    app.metadata.annotations.clear();
    app.metadata.finalizers = vec![
        "resources-finalizer.argocd.argoproj.io".into(),
        "resources-finalizer.argocd.argoproj.io".into(),
    ];
    fails(
        app.validate(),
        "metadata.finalizers[1]",
        "already given at index 0",
    );
    app.metadata.finalizers.truncate(1);
    app.metadata.creation_timestamp = Some(Timestamp::new("yesterday"));
    fails(
        app.validate(),
        "metadata.creationTimestamp",
        "not an RFC 3339 time",
    );
    app.metadata.creation_timestamp = Some(Timestamp::new("2024-10-01T09:12:44Z"));
    passes(app.validate());
}

#[test]
fn project_name() {
    fails(
        app_with("").with_project("Team A").validate(),
        "spec.project",
        "not a valid name",
    );
    passes(app_with("").with_project("team-a").validate());
}

trait WithProject {
    fn with_project(self, p: &str) -> Self;
}
impl WithProject for Application {
    fn with_project(mut self, p: &str) -> Self {
        self.spec.project = p.into();
        self
    }
}

#[test]
fn source_or_sources_or_hydrator() {
    let both = app_with("sources:\n  - repoURL: https://github.com/acme/b.git\n    path: b\n");
    fails(
        both.validate(),
        "spec.source",
        "set either source or sources, not both",
    );
    let none = app_spec("destination:\n  server: https://kubernetes.default.svc\n");
    fails(
        none.validate(),
        "spec.source",
        "required; set source (or sources",
    );
    let hydrated = app_with(
        "sourceHydrator:\n  drySource: {repoURL: 'https://github.com/acme/a.git', targetRevision: main, path: app}\n  syncSource: {targetBranch: env/prod, path: app}\n",
    );
    fails(
        hydrated.validate(),
        "spec.sourceHydrator",
        "set either sourceHydrator or source/sources, not both",
    );
    let only_hydrator = app_spec(
        "sourceHydrator:\n  drySource: {repoURL: 'https://github.com/acme/a.git', targetRevision: main, path: app}\n  syncSource: {targetBranch: env/prod, path: app}\ndestination:\n  server: https://kubernetes.default.svc\n",
    );
    passes(only_hydrator.validate());
    let bad_hydrator = app_spec(
        "sourceHydrator:\n  drySource: {repoURL: '', path: app}\n  syncSource: {targetBranch: '', path: /}\n  hydrateTo: {targetBranch: ''}\ndestination:\n  server: https://kubernetes.default.svc\n",
    );
    let r = bad_hydrator.validate();
    fails(
        r.clone(),
        "spec.sourceHydrator.drySource.repoURL",
        "required",
    );
    fails(
        r.clone(),
        "spec.sourceHydrator.drySource.targetRevision",
        "required",
    );
    fails(
        r.clone(),
        "spec.sourceHydrator.syncSource.targetBranch",
        "required",
    );
    fails(
        r.clone(),
        "spec.sourceHydrator.syncSource.path",
        "not the repository root",
    );
    fails(r, "spec.sourceHydrator.hydrateTo.targetBranch", "required");
}

#[test]
fn source_basics() {
    fails(
        app_source("path: app\n").validate(),
        "spec.source.repoURL",
        "required",
    );
    fails(
        app_source("repoURL: 'https://github.com/acme/a .git'\n").validate(),
        "spec.source.repoURL",
        "contains spaces",
    );
    fails(
        app_source("repoURL: https://github.com/acme/a.git\npath: ../../etc\n").validate(),
        "spec.source.path",
        "leaves the repository",
    );
    passes(app_source("repoURL: https://github.com/acme/a.git\npath: apps/../app\n").validate());
    fails(
        app_source("repoURL: https://github.com/acme/a.git\nhelm: {}\nkustomize: {}\n").validate(),
        "spec.source",
        "set at most one of helm, kustomize, directory and plugin (found helm and kustomize)",
    );
    fails(
        app_source("repoURL: https://github.com/acme/a.git\nref: values\n").validate(),
        "spec.source.ref",
        "only entries of spec.sources can have a ref",
    );
}

#[test]
fn multi_source_refs_and_names() {
    let spec = |sources: &str| {
        app_spec(&format!(
            "sources:\n{}destination:\n  server: https://kubernetes.default.svc\n",
            indent(sources, 2)
        ))
    };
    let good = spec(
        "- repoURL: https://charts.acme.io\n  chart: web\n  targetRevision: 1.0.0\n  helm:\n    valueFiles: [$values/web/values.yaml]\n- repoURL: https://github.com/acme/values.git\n  ref: values\n",
    );
    passes(good.validate());
    let unknown = spec(
        "- repoURL: https://charts.acme.io\n  chart: web\n  helm:\n    valueFiles: [$valuez/web/values.yaml]\n- repoURL: https://github.com/acme/values.git\n  ref: values\n",
    );
    fails(
        unknown.validate(),
        "spec.sources[0].helm.valueFiles[0]",
        "no source has `ref: valuez`",
    );
    let bad_ref = spec("- repoURL: https://github.com/acme/a.git\n  ref: 1st/values\n");
    fails(
        bad_ref.validate(),
        "spec.sources[0].ref",
        "not a valid identifier",
    );
    let dup = spec(
        "- repoURL: https://github.com/acme/a.git\n  ref: values\n  name: a\n- repoURL: https://github.com/acme/b.git\n  ref: values\n  name: a\n",
    );
    let r = dup.validate();
    fails(
        r.clone(),
        "spec.sources[1].ref",
        "\"values\" is used by spec.sources[0]; give each source its own ref",
    );
    fails(
        r,
        "spec.sources[1]",
        "source name \"a\" is already given at index 0",
    );
    let single = app_source(
        "repoURL: https://charts.acme.io\nchart: web\nhelm:\n  valueFiles: [$values/web.yaml]\n",
    );
    fails(
        single.validate(),
        "spec.source.helm.valueFiles[0]",
        "only works in spec.sources",
    );
}

#[test]
fn helm_rules() {
    let h = |helm: &str| {
        app_source(&format!(
            "repoURL: https://charts.acme.io\nchart: web\nhelm:\n{}",
            indent(helm, 2)
        ))
    };
    passes(h("releaseName: web\nvalues: |\n  replicaCount: 2\nparameters:\n  - name: image.tag\n    value: '1.0'\n").validate());
    fails(
        h("parameters:\n  - value: x\n").validate(),
        "spec.source.helm.parameters[0].name",
        "required",
    );
    let r = h("fileParameters:\n  - {}\n").validate();
    fails(
        r.clone(),
        "spec.source.helm.fileParameters[0].name",
        "required",
    );
    fails(r, "spec.source.helm.fileParameters[0].path", "required");
    fails(
        h("releaseName: Web_App\n").validate(),
        "spec.source.helm.releaseName",
        "not a valid name",
    );
    fails(
        h(&format!("releaseName: {}\n", "a".repeat(54))).validate(),
        "spec.source.helm.releaseName",
        "at most 53",
    );
    fails(
        h("values: 'a: 1'\nvaluesObject: {a: 1}\n").validate(),
        "spec.source.helm.values",
        "set either values or valuesObject, not both",
    );
    fails(
        h("values: 'a: [1'\n").validate(),
        "spec.source.helm.values",
        "not valid Helm values",
    );
    fails(
        h("values: '- a'\n").validate(),
        "spec.source.helm.values",
        "not a mapping",
    );
    passes(h("values: |\n  # everything commented out\n  # replicaCount: 2\n").validate());
    fails(
        h("valuesObject: [1, 2]\n").validate(),
        "spec.source.helm.valuesObject",
        "must be a mapping",
    );
    fails(
        h("version: v2\n").validate(),
        "spec.source.helm.version",
        "Helm 3",
    );
    passes(h("version: v3\n").validate());
    fails(
        h("namespace: Web\n").validate(),
        "spec.source.helm.namespace",
        "DNS-1123 label",
    );
    fails(
        h("kubeVersion: latest\n").validate(),
        "spec.source.helm.kubeVersion",
        "not a Kubernetes version",
    );
    passes(h("kubeVersion: v1.30.2\napiVersions: [batch/v1, apps/v1/Deployment]\n").validate());
    fails(
        h("apiVersions: ['a b']\n").validate(),
        "spec.source.helm.apiVersions[0]",
        "not an API version",
    );
    fails(
        h("valueFiles: ['']\n").validate(),
        "spec.source.helm.valueFiles[0]",
        "empty",
    );
}

#[test]
fn kustomize_rules() {
    let k = |body: &str| {
        app_source(&format!(
            "repoURL: https://github.com/acme/a.git\npath: app\nkustomize:\n{}",
            indent(body, 2)
        ))
    };
    passes(k("images: [nginx:1.27]\nreplicas:\n  - {name: web, count: 2}\npatches:\n  - path: p.yaml\ncomponents: [../c]\ncommonLabels: {env: prod}\n").validate());
    fails(
        k("images: ['nginx 1.27']\n").validate(),
        "spec.source.kustomize.images[0]",
        "not an image override",
    );
    fails(
        k("commonLabels: {env: 'pro d'}\n").validate(),
        "spec.source.kustomize.commonLabels.env",
        "not a valid label value",
    );
    fails(
        k("commonAnnotations: {'a b': x}\n").validate(),
        "spec.source.kustomize.commonAnnotations[\"a b\"]",
        "not a valid key",
    );
    let r = k("replicas:\n  - count: three\n  - name: w\n    count: -1\n").validate();
    fails(
        r.clone(),
        "spec.source.kustomize.replicas[0].name",
        "required",
    );
    fails(
        r.clone(),
        "spec.source.kustomize.replicas[0].count",
        "not a whole number",
    );
    fails(r, "spec.source.kustomize.replicas[1].count", "negative");
    fails(
        k("patches:\n  - {}\n").validate(),
        "spec.source.kustomize.patches[0]",
        "set patch (inline) or path",
    );
    fails(
        k("patches:\n  - {path: a.yaml, patch: x}\n").validate(),
        "spec.source.kustomize.patches[0]",
        "not both",
    );
    fails(
        k("components: ['']\n").validate(),
        "spec.source.kustomize.components[0]",
        "empty",
    );
    fails(
        k("namespace: Shop\n").validate(),
        "spec.source.kustomize.namespace",
        "DNS-1123 label",
    );
}

#[test]
fn directory_rules() {
    let d = |body: &str| {
        app_source(&format!(
            "repoURL: https://github.com/acme/a.git\npath: app\ndirectory:\n{}",
            indent(body, 2)
        ))
    };
    passes(
        d("recurse: true\ninclude: '{a,b}/*.yaml'\njsonnet:\n  tlas: [{name: env, value: prod}]\n")
            .validate(),
    );
    fails(
        d("include: '{a,b'\n").validate(),
        "spec.source.directory.include",
        "without a closing",
    );
    fails(
        d("exclude: '[abc'\n").validate(),
        "spec.source.directory.exclude",
        "without a closing",
    );
    fails(
        d("jsonnet:\n  extVars: [{value: x}]\n").validate(),
        "spec.source.directory.jsonnet.extVars[0].name",
        "required",
    );
    fails(
        d("jsonnet:\n  tlas: [{name: a}, {name: a}]\n").validate(),
        "spec.source.directory.jsonnet.tlas[1]",
        "already given",
    );
    fails(
        d("jsonnet:\n  libs: ['']\n").validate(),
        "spec.source.directory.jsonnet.libs[0]",
        "empty",
    );
}

#[test]
fn plugin_rules() {
    let p = |body: &str| {
        app_source(&format!(
            "repoURL: https://github.com/acme/a.git\npath: app\nplugin:\n{}",
            indent(body, 2)
        ))
    };
    passes(
        p("name: cmp\nenv: [{name: FOO, value: bar}]\nparameters: [{name: a, string: b}]\n")
            .validate(),
    );
    fails(
        p("env: [{name: 1FOO, value: bar}]\n").validate(),
        "spec.source.plugin.env[0].name",
        "not a valid environment variable name",
    );
    fails(
        p("env: [{name: A}, {name: A}]\n").validate(),
        "spec.source.plugin.env[1]",
        "already given",
    );
    fails(
        p("parameters: [{string: b}]\n").validate(),
        "spec.source.plugin.parameters[0].name",
        "required",
    );
    fails(
        p("parameters: [{name: a, string: b, array: [c]}]\n").validate(),
        "spec.source.plugin.parameters[0]",
        "set one of string, array and map",
    );
}

#[test]
fn destination_rules() {
    let d = |dest: &str| {
        app_spec(&format!(
            "source: {{repoURL: 'https://github.com/acme/a.git', path: app}}\ndestination:\n{}",
            indent(dest, 2)
        ))
    };
    passes(d("server: https://kubernetes.default.svc\nnamespace: app\n").validate());
    passes(d("name: in-cluster\n").validate());
    fails(
        d("server: https://kubernetes.default.svc\nname: in-cluster\n").validate(),
        "spec.destination",
        "set either server or name, not both",
    );
    fails(
        d("namespace: app\n").validate(),
        "spec.destination",
        "set server (the cluster's API server URL) or name",
    );
    fails(
        d("server: kubernetes.default.svc\n").validate(),
        "spec.destination.server",
        "not a URL",
    );
    fails(
        d("server: ftp://cluster\n").validate(),
        "spec.destination.server",
        "scheme \"ftp\"",
    );
    fails(
        d("server: https://kubernetes.default.svc\nnamespace: App_1\n").validate(),
        "spec.destination.namespace",
        "DNS-1123 label",
    );
}

#[test]
fn sync_options_rules() {
    let o = |opts: &str| app_with(&format!("syncPolicy:\n  syncOptions:\n{}", indent(opts, 4)));
    passes(o("- CreateNamespace=true\n- ServerSideApply=true\n- PrunePropagationPolicy=orphan\n- Replace=true\n- Force=true\n").validate());
    fails(
        o("- createNamespace=true\n").validate(),
        "spec.syncPolicy.syncOptions[0]",
        "did you mean `CreateNamespace`?",
    );
    fails(
        o("- CreateNamespace = true\n").validate(),
        "spec.syncPolicy.syncOptions[0]",
        "spaces around '='",
    );
    fails(
        o("- PrunePropagationPolicy=delete\n").validate(),
        "spec.syncPolicy.syncOptions[0]",
        "takes `foreground`, `background`, `orphan`",
    );
    fails(
        o("- Validate=false\n- Validate=true\n").validate(),
        "spec.syncPolicy.syncOptions[1]",
        "Validate is already set to false at index 0",
    );
    fails(
        o("- Validate=false\n- Validate=false\n").validate(),
        "spec.syncPolicy.syncOptions[1]",
        "already given at index 0",
    );
    fails(
        o("- Force=true\n").validate(),
        "spec.syncPolicy.syncOptions",
        "Force=true only applies with Replace=true",
    );
}

#[test]
fn retry_rules() {
    let r = |retry: &str| app_with(&format!("syncPolicy:\n  retry:\n{}", indent(retry, 4)));
    passes(r("limit: -1\nbackoff: {duration: 5s, factor: 2, maxDuration: 1h30m}\n").validate());
    passes(r("limit: 3\nbackoff: {duration: '30', maxDuration: 3m}\n").validate());
    fails(
        r("backoff: {duration: five}\n").validate(),
        "spec.syncPolicy.retry.backoff.duration",
        "not a duration",
    );
    fails(
        r("backoff: {maxDuration: 3d}\n").validate(),
        "spec.syncPolicy.retry.backoff.maxDuration",
        "unknown unit \"d\"",
    );
    fails(
        r("backoff: {duration: 5m, maxDuration: 1m}\n").validate(),
        "spec.syncPolicy.retry.backoff.maxDuration",
        "shorter than duration",
    );
    fails(
        r("backoff: {factor: 0}\n").validate(),
        "spec.syncPolicy.retry.backoff.factor",
        "use 1 or more",
    );
}

#[test]
fn managed_namespace_metadata_rules() {
    let m = |body: &str| {
        app_with(&format!(
            "syncPolicy:\n  syncOptions: [CreateNamespace=true]\n  managedNamespaceMetadata:\n{}",
            indent(body, 4)
        ))
    };
    passes(m("labels: {team: shop}\nannotations: {owner: shop}\n").validate());
    fails(
        m("labels: {team: 'a b'}\n").validate(),
        "spec.syncPolicy.managedNamespaceMetadata.labels.team",
        "not a valid label value",
    );
}

#[test]
fn ignore_differences_rules() {
    let i = |body: &str| app_with(&format!("ignoreDifferences:\n{}", indent(body, 2)));
    passes(i("- group: apps\n  kind: Deployment\n  jsonPointers: [/spec/replicas]\n").validate());
    fails(
        i("- jsonPointers: [/spec/replicas]\n").validate(),
        "spec.ignoreDifferences[0].kind",
        "required",
    );
    fails(
        i("- kind: Deployment\n").validate(),
        "spec.ignoreDifferences[0]",
        "set jsonPointers, jqPathExpressions or managedFieldsManagers",
    );
    fails(
        i("- kind: Deployment\n  jsonPointers: [spec/replicas]\n").validate(),
        "spec.ignoreDifferences[0].jsonPointers[0]",
        "start it with '/'",
    );
    fails(
        i("- kind: Deployment\n  jqPathExpressions: ['  ']\n").validate(),
        "spec.ignoreDifferences[0].jqPathExpressions[0]",
        "empty",
    );
    fails(
        i("- kind: Deployment\n  managedFieldsManagers: ['']\n").validate(),
        "spec.ignoreDifferences[0].managedFieldsManagers[0]",
        "empty",
    );
}

#[test]
fn info_and_history_limit_rules() {
    fails(
        app_with("info: [{value: x}]\n").validate(),
        "spec.info[0].name",
        "required",
    );
    passes(app_with("info: [{name: a, value: x}]\nrevisionHistoryLimit: 0\n").validate());
    fails(
        app_with("revisionHistoryLimit: -3\n").validate(),
        "spec.revisionHistoryLimit",
        "negative",
    );
}

#[test]
fn operation_rules() {
    let op = |body: &str| {
        let yaml = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: app}}\nspec:\n  source: {{repoURL: 'https://github.com/acme/a.git', path: app}}\n  destination: {{server: 'https://kubernetes.default.svc'}}\noperation:\n{}",
            indent(body, 2)
        );
        parse_application_yaml(&yaml).expect("parses")
    };
    passes(op("sync: {revision: HEAD, prune: true, syncStrategy: {hook: {}}}\n").validate());
    fails(
        op("initiatedBy: {username: admin}\n").validate(),
        "operation.sync",
        "required",
    );
    fails(
        op("sync: {syncStrategy: {apply: {}, hook: {}}}\n").validate(),
        "operation.sync.syncStrategy",
        "set either apply or hook, not both",
    );
    fails(
        op("sync: {syncOptions: [Prune=maybe]}\n").validate(),
        "operation.sync.syncOptions[0]",
        "Prune=maybe is not valid",
    );
    let r = op("sync: {resources: [{group: apps}]}\n").validate();
    fails(r.clone(), "operation.sync.resources[0].kind", "required");
    fails(r, "operation.sync.resources[0].name", "required");
    fails(
        op("sync: {revision: a, revisions: [b]}\n").validate(),
        "operation.sync.revision",
        "not both",
    );
    fails(
        op("sync: {}\nretry: {backoff: {duration: soon}}\n").validate(),
        "operation.retry.backoff.duration",
        "not a duration",
    );
}

#[test]
fn project_sources_and_destinations() {
    passes(
        project("sourceRepos: ['*']\ndestinations: [{server: '*', namespace: '*'}]\n").validate(),
    );
    let r = project(
        "sourceRepos: ['!*', 'https://a/*', 'https://a/*', '[x']\nsourceNamespaces: [apps, apps]\n",
    )
    .validate();
    fails(r.clone(), "spec.sourceRepos[0]", "denies every repository");
    fails(r.clone(), "spec.sourceRepos[2]", "already given at index 1");
    fails(r.clone(), "spec.sourceRepos[3]", "without a closing");
    fails(r, "spec.sourceNamespaces[1]", "already given");
    let r = project("destinations:\n  - namespace: a\n  - server: '!*'\n  - {server: 'https://x', namespace: a}\n  - {server: 'https://x', namespace: a}\n").validate();
    fails(r.clone(), "spec.destinations[0]", "set server or name");
    fails(r.clone(), "spec.destinations[1].server", "matches nothing");
    fails(r, "spec.destinations[3]", "already given at index 2");
    let r = project("destinationServiceAccounts:\n  - namespace: a\n  - {server: 'https://x', defaultServiceAccount: 'ns:Bad_SA'}\n").validate();
    fails(
        r.clone(),
        "spec.destinationServiceAccounts[0].server",
        "required",
    );
    fails(
        r.clone(),
        "spec.destinationServiceAccounts[0].defaultServiceAccount",
        "required",
    );
    fails(
        r,
        "spec.destinationServiceAccounts[1].defaultServiceAccount",
        "not a valid name",
    );
    passes(project("destinationServiceAccounts: [{server: 'https://x', namespace: a, defaultServiceAccount: 'ops:deployer'}]\n").validate());
    fails(
        project("clusterResourceWhitelist: [{group: ''}]\n").validate(),
        "spec.clusterResourceWhitelist[0].kind",
        "required",
    );
    fails(
        project("namespaceResourceWhitelist: [{group: '*', kind: '[x'}]\n").validate(),
        "spec.namespaceResourceWhitelist[0].kind",
        "without a closing",
    );
}

#[test]
fn project_roles_and_policies() {
    let good = "roles:\n  - name: ci-bot\n    policies: ['p, proj:team:ci-bot, applications, sync, team/*, allow']\n    groups: [acme:devs]\n";
    passes(project(good).validate());
    let r = project("roles:\n  - name: -bad\n  - name: ci\n    policies:\n      - 'p, proj:team:ci, applications, sync, team/*'\n      - 'p, proj:other:ci, applications, sync, team/*, allow'\n      - 'p, proj:team:ci, accounts, get, team/*, allow'\n      - 'p, proj:team:ci, applications, fly, team/*, allow'\n      - 'p, proj:team:ci, applications, get, other/*, allow'\n      - 'p, proj:team:ci, applications, get, team/*, perhaps'\n      - 'p, proj:team:ci, applications, get, team/*, allow'\n      - 'p, proj:team:ci, applications, get, team/*, allow'\n    groups: ['a,b', ' lead', a, a]\n    jwtTokens: [{iat: 200, exp: 100}]\n  - name: ci\n").validate();
    fails(r.clone(), "spec.roles[0].name", "not a valid role name");
    fails(r.clone(), "spec.roles[1].policies[0]", "not a policy line");
    fails(
        r.clone(),
        "spec.roles[1].policies[1]",
        "subject must be proj:team:ci",
    );
    fails(
        r.clone(),
        "spec.roles[1].policies[2]",
        "resource \"accounts\" is not allowed",
    );
    fails(
        r.clone(),
        "spec.roles[1].policies[3]",
        "action \"fly\" is not valid",
    );
    fails(r.clone(), "spec.roles[1].policies[4]", "must be team/*");
    fails(r.clone(), "spec.roles[1].policies[5]", "allow or deny");
    fails(
        r.clone(),
        "spec.roles[1].policies[7]",
        "already given at index 6",
    );
    fails(r.clone(), "spec.roles[1].groups[0]", "must be quoted");
    fails(
        r.clone(),
        "spec.roles[1].groups[1]",
        "leading or trailing spaces",
    );
    fails(
        r.clone(),
        "spec.roles[1].groups[3]",
        "already given at index 2",
    );
    fails(
        r.clone(),
        "spec.roles[1].jwtTokens[0].exp",
        "expires before it was issued",
    );
    fails(
        r,
        "spec.roles[2]",
        "role \"ci\" is already given at index 1",
    );
}

#[test]
fn project_sync_windows() {
    let w = |body: &str| project(&format!("syncWindows:\n{}", indent(body, 2)));
    passes(w("- {kind: allow, schedule: '0 22 * * *', duration: 1h, applications: ['*'], timeZone: Europe/Berlin}\n").validate());
    let r = w("- {applications: ['*']}\n").validate();
    fails(
        r.clone(),
        "spec.syncWindows[0].kind",
        "required; set allow or deny",
    );
    fails(r.clone(), "spec.syncWindows[0].schedule", "required");
    fails(r, "spec.syncWindows[0].duration", "required");
    fails(
        w("- {kind: deny, schedule: '61 * * * *', duration: 1h, clusters: ['*']}\n").validate(),
        "spec.syncWindows[0].schedule",
        "minute 61 is out of range 0-59",
    );
    fails(
        w("- {kind: deny, schedule: '0 22 * *', duration: 1h, clusters: ['*']}\n").validate(),
        "spec.syncWindows[0].schedule",
        "has 4 fields",
    );
    fails(
        w("- {kind: deny, schedule: '0 22 * * *', duration: '90', clusters: ['*']}\n").validate(),
        "spec.syncWindows[0].duration",
        "not a duration",
    );
    fails(
        w("- {kind: deny, schedule: '0 22 * * *', duration: 0s, clusters: ['*']}\n").validate(),
        "spec.syncWindows[0].duration",
        "never opens",
    );
    fails(
        w("- {kind: deny, schedule: '0 22 * * *', duration: 1h}\n").validate(),
        "spec.syncWindows[0]",
        "set applications, namespaces or clusters",
    );
    fails(
        w("- {kind: deny, schedule: '0 22 * * *', duration: 1h, namespaces: ['{a']}\n").validate(),
        "spec.syncWindows[0].namespaces[0]",
        "without a closing",
    );
    fails(w("- {kind: deny, schedule: '0 22 * * *', duration: 1h, clusters: ['*'], timeZone: 'Mars Base'}\n").validate(), "spec.syncWindows[0].timeZone", "not a time zone name");
    let long = "x".repeat(256);
    fails(w(&format!("- {{kind: deny, schedule: '0 22 * * *', duration: 1h, clusters: ['*'], description: {long}}}\n")).validate(), "spec.syncWindows[0].description", "longer than 255");
    fails(w("- {kind: deny, schedule: '0 22 * * *', duration: 1h, clusters: [a]}\n- {kind: deny, schedule: '0 22 * * *', duration: 1h, clusters: [b]}\n").validate(), "spec.syncWindows[1]", "already given at index 0");
}

#[test]
fn project_signature_keys() {
    passes(project("signatureKeys: [{keyID: 4AEE18F83AFDEB23}]\n").validate());
    fails(
        project("signatureKeys: [{keyID: not-a-key}]\n").validate(),
        "spec.signatureKeys[0].keyID",
        "not a GPG key id",
    );
}

#[test]
fn cluster_rules() {
    passes(cluster("server: https://10.0.0.1:6443\nconfig:\n  bearerToken: t\n  tlsClientConfig: {caData: TFMwdA==}\n").validate());
    fails(
        cluster("config: {}\n").validate(),
        "spec.server",
        "required",
    );
    fails(
        cluster("server: 10.0.0.1:6443\n").validate(),
        "spec.server",
        "not a URL",
    );
    let r = cluster("server: https://x\nnamespaces: [a, a, Bad]\nproject: Team A\nshard: -1\n")
        .validate();
    fails(r.clone(), "spec.namespaces[1]", "already given");
    fails(r.clone(), "spec.namespaces[2]", "DNS-1123 label");
    fails(r.clone(), "spec.project", "not a valid name");
    fails(r, "spec.shard", "negative");
    fails(
        cluster("server: https://x\nclusterResources: true\n").validate(),
        "spec.clusterResources",
        "only applies when namespaces is set",
    );
    passes(cluster("server: https://x\nnamespaces: [a]\nclusterResources: true\n").validate());
    let r = cluster("server: https://x\nconfig:\n  bearerToken: t\n  username: u\n  execProviderConfig: {command: c, apiVersion: client.authentication.k8s.io/v1}\n").validate();
    fails(
        r.clone(),
        "spec.config",
        "use one way to authenticate, found bearerToken and username/password and execProviderConfig",
    );
    fails(r, "spec.config.password", "required with username");
    let r = cluster("server: https://x\nconfig:\n  tlsClientConfig: {certData: 'not base64!', insecure: true, caData: TFMwdA==}\n").validate();
    fails(
        r.clone(),
        "spec.config.tlsClientConfig",
        "set both certData and keyData",
    );
    fails(r.clone(), "spec.config.tlsClientConfig.certData", "base64");
    fails(
        r,
        "spec.config.tlsClientConfig.insecure",
        "caData would be ignored",
    );
    fails(
        cluster("server: https://x\nconfig:\n  awsAuthConfig: {roleARN: r}\n").validate(),
        "spec.config.awsAuthConfig.clusterName",
        "required",
    );
    let r =
        cluster("server: https://x\nconfig:\n  execProviderConfig: {apiVersion: v1}\n").validate();
    fails(
        r.clone(),
        "spec.config.execProviderConfig.command",
        "required",
    );
    fails(
        r,
        "spec.config.execProviderConfig.apiVersion",
        "not an exec credential API",
    );
    fails(
        cluster("server: https://x\nconfig:\n  proxyUrl: ftp://proxy\n").validate(),
        "spec.config.proxyUrl",
        "scheme \"ftp\"",
    );
    passes(cluster("server: https://x\nconfig:\n  proxyUrl: socks5://proxy:1080\n").validate());
}

#[test]
fn repository_rules() {
    passes(repo("url: git@github.com:acme/a.git\nsshPrivateKey: |\n  -----BEGIN OPENSSH PRIVATE KEY-----\n  abc\n  -----END OPENSSH PRIVATE KEY-----\n").validate());
    passes(
        repo("url: https://charts.acme.io\ntype: helm\nname: acme\nusername: u\npassword: p\n")
            .validate(),
    );
    passes(
        repo("url: oci://ghcr.io/acme/charts\ntype: oci\ninsecureOCIForceHttp: true\n").validate(),
    );
    fails(repo("type: git\n").validate(), "spec.url", "required");
    fails(
        repo("url: github.com/acme/a\n").validate(),
        "spec.url",
        "not a Git URL",
    );
    fails(
        repo("url: https://charts.acme.io\ntype: helm\n").validate(),
        "spec.name",
        "required for Helm repositories",
    );
    fails(
        repo("url: oci://ghcr.io/acme\ntype: helm\nname: x\nenableLfs: true\n").validate(),
        "spec.enableLfs",
        "only applies to Git",
    );
    fails(
        repo("url: https://github.com/acme/a.git\nsshPrivateKey: key\n").validate(),
        "spec.sshPrivateKey",
        "only applies to Git over SSH",
    );
    fails(
        repo("url: git@github.com:acme/a.git\nsshPrivateKey: key\n").validate(),
        "spec.sshPrivateKey",
        "must be a PEM private key",
    );
    fails(
        repo("url: https://github.com/acme/a.git\nenableOCI: true\n").validate(),
        "spec.enableOCI",
        "only applies to Helm",
    );
    fails(
        repo("url: https://github.com/acme/a.git\ninsecureOCIForceHttp: true\n").validate(),
        "spec.insecureOCIForceHttp",
        "only applies to OCI",
    );
    fails(
        repo("url: https://github.com/acme/a.git\nusername: u\n").validate(),
        "spec.password",
        "required with username",
    );
    fails(
        repo("url: https://github.com/acme/a.git\npassword: p\n").validate(),
        "spec.username",
        "required with password",
    );
    fails(
        repo("url: https://github.com/acme/a.git\ntlsClientCertData: c\n").validate(),
        "spec",
        "set both tlsClientCertData and tlsClientCertKey",
    );
    fails(
        repo("url: https://github.com/acme/a.git\ngithubAppPrivateKey: k\n").validate(),
        "spec.githubAppID",
        "required with githubAppPrivateKey",
    );
    fails(
        repo("url: https://github.com/acme/a.git\nproxy: socks5://p\n").validate(),
        "spec.proxy",
        "scheme \"socks5\"",
    );
    fails(
        repo("url: https://x\ntype: oci\n").validate(),
        "spec.url",
        "use oci://",
    );
}

#[test]
fn object_validate_dispatches_by_kind() {
    let objects = parse_objects_yaml(
        "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {}\n---\napiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata: {name: r}\nspec: {url: 'https://github.com/acme/a.git'}\n",
    )
    .expect("parses");
    fails(objects[0].validate(), "spec.server", "required");
    passes(objects[1].validate());
}

#[test]
fn remaining_rules() {
    // Annotations are bounded in total, as Kubernetes bounds them.
    let mut app = app_with("");
    app.metadata
        .annotations
        .insert("big".into(), "x".repeat(300 * 1024));
    fails(
        app.validate(),
        "metadata.annotations",
        "over the Kubernetes limit",
    );
    // ignoreDifferences namespaces are globs.
    let i = app_with(
        "ignoreDifferences:\n  - kind: Secret\n    namespace: '[x'\n    jsonPointers: [/data]\n",
    );
    fails(
        i.validate(),
        "spec.ignoreDifferences[0].namespace",
        "without a closing",
    );
    // Cluster display names cannot hold control characters.
    fails(
        cluster("server: https://x\nname: \"bad\\u0007name\"\n").validate(),
        "spec.name",
        "control characters",
    );
    // Repository GitHub App settings.
    let r = repo("url: https://github.com/acme/a.git\ngithubAppID: -1\ngithubAppInstallationID: -2\ngithubAppEnterpriseBaseUrl: ghe.acme.io\n").validate();
    fails(r.clone(), "spec.githubAppID", "must be positive");
    fails(
        r.clone(),
        "spec.githubAppInstallationID",
        "must be positive",
    );
    fails(r, "spec.githubAppEnterpriseBaseUrl", "not a URL");
    fails(
        repo("url: https://github.com/acme/a.git\nproject: Team A\n").validate(),
        "spec.project",
        "not a valid name",
    );
    // Project resource lists: group globs.
    fails(
        project("namespaceResourceBlacklist: [{group: '{apps', kind: Deployment}]\n").validate(),
        "spec.namespaceResourceBlacklist[0].group",
        "without a closing",
    );
    // Operation info items and sources.
    let yaml = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: app}\nspec:\n  source: {repoURL: 'https://github.com/acme/a.git', path: app}\n  destination: {server: 'https://kubernetes.default.svc'}\noperation:\n  info: [{value: x}]\n  sync:\n    source: {path: a}\n";
    let r = parse_application_yaml(yaml).expect("parses").validate();
    fails(r.clone(), "operation.info[0].name", "required");
    fails(r, "operation.sync.source.repoURL", "required");
}
