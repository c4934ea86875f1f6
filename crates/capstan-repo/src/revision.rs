//! Resolving an Application's `targetRevision` to a commit.
//!
//! [`resolve`] is plumbing: a pure function over the remote's advertised refs (and, for short
//! SHAs, the fetched object database). [`RefCache`] is the service-level cache of remote ref
//! listings: one listing per repository per TTL however many Applications ask, concurrent
//! askers sharing one in-flight listing, and [`RefCache::invalidate`] for webhooks and hard
//! refreshes.
//!
//! Forms, tried in this order (as Argo CD does):
//! 1. empty or `HEAD`: the remote's default branch (the target of its `HEAD`);
//! 2. a full ref name (`refs/heads/x`, `refs/tags/v1`), a branch name, then a tag name
//!    (annotated tags are peeled to their commit);
//! 3. a 40-hex full commit SHA (taken as is; it must then exist after a fetch);
//! 4. a semver constraint over the tags (`1.2.*`, `>=1.0.0 <2.0.0`, `~1.2`, `^1`, `a || b`),
//!    tags with or without a `v` prefix, pre-releases only when the constraint names one,
//!    the highest match wins;
//! 5. a short SHA (7 to 39 hex digits): the unique commit with that prefix among the fetched
//!    objects; ambiguity is an error.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

use crate::git::{Credentials, GitError, RemoteRef, RepoCache, RepoUrl, lock};

/// Errors of revision resolution.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RevisionError {
    /// Nothing matched.
    #[error(
        "revision {revision:?} not found in {url}: it is not a branch, tag, semver constraint matching a tag, or commit SHA; check spec.source.targetRevision"
    )]
    NotFound {
        /// The requested revision.
        revision: String,
        /// The repository.
        url: String,
    },
    /// A short SHA matched more than one commit.
    #[error(
        "short commit SHA {revision:?} is ambiguous in {url} ({count} commits match); use more digits or the full SHA"
    )]
    Ambiguous {
        /// The requested revision.
        revision: String,
        /// The repository.
        url: String,
        /// How many commits matched.
        count: usize,
    },
    /// `HEAD` was asked for but the remote advertises no default branch.
    #[error(
        "{url} advertises no HEAD (default branch); set spec.source.targetRevision to a branch, tag or SHA"
    )]
    NoHead {
        /// The repository.
        url: String,
    },
    /// A semver constraint matched no tag.
    #[error(
        "no tag of {url} satisfies the semver constraint {constraint:?} (pre-releases match only if the constraint names one)"
    )]
    NoSemverMatch {
        /// The constraint.
        constraint: String,
        /// The repository.
        url: String,
    },
    /// Looking objects up in the local repository failed.
    #[error("looking up {revision:?} in the local copy of {url} failed")]
    Lookup {
        /// The requested revision.
        revision: String,
        /// The repository.
        url: String,
        /// The underlying error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Listing the remote's refs failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// How a revision was matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionKind {
    /// The remote's default branch (`HEAD`); carries the branch's full ref name.
    Head(String),
    /// A branch; carries the full ref name.
    Branch(String),
    /// A tag; carries the full ref name.
    Tag(String),
    /// A semver constraint; carries the matched tag's full ref name.
    Semver(String),
    /// A full commit SHA.
    Sha,
    /// A unique short SHA.
    ShortSha,
}

/// The result of [`resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The commit.
    pub commit: gix::ObjectId,
    /// How it was found.
    pub kind: RevisionKind,
}

/// The refs of a remote, as listed by [`RepoCache::list_refs`].
#[derive(Clone, Debug, Default)]
pub struct RemoteRefs {
    /// Every advertised ref.
    pub refs: Vec<RemoteRef>,
}

impl RemoteRefs {
    fn get(&self, full: &str) -> Option<&RemoteRef> {
        self.refs.iter().find(|r| r.name == full)
    }

    /// The default branch's full ref name and commit, if the remote advertises `HEAD`.
    pub fn head(&self) -> Option<(String, gix::ObjectId)> {
        let head = self.get("HEAD")?;
        let name = head
            .symbolic_target
            .clone()
            .unwrap_or_else(|| "HEAD".to_owned());
        Some((name, head.commit()))
    }
}

