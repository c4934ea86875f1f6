//! App of apps: Applications and AppProjects found among an Application's rendered manifests
//! (Capstan's `capstan.dev/v1alpha1` or Argo CD's `argoproj.io/v1alpha1`) are not applied to
//! a cluster; they are written into the store as the parent's **managed children**.
//!
//! A child carries the annotation [`MANAGED_BY`] (`<namespace>/<name>` of its parent). It is
//! compared like any resource (`Synced` when the stored spec equals the rendered one), created
//! or updated by the parent's syncs (so self-heal undoes an edit made elsewhere), and pruned
//! when Git no longer has it and pruning is on: a child Application is marked deleted (its own
//! resources finalizer decides whether its resources go too), a child AppProject is removed.

use capstan_model::{AppProject, Application, Object, ResourceStatus, SyncStatusCode};
use capstan_store::kinds::{AppProjects, Applications};
use capstan_store::typed::{ObjectRef, TypedStore};
use capstan_store::{Precondition, Store, StoreError};
use serde_json::Value;
use std::sync::Arc;

use crate::reconcile::now;

/// The API group children are reported under in the parent's resources.
pub const GROUP: &str = "argoproj.io";

/// The annotation naming a child's parent Application (`<namespace>/<name>`).
pub const MANAGED_BY: &str = "capstan.dev/managed-by-app";

/// Whether a rendered manifest is a store object (an Application or AppProject).
pub fn is_store_object(manifest: &Value) -> bool {
    let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
    let kind = manifest["kind"].as_str().unwrap_or_default();
    matches!(api_version, "argoproj.io/v1alpha1" | "capstan.dev/v1alpha1")
        && matches!(kind, "Application" | "AppProject")
}

/// A desired child, parsed and stamped.
#[derive(Clone, Debug)]
pub enum Child {
    /// An Application.
    App(ObjectRef, Box<Application>),
    /// An AppProject.
    Project(ObjectRef, Box<AppProject>),
}

impl Child {
    /// Where it is stored.
    pub fn at(&self) -> &ObjectRef {
        match self {
            Child::App(at, _) | Child::Project(at, _) => at,
        }
    }

    /// `Application` or `AppProject`.
    pub fn kind(&self) -> &'static str {
        match self {
            Child::App(..) => "Application",
            Child::Project(..) => "AppProject",
        }
    }

    /// The child as JSON, as written to the store.
    pub fn to_json(&self) -> Value {
        match self {
            Child::App(_, app) => json_of(app.as_ref()),
            Child::Project(_, project) => json_of(project.as_ref()),
        }
    }
}

/// Parses the store objects among `manifests` as children of `parent`: namespace defaulted
/// to the parent's, stamped with [`MANAGED_BY`]. A child that does not parse is an error
/// naming it (the whole comparison fails rather than pruning it by mistake).
pub fn parse(parent: &ObjectRef, manifests: &[Value]) -> Result<Vec<Child>, String> {
    let owner = parent.to_string();
    manifests
        .iter()
        .map(|m| {
            let name = m["metadata"]["name"].as_str().unwrap_or_default();
            let text = serde_json::to_string(m).map_err(|e| e.to_string())?;
            let object = capstan_model::parse_object_json(&text).map_err(|e| {
                format!(
                    "child {} {name}: {e}",
                    m["kind"].as_str().unwrap_or_default()
                )
            })?;
            let place = |meta: &mut capstan_model::ObjectMeta| {
                if meta.namespace.is_empty() {
                    meta.namespace.clone_from(&parent.namespace);
                }
                meta.annotations
                    .insert(MANAGED_BY.to_owned(), owner.clone());
                ObjectRef::new(meta.namespace.clone(), meta.name.clone())
            };
            match object {
                Object::Application(mut app) => {
                    let at = place(&mut app.metadata);
                    app.status = None;
                    Ok(Child::App(at, app))
                }
                Object::AppProject(mut project) => {
                    let at = place(&mut project.metadata);
                    Ok(Child::Project(at, project))
                }
                _ => Err(format!(
                    "child {name}: only Applications and AppProjects are managed in the store"
                )),
            }
        })
        .collect()
}

