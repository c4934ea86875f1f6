//! Where an Application's manifests come from: [`ApplicationSource`] and the options of each
//! rendering tool (Helm, Kustomize, plain directories with Jsonnet, config management
//! plugins), plus the source hydrator.
//!
//! Wire names are Argo CD's (`repoURL`, `targetRevision`, `valuesObject`, …) one to one.

use crate::util::{is_default, is_false};
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One source of manifests: a Git repository path, a Helm chart, or an OCI artifact, with the
/// options of the tool that renders it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationSource {
    /// URL of the Git repository, Helm repository or OCI registry (`repoURL`).
    #[serde(rename = "repoURL", default)]
    pub repo_url: String,
    /// Directory inside a Git (or OCI) repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Branch, tag, commit SHA or `HEAD` for Git; chart version or semver range for Helm.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_revision: String,
    /// Helm options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
    /// Kustomize options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSource>,
    /// Plain-directory (YAML/JSON/Jsonnet) options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySource>,
    /// Config management plugin options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSource>,
    /// Chart name, for sources that are Helm repositories.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart: String,
    /// Name other sources use to refer to this one's files as `$<ref>/path` (multi-source
    /// Applications only; wire name `ref`).
    #[serde(rename = "ref", default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Display name of the source (multi-source Applications).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl ApplicationSource {
    /// A source with just a repository URL, path and revision (the common Git case).
    pub fn git(
        repo_url: impl Into<String>,
        path: impl Into<String>,
        target_revision: impl Into<String>,
    ) -> Self {
        Self {
            repo_url: repo_url.into(),
            path: path.into(),
            target_revision: target_revision.into(),
            ..Self::default()
        }
    }

    /// Whether the source is a Helm chart from a Helm repository (`chart` is set).
    pub fn is_helm_chart(&self) -> bool {
        !self.chart.is_empty()
    }

    /// Whether this source only provides files to others through `ref` (no path, no chart).
    pub fn is_ref_only(&self) -> bool {
        !self.reference.is_empty() && self.path.is_empty() && self.chart.is_empty()
    }

    /// The tools configured explicitly on this source (more than one is invalid).
    pub fn explicit_types(&self) -> Vec<SourceType> {
        let mut types = Vec::new();
        if self.helm.is_some() {
            types.push(SourceType::Helm);
        }
        if self.kustomize.is_some() {
            types.push(SourceType::Kustomize);
        }
        if self.directory.is_some() {
            types.push(SourceType::Directory);
        }
        if self.plugin.is_some() {
            types.push(SourceType::Plugin);
        }
        types
    }
}

crate::util::string_enum! {
    /// The tool that renders a source (`status.sourceType`).
    pub enum SourceType {
        /// Helm chart.
        Helm = "Helm",
        /// Kustomize overlay.
        Kustomize = "Kustomize",
        /// Plain YAML/JSON/Jsonnet directory.
        Directory = "Directory",
        /// Config management plugin.
        Plugin = "Plugin",
    }
}

/// Helm options of a source (`helm:`), rendered with `helm template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmSource {
    /// Values files, relative to the chart or `$ref/…` from another source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// `--set` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
    /// Release name; defaults to the Application's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_name: String,
    /// Values as a YAML text block. Prefer `valuesObject`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub values: String,
    /// `--set-file` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_parameters: Vec<HelmFileParameter>,
    /// Helm major version to use (`"3"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Pass credentials to all domains (`--pass-credentials`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pass_credentials: bool,
    /// Skip values files that do not exist instead of failing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_missing_value_files: bool,
    /// Skip the chart's CRDs (`--skip-crds`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_crds: bool,
    /// Values as a structured object, kept exactly as written (key order included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_object: Option<serde_json::Value>,
    /// Namespace to template with; defaults to the destination namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Kubernetes version to pass to Helm (`--kube-version`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kube_version: String,
    /// API versions to pass to Helm (`--api-versions`), as `[group/]version/kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// Skip the chart's tests (`--skip-tests`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_tests: bool,
    /// Skip JSON schema validation (`--skip-schema-validation`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_schema_validation: bool,
}

/// A Helm `--set` parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmParameter {
    /// Dotted value path, e.g. `image.tag`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The value, as text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Keep numbers and booleans as strings (`--set-string`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_string: bool,
}

/// A Helm `--set-file` parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmFileParameter {
    /// Dotted value path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// File whose content becomes the value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// Kustomize options of a source (`kustomize:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KustomizeSource {
    /// Prefix added to resource names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_prefix: String,
    /// Suffix added to resource names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_suffix: String,
    /// Image overrides, `[old=]name[:tag|@digest]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Labels added to every resource.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub common_labels: IndexMap<String, String>,
    /// Kustomize version to use (a name configured in Capstan's settings).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Annotations added to every resource.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub common_annotations: IndexMap<String, String>,
    /// Overwrite existing labels with `commonLabels`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_common_labels: bool,
    /// Overwrite existing annotations with `commonAnnotations`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_common_annotations: bool,
    /// Namespace set on every resource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Substitute `${VAR}` in `commonAnnotations` values from the Application environment.
    #[serde(default, skip_serializing_if = "is_false")]
    pub common_annotations_envsubst: bool,
    /// Replica count overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<KustomizeReplica>,
    /// Patches applied after the build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<KustomizePatch>,
    /// Components added to the kustomization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Skip components that do not exist instead of failing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_missing_components: bool,
    /// Do not add `commonLabels` to selectors.
    #[serde(default, skip_serializing_if = "is_false")]
    pub label_without_selector: bool,
    /// Also add `commonLabels` to resource templates (with `labelWithoutSelector`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub label_include_templates: bool,
    /// Kubernetes version passed to Helm charts inflated by Kustomize.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kube_version: String,
    /// API versions passed to Helm charts inflated by Kustomize.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
}

