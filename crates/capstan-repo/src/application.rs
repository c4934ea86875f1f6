//! Rendering a whole Application: every source through a [`ManifestSource`], with the
//! credentials of registered repositories, `ref` sources lending their files to the others'
//! Helm value files, and the revisions each source resolved to. What the controller compares
//! and syncs, and what the API's manifests method shows, come from this one function.

use capstan_model::{Application, RepositorySpec, SourceType};
use serde_json::Value;

use crate::client::ManifestSource;
use crate::registered;
use crate::render::env::AppContext;
use crate::service::{ManifestRequest, RefSourceSpec};

/// An Application's manifests, from all its sources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// Every source's manifests, in source order.
    pub manifests: Vec<Value>,
    /// Every source's revision, comma-joined: the identity automated sync compares.
    pub revision: String,
    /// Each source's revision, in order (`ref`-only sources included).
    pub revisions: Vec<String>,
    /// Each rendered source's type.
    pub source_types: Vec<SourceType>,
}

/// Renders `app`'s sources (as they stand in `app`: override them first to render another
/// revision) with the credentials of `registered` repositories; `no_cache` lists refs and
/// renders again. Errors name the source.
pub async fn render(
    source: &dyn ManifestSource,
    app: &Application,
    registered: &[&RepositorySpec],
    no_cache: bool,
) -> Result<Rendered, String> {
    let sources = app.spec.effective_sources();
    if sources.is_empty() {
        return Err("the application has no source".to_owned());
    }
    let find = |url: &str| registered::find(registered.iter().copied(), url);
    let credentials_for = |url: &str| {
        find(url)
            .map(registered::git_credentials)
            .unwrap_or_default()
    };
    // Sources with a `ref` lend their files to the others' Helm value files
    // (`$name/values.yaml`).
    let ref_sources: Vec<RefSourceSpec> = sources
        .iter()
        .filter(|s| !s.reference.is_empty())
        .map(|s| RefSourceSpec {
            name: s.reference.clone(),
            repo_url: s.repo_url.clone(),
            target_revision: s.target_revision.clone(),
            credentials: credentials_for(&s.repo_url),
        })
        .collect();
    let mut rendered = Rendered::default();
    for app_source in sources {
        // A `ref` source with nothing to render is only there for its files (Argo CD's
        // rule); its revision is still reported.
        if !app_source.reference.is_empty()
            && app_source.path.is_empty()
            && app_source.chart.is_empty()
        {
            let commit = source
                .resolve_commit(
                    &app_source.repo_url,
                    &credentials_for(&app_source.repo_url),
                    &app_source.target_revision,
                    no_cache,
                )
                .await
                .map_err(|e| format!("resolving {}: {}", app_source.repo_url, e.message))?;
            rendered.revisions.push(commit);
            continue;
        }
        let found = find(&app_source.repo_url);
        let request = ManifestRequest {
            source: app_source.clone(),
            app: AppContext {
                name: app.metadata.name.clone(),
                namespace: app.spec.destination.namespace.clone(),
                project: app.spec.project_or_default().to_owned(),
                ..AppContext::default()
            },
            credentials: found.map(registered::git_credentials).unwrap_or_default(),
            helm_credentials: found.map(registered::helm_credentials).unwrap_or_default(),
            ref_sources: ref_sources.clone(),
            no_cache,
        };
        let generated = source
            .generate(request)
            .await
            .map_err(|e| format!("rendering {}: {}", app_source.repo_url, e.message))?;
        rendered
            .manifests
            .extend(generated.manifests.manifests.iter().cloned());
        rendered
            .revisions
            .push(generated.manifests.revision.clone());
        rendered.source_types.push(generated.manifests.source_type);
    }
    rendered.revision = rendered.revisions.join(",");
    Ok(rendered)
}
