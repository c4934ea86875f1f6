//! Rules for `Application`.

use super::duration::parse_backoff_duration;
use super::glob::check_glob;
use super::meta::{check_annotations, check_labels, check_metadata};
use super::names::{
    check_dns1123_label, check_dns1123_subdomain, check_env_name, check_identifier,
};
use super::sync_option::parse_sync_option;
use super::{Report, Validate, ValidationErrors, check_http_url, check_unique};
use crate::application::{
    Application, ApplicationDestination, ApplicationSpec, ResourceIgnoreDifferences, RetryStrategy,
    SyncOptions, SyncPolicy,
};
use crate::error::ParseError;
use crate::path::FieldPath;
use crate::source::{
    ApplicationSource, DirectorySource, HelmSource, KustomizeSource, PluginSource, SourceHydrator,
};
use crate::status::Operation;

impl Validate for Application {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        check_metadata(&mut report, &self.metadata);
        check_spec(&mut report, &FieldPath::root().field("spec"), &self.spec);
        if let Some(op) = &self.operation {
            check_operation(&mut report, &FieldPath::root().field("operation"), op);
        }
        report.finish()
    }
}

impl Validate for ApplicationSpec {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        check_spec(&mut report, &FieldPath::root().field("spec"), self);
        report.finish()
    }
}

fn check_spec(report: &mut Report, path: &FieldPath, spec: &ApplicationSpec) {
    if !spec.project.is_empty() {
        report.check(
            &path.field("project"),
            check_dns1123_subdomain(&spec.project),
        );
    }

    let has_source = spec.source.is_some();
    let has_sources = !spec.sources.is_empty();
    if has_source && has_sources {
        report.error(
            &path.field("source"),
            "set either source or sources, not both",
        );
    }
    if spec.source_hydrator.is_some() && (has_source || has_sources) {
        report.error(
            &path.field("sourceHydrator"),
            "set either sourceHydrator or source/sources, not both",
        );
    }
    if !has_source && !has_sources && spec.source_hydrator.is_none() {
        report.error(
            &path.field("source"),
            "required; set source (or sources, for several) to the repository holding the manifests",
        );
    }

    if let Some(source) = &spec.source {
        check_source(report, &path.field("source"), source, None);
    }
    if has_sources {
        check_sources(report, &path.field("sources"), &spec.sources);
    }
    if let Some(h) = &spec.source_hydrator {
        check_hydrator(report, &path.field("sourceHydrator"), h);
    }

    check_destination(report, &path.field("destination"), &spec.destination);

    if let Some(policy) = &spec.sync_policy {
        check_sync_policy(report, &path.field("syncPolicy"), policy);
    }
    let ignores = path.field("ignoreDifferences");
    for (i, rule) in spec.ignore_differences.iter().enumerate() {
        check_ignore_differences(report, &ignores.index(i), rule);
    }
    let info = path.field("info");
    for (i, item) in spec.info.iter().enumerate() {
        if item.name.is_empty() {
            report.error(
                &info.index(i).field("name"),
                "required; give the item a title",
            );
        }
    }
    if let Some(limit) = spec.revision_history_limit
        && limit < 0
    {
        report.error(
            &path.field("revisionHistoryLimit"),
            format!("{limit} is negative; use 0 to keep no history, or a positive number"),
        );
    }
}

fn check_sources(report: &mut Report, path: &FieldPath, sources: &[ApplicationSource]) {
    let refs: Vec<&str> = sources
        .iter()
        .map(|s| s.reference.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    for (i, source) in sources.iter().enumerate() {
        check_source(report, &path.index(i), source, Some(&refs));
    }
    let mut seen_refs: Vec<(&str, usize)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        if s.reference.is_empty() {
            continue;
        }
        if let Some((_, first)) = seen_refs.iter().find(|(r, _)| *r == s.reference) {
            report.error(
                &path.index(i).field("ref"),
                format!(
                    "{:?} is used by {path}[{first}]; give each source its own ref",
                    s.reference
                ),
            );
        } else {
            seen_refs.push((&s.reference, i));
        }
    }
    let names = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(i, s)| (i, s.name.as_str()));
    check_unique(report, path, names, "source name");
}

