//! Parsing entry points and [`Object`], "any object of a kind Capstan knows".
//!
//! The kind of a document is decided by its `apiVersion` and `kind` before anything else is
//! read, so a wrong or missing `kind` is reported as such, not as a pile of unknown fields.

use crate::application::Application;
use crate::cluster::Cluster;
use crate::codec::node::{Node, NodeValue};
use crate::codec::{self, MAX_DOCUMENT_BYTES, MAX_INPUT_BYTES, de};
use crate::error::{ParseError, SerializeError};
use crate::meta::{ARGOCD_API_VERSION, ApiVersion, CAPSTAN_API_VERSION, ObjectMeta};
use crate::path::FieldPath;
use crate::project::AppProject;
use crate::repository::Repository;
use crate::suggest;
use crate::validate::{Validate, ValidationErrors};
use serde::{Serialize, Serializer};

crate::util::string_enum! {
    /// The kinds of object Capstan reads.
    pub enum ObjectKind {
        /// [`Application`] (`capstan.dev` or `argoproj.io`).
        Application = "Application",
        /// [`AppProject`] (`capstan.dev` or `argoproj.io`).
        AppProject = "AppProject",
        /// [`Cluster`] (`capstan.dev` only).
        Cluster = "Cluster",
        /// [`Repository`] (`capstan.dev` only).
        Repository = "Repository",
    }
}

impl ObjectKind {
    /// Whether Argo CD's `argoproj.io/v1alpha1` API has this kind.
    pub fn exists_in_argocd(self) -> bool {
        matches!(self, ObjectKind::Application | ObjectKind::AppProject)
    }
}

/// Any object Capstan reads, as one type (for multi-document files).
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// An Application.
    Application(Box<Application>),
    /// An AppProject.
    AppProject(Box<AppProject>),
    /// A Cluster.
    Cluster(Box<Cluster>),
    /// A Repository.
    Repository(Box<Repository>),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Application(_) => ObjectKind::Application,
            Object::AppProject(_) => ObjectKind::AppProject,
            Object::Cluster(_) => ObjectKind::Cluster,
            Object::Repository(_) => ObjectKind::Repository,
        }
    }

    /// The API the object was written for.
    pub fn api_version(&self) -> ApiVersion {
        match self {
            Object::Application(a) => a.api_version,
            Object::AppProject(p) => p.api_version,
            Object::Cluster(_) | Object::Repository(_) => ApiVersion::Capstan,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Application(a) => &a.metadata,
            Object::AppProject(p) => &p.metadata,
            Object::Cluster(c) => &c.metadata,
            Object::Repository(r) => &r.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// Checks the object against every validation rule of its kind.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        match self {
            Object::Application(a) => a.validate(),
            Object::AppProject(p) => p.validate(),
            Object::Cluster(c) => c.validate(),
            Object::Repository(r) => r.validate(),
        }
    }

    /// The object as YAML.
    pub fn to_yaml(&self) -> Result<String, SerializeError> {
        codec::to_yaml(self)
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Object::Application(a) => a.serialize(serializer),
            Object::AppProject(p) => p.serialize(serializer),
            Object::Cluster(c) => c.serialize(serializer),
            Object::Repository(r) => r.serialize(serializer),
        }
    }
}

impl From<Application> for Object {
    fn from(a: Application) -> Self {
        Object::Application(Box::new(a))
    }
}

impl From<AppProject> for Object {
    fn from(p: AppProject) -> Self {
        Object::AppProject(Box::new(p))
    }
}

impl From<Cluster> for Object {
    fn from(c: Cluster) -> Self {
        Object::Cluster(Box::new(c))
    }
}

impl From<Repository> for Object {
    fn from(r: Repository) -> Self {
        Object::Repository(Box::new(r))
    }
}

fn field_error(path: &str, node: &Node, message: String) -> ParseError {
    ParseError::Field {
        path: FieldPath::parse(path),
        message,
        location: node.location,
    }
}

fn describe(node: &Node) -> &'static str {
    match node.value {
        NodeValue::Null => "null",
        NodeValue::Bool(_) => "a boolean",
        NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::Float(_) => "a number",
        NodeValue::Str(_) => "text",
        NodeValue::Seq(_) => "a list",
        NodeValue::Map(_) => "a mapping",
    }
}

