//! Git push webhooks (`/api/webhook`): verify a delivery, read the push out of it whatever the
//! provider, and find the Applications it affects through an index from repository to
//! Applications — never by scanning every Application.
//!
//! Providers, told apart by their event header:
//! - **GitHub** (`X-GitHub-Event: push`): `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the
//!   body>`;
//! - **Gitea** (`X-Gitea-Event: push`): `X-Gitea-Signature: <HMAC-SHA256 hex>`;
//! - **GitLab** (`X-Gitlab-Event: Push Hook` / `Tag Push Hook`): `X-Gitlab-Token: <secret>`;
//! - **Bitbucket Server** (`X-Event-Key: repo:refs_changed`): `X-Hub-Signature:
//!   sha256=<HMAC-SHA256 hex>`;
//! - **Bitbucket Cloud** (`X-Event-Key: repo:push`): `X-Hook-UUID` equal to the configured
//!   webhook UUID (Argo CD's `webhook.bitbucket.uuid`), or an `X-Hub-Signature` when a secret
//!   is set.
//!
//! A provider with a configured secret refuses deliveries without a valid signature; one
//! without a secret accepts them (as Argo CD does) — configure secrets. Other events (`ping`,
//! issues, ...) are [`Delivery::Ignored`], not errors.
//!
//! Which Applications a push affects ([`AppIndex::affected`]): a source whose repository is
//! the pushed one (URLs compared by host and path, case-insensitive, without `.git`, whatever
//! the scheme: `https://github.com/Org/Repo`, `git@github.com:org/repo.git` and
//! `ssh://git@github.com/org/repo` are one repository), whose `targetRevision` the push moves
//! (the branch or tag, `HEAD` for the default branch, a semver range for any tag; a commit
//! SHA never moves), and — only when the Application sets the annotation
//! `argocd.argoproj.io/manifest-generate-paths` (`;`-separated, relative to the source path,
//! or absolute from the repository root with a leading `/`) — whose paths hold a changed
//! file. Without the annotation the changed files are not looked at, as in Argo CD: an
//! Application's manifests often come from outside its path (Kustomize bases, Helm value
//! files, Jsonnet libraries), and a missed refresh is worse than a needless one.

use std::collections::{BTreeSet, HashMap};

use capstan_model::Application;
use capstan_store::typed::ObjectRef;
use hmac::{KeyInit as _, Mac as _};
use serde_json::Value;

/// Argo CD's annotation restricting webhook refreshes to changes under some paths.
pub const MANIFEST_GENERATE_PATHS: &str = "argocd.argoproj.io/manifest-generate-paths";

/// The largest delivery read (GitHub caps its payloads at 25 MB).
pub const MAX_BODY_BYTES: usize = 25 << 20;

/// Secrets configured per provider (empty: not checked).
#[derive(Clone, Debug, Default)]
pub struct WebhookSecrets {
    /// GitHub's webhook secret.
    pub github: String,
    /// GitLab's secret token.
    pub gitlab: String,
    /// Gitea's webhook secret.
    pub gitea: String,
    /// Bitbucket Server's webhook secret.
    pub bitbucket_server: String,
    /// Bitbucket Cloud's webhook UUID.
    pub bitbucket_uuid: String,
}

/// Which Git host sent a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// GitHub (and GitHub Enterprise).
    GitHub,
    /// GitLab.
    GitLab,
    /// Gitea (and Forgejo).
    Gitea,
    /// Bitbucket Cloud.
    BitbucketCloud,
    /// Bitbucket Server / Data Center.
    BitbucketServer,
}

/// A push, whoever sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The provider.
    pub provider: Provider,
    /// Every URL the payload gives for the repository (web, https clone, ssh clone).
    pub repo_urls: Vec<String>,
    /// The refs moved, short names (`main`, `v1.2.0`) with whether each is a tag.
    pub refs: Vec<PushedRef>,
    /// The repository's default branch, when the payload says it.
    pub default_branch: Option<String>,
    /// Files added, modified or removed; `None` when the payload does not list them.
    pub changed_files: Option<BTreeSet<String>>,
}

