//! What the clusters and repositories services share: both keep registrations — a
//! [`Cluster`](capstan_model::Cluster), a [`Repository`](capstan_model::Repository) — in the
//! control plane's namespace, identified by what they point at (a server, a URL) and scoped
//! to a project or not, and go through the same steps to read, create, update and delete
//! them. Those steps live here once; what tells the two apart (how one is found, how it is
//! answered, which credentials an update keeps) stays in [`super::clusters`] and
//! [`super::repositories`], behind [`Registration`].
//!
//! RBAC: resource [`Registration::RESOURCE`], object the target, or `PROJECT/TARGET` for a
//! registration scoped to a project ([`rbac_object`]). On update, a credential left empty
//! keeps the stored one where [`Registration::keep_credentials`] says so.

use capstan_model::{Object, ObjectMeta, Sensitive, Validate};
use capstan_store::typed::{ObjectRef, Resource, TypedStore};
use capstan_store::{Precondition, Revision, StoreError};
use serde_json::Value;
use sha2::Digest as _;

use super::projects::with_kind;
use super::{Api, Caller};
use crate::error::{ApiError, ApiResult, Code};

/// Attempts at a read-modify-write that keeps meeting concurrent changes.
const ATTEMPTS: usize = 5;

/// A kind of registration (Cluster, Repository).
pub(crate) trait Registration: Clone + PartialEq + Validate + Send + Sync + 'static {
    /// Where registrations of this kind are stored.
    type Kind: Resource<Spec = Self>;
    /// The spec, credentials included.
    type Spec: Clone + PartialEq;
    /// The `kind` of its JSON (`Cluster`, `Repository`).
    const KIND: &'static str;
    /// The RBAC resource, also named in messages about the namespace (`clusters`).
    const RESOURCE: &'static str;
    /// What messages call one (`cluster`).
    const NOUN: &'static str;
    /// What messages call its target (`server`).
    const TARGET: &'static str;

    /// The registration, when `object` is one of this kind; else `object` back.
    fn from_object(object: Object) -> Result<Self, Object>;
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
    fn spec(&self) -> &Self::Spec;
    fn spec_mut(&mut self) -> &mut Self::Spec;
    /// A copy with every credential removed, safe to answer.
    fn without_credentials(&self) -> Self;
    /// Drops the status (the controller's, or the API's answer).
    fn clear_status(&mut self);
    /// What it points at (the server, the URL), as given.
    fn target(&self) -> &str;
    /// The project it is scoped to; empty: none.
    fn project(&self) -> &str;
    /// The store name of one registered without `metadata.name`.
    fn store_name(&self) -> String;
    /// `new` with the stored credentials of `old` where `new` leaves them empty (see the
    /// module docs of each kind for when they are kept).
    fn keep_credentials(new: &mut Self::Spec, old: &Self::Spec);

    /// The RBAC object.
    fn rbac_object(&self) -> String {
        rbac_object(self.target(), self.project())
    }
}

/// The methods of [`Registration`] that read and write the fields every registration type
/// has alike (`metadata`, `spec` with `project`, `status`, and its `redacted` copy), for an
/// `impl Registration` block; `$spec` is the type of its `spec`.
macro_rules! registration_fields {
    ($spec:ty) => {
        fn metadata(&self) -> &capstan_model::ObjectMeta {
            &self.metadata
        }

        fn metadata_mut(&mut self) -> &mut capstan_model::ObjectMeta {
            &mut self.metadata
        }

        fn spec(&self) -> &$spec {
            &self.spec
        }

        fn spec_mut(&mut self) -> &mut $spec {
            &mut self.spec
        }

        fn without_credentials(&self) -> Self {
            self.redacted()
        }

        fn clear_status(&mut self) {
            self.status = None;
        }

        fn project(&self) -> &str {
            &self.spec.project
        }
    };
}
pub(crate) use registration_fields;

/// The RBAC object of a registration for `target`: the target, or `PROJECT/TARGET` when
/// scoped to a project.
pub fn rbac_object(target: &str, project: &str) -> String {
    if project.is_empty() {
        target.to_owned()
    } else {
        format!("{project}/{target}")
    }
}

/// A registration from JSON; `apiVersion` and `kind` may be left out.
pub(crate) fn from_json<T: Registration>(value: Value) -> ApiResult<T> {
    let value = with_kind(value, capstan_model::CAPSTAN_API_VERSION, T::KIND)?;
    match capstan_model::parse_object_json(&value.to_string()) {
        Ok(object) => T::from_object(object).map_err(|other| {
            ApiError::invalid(format!("the body is a {}, not a {}", other.kind(), T::KIND))
        }),
        Err(e) => Err(ApiError::invalid(format!(
            "the {} does not parse: {e}",
            T::KIND
        ))),
    }
}