/// What [`Children::compare`] found: a status per child, and the stored children Git no
/// longer has (what a pruning sync removes).
#[derive(Clone, Debug, Default)]
pub struct ChildComparison {
    /// One per desired or extraneous child.
    pub statuses: Vec<ResourceStatus>,
    extraneous: Vec<(&'static str, ObjectRef)>,
    /// When asked for: the stored children this parent manages (desired or extraneous), as
    /// JSON, by kind and place — the live side of the API's diff. Children of other parents
    /// are left out, so a diff never shows another Application's object.
    pub stored: Vec<(&'static str, ObjectRef, Value)>,
}

impl ChildComparison {
    /// The stored JSON of child `kind` at `at`, when kept.
    pub fn stored(&self, kind: &str, at: &ObjectRef) -> Option<&Value> {
        self.stored
            .iter()
            .find(|(k, a, _)| *k == kind && a == at)
            .map(|(_, _, v)| v)
    }
}

/// Reads and writes a parent's children.
#[derive(Clone)]
pub struct Children {
    apps: TypedStore<Applications>,
    projects: TypedStore<AppProjects>,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children").finish_non_exhaustive()
    }
}

fn without_operation(app: &Application) -> Application {
    let mut app = app.clone();
    app.operation = None;
    app.status = None;
    app
}

/// A stored child as JSON (what the API shows as its live state).
fn json_of<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

fn managed_by(annotations: &indexmap::IndexMap<String, String>, parent: &str) -> bool {
    annotations.get(MANAGED_BY).is_some_and(|p| p == parent)
}

impl Children {
    /// Children in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            apps: TypedStore::new(store.clone()),
            projects: TypedStore::new(store),
        }
    }

    /// The sync status of each desired child and of each stored child Git no longer has;
    /// with `keep`, the stored children too ([`ChildComparison::stored`]).
    pub async fn compare(
        &self,
        parent: &ObjectRef,
        desired: &[Child],
        keep: bool,
    ) -> Result<ChildComparison, StoreError> {
        let owner = parent.to_string();
        let mut out = Vec::new();
        let mut stored = Vec::new();
        for child in desired {
            let in_sync = match child {
                Child::App(at, app) => {
                    let found = self.apps.get(at).await?.map(|o| o.spec.value);
                    if keep
                        && let Some(found) = found
                            .as_ref()
                            .filter(|f| managed_by(&f.metadata.annotations, &owner))
                    {
                        stored.push((
                            "Application",
                            at.clone(),
                            json_of(&without_operation(found)),
                        ));
                    }
                    found.is_some_and(|f| without_operation(&f) == without_operation(app))
                }
                Child::Project(at, project) => {
                    let found = self.projects.get(at).await?.map(|o| o.spec.value);
                    if keep
                        && let Some(found) = found
                            .as_ref()
                            .filter(|f| managed_by(&f.metadata.annotations, &owner))
                    {
                        stored.push(("AppProject", at.clone(), json_of(found)));
                    }
                    found.is_some_and(|f| &f == project.as_ref())
                }
            };
            let code = if in_sync {
                SyncStatusCode::Synced
            } else {
                SyncStatusCode::OutOfSync
            };
            out.push(status(child.kind(), child.at(), code, false));
        }
        let extraneous = self
            .extraneous(parent, desired, keep.then_some(&mut stored))
            .await?;
        for (kind, at) in &extraneous {
            out.push(status(kind, at, SyncStatusCode::OutOfSync, true));
        }
        Ok(ChildComparison {
            statuses: out,
            extraneous,
            stored,
        })
    }

    /// Creates or updates every desired child; with `prune`, removes the stored children
    /// [`compare`](Self::compare) found that Git no longer has. Returns what it did, one line
    /// per child.
    pub async fn apply(
        &self,
        desired: &[Child],
        compared: &ChildComparison,
        prune: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut done = Vec::new();
        // Projects first: a child Application reconciled before its project exists would
        // report a missing project.
        let (projects, apps): (Vec<&Child>, Vec<&Child>) = desired
            .iter()
            .partition(|c| matches!(c, Child::Project(..)));
        for child in projects.into_iter().chain(apps) {
            match child {
                Child::App(at, app) => match self.apps.get(at).await? {
                    None => {
                        self.apps.create(at, app).await?;
                        done.push(format!("Application {at} created"));
                    }
                    Some(existing)
                        if without_operation(&existing.spec.value) != without_operation(app) =>
                    {
                        // A pending operation on the child is its own business: keep it.
                        let mut next = app.as_ref().clone();
                        next.operation = existing.spec.value.operation.clone();
                        self.apps
                            .update_spec(
                                at,
                                &next,
                                Precondition::ModRevision(existing.spec.mod_revision),
                            )
                            .await?;
                        done.push(format!("Application {at} configured"));
                    }
                    Some(_) => {}
                },
                Child::Project(at, project) => match self.projects.get(at).await? {
                    None => {
                        self.projects.create(at, project).await?;
                        done.push(format!("AppProject {at} created"));
                    }
                    Some(existing) if &existing.spec.value != project.as_ref() => {
                        self.projects
                            .update_spec(
                                at,
                                project,
                                Precondition::ModRevision(existing.spec.mod_revision),
                            )
                            .await?;
                        done.push(format!("AppProject {at} configured"));
                    }
                    Some(_) => {}
                },
            }
        }
        if prune {
            for (kind, at) in compared.extraneous.iter().cloned() {
                if kind == "Application" {
                    if let Some(existing) = self.apps.get(&at).await? {
                        let mut app = existing.spec.value;
                        if app.metadata.deletion_timestamp.is_none() {
                            app.metadata.deletion_timestamp = Some(now());
                            self.apps
                                .update_spec(
                                    &at,
                                    &app,
                                    Precondition::ModRevision(existing.spec.mod_revision),
                                )
                                .await?;
                        }
                    }
                } else {
                    self.projects.delete(&at, Precondition::None).await?;
                }
                done.push(format!("{kind} {at} pruned"));
            }
        }
        Ok(done)
    }

    /// Stored children of `parent` that `desired` does not have (their JSON added to `keep`,
    /// when given).
    async fn extraneous(
        &self,
        parent: &ObjectRef,
        desired: &[Child],
        mut keep: Option<&mut Vec<(&'static str, ObjectRef, Value)>>,
    ) -> Result<Vec<(&'static str, ObjectRef)>, StoreError> {
        let owner = parent.to_string();
        let wanted =
            |kind: &str, at: &ObjectRef| desired.iter().any(|c| c.kind() == kind && c.at() == at);
        let mut out = Vec::new();
        for object in self.apps.list(None).await?.items {
            if managed_by(&object.spec.value.metadata.annotations, &owner)
                && object.spec.value.metadata.deletion_timestamp.is_none()
                && !wanted("Application", &object.object)
            {
                if let Some(keep) = keep.as_deref_mut() {
                    let value = json_of(&without_operation(&object.spec.value));
                    keep.push(("Application", object.object.clone(), value));
                }
                out.push(("Application", object.object));
            }
        }
        for object in self.projects.list(None).await?.items {
            if managed_by(&object.spec.value.metadata.annotations, &owner)
                && !wanted("AppProject", &object.object)
            {
                if let Some(keep) = keep.as_deref_mut() {
                    keep.push((
                        "AppProject",
                        object.object.clone(),
                        json_of(&object.spec.value),
                    ));
                }
                out.push(("AppProject", object.object));
            }
        }
        Ok(out)
    }
}

