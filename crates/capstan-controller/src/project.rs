//! What an AppProject permits, checked before anything touches a cluster.
//!
//! An Application may only use the repositories, destinations and resource kinds its
//! project allows. The controller checks all of them before a sync starts; any
//! [`Violation`] becomes a condition on the Application (see [`conditions`]) and the sync
//! does not start at all, so a project violation never leaves a half-applied sync behind.
//!
//! This module is pure: no I/O, no clock. Start with [`ProjectPolicy`] (compile a project
//! once, check many times); the free functions ([`check_sources`], [`check_destination`],
//! [`check_resource`], [`check_resource_namespace`], [`check_all`]) compile on each call and
//! turn an invalid project into a violation instead of an error.
//!
//! The rules are Argo CD's (`AppProject.IsSourcePermitted`, `IsDestinationPermitted`,
//! `IsGroupKindPermitted` and the sync's permission check), with the differences listed
//! under each heading.
//!
//! # Globs
//!
//! Every pattern is a glob: `*` (any run of characters), `?` (one character), `[abc]`,
//! `[a-z]`, `[!abc]` (character classes), `{a,b}` (alternatives) and `\` (escapes the next
//! character). A pattern that is exactly `*` matches everything, including the empty
//! string. An invalid pattern makes the whole project invalid ([`PolicyError`]): nothing is
//! permitted until it is fixed, and the error names the field, e.g.
//! `spec.destinations[2].namespace`. `!*` is rejected as well: Argo CD documents it as
//! invalid, since denying everything is what an empty list already does.
//!
//! # Source repositories (`spec.sourceRepos`)
//!
//! Every source of the Application is checked: `spec.sources` if set, else `spec.source`,
//! plus the dry source of `spec.sourceHydrator`. Sources without a `repoURL` are left to
//! spec validation, which reports them more clearly.
//!
//! - A repository is permitted when it matches at least one pattern without `!` and no
//!   pattern with `!` (a deny wins, wherever it is in the list). An empty list permits
//!   nothing; `'*'` permits everything.
//! - URLs and patterns are compared after the normalisation Argo CD applies
//!   (`git.NormalizeGitURL`): surrounding whitespace removed, the whole URL lower-cased,
//!   trailing `/` and then a trailing `.git` removed, an `ssh://` prefix removed, and the
//!   first `:` of an scp-like URL (`git@github.com:org/repo`) turned into `/`. So
//!   `git@github.com:Org/Repo.git`, `ssh://git@github.com/org/repo` and
//!   `ssh://git@github.com/org/repo/` are the same repository. Unlike Argo CD, Capstan also
//!   removes a trailing `/`, and reads `ssh://git@github.com:org/repo` (scp syntax behind a
//!   scheme, as in Argo CD's own example) like `git@github.com:org/repo` rather than
//!   failing to parse it; a colon followed by digits stays a port.
//! - As in Argo CD, `*` and `?` do not match `/` in repository patterns:
//!   `https://github.com/org/*` permits `https://github.com/org/app` but not
//!   `https://github.com/org/team/app`. A `/**` suffix matches any depth
//!   (`https://github.com/org/**`), and so do `**/` and `/**/`; elsewhere `**` is the same
//!   as `*` (in Argo CD it also crosses `/` there).
//! - Argo CD's code also counts a `!` pattern as permitting every repository it does not
//!   deny, so `['!https://evil/*']` alone permits everything else there. Capstan follows
//!   Argo CD's documentation and the rule above instead: add `'*'` to permit the rest.
//!
//! # Destinations (`spec.destinations`)
//!
//! The destination is the cluster the Application deploys to, known by both its API server
//! URL and its name (the controller resolves `destination.server` or `destination.name` to
//! the registered cluster first), and the Application's `destination.namespace`.
//!
//! - A field of an entry *matches* when its glob matches the value; a field written `!p`
//!   matches when `p` does not. `*` crosses `/` here, so `https://*.example.com` matches
//!   `https://a.b.example.com` (and `https://x/.example.com`: write patterns with that in
//!   mind).
//! - An entry *permits* the destination when its `server` matches the cluster's server or
//!   its `name` matches the cluster's name (an empty `server` or `name` in the entry matches
//!   nothing, and an empty value is never matched), and its `namespace` matches the
//!   namespace (an empty `namespace` matches only the empty namespace, which an Application
//!   with only cluster-scoped resources may have).
//! - An entry *denies* the destination when one of its `!p` fields has `p` matching the
//!   value, whatever its other fields say: `{server: '*', namespace: '!kube-system'}` denies
//!   `kube-system` on every cluster and permits every other namespace.
//! - The destination is permitted when some entry permits it and no entry denies it. An
//!   empty list permits nothing. This is Argo CD's behaviour, except that Argo CD ignores a
//!   deny in an entry that permits the destination through its other cluster field
//!   (`{server: '!https://a', name: 'a'}`); in Capstan the deny wins there too.
//! - With `permitOnlyProjectScopedClusters`, the cluster must also be scoped to the project
//!   (its `spec.project`); [`ProjectPolicy::check_cluster_scope`] checks that.
//!
//! # Resource kinds
//!
//! Group and kind are globs (`*` matches the core group, which is empty); an entry matches
//! when both match. `!` has no meaning here.
//!
//! - A cluster-scoped kind must match `spec.clusterResourceWhitelist` (an empty whitelist
//!   denies every cluster-scoped kind, as in Argo CD) and must not match
//!   `spec.clusterResourceBlacklist`.
//! - A namespaced kind must not match `spec.namespaceResourceBlacklist` and, when
//!   `spec.namespaceResourceWhitelist` is set, must match it: unset permits every kind, set
//!   but empty (`[]`) permits none.
//! - A namespaced resource's own namespace must also be a permitted destination namespace
//!   on the Application's cluster ([`ProjectPolicy::check_resource_namespace`]), by the
//!   destination rules above. Argo CD checks this for every resource, because a manifest
//!   may name a namespace other than the Application's.
//!
//! # Conditions
//!
//! [`Violation::condition_type`] maps violations to Argo CD's condition types:
//!
//! - `InvalidSpecError` for sources, destinations and an invalid project: the Application's
//!   spec asks for something its project does not allow (Argo CD's `ValidatePermissions`
//!   reports these the same way).
//! - `SyncError` for resources: the spec is fine but the manifests it renders contain kinds
//!   or namespaces the project forbids, so the sync is refused as a whole. Argo CD fails
//!   the sync with the same messages, before applying anything. `ComparisonError` is not
//!   used: the comparison itself succeeds and is still shown.
//!
//! Resource messages name the kind, not the object, as Argo CD's do, so that
//! [`conditions`] can merge many objects of one forbidden kind into one condition; the
//! object is in [`Violation::subject`].

use std::collections::HashSet;
use std::fmt;

use capstan_engine::resources::ResourceKey;
use capstan_model::{
    AppProject, AppProjectSpec, ApplicationCondition, ApplicationDestination, ApplicationSpec,
    Cluster, GroupKind,
};
use globset::{GlobBuilder, GlobMatcher};

/// Condition type for problems with the Application's spec (Argo CD's name).
pub const INVALID_SPEC_ERROR: &str = "InvalidSpecError";
/// Condition type for a sync that was refused or failed (Argo CD's name).
pub const SYNC_ERROR: &str = "SyncError";

/// A project that cannot be enforced because one of its patterns is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A pattern is not a valid glob.
    #[error("project '{project}': {field}: '{pattern}' is not a valid glob: {}", .source.kind())]
    InvalidPattern {
        /// The project's name.
        project: String,
        /// Field path, e.g. `spec.sourceRepos[2]`.
        field: String,
        /// The pattern as written.
        pattern: String,
        /// The glob parser's error (its kind says what is wrong).
        #[source]
        source: Box<globset::Error>,
    },
    /// `!*`, which denies everything.
    #[error(
        "project '{project}': {field}: '{pattern}' denies everything; remove it (an empty list already permits nothing)"
    )]
    DeniesEverything {
        /// The project's name.
        project: String,
        /// Field path, e.g. `spec.destinations[0].namespace`.
        field: String,
        /// The pattern as written.
        pattern: String,
    },
}