/// The first `bytes` bytes of the SHA-256 of `text`, in hex (what derived store names end
/// with).
pub(crate) fn digest_hex(text: &str, bytes: usize) -> String {
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..bytes].iter().map(|b| format!("{b:02x}")).collect()
}

/// Puts each stored credential back where an update left it empty: `(new, stored, keep)`,
/// when `keep` holds (the update did not change what the credential belongs to).
pub(crate) fn keep_stored<'a>(
    credentials: impl IntoIterator<Item = (&'a mut Sensitive, &'a Sensitive, bool)>,
) {
    for (new, stored, keep) in credentials {
        if new.is_empty() && keep {
            *new = stored.clone();
        }
    }
}

/// A body naming a registration by `metadata.name` (`name`, when not empty) must name the one
/// `what` found at `at`.
pub(crate) fn check_stored_name(what: &str, name: &str, at: &ObjectRef) -> ApiResult<()> {
    if name.is_empty() || name == at.name {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "{what} is stored as {:?}, not {name:?}",
        at.name
    )))
}

/// A registration as read.
pub(crate) struct Found<T: Registration> {
    /// Where it is stored.
    pub at: ObjectRef,
    /// The registration, credentials included.
    pub object: T,
    /// Its spec's store revision.
    pub revision: Revision,
    /// The controller's status, if written.
    pub status: Option<<T::Kind as Resource>::Status>,
}

/// What registering meets (see [`registering`]).
pub(crate) enum Registering<T: Registration> {
    /// Nothing registered for the target yet: store this.
    New(T),
    /// The same registered already: answer that.
    Same(Found<T>),
    /// A different one registered, and upsert: update it with this (its name cleared).
    Update(T),
}

/// What registering `new` does when `existing` is registered for its target already: the same
/// (credentials left empty count as the stored ones) is answered; a different one is an error
/// unless `upsert` (an update, which needs `update` too).
pub(crate) fn registering<T: Registration>(
    mut new: T,
    existing: Option<Found<T>>,
    upsert: bool,
) -> ApiResult<Registering<T>> {
    let Some(found) = existing else {
        return Ok(Registering::New(new));
    };
    let mut merged = new.spec().clone();
    T::keep_credentials(&mut merged, found.object.spec());
    let (meta, stored) = (new.metadata(), found.object.metadata());
    let same = merged == *found.object.spec()
        && meta.labels == stored.labels
        && meta.annotations == stored.annotations;
    if same {
        return Ok(Registering::Same(found));
    }
    if !upsert {
        return Err(ApiError::new(
            Code::AlreadyExists,
            format!(
                "{} {:?} is registered with a different spec; update it, or create with upsert",
                T::NOUN,
                new.target()
            ),
        ));
    }
    new.metadata_mut().name.clear();
    Ok(Registering::Update(new))
}

impl Api {
    fn registrations<T: Registration>(&self) -> TypedStore<T::Kind> {
        TypedStore::new(self.store().clone())
    }

    /// Every registration of a kind, from the store (lists are small; reads see every write).
    pub(crate) async fn registered<T: Registration>(&self) -> ApiResult<Vec<Found<T>>> {
        let listed = self
            .registrations::<T>()
            .list(Some(self.config().namespace.as_str()))
            .await?;
        Ok(listed
            .items
            .into_iter()
            .map(|o| Found {
                at: o.object,
                object: o.spec.value,
                revision: o.spec.mod_revision,
                status: o.status.map(|s| s.value),
            })
            .collect())
    }

    /// The registrations the caller may `get`.
    pub(crate) async fn visible<T: Registration>(
        &self,
        caller: &Caller,
    ) -> ApiResult<Vec<Found<T>>> {
        let mut registered = self.registered::<T>().await?;
        registered.retain(|f| self.can(caller, T::RESOURCE, "get", &f.object.rbac_object()));
        Ok(registered)
    }

    /// A registration as answered: no credentials, its namespace and revision.
    pub(crate) fn answered<T: Registration>(&self, registration: &T, revision: Revision) -> T {
        let mut answer = registration.without_credentials();
        let meta = answer.metadata_mut();
        meta.namespace = self.config().namespace.clone();
        meta.resource_version = revision.to_string();
        answer
    }

    /// Allowed to `action` `registration`, or a PermissionDenied.
    pub(crate) fn enforce_on<T: Registration>(
        &self,
        caller: &Caller,
        action: &str,
        registration: &T,
    ) -> ApiResult<()> {
        self.enforce(caller, T::RESOURCE, action, &registration.rbac_object())
    }

    /// A missing registration (`what`) is "not found" only to a caller who could `action`
    /// `object`; to others it is "permission denied", as for one that exists.
    pub(crate) fn missing<T: Registration>(
        &self,
        caller: &Caller,
        action: &str,
        object: &str,
        what: String,
    ) -> ApiError {
        if self.can(caller, T::RESOURCE, action, object) {
            ApiError::not_found(what)
        } else {
            ApiError::denied(T::RESOURCE, action, object)
        }
    }