/// A replica count override (`kustomize.replicas[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KustomizeReplica {
    /// Name of the Deployment or StatefulSet.
    #[serde(default)]
    pub name: String,
    /// The replica count (a number, or text holding one).
    #[serde(default)]
    pub count: IntOrString,
}

/// A value that is a whole number or text (Kubernetes' `IntOrString`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// Text.
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl IntOrString {
    /// The value as a number, if it is one or is text holding one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            IntOrString::Int(i) => Some(*i),
            IntOrString::String(s) => s.trim().parse().ok(),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(i) => serializer.serialize_i64(*i),
            IntOrString::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number or text")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_owned()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<IntOrString, E> {
                Ok(IntOrString::default())
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A Kustomize patch (`kustomize.patches[]`): inline `patch` or a `path` to a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KustomizePatch {
    /// Patch file path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Inline patch (strategic merge or JSON 6902).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub patch: String,
    /// Which resources the patch applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<KustomizeSelector>,
    /// Patch options, e.g. `allowNameChange: true`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub options: IndexMap<String, bool>,
}

/// Selects resources for a Kustomize patch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KustomizeSelector {
    /// API group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Name (regular expression).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace (regular expression).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Annotation selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub annotation_selector: String,
    /// Label selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label_selector: String,
}

/// Plain-directory options (`directory:`): which files, and Jsonnet settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySource {
    /// Read subdirectories too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recurse: bool,
    /// Jsonnet options.
    #[serde(default, skip_serializing_if = "is_default")]
    pub jsonnet: JsonnetOptions,
    /// Glob of files to leave out, e.g. `{config.json,env-*.yaml}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exclude: String,
    /// Glob of files to use, e.g. `*.yaml`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub include: String,
}

/// Jsonnet options (`directory.jsonnet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JsonnetOptions {
    /// External variables (`--ext-str` / `--ext-code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_vars: Vec<JsonnetVar>,
    /// Top-level arguments (`--tla-str` / `--tla-code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlas: Vec<JsonnetVar>,
    /// Extra library search directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libs: Vec<String>,
}

/// A Jsonnet variable or top-level argument.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonnetVar {
    /// Variable name.
    #[serde(default)]
    pub name: String,
    /// Value (text, or Jsonnet code when `code` is true).
    #[serde(default)]
    pub value: String,
    /// Treat `value` as Jsonnet code rather than text.
    #[serde(default, skip_serializing_if = "is_false")]
    pub code: bool,
}

/// Config management plugin options (`plugin:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSource {
    /// Plugin name; empty lets the plugins' discovery rules choose.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Environment variables passed to the plugin (as `ARGOCD_ENV_<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvEntry>,
    /// Parameters passed to the plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<PluginParameter>,
}

/// An environment variable for a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvEntry {
    /// Variable name.
    #[serde(default)]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
}

/// A plugin parameter: exactly one of `string`, `array` or `map`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginParameter {
    /// Parameter name.
    #[serde(default)]
    pub name: String,
    /// A text value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// A list value (present-but-empty is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<Vec<String>>,
    /// A map value (present-but-empty is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<IndexMap<String, String>>,
}

/// Renders manifests from a "dry" source and commits them to a branch, which is then synced
/// (`sourceHydrator:`, Argo CD's rendered-manifest pattern).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceHydrator {
    /// Where the unrendered manifests live.
    #[serde(default)]
    pub dry_source: DrySource,
    /// Where rendered manifests are committed and synced from.
    #[serde(default)]
    pub sync_source: SyncSource,
    /// Optional staging branch for rendered manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hydrate_to: Option<HydrateTo>,
}

/// The dry (unrendered) source of a hydrator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DrySource {
    /// Git repository URL.
    #[serde(rename = "repoURL", default)]
    pub repo_url: String,
    /// Revision to render.
    #[serde(default)]
    pub target_revision: String,
    /// Directory in the repository.
    #[serde(default)]
    pub path: String,
    /// Helm options for rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
    /// Kustomize options for rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSource>,
    /// Directory options for rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySource>,
    /// Plugin options for rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSource>,
}

/// The branch and path rendered manifests are committed to and synced from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncSource {
    /// Branch for rendered manifests.
    #[serde(default)]
    pub target_branch: String,
    /// Directory for rendered manifests.
    #[serde(default)]
    pub path: String,
}

/// A staging branch for rendered manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HydrateTo {
    /// Staging branch.
    #[serde(default)]
    pub target_branch: String,
}