/// Resolves `revision` against `refs`; `repo` (the fetched local copy) is needed only for
/// short SHAs, which fail with [`RevisionError::NotFound`] without it. See the module docs for
/// the order of forms.
pub fn resolve(
    url: &RepoUrl,
    refs: &RemoteRefs,
    repo: Option<&gix::Repository>,
    revision: &str,
) -> Result<Resolved, RevisionError> {
    let rev = revision.trim();
    let not_found = || RevisionError::NotFound {
        revision: rev.to_owned(),
        url: url.to_string(),
    };
    if rev.is_empty() || rev == "HEAD" {
        let (name, commit) = refs.head().ok_or_else(|| RevisionError::NoHead {
            url: url.to_string(),
        })?;
        return Ok(Resolved {
            commit,
            kind: RevisionKind::Head(name),
        });
    }
    if rev.starts_with("refs/")
        && let Some(r) = refs.get(rev)
    {
        let kind = if rev.starts_with("refs/tags/") {
            RevisionKind::Tag(rev.to_owned())
        } else {
            RevisionKind::Branch(rev.to_owned())
        };
        return Ok(Resolved {
            commit: r.commit(),
            kind,
        });
    }
    let branch = format!("refs/heads/{rev}");
    if let Some(r) = refs.get(&branch) {
        return Ok(Resolved {
            commit: r.commit(),
            kind: RevisionKind::Branch(branch),
        });
    }
    let tag = format!("refs/tags/{rev}");
    if let Some(r) = refs.get(&tag) {
        return Ok(Resolved {
            commit: r.commit(),
            kind: RevisionKind::Tag(tag),
        });
    }
    let is_hex = rev.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex && rev.len() == 40 {
        let commit = gix::ObjectId::from_hex(rev.as_bytes()).map_err(|_| not_found())?;
        return Ok(Resolved {
            commit,
            kind: RevisionKind::Sha,
        });
    }
    if let Some(req) = parse_constraint(rev) {
        return match highest_matching_tag(refs, &req) {
            Some((name, commit)) => Ok(Resolved {
                commit,
                kind: RevisionKind::Semver(name),
            }),
            None => Err(RevisionError::NoSemverMatch {
                constraint: rev.to_owned(),
                url: url.to_string(),
            }),
        };
    }
    if is_hex && (7..40).contains(&rev.len()) {
        return resolve_short_sha(url, refs, repo, rev);
    }
    Err(not_found())
}

fn resolve_short_sha(
    url: &RepoUrl,
    refs: &RemoteRefs,
    repo: Option<&gix::Repository>,
    rev: &str,
) -> Result<Resolved, RevisionError> {
    let lower = rev.to_ascii_lowercase();
    let Some(repo) = repo else {
        // Without a local copy, only ref tips can be matched.
        let tips: Vec<gix::ObjectId> = refs
            .refs
            .iter()
            .map(RemoteRef::commit)
            .filter(|id| id.to_string().starts_with(&lower))
            .collect();
        return unique_short_sha_match(tips, url, rev);
    };
    let lookup_err = |e: Box<dyn std::error::Error + Send + Sync>| RevisionError::Lookup {
        revision: rev.to_owned(),
        url: url.to_string(),
        source: Arc::from(e),
    };
    let prefix = gix::hash::Prefix::from_hex(&lower).map_err(|e| lookup_err(Box::new(e)))?;
    let mut candidates = std::collections::HashSet::new();
    repo.objects
        .lookup_prefix(prefix, Some(&mut candidates))
        .map_err(|e| lookup_err(Box::new(e)))?;
    let commits: Vec<gix::ObjectId> = candidates
        .into_iter()
        .filter(|id| {
            repo.find_header(*id)
                .is_ok_and(|h| h.kind() == gix::object::Kind::Commit)
        })
        .collect();
    unique_short_sha_match(commits, url, rev)
}

/// The one commit a short SHA names, or why there is not exactly one.
fn unique_short_sha_match(
    mut matches: Vec<gix::ObjectId>,
    url: &RepoUrl,
    rev: &str,
) -> Result<Resolved, RevisionError> {
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [one] => Ok(Resolved {
            commit: *one,
            kind: RevisionKind::ShortSha,
        }),
        [] => Err(RevisionError::NotFound {
            revision: rev.to_owned(),
            url: url.to_string(),
        }),
        many => Err(RevisionError::Ambiguous {
            revision: rev.to_owned(),
            url: url.to_string(),
            count: many.len(),
        }),
    }
}

