//! Which Application a live object belongs to: the tracking methods, the tracking-id format
//! and the app instance name.
//!
//! Capstan marks what it applies the way Argo CD does, so clusters managed by Argo CD can be
//! taken over unchanged. An install picks one [`TrackingMethod`] (Argo CD's
//! `application.resourceTrackingMethod`):
//!
//! | method | reads | Argo CD name |
//! |---|---|---|
//! | [`TrackingMethod::Annotation`] | `capstan.dev/tracking-id` | — |
//! | [`TrackingMethod::AnnotationAndLabel`] | `capstan.dev/tracking-id` (the label is informational) | — |
//! | [`TrackingMethod::ArgoAnnotation`] | `argocd.argoproj.io/tracking-id` | `annotation` |
//! | [`TrackingMethod::ArgoAnnotationAndLabel`] | `argocd.argoproj.io/tracking-id` | `annotation+label` |
//! | [`TrackingMethod::Label`] | the instance label, `app.kubernetes.io/instance` by default | `label` |
//!
//! A tracking id is `<app>:<group>/<Kind>:<namespace>/<name>` ([`TrackingId`]). It names the
//! object it was written on, so an annotation copied onto another object (a `kubectl get -o
//! yaml | kubectl apply` of a neighbour, a Helm chart that templates annotations) does not
//! make that object part of the app: [`TrackingId::refers_to`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::resources::ResourceKey;

/// Capstan's own tracking annotation.
pub const CAPSTAN_TRACKING_ANNOTATION: &str = "capstan.dev/tracking-id";
/// Argo CD's tracking annotation.
pub const ARGOCD_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// The label Argo CD (and Capstan's label method) writes by default.
pub const DEFAULT_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Capstan's installation-id annotation (several Capstans managing one cluster).
pub const CAPSTAN_INSTALLATION_ID_ANNOTATION: &str = "capstan.dev/installation-id";
/// Argo CD's installation-id annotation.
pub const ARGOCD_INSTALLATION_ID_ANNOTATION: &str = "argocd.argoproj.io/installation-id";

/// How live objects are tied to their Application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackingMethod {
    /// Capstan's annotation `capstan.dev/tracking-id` (the default).
    #[default]
    Annotation,
    /// Argo CD's annotation `argocd.argoproj.io/tracking-id` (Argo CD's `annotation`).
    ArgoAnnotation,
    /// The instance label alone (Argo CD's `label`); it cannot tell a copied label from a
    /// real one.
    Label,
    /// Capstan's annotation for tracking, plus the instance label for humans and selectors.
    #[serde(rename = "annotation+label")]
    AnnotationAndLabel,
    /// Argo CD's annotation plus the instance label (Argo CD's `annotation+label`).
    #[serde(rename = "argo-annotation+label")]
    ArgoAnnotationAndLabel,
}

impl TrackingMethod {
    /// Every method, in documentation order.
    pub const ALL: [TrackingMethod; 5] = [
        TrackingMethod::Annotation,
        TrackingMethod::ArgoAnnotation,
        TrackingMethod::Label,
        TrackingMethod::AnnotationAndLabel,
        TrackingMethod::ArgoAnnotationAndLabel,
    ];