/// What a [`Violation`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The project itself cannot be enforced (an invalid pattern), so nothing is permitted.
    Project,
    /// A source repository.
    Source {
        /// `repoURL` as written in the Application.
        repo_url: String,
    },
    /// The Application's destination.
    Destination {
        /// The cluster's API server URL.
        server: String,
        /// The cluster's name.
        name: String,
        /// The Application's destination namespace.
        namespace: String,
    },
    /// A resource whose kind the project does not permit.
    Resource(ResourceKey),
    /// A namespaced resource whose namespace is not a permitted destination.
    ResourceNamespace(ResourceKey),
}

/// Something an Application asks for that its project does not permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What is not permitted.
    pub subject: Subject,
    /// A message for the user, in Argo CD's words where Argo CD has them.
    pub message: String,
}

impl Violation {
    /// The Argo CD condition type to report this under: `InvalidSpecError` for the project,
    /// sources and destinations, `SyncError` for resources (see the module docs).
    pub fn condition_type(&self) -> &'static str {
        match self.subject {
            Subject::Project | Subject::Source { .. } | Subject::Destination { .. } => {
                INVALID_SPEC_ERROR
            }
            Subject::Resource(_) | Subject::ResourceNamespace(_) => SYNC_ERROR,
        }
    }

    /// This violation as an Application condition (no transition time; the status writer
    /// sets it).
    pub fn to_condition(&self) -> ApplicationCondition {
        ApplicationCondition {
            condition_type: self.condition_type().to_owned(),
            message: self.message.clone(),
            last_transition_time: None,
        }
    }

    fn invalid_project(error: &PolicyError) -> Self {
        Self {
            subject: Subject::Project,
            message: error.to_string(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The conditions for `violations`, in order, with duplicates (same type and message, e.g.
/// several objects of one forbidden kind) merged.
pub fn conditions(violations: &[Violation]) -> Vec<ApplicationCondition> {
    let mut seen = HashSet::new();
    violations
        .iter()
        .filter(|v| seen.insert((v.condition_type(), v.message.as_str())))
        .map(Violation::to_condition)
        .collect()
}

/// A compiled glob. `*` alone is kept apart: it matches everything, even across `/` in
/// repository patterns (as in Argo CD).
#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Glob(GlobMatcher),
}

impl Pattern {
    fn is_match(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Glob(glob) => glob.is_match(value),
        }
    }
}

/// A pattern that may be negated with a leading `!`.
#[derive(Debug, Clone)]
struct Rule {
    /// As written, for messages.
    raw: String,
    negated: bool,
    pattern: Pattern,
}

impl Rule {
    /// Whether the field matches `value`: the glob matches, or for `!p`, `p` does not.
    fn matches(&self, value: &str) -> bool {
        self.negated != self.pattern.is_match(value)
    }

    /// Whether this is a `!p` rule and `p` matches `value`.
    fn denies(&self, value: &str) -> bool {
        self.negated && self.pattern.is_match(value)
    }
}

/// One compiled `spec.destinations[]` entry.
#[derive(Debug, Clone)]
struct DestinationRule {
    index: usize,
    /// `None` when empty: matches no cluster.
    server: Option<Rule>,
    /// `None` when empty: matches no cluster.
    name: Option<Rule>,
    namespace: Rule,
}

/// One compiled group/kind entry.
#[derive(Debug, Clone)]
struct KindRule {
    group: Pattern,
    kind: Pattern,
}

impl KindRule {
    fn matches(&self, group: &str, kind: &str) -> bool {
        self.group.is_match(group) && self.kind.is_match(kind)
    }
}

/// The outcome of matching a repository or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Permitted,
    /// No permitting rule matched.
    NoMatch,
    /// A `!` rule matched: (entry index, field name; empty for sourceRepos).
    Denied(usize, &'static str),
}

/// An AppProject compiled for checking: build it once per project version and check many
/// Applications and resources against it.
#[derive(Debug, Clone)]
pub struct ProjectPolicy {
    project: String,
    source_repos: Vec<Rule>,
    destinations: Vec<DestinationRule>,
    permit_only_project_scoped_clusters: bool,
    cluster_whitelist: Vec<KindRule>,
    cluster_blacklist: Vec<KindRule>,
    namespace_whitelist: Option<Vec<KindRule>>,
    namespace_blacklist: Vec<KindRule>,
}

impl ProjectPolicy {
    /// Compiles `project`'s rules.
    pub fn new(project: &AppProject) -> Result<Self, PolicyError> {
        Self::from_spec(&project.metadata.name, &project.spec)
    }

    /// Compiles the rules of the project named `name` (the name is used in messages).
    pub fn from_spec(name: &str, spec: &AppProjectSpec) -> Result<Self, PolicyError> {
        let c = Compiler { project: name };
        let source_repos = spec
            .source_repos
            .iter()
            .enumerate()
            .map(|(i, raw)| c.repo_rule(&format!("spec.sourceRepos[{i}]"), raw))
            .collect::<Result<_, _>>()?;
        let destinations = spec
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let field = |f: &str| format!("spec.destinations[{i}].{f}");
                let optional = |f: &str, raw: &str| {
                    if raw.is_empty() {
                        Ok(None)
                    } else {
                        c.rule(&field(f), raw).map(Some)
                    }
                };
                Ok(DestinationRule {
                    index: i,
                    server: optional("server", &d.server)?,
                    name: optional("name", &d.name)?,
                    namespace: c.rule(&field("namespace"), &d.namespace)?,
                })
            })
            .collect::<Result<_, PolicyError>>()?;
        let kinds = |list: &[GroupKind], field: &str| -> Result<Vec<KindRule>, PolicyError> {
            list.iter()
                .enumerate()
                .map(|(i, gk)| {
                    Ok(KindRule {
                        group: c.glob(&format!("spec.{field}[{i}].group"), &gk.group, false)?,
                        kind: c.glob(&format!("spec.{field}[{i}].kind"), &gk.kind, false)?,
                    })
                })
                .collect()
        };
        Ok(Self {
            project: name.to_owned(),
            source_repos,
            destinations,
            permit_only_project_scoped_clusters: spec.permit_only_project_scoped_clusters,
            cluster_whitelist: kinds(&spec.cluster_resource_whitelist, "clusterResourceWhitelist")?,
            cluster_blacklist: kinds(&spec.cluster_resource_blacklist, "clusterResourceBlacklist")?,
            namespace_whitelist: spec
                .namespace_resource_whitelist
                .as_deref()
                .map(|list| kinds(list, "namespaceResourceWhitelist"))
                .transpose()?,
            namespace_blacklist: kinds(
                &spec.namespace_resource_blacklist,
                "namespaceResourceBlacklist",
            )?,
        })
    }

    /// The project's name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Whether the repository `repo_url` may be used.
    pub fn is_source_permitted(&self, repo_url: &str) -> bool {
        self.repo_verdict(repo_url) == Verdict::Permitted
    }

    /// Whether the cluster (`server`, `name`) and `namespace` are a permitted destination.
    pub fn is_destination_permitted(&self, server: &str, name: &str, namespace: &str) -> bool {
        self.destination_verdict(server, name, namespace) == Verdict::Permitted
    }

    /// Whether resources of `group`/`kind` may be created (namespace not considered).
    pub fn is_kind_permitted(&self, group: &str, kind: &str, namespaced: bool) -> bool {
        self.kind_denial(group, kind, namespaced).is_none()
    }

    /// Checks every source repository of `app` (see the module docs); one violation per
    /// repository not permitted.
    pub fn check_sources(&self, app: &ApplicationSpec) -> Vec<Violation> {
        let hydrator = app
            .source_hydrator
            .as_ref()
            .map(|h| h.dry_source.repo_url.as_str());
        let urls = app
            .effective_sources()
            .into_iter()
            .map(|s| s.repo_url.as_str())
            .chain(hydrator);
        let mut seen = HashSet::new();
        let mut violations = Vec::new();
        for url in urls {
            if url.trim().is_empty() || !seen.insert(normalize_repo_url(url)) {
                continue;
            }
            let message = match self.repo_verdict(url) {
                Verdict::Permitted => continue,
                Verdict::NoMatch => format!(
                    "application repo {url} is not permitted in project '{}'",
                    self.project
                ),
                Verdict::Denied(i, _) => format!(
                    "application repo {url} is not permitted in project '{}': it is denied by spec.sourceRepos[{i}] ('{}')",
                    self.project, self.source_repos[i].raw
                ),
            };
            violations.push(Violation {
                subject: Subject::Source {
                    repo_url: url.to_owned(),
                },
                message,
            });
        }
        violations
    }

    /// Checks the Application's destination: the cluster it resolved to (`cluster_server`,
    /// `cluster_name`; when empty, `destination.server` / `destination.name` are used) and
    /// `destination.namespace`. Returns at most one violation.
    pub fn check_destination(
        &self,
        destination: &ApplicationDestination,
        cluster_server: &str,
        cluster_name: &str,
    ) -> Vec<Violation> {
        let server = non_empty_or(cluster_server, &destination.server);
        let name = non_empty_or(cluster_name, &destination.name);
        let namespace = destination.namespace.as_str();
        let verdict = self.destination_verdict(server, name, namespace);
        if verdict == Verdict::Permitted {
            return Vec::new();
        }
        // Name the cluster the way the Application does.
        let (by, cluster) = if !destination.name.is_empty() {
            ("name", destination.name.as_str())
        } else if !destination.server.is_empty() {
            ("server", destination.server.as_str())
        } else {
            ("server", server)
        };
        let head = format!("application destination {by} '{cluster}' and namespace '{namespace}'");
        let message = match verdict {
            Verdict::Denied(i, field) => format!(
                "{head} are not permitted in project '{}': they are denied by spec.destinations[{i}].{field} ('{}')",
                self.project,
                self.destination_field(i, field)
            ),
            _ => format!(
                "{head} do not match any of the allowed destinations in project '{}'",
                self.project
            ),
        };
        vec![Violation {
            subject: Subject::Destination {
                server: server.to_owned(),
                name: name.to_owned(),
                namespace: namespace.to_owned(),
            },
            message,
        }]
    }

    /// With `permitOnlyProjectScopedClusters`, checks that `cluster` is scoped to this
    /// project (`cluster.spec.project`).
    pub fn check_cluster_scope(
        &self,
        destination: &ApplicationDestination,
        cluster: &Cluster,
    ) -> Option<Violation> {
        if !self.permit_only_project_scoped_clusters || cluster.spec.project == self.project {
            return None;
        }
        let scope = if cluster.spec.project.is_empty() {
            "is not scoped to any project".to_owned()
        } else {
            format!("is scoped to project '{}'", cluster.spec.project)
        };
        Some(Violation {
            subject: Subject::Destination {
                server: cluster.spec.server.clone(),
                name: cluster.display_name().to_owned(),
                namespace: destination.namespace.clone(),
            },
            message: format!(
                "application destination cluster '{}' is not permitted in project '{}': the project sets permitOnlyProjectScopedClusters and the cluster {scope}",
                cluster.display_name(),
                self.project
            ),
        })
    }

    /// Checks whether the kind of `key` may be created: `namespaced` tells whether the kind
    /// is namespaced (from discovery), which decides the lists that apply.
    pub fn check_resource(&self, key: &ResourceKey, namespaced: bool) -> Option<Violation> {
        let reason = self.kind_denial(&key.group, &key.kind, namespaced)?;
        let group_kind = if key.group.is_empty() {
            key.kind.clone()
        } else {
            format!("{}/{}", key.group, key.kind)
        };
        Some(Violation {
            subject: Subject::Resource(key.clone()),
            message: format!(
                "resource {group_kind} is not permitted in project {}: {reason}",
                self.project
            ),
        })
    }

    /// Checks that the namespace of the namespaced resource `key` is a permitted destination
    /// namespace on the Application's cluster. `key.namespace` must be the namespace the
    /// resource is applied in (the Application's namespace when the manifest names none,
    /// as [`ResourceKey::in_namespace`] sets it).
    pub fn check_resource_namespace(
        &self,
        key: &ResourceKey,
        cluster_server: &str,
        cluster_name: &str,
    ) -> Option<Violation> {
        let verdict = self.destination_verdict(cluster_server, cluster_name, &key.namespace);
        let head = format!(
            "namespace {} is not permitted in project '{}'",
            key.namespace, self.project
        );
        let message = match verdict {
            Verdict::Permitted => return None,
            Verdict::Denied(i, field) => format!(
                "{head}: it is denied by spec.destinations[{i}].{field} ('{}')",
                self.destination_field(i, field)
            ),
            Verdict::NoMatch => head,
        };
        Some(Violation {
            subject: Subject::ResourceNamespace(key.clone()),
            message,
        })
    }

    /// Everything at once: sources, destination (including the project-scoped cluster
    /// rule), and each resource's kind and namespace. `resources` pairs each key with
    /// whether its kind is namespaced; a namespaced key with an empty namespace is checked
    /// in the Application's destination namespace.
    pub fn check_all(
        &self,
        app: &ApplicationSpec,
        cluster: &Cluster,
        resources: &[(ResourceKey, bool)],
    ) -> Vec<Violation> {
        let server = cluster.spec.server.as_str();
        let name = cluster.display_name();
        let mut violations = self.check_sources(app);
        violations.extend(self.check_destination(&app.destination, server, name));
        violations.extend(self.check_cluster_scope(&app.destination, cluster));
        for (key, namespaced) in resources {
            violations.extend(self.check_resource(key, *namespaced));
            if *namespaced {
                let violation = if key.namespace.is_empty() {
                    let key = key.clone().in_namespace(&app.destination.namespace);
                    self.check_resource_namespace(&key, server, name)
                } else {
                    self.check_resource_namespace(key, server, name)
                };
                violations.extend(violation);
            }
        }
        violations
    }

    fn repo_verdict(&self, repo_url: &str) -> Verdict {
        let url = normalize_repo_url(repo_url);
        let mut permitted = false;
        for (i, rule) in self.source_repos.iter().enumerate() {
            if rule.pattern.is_match(&url) {
                if rule.negated {
                    return Verdict::Denied(i, "");
                }
                permitted = true;
            }
        }
        if permitted {
            Verdict::Permitted
        } else {
            Verdict::NoMatch
        }
    }

    fn destination_verdict(&self, server: &str, name: &str, namespace: &str) -> Verdict {
        let mut permitted = false;
        for d in &self.destinations {
            // An empty server or name is never matched, and so never denied either.
            let cluster_fields = [("server", &d.server, server), ("name", &d.name, name)];
            for (field, rule, value) in cluster_fields {
                if !value.is_empty() && rule.as_ref().is_some_and(|r| r.denies(value)) {
                    return Verdict::Denied(d.index, field);
                }
            }
            if d.namespace.denies(namespace) {
                return Verdict::Denied(d.index, "namespace");
            }
            let cluster_matches = cluster_fields.iter().any(|(_, rule, value)| {
                !value.is_empty() && rule.as_ref().is_some_and(|r| r.matches(value))
            });
            permitted |= cluster_matches && d.namespace.matches(namespace);
        }
        if permitted {
            Verdict::Permitted
        } else {
            Verdict::NoMatch
        }
    }

    /// The raw pattern of `spec.destinations[index].field`, for messages.
    fn destination_field(&self, index: usize, field: &str) -> &str {
        let Some(d) = self.destinations.get(index) else {
            return "";
        };
        let rule = match field {
            "server" => d.server.as_ref(),
            "name" => d.name.as_ref(),
            _ => Some(&d.namespace),
        };
        rule.map_or("", |r| r.raw.as_str())
    }

    /// Why `group`/`kind` may not be created, if it may not.
    fn kind_denial(&self, group: &str, kind: &str, namespaced: bool) -> Option<String> {
        let find = |list: &[KindRule]| list.iter().position(|r| r.matches(group, kind));
        if namespaced {
            if let Some(i) = find(&self.namespace_blacklist) {
                return Some(format!("it matches spec.namespaceResourceBlacklist[{i}]"));
            }
            match &self.namespace_whitelist {
                Some(list) if list.is_empty() => Some(
                    "spec.namespaceResourceWhitelist is set but empty, which permits no namespaced kinds"
                        .to_owned(),
                ),
                Some(list) if find(list).is_none() => Some(
                    "namespaced kinds must match an entry of spec.namespaceResourceWhitelist"
                        .to_owned(),
                ),
                _ => None,
            }
        } else {
            if let Some(i) = find(&self.cluster_blacklist) {
                return Some(format!("it matches spec.clusterResourceBlacklist[{i}]"));
            }
            if self.cluster_whitelist.is_empty() {
                Some(
                    "cluster-scoped kinds must be listed in spec.clusterResourceWhitelist, which is empty"
                        .to_owned(),
                )
            } else if find(&self.cluster_whitelist).is_none() {
                Some(
                    "cluster-scoped kinds must match an entry of spec.clusterResourceWhitelist"
                        .to_owned(),
                )
            } else {
                None
            }
        }
    }
}