/// A semver constraint in Argo CD's (Masterminds) syntax: comparators separated by spaces or
/// commas are ANDed, `||` separates alternatives; an operator may be followed by a space.
/// Returns `None` when `rev` is not a constraint.
pub fn parse_constraint(rev: &str) -> Option<Vec<semver::VersionReq>> {
    // A plain word such as a branch name must not become a constraint.
    if !rev.chars().next().is_some_and(|c| {
        c.is_ascii_digit() || matches!(c, '=' | '>' | '<' | '~' | '^' | '*' | 'v' | 'V')
    }) {
        return None;
    }
    let mut alternatives = Vec::new();
    for alt in rev.split("||") {
        let mut comparators: Vec<String> = Vec::new();
        let mut pending_op = String::new();
        for token in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
            if token
                .chars()
                .all(|c| matches!(c, '=' | '>' | '<' | '~' | '^'))
            {
                pending_op.push_str(token);
                continue;
            }
            let (op, version) = split_op(token);
            let version = version.strip_prefix(['v', 'V']).unwrap_or(version);
            // A bare version means "exactly" in Argo CD (Masterminds), not the caret of Cargo.
            let op = if op.is_empty() && pending_op.is_empty() && !version.starts_with('*') {
                "="
            } else {
                op
            };
            comparators.push(format!("{pending_op}{op}{version}"));
            pending_op.clear();
        }
        if comparators.is_empty() || !pending_op.is_empty() {
            return None;
        }
        alternatives.push(semver::VersionReq::parse(&comparators.join(", ")).ok()?);
    }
    Some(alternatives)
}

fn split_op(token: &str) -> (&str, &str) {
    let end = token
        .find(|c: char| !matches!(c, '=' | '>' | '<' | '~' | '^'))
        .unwrap_or(token.len());
    token.split_at(end)
}

fn highest_matching_tag(
    refs: &RemoteRefs,
    req: &[semver::VersionReq],
) -> Option<(String, gix::ObjectId)> {
    refs.refs
        .iter()
        .filter_map(|r| {
            let name = r.name.strip_prefix("refs/tags/")?;
            let version = tag_version(name)?;
            req.iter()
                .any(|q| q.matches(&version))
                .then(|| (version, r.name.clone(), r.commit()))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
        .map(|(_, name, commit)| (name, commit))
}

/// The version a tag names: `v1.2.3` or `1.2.3`; `v1.2` and `v1` are read as `1.2.0` and
/// `1.0.0` (as Masterminds/semver, which Argo CD uses, does). Other tags name no version.
fn tag_version(tag: &str) -> Option<semver::Version> {
    let bare = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(bare) {
        return Some(v);
    }
    let parts: Vec<&str> = bare.split('.').collect();
    if parts.len() < 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        let mut padded = parts.join(".");
        for _ in parts.len()..3 {
            padded.push_str(".0");
        }
        return semver::Version::parse(&padded).ok();
    }
    None
}

type SharedListing = Shared<BoxFuture<'static, Result<Arc<RemoteRefs>, GitError>>>;

#[derive(Debug, Default)]
struct RefCacheState {
    /// Keyed by URL and a fingerprint of the credentials used, so that a caller with other
    /// (perhaps wrong) credentials never gets a listing made with someone else's: it must
    /// list for itself, and a refused login is an error.
    /// Each listing with the instant it *started*: what it says is at least that fresh.
    listed: HashMap<ListingKey, (Instant, Arc<RemoteRefs>)>,
    /// The listing in flight per key, with when it started and an id (a newer listing may
    /// replace it in the map while it is still running).
    inflight: HashMap<ListingKey, (Instant, u64, SharedListing)>,
    /// Ids for in-flight listings.
    next_listing: u64,
    /// Bumped by `invalidate`, so a listing that started before it is not stored.
    generation: HashMap<RepoUrl, u64>,
}

/// A TTL cache of remote ref listings over a [`RepoCache`]; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct RefCache {
    repos: RepoCache,
    ttl: Duration,
    state: Arc<Mutex<RefCacheState>>,
    /// Keyed with random keys per process: fingerprints are not comparable elsewhere.
    fingerprints: std::collections::hash_map::RandomState,
}

type ListingKey = (RepoUrl, u64);

impl RefCache {
    /// The default time a listing is reused: 3 minutes, Argo CD's default.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(180);