/// Reads `apiVersion` and `kind` and decides which type the document is.
fn detect(doc: &Node) -> Result<(ApiVersion, ObjectKind), ParseError> {
    let kinds = suggest::quoted_list(ObjectKind::VARIANTS);
    if !matches!(doc.value, NodeValue::Map(_)) {
        return Err(ParseError::Field {
            path: FieldPath::root(),
            message: format!(
                "expected an object (a mapping with apiVersion, kind, metadata and spec), found {}",
                describe(doc)
            ),
            location: doc.location,
        });
    }
    let Some(kind_node) = doc.get("kind") else {
        return Err(field_error(
            "kind",
            doc,
            format!("required field is missing; add `kind:` with one of {kinds}"),
        ));
    };
    let NodeValue::Str(kind_text) = &kind_node.value else {
        return Err(field_error(
            "kind",
            kind_node,
            format!("expected text, found {}", describe(kind_node)),
        ));
    };
    let Some(api_node) = doc.get("apiVersion") else {
        return Err(field_error(
            "apiVersion",
            doc,
            format!("required field is missing; add `apiVersion: {CAPSTAN_API_VERSION}`"),
        ));
    };
    let NodeValue::Str(api_text) = &api_node.value else {
        return Err(field_error(
            "apiVersion",
            api_node,
            format!("expected text, found {}", describe(api_node)),
        ));
    };
    let api = match ApiVersion::parse(api_text) {
        Some(api) => api,
        None if kind_text.parse::<ObjectKind>().is_err() => {
            return Err(field_error(
                "kind",
                kind_node,
                format!(
                    "{kind_text} ({api_text}) is not an object Capstan reads; use Application or AppProject ({CAPSTAN_API_VERSION} or {ARGOCD_API_VERSION}), Cluster or Repository ({CAPSTAN_API_VERSION})"
                ),
            ));
        }
        None => {
            let group = api_text.split('/').next().unwrap_or("");
            let same_group = [CAPSTAN_API_VERSION, ARGOCD_API_VERSION]
                .into_iter()
                .find(|v| v.split('/').next() == Some(group));
            let hint = match same_group
                .or_else(|| suggest::closest(api_text, &[CAPSTAN_API_VERSION, ARGOCD_API_VERSION]))
            {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "use {CAPSTAN_API_VERSION} (or {ARGOCD_API_VERSION} for Argo CD Applications and AppProjects)"
                ),
            };
            return Err(field_error(
                "apiVersion",
                api_node,
                format!("unsupported apiVersion {api_text:?}; {hint}"),
            ));
        }
    };
    let kind = match kind_text.parse::<ObjectKind>() {
        Ok(kind) => kind,
        Err(_) => {
            let message = if api == ApiVersion::ArgoCd && kind_text == "ApplicationSet" {
                "ApplicationSet is not supported yet; generate the Applications and import those"
                    .to_owned()
            } else {
                match suggest::closest(kind_text, ObjectKind::VARIANTS) {
                    Some(s) => format!("unknown kind {kind_text:?}; did you mean `{s}`?"),
                    None => format!("unknown kind {kind_text:?}; use one of {kinds}"),
                }
            };
            return Err(field_error("kind", kind_node, message));
        }
    };
    if api == ApiVersion::ArgoCd && !kind.exists_in_argocd() {
        return Err(field_error(
            "apiVersion",
            api_node,
            format!(
                "{kind} is a Capstan kind; set apiVersion to {CAPSTAN_API_VERSION} (Argo CD keeps {kind}s in Secrets, which Capstan does not read)"
            ),
        ));
    }
    Ok((api, kind))
}

fn object_from_node(doc: &Node) -> Result<Object, ParseError> {
    let (_, kind) = detect(doc)?;
    Ok(match kind {
        ObjectKind::Application => Object::Application(Box::new(de::from_node(doc)?)),
        ObjectKind::AppProject => Object::AppProject(Box::new(de::from_node(doc)?)),
        ObjectKind::Cluster => Object::Cluster(Box::new(de::from_node(doc)?)),
        ObjectKind::Repository => Object::Repository(Box::new(de::from_node(doc)?)),
    })
}