    /// The first steps of a create: the target is given, the caller may `create` it, the body
    /// is for the control plane's namespace; what the store and the controller set is
    /// cleared.
    pub(crate) fn admit<T: Registration>(&self, caller: &Caller, new: &mut T) -> ApiResult<()> {
        if new.target().trim().is_empty() {
            return Err(ApiError::invalid(format!(
                "the {}'s {} is missing",
                T::NOUN,
                T::TARGET
            )));
        }
        self.enforce_on(caller, "create", new)?;
        self.check_control_plane_namespace(T::RESOURCE, &new.metadata().namespace)?;
        new.clear_status();
        let meta = new.metadata_mut();
        meta.resource_version.clear();
        meta.deletion_timestamp = None;
        Ok(())
    }

    /// Stores `new` (after [`Api::admit`] and [`registering`]), named by its
    /// `metadata.name` or else [`Registration::store_name`]; where, and the revision.
    pub(crate) async fn store_new<T: Registration>(
        &self,
        new: &mut T,
    ) -> ApiResult<(ObjectRef, Revision)> {
        if new.metadata().name.is_empty() {
            new.metadata_mut().name = new.store_name();
        }
        new.metadata_mut().namespace = self.config().namespace.clone();
        validate(new)?;
        let at = ObjectRef::new(
            self.config().namespace.as_str(),
            new.metadata().name.as_str(),
        );
        match self.registrations::<T>().create(&at, new).await {
            Ok(revision) => Ok((at, revision)),
            Err(StoreError::Conflict { .. }) => Err(ApiError::new(
                Code::AlreadyExists,
                format!(
                    "a {} named {:?} is registered already; choose another metadata.name or leave it empty",
                    T::NOUN,
                    at.name
                ),
            )),
            Err(other) => Err(other.into()),
        }
    }

    /// Replaces the spec, labels and annotations of the registration `find` finds (`what`,
    /// in messages) by those of `new`; credentials left empty keep the stored ones, the
    /// status stays the controller's. The caller may `update` both. `check` refuses what an
    /// update may not change. With `metadata.resourceVersion` set, only if it was not changed
    /// since. What was found, the update, and its revision.
    pub(crate) async fn update_registered<T, F, Fut>(
        &self,
        caller: &Caller,
        new: &T,
        what: &str,
        mut find: F,
        check: impl Fn(&Found<T>) -> ApiResult<()>,
    ) -> ApiResult<(Found<T>, T, Revision)>
    where
        T: Registration,
        F: FnMut() -> Fut,
        Fut: Future<Output = ApiResult<Found<T>>>,
    {
        self.enforce_on(caller, "update", new)?;
        self.check_control_plane_namespace(T::RESOURCE, &new.metadata().namespace)?;
        let expected = match new.metadata().resource_version.as_str() {
            "" => None,
            v => Some(v.parse::<Revision>().map_err(|_| {
                ApiError::invalid(format!("metadata.resourceVersion {v:?} is not a revision"))
            })?),
        };
        for _ in 0..ATTEMPTS {
            let found = find().await?;
            let old = &found.object;
            self.enforce_on(caller, "update", old)?;
            check(&found)?;
            if let Some(expected) = expected
                && expected != found.revision
            {
                return Err(ApiError::new(
                    Code::Aborted,
                    format!(
                        "{what} was changed since resourceVersion {expected}; read it again and retry"
                    ),
                ));
            }
            let mut updated = old.clone();
            *updated.spec_mut() = new.spec().clone();
            T::keep_credentials(updated.spec_mut(), old.spec());
            let meta = updated.metadata_mut();
            meta.labels = new.metadata().labels.clone();
            meta.annotations = new.metadata().annotations.clone();
            meta.namespace = found.at.namespace.clone();
            meta.resource_version.clear();
            updated.clear_status();
            validate(&updated)?;
            match self
                .registrations::<T>()
                .update_spec(
                    &found.at,
                    &updated,
                    Precondition::ModRevision(found.revision),
                )
                .await
            {
                Ok(revision) => return Ok((found, updated, revision)),
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::new(
            Code::Aborted,
            format!("{what} kept changing; try again"),
        ))
    }

    /// Unregisters `found` (spec and status), which the caller may `delete`; `what` names it
    /// when it went meanwhile.
    pub(crate) async fn delete_registered<T: Registration>(
        &self,
        caller: &Caller,
        found: &Found<T>,
        what: &str,
    ) -> ApiResult<()> {
        self.enforce_on(caller, "delete", &found.object)?;
        match self
            .registrations::<T>()
            .delete(&found.at, Precondition::None)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(what)),
        }
    }
}

/// Valid, or an InvalidArgument saying why.
fn validate<T: Registration>(registration: &T) -> ApiResult<()> {
    registration
        .validate()
        .map_err(|e| ApiError::invalid(format!("the {} is invalid: {e}", T::NOUN)))
}