    /// The annotation that holds the tracking id, or `None` for the label method.
    pub fn annotation(self) -> Option<&'static str> {
        match self {
            Self::Annotation | Self::AnnotationAndLabel => Some(CAPSTAN_TRACKING_ANNOTATION),
            Self::ArgoAnnotation | Self::ArgoAnnotationAndLabel => Some(ARGOCD_TRACKING_ANNOTATION),
            Self::Label => None,
        }
    }

    /// The annotation that names the installation, for the annotation methods.
    pub fn installation_id_annotation(self) -> Option<&'static str> {
        match self {
            Self::Annotation | Self::AnnotationAndLabel => Some(CAPSTAN_INSTALLATION_ID_ANNOTATION),
            Self::ArgoAnnotation | Self::ArgoAnnotationAndLabel => {
                Some(ARGOCD_INSTALLATION_ID_ANNOTATION)
            }
            Self::Label => None,
        }
    }

    /// Whether a sync writes the instance label as well.
    pub fn writes_label(self) -> bool {
        matches!(
            self,
            Self::Label | Self::AnnotationAndLabel | Self::ArgoAnnotationAndLabel
        )
    }

    /// The name used in settings: `annotation`, `argo-annotation`, `label`,
    /// `annotation+label`, `argo-annotation+label`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Annotation => "annotation",
            Self::ArgoAnnotation => "argo-annotation",
            Self::Label => "label",
            Self::AnnotationAndLabel => "annotation+label",
            Self::ArgoAnnotationAndLabel => "argo-annotation+label",
        }
    }

    /// The method Argo CD's `application.resourceTrackingMethod` value stands for: Argo CD's
    /// annotation methods read Argo CD's annotation.
    pub fn from_argocd(value: &str) -> Result<Self, UnknownTrackingMethod> {
        match value.trim() {
            "" | "label" => Ok(Self::Label),
            "annotation" => Ok(Self::ArgoAnnotation),
            "annotation+label" => Ok(Self::ArgoAnnotationAndLabel),
            other => Err(UnknownTrackingMethod(other.to_owned())),
        }
    }
}

impl fmt::Display for TrackingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tracking method name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown resource tracking method {0:?}: use annotation, argo-annotation, label, annotation+label or argo-annotation+label"
)]
pub struct UnknownTrackingMethod(pub String);

impl FromStr for TrackingMethod {
    type Err = UnknownTrackingMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| UnknownTrackingMethod(s.to_owned()))
    }
}

/// What is wrong with a tracking id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingIdError {
    /// Fewer than three `:`-separated parts.
    #[error("tracking id {0:?} is not of the form <app>:<group>/<Kind>:<namespace>/<name>")]
    Malformed(String),
    /// A part that must not be empty is.
    #[error("tracking id {id:?} has an empty {part}")]
    Empty {
        /// The id as written.
        id: String,
        /// Which part (`app`, `kind`, `name`).
        part: &'static str,
    },
}

/// A parsed tracking id: `<app>:<group>/<Kind>:<namespace>/<name>`.
///
/// The group is empty for the core group (`guestbook:/Service:web/frontend`). Argo CD
/// writes the Application's destination namespace for cluster-scoped objects; both
/// `app:/Namespace:/shop` and `app:/Namespace:shop` are read as "no namespace".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackingId {
    /// The app instance name (see [`instance_name`]).
    pub app: String,
    /// API group, empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace as written (may be set for cluster-scoped objects).
    pub namespace: String,
    /// Object name (may contain `:`, as RBAC names do).
    pub name: String,
}