/// Compiles the patterns of one project, naming it in errors.
struct Compiler<'a> {
    project: &'a str,
}

impl Compiler<'_> {
    /// A plain glob; `literal_separator` keeps `*` and `?` from matching `/`.
    fn glob(
        &self,
        field: &str,
        pattern: &str,
        literal_separator: bool,
    ) -> Result<Pattern, PolicyError> {
        if pattern == "*" {
            return Ok(Pattern::Any);
        }
        GlobBuilder::new(pattern)
            .literal_separator(literal_separator)
            .backslash_escape(true)
            .build()
            .map(|g| Pattern::Glob(g.compile_matcher()))
            .map_err(|source| PolicyError::InvalidPattern {
                project: self.project.to_owned(),
                field: field.to_owned(),
                pattern: pattern.to_owned(),
                source: Box::new(source),
            })
    }

    /// Splits a leading `!` off `raw`, rejecting `!*`.
    fn negation<'r>(&self, field: &str, raw: &'r str) -> Result<(bool, &'r str), PolicyError> {
        match raw.strip_prefix('!') {
            Some(rest) if rest.trim() == "*" => Err(PolicyError::DeniesEverything {
                project: self.project.to_owned(),
                field: field.to_owned(),
                pattern: raw.to_owned(),
            }),
            Some(rest) => Ok((true, rest)),
            None => Ok((false, raw)),
        }
    }

    /// A destination field: a glob that `*` matches across `/`, negatable.
    fn rule(&self, field: &str, raw: &str) -> Result<Rule, PolicyError> {
        let (negated, pattern) = self.negation(field, raw)?;
        Ok(Rule {
            raw: raw.to_owned(),
            negated,
            pattern: self.glob(field, pattern, false)?,
        })
    }

    /// A `sourceRepos` entry: normalised like the URLs it is matched against, `*` and `?`
    /// not matching `/`, negatable.
    fn repo_rule(&self, field: &str, raw: &str) -> Result<Rule, PolicyError> {
        let (negated, pattern) = self.negation(field, raw.trim())?;
        let pattern = if pattern.trim() == "*" {
            Pattern::Any
        } else {
            self.glob(field, &normalize_repo_url(pattern), true)?
        };
        Ok(Rule {
            raw: raw.to_owned(),
            negated,
            pattern,
        })
    }
}