    /// A cache that reuses each listing for `ttl`.
    pub fn new(repos: RepoCache, ttl: Duration) -> Self {
        Self {
            repos,
            ttl,
            state: Arc::default(),
            fingerprints: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The remote's refs, listed at most once per TTL and set of credentials; concurrent
    /// callers share one listing.
    pub async fn refs(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
    ) -> Result<Arc<RemoteRefs>, GitError> {
        let key: ListingKey = (url.clone(), self.fingerprints.hash_one(credentials));
        let shared = {
            let mut state = lock(&self.state);
            if let Some((at, refs)) = state.listed.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(Arc::clone(refs));
            }
            // A listing in flight is joined only if it started recently enough to count as
            // fresh: a caller must never get refs listed before it asked, beyond the TTL (with
            // a TTL of zero, a refresh after a push must see the push).
            if let Some((started, _, existing)) = state.inflight.get(&key)
                && started.elapsed() <= self.ttl
            {
                existing.clone()
            } else {
                let generation = state.generation.get(url).copied().unwrap_or(0);
                let repos = self.repos.clone();
                let credentials = credentials.clone();
                let cache_state = Arc::clone(&self.state);
                let inflight_key = key.clone();
                let started = Instant::now();
                let id = state.next_listing;
                state.next_listing += 1;
                let shared = async move {
                    let result = repos
                        .list_refs(&key.0, &credentials)
                        .await
                        .map(|refs| Arc::new(RemoteRefs { refs }));
                    let mut state = lock(&cache_state);
                    if state
                        .inflight
                        .get(&key)
                        .is_some_and(|(_, current, _)| *current == id)
                    {
                        state.inflight.remove(&key);
                    }
                    // Stored unless the cache was invalidated meanwhile or a listing that
                    // started later already stored a fresher answer.
                    let newer_stored = state.listed.get(&key).is_some_and(|(at, _)| *at > started);
                    if let Ok(refs) = &result
                        && !newer_stored
                        && state.generation.get(&key.0).copied().unwrap_or(0) == generation
                    {
                        state.listed.insert(key, (started, Arc::clone(refs)));
                    }
                    result
                }
                .boxed()
                .shared();
                state
                    .inflight
                    .insert(inflight_key, (started, id, shared.clone()));
                shared
            }
        };
        shared.await
    }

    /// Forgets the listings of `url` (webhook, hard refresh): the next call lists again.
    pub fn invalidate(&self, url: &RepoUrl) {
        let mut state = lock(&self.state);
        state.listed.retain(|(u, _), _| u != url);
        state.inflight.retain(|(u, _), _| u != url);
        *state.generation.entry(url.clone()).or_default() += 1;
    }

    /// Resolves `revision` for `url`: lists refs through the cache, and for a short SHA that
    /// is no ref tip fetches the repository and looks in its objects. A full SHA is taken as
    /// is, without listing refs (a 40-hex-digit branch or tag name is not looked up): so a
    /// commit whose manifests are cached (a rollback) is served even when the remote is
    /// unreachable or no longer has it; reading a commit that does not exist fails later,
    /// when its tree is read.
    pub async fn resolve(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
        revision: &str,
    ) -> Result<Resolved, RevisionError> {
        let rev = revision.trim();
        if rev.len() == 40
            && rev.chars().all(|c| c.is_ascii_hexdigit())
            && let Ok(commit) = gix::ObjectId::from_hex(rev.as_bytes())
        {
            return Ok(Resolved {
                commit,
                kind: RevisionKind::Sha,
            });
        }
        let refs = self.refs(url, credentials).await?;
        match resolve(url, &refs, None, revision) {
            Ok(resolved) => Ok(resolved),
            Err(RevisionError::NotFound { .. }) | Err(RevisionError::Ambiguous { .. })
                if looks_like_short_sha(revision) =>
            {
                let (handle, _) = self.repos.fetch(url, credentials).await?;
                let repo = handle.open()?;
                resolve(url, &refs, Some(&repo), revision)
            }
            Err(e) => Err(e),
        }
    }
}

fn looks_like_short_sha(rev: &str) -> bool {
    let rev = rev.trim();
    (7..40).contains(&rev.len()) && rev.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> gix::ObjectId {
        gix::ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).expect("hex")
    }