/// `refs` is `Some` for entries of `spec.sources` (with the refs defined there).
fn check_source(
    report: &mut Report,
    path: &FieldPath,
    source: &ApplicationSource,
    refs: Option<&[&str]>,
) {
    let url = path.field("repoURL");
    if source.repo_url.is_empty() {
        report.error(
            &url,
            "required; set the URL of the Git repository, Helm repository or OCI registry",
        );
    } else if source
        .repo_url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        report.error(
            &url,
            format!("{:?} contains spaces; remove them", source.repo_url),
        );
    }
    if !source.path.is_empty() {
        report.check(&path.field("path"), check_repo_path(&source.path));
    }
    let types = source.explicit_types();
    if types.len() > 1 {
        let names: Vec<String> = types
            .iter()
            .map(|t| t.as_str().to_ascii_lowercase())
            .collect();
        report.error(
            path,
            format!(
                "set at most one of helm, kustomize, directory and plugin (found {})",
                names.join(" and ")
            ),
        );
    }
    match refs {
        None if !source.reference.is_empty() => report.error(
            &path.field("ref"),
            "only entries of spec.sources can have a ref; move this source into sources or remove ref",
        ),
        Some(_) if !source.reference.is_empty() => {
            report.check(&path.field("ref"), check_identifier(&source.reference));
        }
        _ => {}
    }
    if let Some(helm) = &source.helm {
        check_helm(report, &path.field("helm"), helm, refs);
    }
    if let Some(k) = &source.kustomize {
        check_kustomize(report, &path.field("kustomize"), k);
    }
    if let Some(d) = &source.directory {
        check_directory(report, &path.field("directory"), d);
    }
    if let Some(p) = &source.plugin {
        check_plugin(report, &path.field("plugin"), p);
    }
}

/// A path inside a repository: relative, without `..` leaving the repository.
fn check_repo_path(path: &str) -> Result<(), String> {
    let mut depth: i64 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "{path:?} leaves the repository; use a path inside it"
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Helm release names: DNS-1123 subdomain of at most 53 characters.
fn check_release_name(name: &str) -> Result<(), String> {
    if name.len() > 53 {
        return Err(format!(
            "{name:?} is {} characters long; Helm release names have at most 53",
            name.len()
        ));
    }
    check_dns1123_subdomain(name)
}

fn check_helm(report: &mut Report, path: &FieldPath, helm: &HelmSource, refs: Option<&[&str]>) {
    let files = path.field("valueFiles");
    for (i, file) in helm.value_files.iter().enumerate() {
        let p = files.index(i);
        if file.is_empty() {
            report.error(&p, "empty; remove it or give a values file path");
            continue;
        }
        if let Some(rest) = file.strip_prefix('$') {
            let name = rest.split('/').next().unwrap_or("");
            match refs {
                None => report.error(
                    &p,
                    format!(
                        "{file:?} refers to another source, which only works in spec.sources; move the sources into spec.sources"
                    ),
                ),
                Some(refs) if !refs.contains(&name) => report.error(
                    &p,
                    format!(
                        "{file:?} refers to ${name}, but no source has `ref: {name}`; add it to the source holding the file"
                    ),
                ),
                _ => {}
            }
        }
    }
    let params = path.field("parameters");
    for (i, p) in helm.parameters.iter().enumerate() {
        if p.name.is_empty() {
            report.error(
                &params.index(i).field("name"),
                "required; name the value to set, e.g. image.tag",
            );
        }
    }
    let fparams = path.field("fileParameters");
    for (i, p) in helm.file_parameters.iter().enumerate() {
        if p.name.is_empty() {
            report.error(
                &fparams.index(i).field("name"),
                "required; name the value to set",
            );
        }
        if p.path.is_empty() {
            report.error(
                &fparams.index(i).field("path"),
                "required; give the file whose content is the value",
            );
        }
    }
    if !helm.release_name.is_empty() {
        report.check(
            &path.field("releaseName"),
            check_release_name(&helm.release_name),
        );
    }
    if !helm.values.is_empty() && helm.values_object.is_some() {
        report.error(
            &path.field("values"),
            "set either values or valuesObject, not both (valuesObject would win)",
        );
    }
    if !helm.values.is_empty()
        && let Err(e) = check_values_text(&helm.values)
    {
        report.error(
            &path.field("values"),
            format!("not valid Helm values: {e}; write a YAML mapping"),
        );
    }
    if let Some(obj) = &helm.values_object
        && !obj.is_object()
        && !obj.is_null()
    {
        report.error(
            &path.field("valuesObject"),
            "must be a mapping of Helm values, e.g. `replicaCount: 2`",
        );
    }
    if !helm.version.is_empty() && helm.version != "3" && helm.version != "v3" {
        report.error(
            &path.field("version"),
            format!(
                "{:?} is not supported; Capstan renders with Helm 3, so set 3 or remove it",
                helm.version
            ),
        );
    }
    if !helm.namespace.is_empty() {
        report.check(
            &path.field("namespace"),
            check_dns1123_label(&helm.namespace),
        );
    }
    if !helm.kube_version.is_empty() {
        report.check(
            &path.field("kubeVersion"),
            check_kube_version(&helm.kube_version),
        );
    }
    check_api_versions(report, &path.field("apiVersions"), &helm.api_versions);
}

/// Helm `values` text must be a YAML mapping (or empty, or only comments).
fn check_values_text(text: &str) -> Result<(), String> {
    match crate::object::parse_fragment_yaml::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_) | serde_json::Value::Null) | Err(ParseError::Empty) => {
            Ok(())
        }
        Ok(_) => Err("it is not a mapping of values".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn check_kube_version(v: &str) -> Result<(), String> {
    let core = v.strip_prefix('v').unwrap_or(v);
    let core = core.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a Kubernetes version; write e.g. 1.30 or v1.30.2"
        ))
    }
}