/// One ref a push moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedRef {
    /// Its short name (`main`, `v1.2.0`).
    pub name: String,
    /// A tag rather than a branch.
    pub tag: bool,
}

/// What a delivery turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A push to act on.
    Push(Push),
    /// A delivery of another kind (a ping, an issue event, ...): nothing to do.
    Ignored {
        /// What it was, for the log and the answer.
        event: String,
    },
}

/// Why a delivery is refused; each maps to a 4xx answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No known event header.
    #[error(
        "not a webhook Capstan knows: no X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event or X-Event-Key header"
    )]
    UnknownProvider,
    /// The signature or token is missing or wrong.
    #[error("{provider:?} delivery refused: {reason}")]
    Unauthorized {
        /// The provider.
        provider: Provider,
        /// What is wrong (never the secret).
        reason: &'static str,
    },
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("the delivery is {0} bytes; at most {MAX_BODY_BYTES} are read")]
    TooLarge(usize),
    /// The body is not the JSON the provider sends.
    #[error("{provider:?} push payload unreadable: {reason}")]
    Malformed {
        /// The provider.
        provider: Provider,
        /// What is missing or wrong.
        reason: String,
    },
}

/// Verifies and reads one delivery. `header` looks a header up by name (case-insensitive,
/// as HTTP headers are).
pub fn parse_delivery<'a>(
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Delivery, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge(body.len()));
    }
    let (provider, event) = if let Some(e) = header("X-GitHub-Event") {
        (Provider::GitHub, e)
    } else if let Some(e) = header("X-Gitea-Event") {
        (Provider::Gitea, e)
    } else if let Some(e) = header("X-Gitlab-Event") {
        (Provider::GitLab, e)
    } else if let Some(e) = header("X-Event-Key") {
        if e.starts_with("repo:refs_changed") || header("X-Request-Id").is_some() {
            (Provider::BitbucketServer, e)
        } else {
            (Provider::BitbucketCloud, e)
        }
    } else {
        return Err(WebhookError::UnknownProvider);
    };
    // Verified before anything else is read: an unsigned body is never parsed.
    verify(provider, &header, body, secrets)?;
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event == "push",
        Provider::GitLab => event == "Push Hook" || event == "Tag Push Hook",
        Provider::BitbucketCloud => event == "repo:push",
        Provider::BitbucketServer => event == "repo:refs_changed",
    };
    if !is_push {
        return Ok(Delivery::Ignored {
            event: event.to_owned(),
        });
    }
    let json: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
        provider,
        reason: format!("not JSON: {e}"),
    })?;
    let push = match provider {
        Provider::GitHub | Provider::Gitea => github_like(provider, &json),
        Provider::GitLab => gitlab(&json),
        Provider::BitbucketCloud => bitbucket_cloud(&json),
        Provider::BitbucketServer => bitbucket_server(&json),
    }
    .map_err(|reason| WebhookError::Malformed { provider, reason })?;
    Ok(Delivery::Push(push))
}

fn verify<'a>(
    provider: Provider,
    header: &impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<(), WebhookError> {
    let refuse = |reason| Err(WebhookError::Unauthorized { provider, reason });
    match provider {
        Provider::GitHub => hmac_header(
            &secrets.github,
            header("X-Hub-Signature-256"),
            "sha256=",
            body,
        )
        .or_else(refuse),
        Provider::Gitea => {
            hmac_header(&secrets.gitea, header("X-Gitea-Signature"), "", body).or_else(refuse)
        }
        Provider::BitbucketServer => hmac_header(
            &secrets.bitbucket_server,
            header("X-Hub-Signature"),
            "sha256=",
            body,
        )
        .or_else(refuse),
        Provider::GitLab => {
            if secrets.gitlab.is_empty() {
                return Ok(());
            }
            match header("X-Gitlab-Token") {
                Some(token) if constant_time_eq(token.as_bytes(), secrets.gitlab.as_bytes()) => {
                    Ok(())
                }
                Some(_) => refuse("the X-Gitlab-Token does not match"),
                None => refuse("no X-Gitlab-Token header"),
            }
        }
        Provider::BitbucketCloud => {
            if secrets.bitbucket_uuid.is_empty() {
                return Ok(());
            }
            let given = header("X-Hook-UUID").unwrap_or("");
            let trim = |s: &str| s.trim_matches(['{', '}']).to_ascii_lowercase();
            if trim(given) == trim(&secrets.bitbucket_uuid) {
                Ok(())
            } else {
                refuse("the X-Hook-UUID is not the configured webhook's")
            }
        }
    }
}