    fn refs() -> RemoteRefs {
        let r = |name: &str, target: u8, peeled: Option<u8>| RemoteRef {
            name: name.to_owned(),
            target: id(target),
            peeled: peeled.map(id),
            symbolic_target: None,
        };
        RemoteRefs {
            refs: vec![
                RemoteRef {
                    symbolic_target: Some("refs/heads/main".to_owned()),
                    ..r("HEAD", 1, None)
                },
                r("refs/heads/main", 1, None),
                r("refs/heads/feature", 2, None),
                r("refs/tags/v1.0.0", 3, None),
                r("refs/tags/v1.2.0", 10, Some(4)),
                r("refs/tags/1.2.5", 5, None),
                r("refs/tags/v1.3.0-rc.1", 6, None),
                r("refs/tags/v2.0.0", 7, None),
                r("refs/tags/not-semver", 8, None),
            ],
        }
    }

    fn url() -> RepoUrl {
        RepoUrl::parse("https://example.com/o/r").expect("valid")
    }

    fn commit(rev: &str) -> gix::ObjectId {
        resolve(&url(), &refs(), None, rev)
            .unwrap_or_else(|e| panic!("{rev}: {e}"))
            .commit
    }

    #[test]
    fn resolves_names() {
        assert_eq!(commit(""), id(1));
        assert_eq!(commit("HEAD"), id(1));
        assert_eq!(commit("main"), id(1));
        assert_eq!(commit("refs/heads/feature"), id(2));
        assert_eq!(commit("feature"), id(2));
        assert_eq!(commit("v1.0.0"), id(3));
        assert_eq!(commit("v1.2.0"), id(4), "annotated tags are peeled");
        assert_eq!(
            commit(&id(9).to_string()),
            id(9),
            "full SHAs are taken as is"
        );
    }

    #[test]
    fn resolves_semver() {
        assert_eq!(commit("1.2.*"), id(5));
        assert_eq!(commit(">=1.0.0 <2.0.0"), id(5));
        assert_eq!(commit(">= 1.0.0, < 1.2.0"), id(3));
        assert_eq!(commit("~1.2"), id(5));
        assert_eq!(commit("^1"), id(5), "pre-releases excluded");
        assert_eq!(commit("*"), id(7));
        assert_eq!(commit("1.3.0-rc.1"), id(6), "a bare version is exact");
        assert_eq!(
            commit(">=1.3.0-rc.0 <1.4.0"),
            id(6),
            "asked-for pre-release"
        );
        assert_eq!(commit("^3 || ~1.0"), id(3));
        let err = resolve(&url(), &refs(), None, "^5").expect_err("no match");
        assert!(matches!(err, RevisionError::NoSemverMatch { .. }), "{err}");
    }

    #[test]
    fn short_shas_against_tips() {
        assert_eq!(commit("0202020"), id(2));
        let err = resolve(&url(), &refs(), None, "abcdef0").expect_err("unknown");
        assert!(matches!(err, RevisionError::NotFound { .. }), "{err}");
        let err = resolve(&url(), &refs(), None, "no-such-branch").expect_err("unknown");
        assert!(err.to_string().contains("no-such-branch"), "{err}");
    }

    #[test]
    fn ambiguous_short_sha_is_an_error() {
        let mut all = refs();
        let mut twin = id(2);
        twin.as_mut_slice()[19] = 0xff;
        all.refs.push(RemoteRef {
            name: "refs/heads/twin".to_owned(),
            target: twin,
            peeled: None,
            symbolic_target: None,
        });
        let err = resolve(&url(), &all, None, "0202020").expect_err("two tips match");
        assert!(
            matches!(err, RevisionError::Ambiguous { count: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn tag_versions() {
        let v = |t: &str| tag_version(t).map(|v| v.to_string());
        assert_eq!(v("v1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(v("1.2.3-rc.1").as_deref(), Some("1.2.3-rc.1"));
        assert_eq!(v("v1.2").as_deref(), Some("1.2.0"));
        assert_eq!(v("v1").as_deref(), Some("1.0.0"));
        assert_eq!(v("release-1"), None);
        assert_eq!(v("v1..2"), None);
    }

    #[test]
    fn constraints_are_not_branch_names() {
        assert!(parse_constraint("main").is_none());
        assert!(parse_constraint("feature-1").is_none());
        assert!(parse_constraint(">=").is_none());
        assert!(parse_constraint("1.2.*").is_some());
    }
}