impl TrackingId {
    /// The id of the object `key` in `app`.
    pub fn new(app: &str, key: &ResourceKey) -> Self {
        Self {
            app: app.to_owned(),
            group: key.group.clone(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }

    /// Reads an id.
    pub fn parse(id: &str) -> Result<Self, TrackingIdError> {
        // App names, groups, kinds and namespaces cannot contain `:`; object names can
        // (`system:controller:...`), so everything after the second `:` is `ns/name`.
        let mut parts = id.splitn(3, ':');
        let (Some(app), Some(group_kind), Some(ns_name)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TrackingIdError::Malformed(id.to_owned()));
        };
        let (group, kind) = group_kind.rsplit_once('/').unwrap_or(("", group_kind));
        let (namespace, name) = ns_name.split_once('/').unwrap_or(("", ns_name));
        let empty = |part| TrackingIdError::Empty {
            id: id.to_owned(),
            part,
        };
        if app.is_empty() {
            return Err(empty("app"));
        }
        if kind.is_empty() {
            return Err(empty("kind"));
        }
        if name.is_empty() {
            return Err(empty("name"));
        }
        Ok(Self {
            app: app.to_owned(),
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Whether the id names the object `key` (group, kind, name, and the namespace for
    /// namespaced objects). A cluster-scoped object's key has no namespace, and any
    /// namespace in the id is accepted for it.
    pub fn refers_to(&self, key: &ResourceKey) -> bool {
        self.group == key.group
            && self.kind == key.kind
            && self.name == key.name
            && (key.namespace.is_empty() || self.namespace == key.namespace)
    }
}

impl fmt::Display for TrackingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}:{}/{}",
            self.app, self.group, self.kind, self.namespace, self.name
        )
    }
}

impl FromStr for TrackingId {
    type Err = TrackingIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The name an Application is tracked by: its name when it lives in the control plane's
/// namespace (or has none), `<namespace>_<name>` otherwise, as Argo CD does for "apps in
/// any namespace". `_` cannot occur in Kubernetes names, so the form is unambiguous and
/// valid as a label value.
pub fn instance_name(app_namespace: &str, app_name: &str, control_plane_namespace: &str) -> String {
    if app_namespace.is_empty() || app_namespace == control_plane_namespace {
        app_name.to_owned()
    } else {
        format!("{app_namespace}_{app_name}")
    }
}

/// Splits an instance name into (namespace, name); the namespace is
/// `control_plane_namespace` when the name has no `_`.
pub fn parse_instance_name<'a>(
    instance: &'a str,
    control_plane_namespace: &'a str,
) -> (&'a str, &'a str) {
    instance
        .split_once('_')
        .unwrap_or((control_plane_namespace, instance))
}

/// The tracking rules of one install: the method, the label key, and the installation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// The method.
    pub method: TrackingMethod,
    /// The instance label key (Argo CD's `application.instanceLabelKey`).
    pub label_key: String,
    /// This installation's id, when several installs manage one cluster: objects whose
    /// installation-id annotation differs (or is missing) are not tracked. `None` tracks
    /// objects without the annotation only.
    pub installation_id: Option<String>,
}

impl Default for Tracking {
    fn default() -> Self {
        Self::new(TrackingMethod::default())
    }
}

impl Tracking {
    /// The rules for `method` with the default label and no installation id.
    pub fn new(method: TrackingMethod) -> Self {
        Self {
            method,
            label_key: DEFAULT_INSTANCE_LABEL.to_owned(),
            installation_id: None,
        }
    }

    /// Marks a manifest as belonging to `app` the way this install tracks objects (the
    /// tracking annotation with the manifest's own key, the instance label, and the
    /// installation id when set). Call it once the manifest's namespace is final.
    pub fn stamp(&self, manifest: &mut serde_json::Value, app: &str) {
        let key = ResourceKey::of(manifest);
        let Some(meta) = manifest
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        else {
            return;
        };
        let mut put = |field: &str, k: &str, v: String| {
            let map = meta
                .entry(field)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if !map.is_object() {
                *map = serde_json::Value::Object(serde_json::Map::new());
            }
            if let Some(map) = map.as_object_mut() {
                map.insert(k.to_owned(), serde_json::Value::String(v));
            }
        };
        if let Some(annotation) = self.method.annotation() {
            put(
                "annotations",
                annotation,
                TrackingId::new(app, &key).to_string(),
            );
            if let (Some(id_key), Some(id)) = (
                self.method.installation_id_annotation(),
                self.installation_id.as_ref(),
            ) {
                put("annotations", id_key, id.clone());
            }
        }
        if self.method.writes_label() {
            put("labels", &self.label_key, app.to_owned());
        }
    }