fn status(
    kind: &str,
    at: &ObjectRef,
    code: SyncStatusCode,
    requires_pruning: bool,
) -> ResourceStatus {
    ResourceStatus {
        group: GROUP.into(),
        version: "v1alpha1".into(),
        kind: kind.into(),
        namespace: at.namespace.clone(),
        name: at.name.clone(),
        status: Some(code),
        requires_pruning,
        ..ResourceStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, parent: Option<&str>, path: &str) -> Application {
        let mut app = capstan_model::parse_application_yaml(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}}}\nspec:\n  source: {{repoURL: 'https://git.example.com/r.git', path: {path}}}\n  destination: {{server: 'https://kubernetes.default.svc', namespace: x}}\n"
        ))
        .expect("a valid Application");
        app.metadata.namespace = "capstan".into();
        if let Some(parent) = parent {
            app.metadata
                .annotations
                .insert(MANAGED_BY.to_owned(), parent.to_owned());
        }
        app
    }

    #[tokio::test]
    async fn kept_children_are_only_those_the_parent_manages() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(
            capstan_store::EmbeddedStore::open(
                dir.path().join("s.redb"),
                capstan_store::EmbeddedOptions::default(),
            )
            .await?,
        );
        let apps = TypedStore::<Applications>::new(store.clone());
        let parent = ObjectRef::new("capstan", "root");
        let at = |name: &str| ObjectRef::new("capstan", name);
        // Stored: a child of root that Git changes, one Git no longer has, and another
        // parent's Application that root's Git names too.
        apps.create(&at("changed"), &app("changed", Some("capstan/root"), "old"))
            .await?;
        apps.create(&at("gone"), &app("gone", Some("capstan/root"), "a"))
            .await?;
        apps.create(&at("theirs"), &app("theirs", Some("capstan/other"), "a"))
            .await?;
        let rendered: Vec<Value> = ["changed", "theirs"]
            .iter()
            .map(|name| serde_json::to_value(app(name, None, "new")).expect("JSON"))
            .collect();
        let desired = parse(&parent, &rendered).map_err(anyhow::Error::msg)?;
        let children = Children::new(store);

        let compared = children.compare(&parent, &desired, true).await?;
        let statuses: Vec<(&str, Option<SyncStatusCode>, bool)> = compared
            .statuses
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.requires_pruning))
            .collect();
        assert_eq!(
            statuses,
            [
                ("changed", Some(SyncStatusCode::OutOfSync), false),
                ("theirs", Some(SyncStatusCode::OutOfSync), false),
                ("gone", Some(SyncStatusCode::OutOfSync), true),
            ]
        );
        let stored = compared
            .stored("Application", &at("changed"))
            .expect("root's child is kept");
        assert_eq!(stored["spec"]["source"]["path"], "old");
        assert!(compared.stored("Application", &at("gone")).is_some());
        assert!(
            compared.stored("Application", &at("theirs")).is_none(),
            "another parent's Application is not shown"
        );
        assert!(
            children
                .compare(&parent, &desired, false)
                .await?
                .stored
                .is_empty(),
            "kept only when asked"
        );
        Ok(())
    }
}