/// Checks `header` = `prefix` + hex HMAC-SHA256 of `body` under `secret` (skipped without a
/// secret).
fn hmac_header(
    secret: &str,
    header: Option<&str>,
    prefix: &str,
    body: &[u8],
) -> Result<(), &'static str> {
    if secret.is_empty() {
        return Ok(());
    }
    let Some(value) = header else {
        return Err("the delivery is not signed (no signature header)");
    };
    let Some(hex) = value.trim().strip_prefix(prefix) else {
        return Err("the signature header is not in the expected form");
    };
    let Some(given) = decode_hex(hex) else {
        return Err("the signature is not hexadecimal");
    };
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match the body and the configured secret")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text<'v>(json: &'v Value, pointer: &str) -> Option<&'v str> {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn urls(json: &Value, pointers: &[&str]) -> Vec<String> {
    pointers
        .iter()
        .filter_map(|p| text(json, p))
        .map(str::to_owned)
        .collect()
}

/// `refs/heads/main` → (`main`, branch); `refs/tags/v1` → (`v1`, tag).
fn short_ref(full: &str) -> Option<PushedRef> {
    if let Some(name) = full.strip_prefix("refs/heads/") {
        Some(PushedRef {
            name: name.to_owned(),
            tag: false,
        })
    } else {
        full.strip_prefix("refs/tags/").map(|name| PushedRef {
            name: name.to_owned(),
            tag: true,
        })
    }
}