/// `value`, or `fallback` when `value` is empty.
fn non_empty_or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() { fallback } else { value }
}

/// Normalises a repository URL (or pattern) for comparison, as Argo CD's
/// `git.NormalizeGitURL` does, plus trailing-`/` removal: see the module docs.
pub fn normalize_repo_url(url: &str) -> String {
    let mut url = url.trim().to_lowercase();
    if let Some(rest) = url.strip_prefix("ssh://") {
        // `ssh://git@host:org/repo` is scp syntax behind a scheme (Argo CD's own docs write
        // it so); a colon followed by digits is a port and stays.
        let colon_path = rest.split_once(':').is_some_and(|(_, after)| {
            !after
                .split('/')
                .next()
                .unwrap_or_default()
                .bytes()
                .all(|b| b.is_ascii_digit())
        });
        url = if is_scp_like(rest) && colon_path {
            rest.replacen(':', "/", 1)
        } else {
            rest.to_owned()
        };
    } else if is_scp_like(&url) {
        url = url.replacen(':', "/", 1);
    }
    let mut url = url.trim_end_matches('/');
    if let Some(stripped) = url.strip_suffix(".git") {
        url = stripped;
    }
    url.to_owned()
}

/// `user@host:path` without a scheme (Argo CD: `^(ssh://)?([^/:]*?)@[^@]+$`).
fn is_scp_like(url: &str) -> bool {
    match url.split_once('@') {
        Some((user, rest)) => !user.contains(['/', ':']) && !rest.contains('@'),
        None => false,
    }
}

/// Compiles `project` and checks the sources of `app`; an invalid project is a violation.
pub fn check_sources(project: &AppProject, app: &ApplicationSpec) -> Vec<Violation> {
    match ProjectPolicy::new(project) {
        Ok(policy) => policy.check_sources(app),
        Err(e) => vec![Violation::invalid_project(&e)],
    }
}

/// Compiles `project` and checks a destination (see [`ProjectPolicy::check_destination`]);
/// an invalid project is a violation.
pub fn check_destination(
    project: &AppProject,
    destination: &ApplicationDestination,
    cluster_server: &str,
    cluster_name: &str,
) -> Vec<Violation> {
    match ProjectPolicy::new(project) {
        Ok(policy) => policy.check_destination(destination, cluster_server, cluster_name),
        Err(e) => vec![Violation::invalid_project(&e)],
    }
}

/// Compiles `project` and checks one resource's kind (see
/// [`ProjectPolicy::check_resource`]); an invalid project is a violation. Use a
/// [`ProjectPolicy`] to check many resources.
pub fn check_resource(
    project: &AppProject,
    key: &ResourceKey,
    namespaced: bool,
) -> Option<Violation> {
    match ProjectPolicy::new(project) {
        Ok(policy) => policy.check_resource(key, namespaced),
        Err(e) => Some(Violation::invalid_project(&e)),
    }
}

/// Compiles `project` and checks one namespaced resource's namespace (see
/// [`ProjectPolicy::check_resource_namespace`]); an invalid project is a violation.
pub fn check_resource_namespace(
    project: &AppProject,
    key: &ResourceKey,
    cluster_server: &str,
    cluster_name: &str,
) -> Option<Violation> {
    match ProjectPolicy::new(project) {
        Ok(policy) => policy.check_resource_namespace(key, cluster_server, cluster_name),
        Err(e) => Some(Violation::invalid_project(&e)),
    }
}