fn single_document(input: &str) -> Result<Node, ParseError> {
    let mut docs = codec::parse_yaml_documents(input, MAX_DOCUMENT_BYTES)?;
    match docs.len() {
        0 => Err(ParseError::Empty),
        1 => Ok(docs.remove(0)),
        count => Err(ParseError::MultipleDocuments { count }),
    }
}

fn expect_kind(doc: &Node, expected: ObjectKind) -> Result<(), ParseError> {
    let (_, kind) = detect(doc)?;
    if kind == expected {
        Ok(())
    } else {
        Err(ParseError::WrongKind {
            expected: expected.as_str(),
            found: kind.as_str(),
            location: doc.get("kind").and_then(|k| k.location),
        })
    }
}

/// Parses every object of a (multi-document) YAML stream, of any kind Capstan reads.
///
/// Empty documents are skipped. The first problem is returned, with its document number.
/// The input may be up to [`MAX_INPUT_BYTES`], each document up to [`MAX_DOCUMENT_BYTES`].
pub fn parse_objects_yaml(input: &str) -> Result<Vec<Object>, ParseError> {
    let docs = codec::parse_yaml_documents(input, MAX_INPUT_BYTES)?;
    docs.iter()
        .enumerate()
        .map(|(i, doc)| object_from_node(doc).map_err(|e| e.in_document(i + 1)))
        .collect()
}

/// Parses exactly one object, of any kind Capstan reads, from YAML.
pub fn parse_object_yaml(input: &str) -> Result<Object, ParseError> {
    object_from_node(&single_document(input)?)
}

/// Parses exactly one object, of any kind Capstan reads, from JSON (as the REST API takes
/// it). Errors carry field paths; JSON syntax errors carry line and column.
pub fn parse_object_json(input: &str) -> Result<Object, ParseError> {
    object_from_node(&codec::parse_json_document(input)?)
}

/// Parses one `Application` (Capstan's or Argo CD's) from YAML.
pub fn parse_application_yaml(input: &str) -> Result<Application, ParseError> {
    let doc = single_document(input)?;
    expect_kind(&doc, ObjectKind::Application)?;
    Ok(de::from_node(&doc)?)
}

/// Parses one `AppProject` (Capstan's or Argo CD's) from YAML.
pub fn parse_app_project_yaml(input: &str) -> Result<AppProject, ParseError> {
    let doc = single_document(input)?;
    expect_kind(&doc, ObjectKind::AppProject)?;
    Ok(de::from_node(&doc)?)
}

/// Parses one `Cluster` from YAML.
pub fn parse_cluster_yaml(input: &str) -> Result<Cluster, ParseError> {
    let doc = single_document(input)?;
    expect_kind(&doc, ObjectKind::Cluster)?;
    Ok(de::from_node(&doc)?)
}

/// Parses one `Repository` from YAML.
pub fn parse_repository_yaml(input: &str) -> Result<Repository, ParseError> {
    let doc = single_document(input)?;
    expect_kind(&doc, ObjectKind::Repository)?;
    Ok(de::from_node(&doc)?)
}

/// Writes objects as a multi-document YAML stream (`---` between documents).
pub fn objects_to_yaml(objects: &[Object]) -> Result<String, SerializeError> {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&object.to_yaml()?);
    }
    Ok(out)
}

macro_rules! yaml_methods {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The object as YAML.
            pub fn to_yaml(&self) -> Result<String, SerializeError> {
                codec::to_yaml(self)
            }

            /// The object as pretty-printed JSON.
            pub fn to_json(&self) -> Result<String, SerializeError> {
                codec::to_json(self)
            }
        }
    )*};
}
yaml_methods!(Application, AppProject, Cluster, Repository);

/// Parses one model value from a YAML fragment (not a whole object), e.g. an
/// [`crate::ApplicationSpec`] in a test or a CLI flag. Field paths in errors start at the
/// fragment's root.
pub fn parse_fragment_yaml<T: serde::de::DeserializeOwned>(input: &str) -> Result<T, ParseError> {
    let doc = single_document(input)?;
    Ok(de::from_node(&doc)?)
}