fn check_api_versions(report: &mut Report, path: &FieldPath, versions: &[String]) {
    for (i, v) in versions.iter().enumerate() {
        let parts = v.split('/').count();
        if v.is_empty() || v.contains(char::is_whitespace) || parts > 3 {
            report.error(
                &path.index(i),
                format!("{v:?} is not an API version; write [group/]version[/kind], e.g. batch/v1 or apps/v1/Deployment"),
            );
        }
    }
}

fn check_kustomize(report: &mut Report, path: &FieldPath, k: &KustomizeSource) {
    let images = path.field("images");
    for (i, image) in k.images.iter().enumerate() {
        if image.is_empty() || image.contains(char::is_whitespace) {
            report.error(
                &images.index(i),
                format!("{image:?} is not an image override; write [old=]name[:tag|@digest], e.g. nginx:1.27"),
            );
        }
    }
    check_labels(report, &path.field("commonLabels"), &k.common_labels);
    check_annotations(
        report,
        &path.field("commonAnnotations"),
        &k.common_annotations,
    );
    let replicas = path.field("replicas");
    for (i, r) in k.replicas.iter().enumerate() {
        let p = replicas.index(i);
        if r.name.is_empty() {
            report.error(
                &p.field("name"),
                "required; name the Deployment or StatefulSet",
            );
        }
        match r.count.as_int() {
            Some(n) if n >= 0 => {}
            Some(n) => report.error(&p.field("count"), format!("{n} is negative; use 0 or more")),
            None => report.error(
                &p.field("count"),
                format!(
                    "{:?} is not a whole number; write the replica count, e.g. 3",
                    r.count
                ),
            ),
        }
    }
    let patches = path.field("patches");
    for (i, patch) in k.patches.iter().enumerate() {
        match (patch.patch.is_empty(), patch.path.is_empty()) {
            (true, true) => report.error(
                &patches.index(i),
                "set patch (inline) or path (a file in the repository)",
            ),
            (false, false) => report.error(
                &patches.index(i),
                "set either patch (inline) or path (a file), not both",
            ),
            _ => {}
        }
    }
    let components = path.field("components");
    for (i, c) in k.components.iter().enumerate() {
        if c.is_empty() {
            report.error(
                &components.index(i),
                "empty; remove it or give a component path",
            );
        }
    }
    if !k.namespace.is_empty() {
        report.check(&path.field("namespace"), check_dns1123_label(&k.namespace));
    }
    if !k.kube_version.is_empty() {
        report.check(
            &path.field("kubeVersion"),
            check_kube_version(&k.kube_version),
        );
    }
    check_api_versions(report, &path.field("apiVersions"), &k.api_versions);
}

fn check_directory(report: &mut Report, path: &FieldPath, d: &DirectorySource) {
    if !d.include.is_empty() {
        report.check(&path.field("include"), check_glob(&d.include));
    }
    if !d.exclude.is_empty() {
        report.check(&path.field("exclude"), check_glob(&d.exclude));
    }
    let jsonnet = path.field("jsonnet");
    for (field, vars) in [("extVars", &d.jsonnet.ext_vars), ("tlas", &d.jsonnet.tlas)] {
        let p = jsonnet.field(field);
        for (i, v) in vars.iter().enumerate() {
            if v.name.is_empty() {
                report.error(&p.index(i).field("name"), "required; name the variable");
            }
        }
        check_unique(
            report,
            &p,
            vars.iter()
                .enumerate()
                .filter(|(_, v)| !v.name.is_empty())
                .map(|(i, v)| (i, v.name.as_str())),
            "variable",
        );
    }
    let libs = jsonnet.field("libs");
    for (i, lib) in d.jsonnet.libs.iter().enumerate() {
        if lib.is_empty() {
            report.error(
                &libs.index(i),
                "empty; remove it or give a library directory",
            );
        }
    }
}