    /// The app an object is tracked by, from its key, labels and annotations, or `None`.
    ///
    /// `label` and `annotation` look a key up in the object's labels and annotations.
    /// Objects with owner references are never tracked themselves (they belong to an app
    /// through their owner); the caller checks that, because a Pod copies its Deployment's
    /// template labels, instance label included.
    pub fn app_of<'a>(
        &self,
        key: &ResourceKey,
        label: impl Fn(&str) -> Option<&'a str>,
        annotation: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<String> {
        match self.method.annotation() {
            None => label(&self.label_key)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            Some(tracking_annotation) => {
                let installation = self
                    .method
                    .installation_id_annotation()
                    .and_then(&annotation);
                if installation != self.installation_id.as_deref() {
                    return None;
                }
                let id = TrackingId::parse(annotation(tracking_annotation)?).ok()?;
                id.refers_to(key).then_some(id.app)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(group: &str, kind: &str, namespace: &str, name: &str) -> ResourceKey {
        ResourceKey {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn stamped_manifests_are_tracked_by_their_app() {
        let mut m = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "front"}}});
        for method in TrackingMethod::ALL {
            let tracking = Tracking::new(method);
            tracking.stamp(&mut m, "guestbook");
            let k = ResourceKey::of(&m);
            let app = tracking.app_of(
                &k,
                |l| m["metadata"]["labels"][l].as_str(),
                |a| m["metadata"]["annotations"][a].as_str(),
            );
            assert_eq!(app.as_deref(), Some("guestbook"), "{method:?}");
        }
        assert_eq!(
            m["metadata"]["labels"]["tier"], "front",
            "other labels are kept"
        );
    }

    #[test]
    fn tracking_ids_parse_in_argo_cd_format() {
        let id = TrackingId::parse("guestbook:apps/Deployment:shop/web").expect("valid");
        assert_eq!(
            (
                id.app.as_str(),
                id.group.as_str(),
                id.kind.as_str(),
                id.namespace.as_str(),
                id.name.as_str()
            ),
            ("guestbook", "apps", "Deployment", "shop", "web")
        );
        assert_eq!(id.to_string(), "guestbook:apps/Deployment:shop/web");

        let core = TrackingId::parse("guestbook:/Service:shop/frontend").expect("valid");
        assert_eq!(core.group, "");
        assert_eq!(core.to_string(), "guestbook:/Service:shop/frontend");

        // Cluster-scoped: empty namespace with and without the slash.
        for text in ["guestbook:/Namespace:/shop", "guestbook:/Namespace:shop"] {
            let ns = TrackingId::parse(text).expect("valid");
            assert_eq!((ns.namespace.as_str(), ns.name.as_str()), ("", "shop"));
        }
        // Names may contain `:`.
        let role = TrackingId::parse(
            "rbac:rbac.authorization.k8s.io/ClusterRole:argocd/system:controller:web",
        )
        .expect("valid");
        assert_eq!(role.name, "system:controller:web");
        assert_eq!(role.namespace, "argocd");
        // Apps in other namespaces are `ns_app`.
        let other = TrackingId::parse("team-a_guestbook:/ConfigMap:shop/cm").expect("valid");
        assert_eq!(
            parse_instance_name(&other.app, "argocd"),
            ("team-a", "guestbook")
        );
    }

    #[test]
    fn malformed_tracking_ids_are_rejected() {
        assert!(matches!(
            TrackingId::parse("guestbook"),
            Err(TrackingIdError::Malformed(_))
        ));
        assert!(matches!(
            TrackingId::parse("guestbook:apps/Deployment"),
            Err(TrackingIdError::Malformed(_))
        ));
        assert!(matches!(
            TrackingId::parse(":apps/Deployment:ns/web"),
            Err(TrackingIdError::Empty { part: "app", .. })
        ));
        assert!(matches!(
            TrackingId::parse("a:apps/:ns/web"),
            Err(TrackingIdError::Empty { part: "kind", .. })
        ));
        assert!(matches!(
            TrackingId::parse("a:apps/Deployment:ns/"),
            Err(TrackingIdError::Empty { part: "name", .. })
        ));
    }

    #[test]
    fn a_tracking_id_only_counts_on_the_object_it_names() {
        let id = TrackingId::parse("app:apps/Deployment:shop/web").expect("valid");
        assert!(id.refers_to(&key("apps", "Deployment", "shop", "web")));
        assert!(!id.refers_to(&key("apps", "Deployment", "shop", "copy")));
        assert!(!id.refers_to(&key("apps", "Deployment", "other", "web")));
        assert!(!id.refers_to(&key("", "Deployment", "shop", "web")));
        assert!(!id.refers_to(&key("apps", "StatefulSet", "shop", "web")));
        // Cluster-scoped objects carry the app's destination namespace.
        let ns = TrackingId::parse("app:/Namespace:dest/shop").expect("valid");
        assert!(ns.refers_to(&key("", "Namespace", "", "shop")));
    }

    #[test]
    fn each_method_reads_its_own_marker() {
        let k = key("", "ConfigMap", "shop", "cm");
        let mut labels = HashMap::new();
        labels.insert(DEFAULT_INSTANCE_LABEL, "from-label");
        let mut annotations = HashMap::new();
        annotations.insert(
            CAPSTAN_TRACKING_ANNOTATION,
            "capstan-app:/ConfigMap:shop/cm",
        );
        annotations.insert(ARGOCD_TRACKING_ANNOTATION, "argo-app:/ConfigMap:shop/cm");
        let read = |method| {
            Tracking::new(method).app_of(
                &k,
                |l| labels.get(l).copied(),
                |a| annotations.get(a).copied(),
            )
        };
        assert_eq!(read(TrackingMethod::Label).as_deref(), Some("from-label"));
        assert_eq!(
            read(TrackingMethod::Annotation).as_deref(),
            Some("capstan-app")
        );
        assert_eq!(
            read(TrackingMethod::AnnotationAndLabel).as_deref(),
            Some("capstan-app")
        );
        assert_eq!(
            read(TrackingMethod::ArgoAnnotation).as_deref(),
            Some("argo-app")
        );
        assert_eq!(
            read(TrackingMethod::ArgoAnnotationAndLabel).as_deref(),
            Some("argo-app")
        );

        // A copied annotation (naming another object) does not track.
        let copied = key("", "ConfigMap", "shop", "copy");
        let t = Tracking::new(TrackingMethod::Annotation);
        assert_eq!(
            t.app_of(&copied, |_| None, |a| annotations.get(a).copied()),
            None
        );
    }

    #[test]
    fn installation_ids_must_match() {
        let k = key("", "ConfigMap", "shop", "cm");
        let mut t = Tracking::new(TrackingMethod::ArgoAnnotation);
        let ours = |a: &str| match a {
            ARGOCD_TRACKING_ANNOTATION => Some("app:/ConfigMap:shop/cm"),
            ARGOCD_INSTALLATION_ID_ANNOTATION => Some("blue"),
            _ => None,
        };
        assert_eq!(t.app_of(&k, |_| None, ours), None);
        t.installation_id = Some("blue".into());
        assert_eq!(t.app_of(&k, |_| None, ours).as_deref(), Some("app"));
        t.installation_id = Some("green".into());
        assert_eq!(t.app_of(&k, |_| None, ours), None);
    }

    #[test]
    fn method_names_round_trip_and_argo_cd_names_map() {
        for m in TrackingMethod::ALL {
            assert_eq!(m.as_str().parse::<TrackingMethod>(), Ok(m));
            let json = serde_json::to_string(&m).expect("serialises");
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert_eq!(
            TrackingMethod::from_argocd("annotation"),
            Ok(TrackingMethod::ArgoAnnotation)
        );
        assert_eq!(TrackingMethod::from_argocd(""), Ok(TrackingMethod::Label));
        assert!("annotations".parse::<TrackingMethod>().is_err());
        assert_eq!(instance_name("argocd", "web", "argocd"), "web");
        assert_eq!(instance_name("team", "web", "argocd"), "team_web");
    }
}