/// Files named under `commits[].{added, modified, removed}`.
fn commit_files(json: &Value) -> Option<BTreeSet<String>> {
    let commits = json.get("commits")?.as_array()?;
    let mut files = BTreeSet::new();
    for commit in commits {
        for list in ["added", "modified", "removed"] {
            if let Some(paths) = commit.get(list).and_then(Value::as_array) {
                files.extend(paths.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    Some(files)
}

fn github_like(provider: Provider, json: &Value) -> Result<Push, String> {
    let full = text(json, "/ref").ok_or("no `ref`")?;
    let pushed = short_ref(full).ok_or_else(|| format!("`ref` {full:?} is no branch or tag"))?;
    let repo_urls = urls(
        json,
        &[
            "/repository/html_url",
            "/repository/clone_url",
            "/repository/ssh_url",
        ],
    );
    if repo_urls.is_empty() {
        return Err("no `repository` URL".into());
    }
    Ok(Push {
        provider,
        repo_urls,
        refs: vec![pushed],
        default_branch: text(json, "/repository/default_branch").map(str::to_owned),
        changed_files: commit_files(json),
    })
}

fn gitlab(json: &Value) -> Result<Push, String> {
    let full = text(json, "/ref").ok_or("no `ref`")?;
    let pushed = short_ref(full).ok_or_else(|| format!("`ref` {full:?} is no branch or tag"))?;
    let repo_urls = urls(
        json,
        &[
            "/project/web_url",
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/repository/homepage",
            "/repository/git_http_url",
            "/repository/git_ssh_url",
        ],
    );
    if repo_urls.is_empty() {
        return Err("no `project` URL".into());
    }
    Ok(Push {
        provider: Provider::GitLab,
        repo_urls,
        refs: vec![pushed],
        default_branch: text(json, "/project/default_branch").map(str::to_owned),
        changed_files: commit_files(json),
    })
}

fn bitbucket_cloud(json: &Value) -> Result<Push, String> {
    let repo_urls = urls(json, &["/repository/links/html/href"]);
    if repo_urls.is_empty() {
        return Err("no `repository.links.html.href`".into());
    }
    let refs: Vec<PushedRef> = json
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .ok_or("no `push.changes`")?
        .iter()
        .filter_map(|change| {
            let new = change.get("new")?;
            Some(PushedRef {
                name: text(new, "/name")?.to_owned(),
                tag: text(new, "/type") == Some("tag"),
            })
        })
        .collect();
    Ok(Push {
        provider: Provider::BitbucketCloud,
        repo_urls,
        refs,
        default_branch: text(json, "/repository/mainbranch/name").map(str::to_owned),
        // Bitbucket Cloud does not list files in push payloads.
        changed_files: None,
    })
}

fn bitbucket_server(json: &Value) -> Result<Push, String> {
    let repo_urls: Vec<String> = json
        .pointer("/repository/links/clone")
        .and_then(Value::as_array)
        .ok_or("no `repository.links.clone`")?
        .iter()
        .filter_map(|c| text(c, "/href"))
        .map(str::to_owned)
        .collect();
    if repo_urls.is_empty() {
        return Err("no clone URL in `repository.links.clone`".into());
    }
    let refs: Vec<PushedRef> = json
        .get("changes")
        .and_then(Value::as_array)
        .ok_or("no `changes`")?
        .iter()
        .filter_map(|change| {
            text(change, "/ref/id").and_then(short_ref).or_else(|| {
                Some(PushedRef {
                    name: text(change, "/ref/displayId")?.to_owned(),
                    tag: text(change, "/ref/type") == Some("TAG"),
                })
            })
        })
        .collect();
    Ok(Push {
        provider: Provider::BitbucketServer,
        repo_urls,
        refs,
        default_branch: None,
        // Bitbucket Server does not list files in push payloads.
        changed_files: None,
    })
}

/// A repository's identity for matching: host and path, lower-cased, without scheme, user,
/// default port or `.git` (`github.com/org/repo`); `None` for what is no repository URL.
pub fn repo_key(url: &str) -> Option<String> {
    let url = capstan_repo::git::RepoUrl::parse(url).ok()?;
    let normalized = url.as_str();
    let rest = normalized.split_once("://").map_or(normalized, |(_, r)| r);
    Some(rest.trim_end_matches('/').to_ascii_lowercase())
}

/// What the index keeps of one source of one Application.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Watched {
    target_revision: String,
    path: String,
    /// From [`MANIFEST_GENERATE_PATHS`]; `None` when the annotation is absent.
    generate_paths: Option<Vec<String>>,
}

/// Repository → the Applications whose sources read it: what a push is looked up in. The API
/// keeps it in step with the store ([`AppIndex::put`] on every change, [`AppIndex::remove`]
/// on deletion); a lookup costs the Applications of the pushed repository, not all of them.
#[derive(Debug, Default)]
pub struct AppIndex {
    by_repo: HashMap<String, HashMap<ObjectRef, Vec<Watched>>>,
    by_app: HashMap<ObjectRef, Vec<String>>,
}

impl AppIndex {
    /// Indexes (or re-indexes) the Application at `at`.
    pub fn put(&mut self, at: &ObjectRef, app: &Application) {
        self.remove(at);
        let generate_paths = app
            .metadata
            .annotations
            .get(MANIFEST_GENERATE_PATHS)
            .map(|v| {
                v.split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            });
        let mut keys = Vec::new();
        for source in app.spec.effective_sources() {
            let Some(key) = repo_key(&source.repo_url) else {
                continue;
            };
            self.by_repo
                .entry(key.clone())
                .or_default()
                .entry(at.clone())
                .or_default()
                .push(Watched {
                    target_revision: source.target_revision.clone(),
                    path: source.path.clone(),
                    generate_paths: generate_paths.clone(),
                });
            keys.push(key);
        }
        self.by_app.insert(at.clone(), keys);
    }

    /// Forgets the Application at `at`.
    pub fn remove(&mut self, at: &ObjectRef) {
        for key in self.by_app.remove(at).unwrap_or_default() {
            if let Some(apps) = self.by_repo.get_mut(&key) {
                apps.remove(at);
                if apps.is_empty() {
                    self.by_repo.remove(&key);
                }
            }
        }
    }

    /// How many Applications are indexed.
    pub fn len(&self) -> usize {
        self.by_app.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_app.is_empty()
    }

    /// The Applications `push` affects (see the [module docs](self)), sorted.
    pub fn affected(&self, push: &Push) -> Vec<ObjectRef> {
        let keys: BTreeSet<String> = push.repo_urls.iter().filter_map(|u| repo_key(u)).collect();
        let mut found = BTreeSet::new();
        for key in &keys {
            let Some(apps) = self.by_repo.get(key) else {
                continue;
            };
            for (at, sources) in apps {
                if sources.iter().any(|s| affects(s, push)) {
                    found.insert(at.clone());
                }
            }
        }
        found.into_iter().collect()
    }
}

impl crate::mirror::Derived<capstan_store::kinds::Applications> for AppIndex {
    fn put(&mut self, at: &ObjectRef, spec: &Application) {
        AppIndex::put(self, at, spec);
    }

    fn remove(&mut self, at: &ObjectRef) {
        AppIndex::remove(self, at);
    }
}

fn affects(source: &Watched, push: &Push) -> bool {
    let moved = push
        .refs
        .iter()
        .any(|r| revision_moves(&source.target_revision, r, push.default_branch.as_deref()));
    if !moved {
        return false;
    }
    match (&source.generate_paths, &push.changed_files) {
        (Some(paths), Some(files)) => files
            .iter()
            .any(|file| paths.iter().any(|p| under(file, &source.path, p))),
        // No annotation, or no file list: refresh.
        _ => true,
    }
}

/// Whether `target` (an Application's `targetRevision`) follows `pushed`.
fn revision_moves(target: &str, pushed: &PushedRef, default_branch: Option<&str>) -> bool {
    let target = target.trim();
    if target.is_empty() || target == "HEAD" {
        // The default branch; when the payload does not say which it is, any branch.
        return !pushed.tag && default_branch.is_none_or(|d| d == pushed.name);
    }
    if let Some(branch) = target.strip_prefix("refs/heads/") {
        return !pushed.tag && branch == pushed.name;
    }
    if let Some(tag) = target.strip_prefix("refs/tags/") {
        return pushed.tag && tag == pushed.name;
    }
    if target == pushed.name {
        return true;
    }
    // A semver range follows the tags it admits; a commit SHA or another branch never moves.
    if !pushed.tag {
        return false;
    }
    let Some(alternatives) = capstan_repo::revision::parse_constraint(target) else {
        return false;
    };
    let tag = pushed.name.strip_prefix(['v', 'V']).unwrap_or(&pushed.name);
    semver::Version::parse(tag).is_ok_and(|v| alternatives.iter().any(|r| r.matches(&v)))
}

/// Whether repository file `file` is under `generate_path` of a source at `source_path`
/// (`/x` from the repository root, else relative to the source path; `.` is the path itself).
fn under(file: &str, source_path: &str, generate_path: &str) -> bool {
    let base = if let Some(absolute) = generate_path.strip_prefix('/') {
        absolute.to_owned()
    } else {
        let mut parts: Vec<&str> = source_path.split('/').filter(|p| !p.is_empty()).collect();
        for part in generate_path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        parts.join("/")
    };
    let base = base.trim_matches('/');
    base.is_empty() || file == base || file.starts_with(&format!("{base}/"))
}

#[cfg(test)]
mod tests;