fn check_plugin(report: &mut Report, path: &FieldPath, p: &PluginSource) {
    let env = path.field("env");
    for (i, e) in p.env.iter().enumerate() {
        report.check(&env.index(i).field("name"), check_env_name(&e.name));
    }
    check_unique(
        report,
        &env,
        p.env.iter().map(|e| e.name.as_str()).enumerate(),
        "variable",
    );
    let params = path.field("parameters");
    for (i, param) in p.parameters.iter().enumerate() {
        let pp = params.index(i);
        if param.name.is_empty() {
            report.error(&pp.field("name"), "required; name the parameter");
        }
        let kinds = usize::from(param.string.is_some())
            + usize::from(param.array.is_some())
            + usize::from(param.map.is_some());
        if kinds > 1 {
            report.error(&pp, "set one of string, array and map, not several");
        }
    }
    check_unique(
        report,
        &params,
        p.parameters
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.name.is_empty())
            .map(|(i, p)| (i, p.name.as_str())),
        "parameter",
    );
}

fn check_hydrator(report: &mut Report, path: &FieldPath, h: &SourceHydrator) {
    let dry = path.field("drySource");
    if h.dry_source.repo_url.is_empty() {
        report.error(
            &dry.field("repoURL"),
            "required; set the Git repository holding the unrendered manifests",
        );
    }
    if h.dry_source.target_revision.is_empty() {
        report.error(
            &dry.field("targetRevision"),
            "required; set the branch, tag or commit to render",
        );
    }
    report.check(&dry.field("path"), check_repo_path(&h.dry_source.path));
    let sync = path.field("syncSource");
    if h.sync_source.target_branch.is_empty() {
        report.error(
            &sync.field("targetBranch"),
            "required; set the branch rendered manifests are committed to",
        );
    }
    let sp = h.sync_source.path.trim_matches('/');
    if sp.is_empty() || sp == "." {
        report.error(
            &sync.field("path"),
            "required; set a directory (not the repository root) for the rendered manifests",
        );
    } else {
        report.check(&sync.field("path"), check_repo_path(sp));
    }
    if let Some(to) = &h.hydrate_to
        && to.target_branch.is_empty()
    {
        report.error(
            &path.field("hydrateTo").field("targetBranch"),
            "required; set the staging branch",
        );
    }
}

fn check_destination(report: &mut Report, path: &FieldPath, d: &ApplicationDestination) {
    match (d.server.is_empty(), d.name.is_empty()) {
        (false, false) => report.error(path, "set either server or name, not both"),
        (true, true) => report.error(
            path,
            "set server (the cluster's API server URL) or name (a registered cluster's name)",
        ),
        _ => {}
    }
    if !d.server.is_empty() {
        report.check(
            &path.field("server"),
            check_http_url(&d.server, &["https", "http"]).map_err(|e| {
                format!(
                    "{e}; use the cluster's API server URL, e.g. https://kubernetes.default.svc"
                )
            }),
        );
    }
    if !d.namespace.is_empty() {
        report.check(&path.field("namespace"), check_dns1123_label(&d.namespace));
    }
}

pub(crate) fn check_sync_options(report: &mut Report, path: &FieldPath, options: &SyncOptions) {
    let mut seen: Vec<(&'static str, &'static str, usize)> = Vec::new();
    for (i, text) in options.0.iter().enumerate() {
        match parse_sync_option(text) {
            Err(e) => report.error(&path.index(i), e),
            Ok(opt) => {
                if let Some((_, value, first)) = seen.iter().find(|(k, _, _)| *k == opt.key) {
                    let message = if *value == opt.value {
                        format!("{text} is already given at index {first}; remove the duplicate")
                    } else {
                        format!(
                            "{} is already set to {value} at index {first}; keep one value",
                            opt.key
                        )
                    };
                    report.error(&path.index(i), message);
                } else {
                    seen.push((opt.key, opt.value, i));
                }
            }
        }
    }
    let set = |k: &str| {
        seen.iter()
            .find(|(key, _, _)| *key == k)
            .map(|(_, v, _)| *v)
    };
    if set("Force") == Some("true") && set("Replace") != Some("true") {
        report.error(
            path,
            "Force=true only applies with Replace=true; add Replace=true or remove Force=true",
        );
    }
}