/// Compiles `project` once and runs [`ProjectPolicy::check_all`]; an invalid project is a
/// single violation.
pub fn check_all(
    project: &AppProject,
    app: &ApplicationSpec,
    cluster: &Cluster,
    resources: &[(ResourceKey, bool)],
) -> Vec<Violation> {
    match ProjectPolicy::new(project) {
        Ok(policy) => policy.check_all(app, cluster, resources),
        Err(e) => vec![Violation::invalid_project(&e)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::{ApplicationSource, ClusterSpec, SourceHydrator, parse_app_project_yaml};

    /// A project named `team` with `spec` (YAML, unindented).
    fn project(spec: &str) -> AppProject {
        let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        let doc = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team\nspec:\n{spec}"
        );
        parse_app_project_yaml(&doc).expect("test project parses")
    }

    fn policy(spec: &str) -> ProjectPolicy {
        ProjectPolicy::new(&project(spec)).expect("test project compiles")
    }

    fn policy_error(spec: &str) -> PolicyError {
        ProjectPolicy::new(&project(spec)).expect_err("test project is invalid")
    }

    const DEFAULT: &str = "sourceRepos: ['*']\n\
        destinations: [{server: '*', namespace: '*'}]\n\
        clusterResourceWhitelist: [{group: '*', kind: '*'}]";

    fn app(repos: &[&str]) -> ApplicationSpec {
        ApplicationSpec {
            sources: repos
                .iter()
                .map(|r| ApplicationSource::git(*r, "deploy", "HEAD"))
                .collect(),
            destination: dest("https://prod.example.com", "prod"),
            ..ApplicationSpec::default()
        }
    }

    fn dest(server: &str, namespace: &str) -> ApplicationDestination {
        ApplicationDestination {
            server: server.to_owned(),
            namespace: namespace.to_owned(),
            name: String::new(),
        }
    }

    fn key(group: &str, kind: &str, namespace: &str, name: &str) -> ResourceKey {
        ResourceKey {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn cluster(name: &str, server: &str, project: &str) -> Cluster {
        Cluster::new(
            name,
            ClusterSpec {
                server: server.to_owned(),
                project: project.to_owned(),
                ..ClusterSpec::default()
            },
        )
    }

    fn messages(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|v| v.message.as_str()).collect()
    }

    // ---- sources ----

    #[test]
    fn default_project_permits_every_repo() {
        let p = policy(DEFAULT);
        for url in [
            "https://github.com/org/app.git",
            "git@github.com:org/app.git",
            "ssh://git@gitlab.example.com:2222/a/b/c",
            "oci://registry.example.com/charts",
            "https://charts.example.com",
        ] {
            assert!(p.is_source_permitted(url), "{url}");
        }
        assert!(
            p.check_sources(&app(&["https://github.com/org/app"]))
                .is_empty()
        );
    }

    #[test]
    fn empty_source_repos_permit_nothing() {
        let p = policy("sourceRepos: []");
        let v = p.check_sources(&app(&["https://github.com/org/app"]));
        assert_eq!(
            messages(&v),
            ["application repo https://github.com/org/app is not permitted in project 'team'"]
        );
        assert_eq!(
            v[0].subject,
            Subject::Source {
                repo_url: "https://github.com/org/app".into()
            }
        );
        assert_eq!(v[0].condition_type(), "InvalidSpecError");
    }

    #[test]
    fn repo_urls_are_normalised_on_both_sides() {
        let p = policy(
            "sourceRepos: ['https://GitHub.com/Org/App.git', 'git@gitlab.com:group/app.git/']",
        );
        for url in [
            "https://github.com/org/app",
            "https://github.com/org/app/",
            "https://github.com/org/app.git",
            "https://github.com/org/app.git/",
            "  HTTPS://GITHUB.COM/ORG/APP  ",
            "git@gitlab.com:group/app",
            "ssh://git@gitlab.com/group/app.git",
            "ssh://git@gitlab.com:group/app.git",
        ] {
            assert!(p.is_source_permitted(url), "{url}");
        }
        for url in [
            "https://github.com/org/app2",
            "https://github.com/org",
            "https://gitlab.com/group/app",
            "ssh://git@gitlab.com:22/group/app",
        ] {
            assert!(!p.is_source_permitted(url), "{url}");
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize_repo_url("https://GitHub.com/Org/App.git/"),
            "https://github.com/org/app"
        );
        assert_eq!(
            normalize_repo_url("git@github.com:org/app.git"),
            "git@github.com/org/app"
        );
        assert_eq!(
            normalize_repo_url("ssh://git@github.com/org/app"),
            "git@github.com/org/app"
        );
        assert_eq!(
            normalize_repo_url("ssh://git@GITHUB.com:argoproj/test"),
            "git@github.com/argoproj/test"
        );
        assert_eq!(
            normalize_repo_url("ssh://git@host:2222/org/app"),
            "git@host:2222/org/app"
        );
        assert_eq!(
            normalize_repo_url("https://user@host:8443/app"),
            "https://user@host:8443/app"
        );
        assert_eq!(
            normalize_repo_url("https://example.com/gitrepo.git"),
            "https://example.com/gitrepo"
        );
    }

    #[test]
    fn repo_star_does_not_cross_slashes() {
        let cases = [
            (
                "https://github.com/org/*",
                "https://github.com/org/app",
                true,
            ),
            (
                "https://github.com/org/*",
                "https://github.com/org/team/app",
                false,
            ),
            ("https://github.com/org/*", "https://github.com/org", false),
            (
                "https://github.com/org/*",
                "https://github.com/organisation/app",
                false,
            ),
            ("https://github.com/*/*", "https://github.com/org/app", true),
            (
                "https://github.com/*/*",
                "https://github.com/org/team/app",
                false,
            ),
            (
                "https://github.com/org/**",
                "https://github.com/org/team/sub/app",
                true,
            ),
            (
                "https://github.com/org/**",
                "https://github.com/org/app",
                true,
            ),
            (
                "https://github.com/org/**",
                "https://github.com/other/app",
                false,
            ),
            (
                "https://github.com/org/app-?",
                "https://github.com/org/app-1",
                true,
            ),
            (
                "https://github.com/org/app-?",
                "https://github.com/org/app-12",
                false,
            ),
            (
                "https://github.com/org/{a,b}",
                "https://github.com/org/b",
                true,
            ),
            (
                "https://github.com/org/{a,b}",
                "https://github.com/org/c",
                false,
            ),
            (
                "https://github.com/org/[ab]pp",
                "https://github.com/org/app",
                true,
            ),
            (
                "https://*.example.com/app",
                "https://git.example.com/app",
                true,
            ),
            ("*", "anything://at/all", true),
        ];
        for (pattern, url, want) in cases {
            let p = policy(&format!("sourceRepos: ['{pattern}']"));
            assert_eq!(p.is_source_permitted(url), want, "{pattern} vs {url}");
        }
    }

    #[test]
    fn negated_repos_deny_and_deny_wins() {
        // Argo CD's documented example.
        let p = policy(
            "sourceRepos:\n\
             - '!ssh://git@GITHUB.com:argoproj/test'\n\
             - '!https://gitlab.com/group/**'\n\
             - '*'",
        );
        assert!(!p.is_source_permitted("git@github.com:argoproj/test.git"));
        assert!(!p.is_source_permitted("https://gitlab.com/group/sub/app"));
        assert!(p.is_source_permitted("https://gitlab.com/other/app"));
        assert!(p.is_source_permitted("git@github.com:argoproj/argo-cd.git"));

        // The deny wins wherever it stands.
        let p =
            policy("sourceRepos: ['https://github.com/org/*', '!https://github.com/org/secret']");
        assert!(p.is_source_permitted("https://github.com/org/app"));
        let v = p.check_sources(&app(&["https://github.com/org/secret.git"]));
        assert_eq!(
            messages(&v),
            [
                "application repo https://github.com/org/secret.git is not permitted in project 'team': \
                 it is denied by spec.sourceRepos[1] ('!https://github.com/org/secret')"
            ]
        );

        // A deny alone permits nothing (Argo CD's documented rule).
        let p = policy("sourceRepos: ['!https://github.com/org/secret']");
        assert!(!p.is_source_permitted("https://github.com/org/app"));
        assert!(!p.is_source_permitted("https://github.com/org/secret"));
    }

    #[test]
    fn every_source_is_checked_once() {
        let p = policy("sourceRepos: ['https://github.com/org/*']");
        let mut spec = app(&[
            "https://github.com/org/app",
            "https://github.com/other/values",
            "https://github.com/other/values.git",
            "",
        ]);
        spec.source_hydrator = Some(SourceHydrator::default());
        if let Some(h) = spec.source_hydrator.as_mut() {
            h.dry_source.repo_url = "https://github.com/dry/app".into();
        }
        let v = p.check_sources(&spec);
        assert_eq!(
            messages(&v),
            [
                "application repo https://github.com/other/values is not permitted in project 'team'",
                "application repo https://github.com/dry/app is not permitted in project 'team'",
            ]
        );

        // `source` is used when `sources` is empty.
        let spec = ApplicationSpec {
            source: Some(ApplicationSource::git(
                "https://github.com/other/app",
                "",
                "HEAD",
            )),
            ..ApplicationSpec::default()
        };
        assert_eq!(p.check_sources(&spec).len(), 1);
        assert!(p.check_sources(&ApplicationSpec::default()).is_empty());
    }

    // ---- invalid projects ----

    #[test]
    fn invalid_patterns_name_the_field() {
        let e = policy_error("sourceRepos: ['https://github.com/[org']");
        assert_eq!(
            e.to_string(),
            "project 'team': spec.sourceRepos[0]: 'https://github.com/[org' is not a valid glob: \
             unclosed character class; missing ']'"
        );
        assert!(std::error::Error::source(&e).is_some());

        let e = policy_error(
            "destinations: [{server: '*', namespace: 'a'}, {server: '*', namespace: '{a,b'}]",
        );
        assert!(
            e.to_string().starts_with(
                "project 'team': spec.destinations[1].namespace: '{a,b' is not a valid glob"
            ),
            "{e}"
        );

        let e = policy_error("clusterResourceWhitelist: [{group: '[', kind: Namespace}]");
        assert!(
            e.to_string()
                .contains("spec.clusterResourceWhitelist[0].group"),
            "{e}"
        );
        let e = policy_error("namespaceResourceWhitelist: [{group: '', kind: '[z-a]'}]");
        assert!(
            e.to_string()
                .contains("spec.namespaceResourceWhitelist[0].kind"),
            "{e}"
        );
    }

    #[test]
    fn bang_star_is_rejected() {
        let e = policy_error("sourceRepos: ['*', '!*']");
        assert_eq!(
            e.to_string(),
            "project 'team': spec.sourceRepos[1]: '!*' denies everything; remove it \
             (an empty list already permits nothing)"
        );
        let e = policy_error("destinations: [{server: '*', namespace: '!*'}]");
        assert!(
            matches!(e, PolicyError::DeniesEverything { ref field, .. } if field == "spec.destinations[0].namespace")
        );
    }

    #[test]
    fn an_invalid_project_is_a_violation_not_a_permission() {
        let p = project("sourceRepos: ['*', '!*']\ndestinations: [{server: '*', namespace: '*'}]");
        let v = check_sources(&p, &app(&["https://github.com/org/app"]));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, Subject::Project);
        assert_eq!(v[0].condition_type(), "InvalidSpecError");
        assert!(
            v[0].message
                .starts_with("project 'team': spec.sourceRepos[1]")
        );
        assert!(!check_destination(&p, &dest("https://a", "b"), "https://a", "a").is_empty());
        assert!(check_resource(&p, &key("", "ConfigMap", "b", "c"), true).is_some());
        assert!(
            check_resource_namespace(&p, &key("", "ConfigMap", "b", "c"), "https://a", "a")
                .is_some()
        );
        let all = check_all(&p, &app(&[]), &cluster("a", "https://a", ""), &[]);
        assert_eq!(all.len(), 1);
    }

    // ---- destinations ----

    #[test]
    fn default_project_permits_every_destination() {
        let p = policy(DEFAULT);
        assert!(p.is_destination_permitted("https://kubernetes.default.svc", "in-cluster", "prod"));
        assert!(p.is_destination_permitted("https://10.0.0.1:6443", "", ""));
        assert!(
            p.check_destination(&dest("https://x", "y"), "https://x", "x")
                .is_empty()
        );
    }

    #[test]
    fn empty_destinations_permit_nothing() {
        let p = policy("destinations: []");
        let v = p.check_destination(
            &dest("https://prod.example.com", "prod"),
            "https://prod.example.com",
            "prod",
        );
        assert_eq!(
            messages(&v),
            [
                "application destination server 'https://prod.example.com' and namespace 'prod' \
                 do not match any of the allowed destinations in project 'team'"
            ]
        );
        assert_eq!(
            v[0].subject,
            Subject::Destination {
                server: "https://prod.example.com".into(),
                name: "prod".into(),
                namespace: "prod".into()
            }
        );
        assert_eq!(v[0].condition_type(), "InvalidSpecError");
    }

    #[test]
    fn destination_matrix() {
        // (destinations, server, name, namespace, permitted)
        let cases = [
            (
                "[{server: 'https://*.example.com', namespace: '*'}]",
                "https://a.b.example.com",
                "",
                "x",
                true,
            ),
            (
                "[{server: 'https://*.example.com', namespace: '*'}]",
                "https://example.com",
                "",
                "x",
                false,
            ),
            (
                "[{server: 'https://k8s', namespace: 'team-*'}]",
                "https://k8s",
                "",
                "team-a",
                true,
            ),
            (
                "[{server: 'https://k8s', namespace: 'team-*'}]",
                "https://k8s",
                "",
                "other",
                false,
            ),
            (
                "[{server: 'https://k8s', namespace: 'team-*'}]",
                "https://other",
                "",
                "team-a",
                false,
            ),
            // By name; the entry's empty server matches no cluster.
            (
                "[{name: 'in-cluster', namespace: 'prod'}]",
                "https://kubernetes.default.svc",
                "in-cluster",
                "prod",
                true,
            ),
            (
                "[{name: 'in-*', namespace: 'prod'}]",
                "https://x",
                "in-cluster",
                "prod",
                true,
            ),
            (
                "[{name: 'in-cluster', namespace: 'prod'}]",
                "https://x",
                "",
                "prod",
                false,
            ),
            (
                "[{name: 'in-cluster', namespace: 'prod'}]",
                "https://x",
                "other",
                "prod",
                false,
            ),
            // Server or name is enough.
            (
                "[{server: 'https://a', name: 'b', namespace: '*'}]",
                "https://z",
                "b",
                "n",
                true,
            ),
            (
                "[{server: 'https://a', name: 'b', namespace: '*'}]",
                "https://a",
                "z",
                "n",
                true,
            ),
            // No namespace in the entry: only the empty namespace.
            ("[{server: '*'}]", "https://a", "a", "", true),
            ("[{server: '*'}]", "https://a", "a", "prod", false),
            (
                "[{server: '*', namespace: '*'}]",
                "https://a",
                "a",
                "",
                true,
            ),
            // Entries with neither server nor name match nothing.
            ("[{namespace: '*'}]", "https://a", "a", "prod", false),
            // Several entries: any one.
            (
                "[{server: 'https://a', namespace: 'x'}, {server: 'https://b', namespace: 'y'}]",
                "https://b",
                "",
                "y",
                true,
            ),
            (
                "[{server: 'https://a', namespace: 'x'}, {server: 'https://b', namespace: 'y'}]",
                "https://b",
                "",
                "x",
                false,
            ),
            // Globs are case-sensitive.
            (
                "[{server: 'https://A', namespace: '*'}]",
                "https://a",
                "",
                "x",
                false,
            ),
        ];
        for (destinations, server, name, namespace, want) in cases {
            let p = policy(&format!("destinations: {destinations}"));
            assert_eq!(
                p.is_destination_permitted(server, name, namespace),
                want,
                "{destinations} vs ({server}, {name}, {namespace})"
            );
        }
    }

    #[test]
    fn negated_destinations_deny_and_deny_wins() {
        // Argo CD's documented example.
        let docs = "destinations:\n\
             - {namespace: '!kube-system', server: '*'}\n\
             - {namespace: '*', server: '!https://team1-*'}\n\
             - {namespace: '*', server: '*'}";
        let p = policy(docs);
        assert!(p.is_destination_permitted("https://team2-prod", "team2", "prod"));
        assert!(!p.is_destination_permitted("https://team2-prod", "team2", "kube-system"));
        assert!(!p.is_destination_permitted("https://team1-prod", "team1", "prod"));
        let v = p.check_destination(
            &dest("https://team2-prod", "kube-system"),
            "https://team2-prod",
            "team2",
        );
        assert_eq!(
            messages(&v),
            [
                "application destination server 'https://team2-prod' and namespace 'kube-system' are not \
                 permitted in project 'team': they are denied by spec.destinations[0].namespace ('!kube-system')"
            ]
        );

        // A negated entry alone permits what it does not deny.
        let p = policy("destinations: [{server: '*', namespace: '!kube-system'}]");
        assert!(p.is_destination_permitted("https://a", "a", "prod"));
        assert!(!p.is_destination_permitted("https://a", "a", "kube-system"));

        // A deny applies whatever the entry's other fields say, and wins over an allow.
        let p = policy(
            "destinations:\n\
             - {server: 'https://a', namespace: '*'}\n\
             - {server: 'https://nowhere', namespace: '!kube-*'}",
        );
        assert!(p.is_destination_permitted("https://a", "a", "prod"));
        assert!(!p.is_destination_permitted("https://a", "a", "kube-public"));

        // Deny by name, even when the entry's server permits the cluster.
        let p = policy("destinations: [{server: '*', name: '!legacy', namespace: '*'}]");
        assert!(p.is_destination_permitted("https://a", "a", "x"));
        assert!(!p.is_destination_permitted("https://a", "legacy", "x"));
        // An empty cluster name is neither matched nor denied.
        assert!(p.is_destination_permitted("https://a", "", "x"));

        // Argo CD ignores this deny (the entry permits through `name`); Capstan does not.
        let p = policy("destinations: [{server: '!https://a', name: 'a', namespace: '*'}]");
        assert!(!p.is_destination_permitted("https://a", "a", "x"));
        assert!(p.is_destination_permitted("https://b", "a", "x"));
    }

    #[test]
    fn destination_values_and_message_follow_the_application() {
        let p = policy("destinations: [{server: 'https://a', namespace: 'prod'}]");
        // The resolved cluster is used; the app's own fields only when it is not known.
        assert!(
            p.check_destination(&dest("", "prod"), "https://a", "a")
                .is_empty()
        );
        assert!(
            p.check_destination(&dest("https://a", "prod"), "", "")
                .is_empty()
        );

        let by_name = ApplicationDestination {
            name: "staging".into(),
            namespace: "prod".into(),
            server: String::new(),
        };
        let v = p.check_destination(&by_name, "https://b", "staging");
        assert_eq!(
            messages(&v),
            [
                "application destination name 'staging' and namespace 'prod' do not match any of \
                 the allowed destinations in project 'team'"
            ]
        );
    }

    #[test]
    fn project_scoped_clusters() {
        let spec =
            "destinations: [{server: '*', namespace: '*'}]\npermitOnlyProjectScopedClusters: true";
        let p = policy(spec);
        let d = dest("https://a", "prod");
        assert!(
            p.check_cluster_scope(&d, &cluster("a", "https://a", "team"))
                .is_none()
        );
        let v = p.check_cluster_scope(&d, &cluster("a", "https://a", "other"));
        assert_eq!(
            v.map(|v| v.message),
            Some(
                "application destination cluster 'a' is not permitted in project 'team': the project \
                 sets permitOnlyProjectScopedClusters and the cluster is scoped to project 'other'"
                    .to_owned()
            )
        );
        assert!(
            p.check_cluster_scope(&d, &cluster("a", "https://a", ""))
                .is_some()
        );
        // Off by default.
        let p = policy("destinations: [{server: '*', namespace: '*'}]");
        assert!(
            p.check_cluster_scope(&d, &cluster("a", "https://a", "other"))
                .is_none()
        );
    }

    // ---- resources ----

    #[test]
    fn default_project_permits_every_kind() {
        let p = policy(DEFAULT);
        assert!(
            p.check_resource(&key("", "Namespace", "", "team"), false)
                .is_none()
        );
        assert!(
            p.check_resource(
                &key("rbac.authorization.k8s.io", "ClusterRole", "", "x"),
                false
            )
            .is_none()
        );
        assert!(
            p.check_resource(&key("apps", "Deployment", "prod", "web"), true)
                .is_none()
        );
        assert!(
            p.check_resource_namespace(&key("apps", "Deployment", "prod", "web"), "https://a", "a")
                .is_none()
        );
    }

    #[test]
    fn cluster_scoped_kinds_need_the_whitelist() {
        let p = policy("sourceRepos: ['*']");
        let v = p.check_resource(&key("", "Namespace", "", "team"), false);
        assert_eq!(
            v.as_ref().map(|v| v.message.as_str()),
            Some(
                "resource Namespace is not permitted in project team: cluster-scoped kinds must be \
                 listed in spec.clusterResourceWhitelist, which is empty"
            )
        );
        assert_eq!(v.as_ref().map(Violation::condition_type), Some("SyncError"));
        assert_eq!(
            v.map(|v| v.subject),
            Some(Subject::Resource(key("", "Namespace", "", "team")))
        );
        // With no namespaced lists, every namespaced kind is permitted.
        assert!(
            p.check_resource(&key("apps", "Deployment", "prod", "web"), true)
                .is_none()
        );
    }

    #[test]
    fn kind_matrix() {
        // (spec, group, kind, namespaced, permitted)
        let cases = [
            (
                "clusterResourceWhitelist: [{group: '', kind: Namespace}]",
                "",
                "Namespace",
                false,
                true,
            ),
            (
                "clusterResourceWhitelist: [{group: '', kind: Namespace}]",
                "rbac.authorization.k8s.io",
                "ClusterRole",
                false,
                false,
            ),
            (
                "clusterResourceWhitelist: [{group: '', kind: Namespace}]",
                "apps",
                "Namespace",
                false,
                false,
            ),
            (
                "clusterResourceWhitelist: [{group: '*', kind: Namespace}]",
                "",
                "Namespace",
                false,
                true,
            ),
            (
                "clusterResourceWhitelist: [{group: 'rbac.*', kind: 'Cluster*'}]",
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                false,
                true,
            ),
            (
                "clusterResourceWhitelist: [{group: 'rbac.*', kind: 'Cluster*'}]",
                "rbac.authorization.k8s.io",
                "Role",
                false,
                false,
            ),
            // The cluster lists do not apply to namespaced kinds, and vice versa.
            (
                "clusterResourceWhitelist: [{group: '', kind: Namespace}]",
                "apps",
                "Deployment",
                true,
                true,
            ),
            (
                "namespaceResourceBlacklist: [{group: '*', kind: '*'}]",
                "",
                "Namespace",
                false,
                false,
            ),
            (
                "namespaceResourceBlacklist: [{group: '*', kind: '*'}]\nclusterResourceWhitelist: [{group: '*', kind: '*'}]",
                "",
                "Namespace",
                false,
                true,
            ),
            // Blacklist over whitelist.
            (
                "clusterResourceWhitelist: [{group: '*', kind: '*'}]\nclusterResourceBlacklist: [{group: '', kind: Namespace}]",
                "",
                "Namespace",
                false,
                false,
            ),
            (
                "clusterResourceWhitelist: [{group: '*', kind: '*'}]\nclusterResourceBlacklist: [{group: '', kind: Namespace}]",
                "",
                "PersistentVolume",
                false,
                true,
            ),
            // Namespaced: blacklist only.
            (
                "namespaceResourceBlacklist: [{group: '', kind: ResourceQuota}]",
                "",
                "ResourceQuota",
                true,
                false,
            ),
            (
                "namespaceResourceBlacklist: [{group: '', kind: ResourceQuota}]",
                "",
                "ConfigMap",
                true,
                true,
            ),
            (
                "namespaceResourceBlacklist: [{group: '*', kind: '*'}]",
                "apps",
                "Deployment",
                true,
                false,
            ),
            // Namespaced: whitelist unset permits all, empty permits none, set permits its kinds.
            (
                "namespaceResourceWhitelist: []",
                "",
                "ConfigMap",
                true,
                false,
            ),
            (
                "namespaceResourceWhitelist: [{group: apps, kind: Deployment}]",
                "apps",
                "Deployment",
                true,
                true,
            ),
            (
                "namespaceResourceWhitelist: [{group: apps, kind: Deployment}]",
                "apps",
                "StatefulSet",
                true,
                false,
            ),
            (
                "namespaceResourceWhitelist: [{group: apps, kind: Deployment}]",
                "",
                "Deployment",
                true,
                false,
            ),
            (
                "namespaceResourceWhitelist: [{group: '*', kind: '*'}]\nnamespaceResourceBlacklist: [{group: '', kind: Secret}]",
                "",
                "Secret",
                true,
                false,
            ),
            (
                "namespaceResourceWhitelist: [{group: '*', kind: '*'}]\nnamespaceResourceBlacklist: [{group: '', kind: Secret}]",
                "",
                "ConfigMap",
                true,
                true,
            ),
            // `*` in group matches the core group; kinds are case-sensitive.
            (
                "namespaceResourceWhitelist: [{group: '*', kind: ConfigMap}]",
                "",
                "ConfigMap",
                true,
                true,
            ),
            (
                "namespaceResourceWhitelist: [{group: '*', kind: ConfigMap}]",
                "",
                "configmap",
                true,
                false,
            ),
        ];
        for (spec, group, kind, namespaced, want) in cases {
            let p = policy(spec);
            assert_eq!(
                p.is_kind_permitted(group, kind, namespaced),
                want,
                "{spec} vs {group}/{kind} namespaced={namespaced}"
            );
            let k = key(group, kind, if namespaced { "prod" } else { "" }, "x");
            assert_eq!(
                p.check_resource(&k, namespaced).is_none(),
                want,
                "{spec} vs {k}"
            );
        }
    }

    #[test]
    fn resource_messages() {
        let cases = [
            (
                "clusterResourceWhitelist: [{group: '', kind: Namespace}]",
                key("rbac.authorization.k8s.io", "ClusterRole", "", "admin"),
                false,
                "resource rbac.authorization.k8s.io/ClusterRole is not permitted in project team: \
                 cluster-scoped kinds must match an entry of spec.clusterResourceWhitelist",
            ),
            (
                "clusterResourceWhitelist: [{group: '*', kind: '*'}]\nclusterResourceBlacklist: [{group: x, kind: Foo}, {group: '', kind: Namespace}]",
                key("", "Namespace", "", "team"),
                false,
                "resource Namespace is not permitted in project team: it matches spec.clusterResourceBlacklist[1]",
            ),
            (
                "namespaceResourceBlacklist: [{group: '', kind: ResourceQuota}]",
                key("", "ResourceQuota", "prod", "q"),
                true,
                "resource ResourceQuota is not permitted in project team: it matches spec.namespaceResourceBlacklist[0]",
            ),
            (
                "namespaceResourceWhitelist: [{group: apps, kind: StatefulSet}]",
                key("apps", "Deployment", "prod", "web"),
                true,
                "resource apps/Deployment is not permitted in project team: namespaced kinds must match \
                 an entry of spec.namespaceResourceWhitelist",
            ),
            (
                "namespaceResourceWhitelist: []",
                key("apps", "Deployment", "prod", "web"),
                true,
                "resource apps/Deployment is not permitted in project team: \
                 spec.namespaceResourceWhitelist is set but empty, which permits no namespaced kinds",
            ),
        ];
        for (spec, k, namespaced, want) in cases {
            let v = policy(spec).check_resource(&k, namespaced);
            assert_eq!(v.map(|v| v.message).as_deref(), Some(want), "{spec}");
        }
    }

    #[test]
    fn resource_namespaces_must_be_permitted_destinations() {
        let p = policy(
            "destinations:\n\
             - {server: 'https://a', namespace: 'team-*'}\n\
             - {server: '*', namespace: '!kube-system'}",
        );
        let ok = key("", "ConfigMap", "team-x", "c");
        assert!(p.check_resource_namespace(&ok, "https://a", "a").is_none());
        // team-* only on cluster a (the second entry permits it anywhere else, though).
        let p2 = policy("destinations: [{server: 'https://a', namespace: 'team-*'}]");
        let v = p2.check_resource_namespace(&ok, "https://b", "b");
        assert_eq!(
            v.as_ref().map(|v| v.message.as_str()),
            Some("namespace team-x is not permitted in project 'team'")
        );
        assert_eq!(v.as_ref().map(Violation::condition_type), Some("SyncError"));
        assert_eq!(v.map(|v| v.subject), Some(Subject::ResourceNamespace(ok)));

        let v =
            p.check_resource_namespace(&key("", "ConfigMap", "kube-system", "c"), "https://a", "a");
        assert_eq!(
            v.map(|v| v.message).as_deref(),
            Some(
                "namespace kube-system is not permitted in project 'team': it is denied by \
                 spec.destinations[1].namespace ('!kube-system')"
            )
        );
    }

    // ---- everything together ----

    #[test]
    fn check_all_reports_every_problem() {
        let p = project(
            "sourceRepos: ['https://github.com/org/*']\n\
             destinations: [{server: 'https://a', namespace: 'team-*'}]\n\
             clusterResourceWhitelist: [{group: '', kind: Namespace}]",
        );
        let mut spec = app(&["https://github.com/org/app", "https://github.com/evil/app"]);
        spec.destination = dest("https://a", "team-a");
        let c = cluster("a", "https://a", "");
        let resources = [
            (key("", "Namespace", "", "team-a"), false),
            (key("apps", "Deployment", "", "web"), true),
            (key("", "ConfigMap", "kube-system", "stolen"), true),
            (
                key("rbac.authorization.k8s.io", "ClusterRole", "", "one"),
                false,
            ),
            (
                key("rbac.authorization.k8s.io", "ClusterRole", "", "two"),
                false,
            ),
        ];
        let v = check_all(&p, &spec, &c, &resources);
        assert_eq!(
            messages(&v),
            [
                "application repo https://github.com/evil/app is not permitted in project 'team'",
                "namespace kube-system is not permitted in project 'team'",
                "resource rbac.authorization.k8s.io/ClusterRole is not permitted in project team: \
                 cluster-scoped kinds must match an entry of spec.clusterResourceWhitelist",
                "resource rbac.authorization.k8s.io/ClusterRole is not permitted in project team: \
                 cluster-scoped kinds must match an entry of spec.clusterResourceWhitelist",
            ]
        );
        // One condition per distinct problem.
        let conds = conditions(&v);
        let conds: Vec<_> = conds
            .iter()
            .map(|c| (c.condition_type.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(conds.len(), 3);
        assert_eq!(conds[0].0, "InvalidSpecError");
        assert_eq!(conds[1].0, "SyncError");
        assert_eq!(conds[2].0, "SyncError");

        // A namespaced resource without a namespace is checked in the app's namespace.
        let deploy = [(key("apps", "Deployment", "", "web"), true)];
        let mut spec = app(&["https://github.com/org/app"]);
        spec.destination = dest("https://a", "team-b");
        assert!(check_all(&p, &spec, &c, &deploy).is_empty());
        spec.destination = dest("https://a", "prod");
        let v = check_all(&p, &spec, &c, &deploy);
        assert_eq!(
            messages(&v),
            [
                "application destination server 'https://a' and namespace 'prod' do not match any \
                 of the allowed destinations in project 'team'",
                "namespace prod is not permitted in project 'team'",
            ]
        );
        assert_eq!(
            v[1].subject,
            Subject::ResourceNamespace(key("apps", "Deployment", "prod", "web"))
        );
    }

    #[test]
    fn check_all_with_the_default_project_is_clean() {
        let p = project(DEFAULT);
        let resources = [
            (key("", "Namespace", "", "team"), false),
            (
                key("apiextensions.k8s.io", "CustomResourceDefinition", "", "x"),
                false,
            ),
            (key("apps", "Deployment", "prod", "web"), true),
            (key("", "ConfigMap", "", "c"), true),
        ];
        let v = check_all(
            &p,
            &app(&["git@github.com:org/app.git"]),
            &cluster("in-cluster", "https://kubernetes.default.svc", ""),
            &resources,
        );
        assert!(v.is_empty(), "{v:?}");
    }
}