fn check_retry(report: &mut Report, path: &FieldPath, retry: &RetryStrategy) {
    let Some(b) = &retry.backoff else { return };
    let bp = path.field("backoff");
    let duration = if b.duration.is_empty() {
        None
    } else {
        match parse_backoff_duration(&b.duration) {
            Ok(d) => Some(d),
            Err(e) => {
                report.error(&bp.field("duration"), e.to_string());
                None
            }
        }
    };
    let max = if b.max_duration.is_empty() {
        None
    } else {
        match parse_backoff_duration(&b.max_duration) {
            Ok(d) => Some(d),
            Err(e) => {
                report.error(&bp.field("maxDuration"), e.to_string());
                None
            }
        }
    };
    if let (Some(d), Some(m)) = (duration, max)
        && d > m
    {
        report.error(
            &bp.field("maxDuration"),
            format!(
                "{:?} is shorter than duration {:?}; make maxDuration at least as long",
                b.max_duration, b.duration
            ),
        );
    }
    if let Some(f) = b.factor
        && f < 1
    {
        report.error(
            &bp.field("factor"),
            format!("{f} would not grow the delay; use 1 or more (default 2)"),
        );
    }
}

fn check_sync_policy(report: &mut Report, path: &FieldPath, policy: &SyncPolicy) {
    check_sync_options(report, &path.field("syncOptions"), &policy.sync_options);
    if let Some(retry) = &policy.retry {
        check_retry(report, &path.field("retry"), retry);
    }
    if let Some(m) = &policy.managed_namespace_metadata {
        let mp = path.field("managedNamespaceMetadata");
        check_labels(report, &mp.field("labels"), &m.labels);
        check_annotations(report, &mp.field("annotations"), &m.annotations);
    }
}

fn check_ignore_differences(
    report: &mut Report,
    path: &FieldPath,
    rule: &ResourceIgnoreDifferences,
) {
    if rule.kind.is_empty() {
        report.error(
            &path.field("kind"),
            "required; set the kind, e.g. Deployment",
        );
    }
    if rule.json_pointers.is_empty()
        && rule.jq_path_expressions.is_empty()
        && rule.managed_fields_managers.is_empty()
    {
        report.error(
            path,
            "set jsonPointers, jqPathExpressions or managedFieldsManagers to say what to ignore",
        );
    }
    let pointers = path.field("jsonPointers");
    for (i, p) in rule.json_pointers.iter().enumerate() {
        if !p.starts_with('/') {
            report.error(
                &pointers.index(i),
                format!("{p:?} is not a JSON pointer; start it with '/', e.g. /spec/replicas"),
            );
        }
    }
    let jq = path.field("jqPathExpressions");
    for (i, e) in rule.jq_path_expressions.iter().enumerate() {
        if e.trim().is_empty() {
            report.error(
                &jq.index(i),
                "empty; write a jq path such as .spec.replicas",
            );
        }
    }
    let managers = path.field("managedFieldsManagers");
    for (i, m) in rule.managed_fields_managers.iter().enumerate() {
        if m.is_empty() {
            report.error(
                &managers.index(i),
                "empty; name a field manager, e.g. kube-controller-manager",
            );
        }
    }
    if !rule.namespace.is_empty() {
        report.check(&path.field("namespace"), check_glob(&rule.namespace));
    }
}

fn check_operation(report: &mut Report, path: &FieldPath, op: &Operation) {
    let Some(sync) = &op.sync else {
        report.error(
            &path.field("sync"),
            "required; an operation is a sync, so set sync",
        );
        return;
    };
    let sp = path.field("sync");
    if let Some(strategy) = &sync.sync_strategy
        && strategy.apply.is_some()
        && strategy.hook.is_some()
    {
        report.error(
            &sp.field("syncStrategy"),
            "set either apply or hook, not both",
        );
    }
    check_sync_options(report, &sp.field("syncOptions"), &sync.sync_options);
    let resources = sp.field("resources");
    for (i, r) in sync.resources.iter().enumerate() {
        if r.kind.is_empty() {
            report.error(
                &resources.index(i).field("kind"),
                "required; set the kind (or * for any)",
            );
        }
        if r.name.is_empty() {
            report.error(
                &resources.index(i).field("name"),
                "required; set the name (or * for any)",
            );
        }
    }
    if !sync.revisions.is_empty() && !sync.revision.is_empty() {
        report.error(
            &sp.field("revision"),
            "set either revision or revisions, not both",
        );
    }
    if let Some(s) = &sync.source {
        check_source(report, &sp.field("source"), s, None);
    }
    if !sync.sources.is_empty() {
        check_sources(report, &sp.field("sources"), &sync.sources);
    }
    check_retry(report, &path.field("retry"), &op.retry);
    for (i, item) in op.info.iter().enumerate() {
        if item.name.is_empty() {
            report.error(
                &path.field("info").index(i).field("name"),
                "required; give the item a title",
            );
        }
    }
}
