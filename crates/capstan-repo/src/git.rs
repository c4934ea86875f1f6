//! Git transport and the bare repository cache on local disk.
//!
//! Two layers, as in gix:
//!
//! - **Plumbing**: [`fetch_blocking`] and [`list_refs_blocking`] take a repository directory,
//!   a [`RepoUrl`] and [`Credentials`] and do one blocking network operation with gix. They
//!   know nothing about concurrency or disk budgets.
//! - **Service**: [`RepoCache`] owns one bare repository per normalised URL under a root
//!   directory, runs the plumbing on tokio's blocking pool (gix's HTTP transport is blocking),
//!   coalesces concurrent fetches of one repository into one, and keeps the cache within a byte
//!   budget by evicting whole repositories, least recently used first, that nobody is using.
//!
//! Credentials are passed to gix programmatically, as an `Authorization` header (basic or
//! bearer) of in-memory transport options; credential helpers and prompts are never used.
//! They are never part of a URL that is stored, logged or put in an error message.
//!
//! Transports: `file://` (gix spawns `git-upload-pack`, so `git` must be installed),
//! `http://` and `https://`. SSH is **not supported** in this build: gix's SSH transport
//! shells out to an `ssh` program and key handling is not wired up; an `ssh://` or scp-like
//! URL fails with [`GitError::UnsupportedScheme`].
//!
//! Start reading at [`RepoCache::fetch`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use gix::remote::Direction;

/// The refspecs every fetch uses: all branches and all tags, forced, mirrored 1:1.
pub const FETCH_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// The file inside each cached repository that records the normalised URL it mirrors, so a
/// hash collision or a foreign directory is detected instead of silently reused.
const URL_MARKER: &str = "capstan-url";

/// Errors of the git layer. Messages never contain credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitError {
    /// The repository URL could not be parsed.
    #[error(
        "invalid repository url {url:?}: {reason}; use https://host/path, http://host/path or file:///path"
    )]
    InvalidUrl {
        /// The URL with any credentials removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme is not supported by this build.
    #[error(
        "repository url {url}: the {scheme} transport is not supported by this build (supported: https, http, file); use an https url with a token or basic auth"
    )]
    UnsupportedScheme {
        /// The normalised URL.
        url: String,
        /// The scheme, e.g. `ssh`.
        scheme: String,
    },
    /// The server refused the credentials (or none were given and it wants some).
    #[error(
        "authentication to {url} failed: check the repository's username/password or bearer token"
    )]
    Authentication {
        /// The normalised URL.
        url: String,
        /// The underlying transport error (credential-free).
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A network or protocol error while talking to the remote.
    #[error("{operation} {url} failed: {message}")]
    Remote {
        /// `fetching` or `listing refs of`.
        operation: &'static str,
        /// The normalised URL.
        url: String,
        /// A credential-free summary of the cause.
        message: String,
        /// The underlying error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Creating, opening or deleting a cached repository on local disk failed.
    #[error("git cache at {path}: {what}; check the cache directory's permissions and free space")]
    Cache {
        /// The directory concerned.
        path: PathBuf,
        /// What was attempted.
        what: String,
        /// The underlying error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The cache directory for a URL holds a repository for another URL.
    #[error("git cache directory {path} belongs to {found}, not {expected}; delete the directory")]
    CacheConflict {
        /// The directory concerned.
        path: PathBuf,
        /// The URL we wanted.
        expected: String,
        /// The URL recorded in the directory.
        found: String,
    },
    /// A fetch brought more data than allowed and was stopped.
    #[error(
        "fetching {url} was stopped after receiving more than {limit} bytes; the repository is larger than the repo-server allows (raise --max-fetch-size if it is legitimate)"
    )]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A blocking task panicked or was cancelled.
    #[error("git worker for {url} stopped unexpectedly: {message}")]
    Worker {
        /// The normalised URL.
        url: String,
        /// What happened.
        message: String,
    },
}

/// Credentials for a repository. `Debug` never prints secrets.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// Anonymous access.
    #[default]
    None,
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password or personal access token.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A repository URL in normal form, the key of every cache.
///
/// Rules ([`RepoUrl::parse`]):
/// - surrounding whitespace is trimmed;
/// - scheme and host are lower-cased (paths are case-sensitive and kept);
/// - user name and password are dropped (credentials are passed separately);
/// - default ports (`:443` for https, `:80` for http) are dropped;
/// - trailing `/` and then one trailing `.git` are stripped, so `https://h/o/r`,
///   `https://h/o/r/` and `https://H/o/r.git` are one repository;
/// - a plain absolute path `/srv/repo` is read as `file:///srv/repo`.
///
/// scp-like `git@host:org/repo` and `ssh://` URLs are normalised too (so they have a stable
/// key and a clear error), but cannot be fetched by this build.
///
/// The normal form is only the cache key: equality, hashing and ordering use it. The URL
/// actually fetched is the one given, minus credentials ([`RepoUrl::fetch_url`]), because a
/// server may serve `/repo.git` but not `/repo`.
#[derive(Clone, Debug)]
pub struct RepoUrl {
    normalized: String,
    fetch: String,
    scheme: String,
}

impl PartialEq for RepoUrl {
    fn eq(&self, other: &Self) -> bool {
        self.normalized == other.normalized
    }
}

impl Eq for RepoUrl {}

impl std::hash::Hash for RepoUrl {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.normalized.hash(state);
    }
}

impl PartialOrd for RepoUrl {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RepoUrl {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.normalized.cmp(&other.normalized)
    }
}

impl RepoUrl {
    /// Normalises `url`; see the type's docs for the rules.
    pub fn parse(url: &str) -> Result<Self, GitError> {
        let raw = url.trim();
        let invalid = |reason: &str| GitError::InvalidUrl {
            url: redact_userinfo(raw),
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(invalid("the url is empty"));
        }
        if raw.contains(['\0', '\n', '\r', ' ', '\t']) {
            return Err(invalid("the url contains whitespace or control characters"));
        }
        let (scheme, rest) = if let Some((scheme, rest)) = raw.split_once("://") {
            (scheme.to_ascii_lowercase(), rest.to_owned())
        } else if raw.starts_with('/') {
            ("file".to_owned(), raw.to_owned())
        } else if let Some((userhost, path)) = raw.split_once(':') {
            // scp-like syntax: [user@]host:path
            if userhost.contains('/') {
                return Err(invalid("the url has no scheme"));
            }
            let host = userhost.rsplit_once('@').map_or(userhost, |(_, h)| h);
            let path = path.trim_start_matches('/');
            ("ssh".to_owned(), format!("{host}/{path}"))
        } else {
            return Err(invalid("the url has no scheme"));
        };
        if !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(invalid("the scheme contains invalid characters"));
        }
        let normalized = if scheme == "file" {
            if !rest.starts_with('/') {
                return Err(invalid("a file url needs an absolute path (file:///path)"));
            }
            format!("file://{}", strip_suffixes(&rest))
        } else {
            let (authority, path) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if host_port.is_empty() {
                return Err(invalid("the url has no host"));
            }
            let mut host_port = host_port.to_ascii_lowercase();
            for (s, port) in [("https", ":443"), ("http", ":80"), ("ssh", ":22")] {
                if scheme == s
                    && let Some(h) = host_port.strip_suffix(port)
                {
                    host_port = h.to_owned();
                }
            }
            let path = strip_suffixes(&format!("/{path}"));
            format!("{scheme}://{host_port}{path}")
        };
        let fetch = if raw.starts_with('/') {
            format!("file://{raw}")
        } else if raw.contains("://") {
            strip_userinfo(raw)
        } else {
            raw.to_owned()
        };
        Ok(Self {
            normalized,
            fetch,
            scheme,
        })
    }

    /// The URL handed to the transport: as given, without user name or password.
    pub fn fetch_url(&self) -> &str {
        &self.fetch
    }

    /// The normalised URL.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The lower-cased scheme (`https`, `http`, `file`, `ssh`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The directory name of this URL's cache: a readable slug plus a 64-bit FNV-1a hash of
    /// the normalised URL (stable across releases and platforms).
    pub fn cache_dir_name(&self) -> String {
        let slug: String = self
            .normalized
            .split_once("://")
            .map_or(self.normalized.as_str(), |(_, r)| r)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let slug: String = slug
            .chars()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(
            "{}-{:016x}",
            slug.trim_matches('_'),
            fnv1a64(self.normalized.as_bytes())
        )
    }

    fn check_supported(&self) -> Result<(), GitError> {
        match self.scheme.as_str() {
            "https" | "http" | "file" => Ok(()),
            other => Err(GitError::UnsupportedScheme {
                url: self.normalized.clone(),
                scheme: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

fn strip_suffixes(path: &str) -> String {
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let path = path.trim_end_matches('/');
    path.to_owned()
}

/// Removes `user:password@` from a `scheme://` URL.
fn strip_userinfo(raw: &str) -> String {
    if let Some((scheme, rest)) = raw.split_once("://") {
        let (authority, path) = rest
            .split_once('/')
            .map_or((rest, None), |(a, p)| (a, Some(p)));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return match path {
                Some(path) => format!("{scheme}://{host}/{path}"),
                None => format!("{scheme}://{host}"),
            };
        }
    }
    raw.to_owned()
}

/// Replaces `user:password@` in a URL-ish string with `***@`, for error messages.
fn redact_userinfo(raw: &str) -> String {
    if let Some((scheme, rest)) = raw.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}/{path}");
        }
    }
    raw.to_owned()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// One reference advertised by a remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full name, e.g. `refs/heads/main`, `refs/tags/v1`, `HEAD`.
    pub name: String,
    /// The object the ref points at (the tag object for annotated tags).
    pub target: gix::ObjectId,
    /// The commit an annotated tag peels to; `None` for refs that point at a commit directly.
    pub peeled: Option<gix::ObjectId>,
    /// For symbolic refs (`HEAD`), the full name of the ref they point at.
    pub symbolic_target: Option<String>,
}

impl RemoteRef {
    /// The object this ref finally names (peeled through annotated tags).
    pub fn commit(&self) -> gix::ObjectId {
        self.peeled.unwrap_or(self.target)
    }
}

/// What a fetch did.
#[derive(Clone, Debug)]
pub struct FetchOutcome {
    /// The refs the remote advertised.
    pub refs: Vec<RemoteRef>,
    /// Whether a pack was received (false when everything was up to date).
    pub received_pack: bool,
}

/// Opens the bare repository at `dir`, creating it (and recording `url` in it) if missing.
///
/// Creation is atomic: the repository is initialised in a sibling temporary directory and
/// renamed into place, so concurrent callers (a fetch and a ref listing) never see or
/// destroy a half-created repository; the loser of a race uses the winner's. The repository
/// is opened isolated: no system, user or environment configuration is read.
pub fn open_or_init(dir: &Path, url: &RepoUrl) -> Result<gix::Repository, GitError> {
    let cache_err = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| GitError::Cache {
        path: dir.to_path_buf(),
        what: what.to_owned(),
        source: Arc::from(e),
    };
    let marker = dir.join(URL_MARKER);
    if !marker.exists() {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let file_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = dir.with_file_name(format!(
            ".{file_name}.init-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        gix::init_bare(&staging)
            .map_err(|e| cache_err("creating a bare repository", Box::new(e)))?;
        std::fs::write(staging.join(URL_MARKER), url.as_str())
            .map_err(|e| cache_err("recording the repository url", Box::new(e)))?;
        if let Err(error) = std::fs::rename(&staging, dir) {
            // Lost a race (the directory now exists), or a foreign directory is in the way;
            // the marker check below tells which.
            let _ = std::fs::remove_dir_all(&staging);
            if !marker.exists() {
                return Err(cache_err(
                    "moving a new repository into place (a directory without a capstan-url file is in the way)",
                    Box::new(error),
                ));
            }
        }
    }
    let found = std::fs::read_to_string(&marker)
        .map_err(|e| cache_err("reading the repository url", Box::new(e)))?;
    if found != url.as_str() {
        return Err(GitError::CacheConflict {
            path: dir.to_path_buf(),
            expected: url.as_str().to_owned(),
            found,
        });
    }
    open_isolated(dir)
}

/// Opens an existing bare repository without reading any system or user configuration.
pub fn open_isolated(dir: &Path) -> Result<gix::Repository, GitError> {
    gix::open_opts(dir, gix::open::Options::isolated()).map_err(|e| GitError::Cache {
        path: dir.to_path_buf(),
        what: "opening the repository".to_owned(),
        source: Arc::new(e),
    })
}

/// Fetches all branches and tags of `url` into the bare repository at `dir` (created if
/// missing). Blocking: call it from a blocking thread.
pub fn fetch_blocking(
    dir: &Path,
    url: &RepoUrl,
    credentials: &Credentials,
) -> Result<FetchOutcome, GitError> {
    fetch_blocking_limited(dir, url, credentials, u64::MAX)
}

/// [`fetch_blocking`] that stops, failing with [`GitError::TooLarge`], once the packs received
/// pass `max_bytes`. The partial pack is discarded (gix writes it to a temporary file), so the
/// repository keeps what it had.
pub fn fetch_blocking_limited(
    dir: &Path,
    url: &RepoUrl,
    credentials: &Credentials,
    max_bytes: u64,
) -> Result<FetchOutcome, GitError> {
    url.check_supported()?;
    let repo = open_or_init(dir, url)?;
    let remote_err = |e: gix::Error| classify(url, "fetching", e);
    let remote = fetch_remote(&repo, url).map_err(remote_err)?;
    let connection = connect(&repo, &remote, url, credentials).map_err(remote_err)?;
    let options = ref_map_options();
    let interrupt = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let exceeded = AtomicBool::new(false);
    let pack_dir = dir.join("objects").join("pack");
    let before = dir_size(&pack_dir);
    let outcome = std::thread::scope(|scope| {
        if max_bytes != u64::MAX {
            // gix receives the pack into a temporary file in objects/pack: watch it grow and
            // interrupt the transfer past the limit.
            scope.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if dir_size(&pack_dir).saturating_sub(before) > max_bytes {
                        exceeded.store(true, Ordering::SeqCst);
                        interrupt.store(true, Ordering::SeqCst);
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
        }
        let outcome = connection
            .prepare_fetch(gix::progress::Discard, options)
            .map_err(remote_err)
            .and_then(|prepared| {
                prepared
                    .receive(gix::progress::Discard, &interrupt)
                    .map_err(remote_err)
            });
        done.store(true, Ordering::SeqCst);
        outcome
    });
    if exceeded.load(Ordering::SeqCst) {
        return Err(GitError::TooLarge {
            url: url.as_str().to_owned(),
            limit: max_bytes,
        });
    }
    let outcome = outcome?;
    let received_pack = matches!(outcome.status, gix::remote::fetch::Status::Change { .. });
    Ok(FetchOutcome {
        refs: convert_refs(&outcome.ref_map.remote_refs),
        received_pack,
    })
}

/// Lists the remote's refs (`git ls-remote`) without fetching objects. `dir` is the cached
/// bare repository (created if missing; only its configuration is used). Blocking.
pub fn list_refs_blocking(
    dir: &Path,
    url: &RepoUrl,
    credentials: &Credentials,
) -> Result<Vec<RemoteRef>, GitError> {
    url.check_supported()?;
    let repo = open_or_init(dir, url)?;
    let remote_err = |e: gix::Error| classify(url, "listing refs of", e);
    let remote = fetch_remote(&repo, url).map_err(remote_err)?;
    let connection = connect(&repo, &remote, url, credentials).map_err(remote_err)?;
    let options = ref_map_options();
    let (ref_map, _handshake) = connection
        .ref_map(gix::progress::Discard, options)
        .map_err(remote_err)?;
    Ok(convert_refs(&ref_map.remote_refs))
}

/// The anonymous remote every fetch and listing uses: all branches and tags, no automatic
/// tag following (the refspecs already name every tag).
fn fetch_remote<'repo>(
    repo: &'repo gix::Repository,
    url: &RepoUrl,
) -> Result<gix::Remote<'repo>, gix::Error> {
    repo.remote_at(url.fetch_url())?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(FETCH_REFSPECS, Direction::Fetch)
}

/// Ask the server for every ref, not only those the refspecs' prefixes name.
fn ref_map_options() -> gix::remote::ref_map::Options {
    gix::remote::ref_map::Options {
        prefix_from_spec_as_filter_on_remote: false,
        ..Default::default()
    }
}

type Conn<'r, 'repo> = gix::remote::Connection<
    'r,
    'static,
    'repo,
    Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
>;

fn connect<'r, 'repo>(
    repo: &'repo gix::Repository,
    remote: &'r gix::Remote<'repo>,
    url: &RepoUrl,
    credentials: &Credentials,
) -> Result<Conn<'r, 'repo>, gix::Error> {
    // Never consult credential helpers or prompts: the caller's credentials are the only ones.
    let connection = remote
        .connect(Direction::Fetch)?
        .with_credentials(|_| Ok(None));
    // Credentials go in as a pre-emptive `Authorization` header of the HTTP transport options,
    // built in memory for this connection only. gix's own basic-auth path refuses plain
    // `http://`; Argo CD allows it, and so do we (see docs/repo-server.md).
    let header = match credentials {
        Credentials::None => None,
        Credentials::Basic { username, password } => {
            use base64::Engine as _;
            let pair = format!("{username}:{password}");
            Some(format!(
                "Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        Credentials::Bearer { token } => Some(format!("Authorization: Bearer {token}")),
    };
    let connection = if let Some(header) = header
        && matches!(url.scheme(), "http" | "https")
    {
        let mut options = match repo.transport_options(url.fetch_url(), None)? {
            Some(options) => options,
            None => {
                Box::new(gix::protocol::transport::client::blocking_io::http::Options::default())
                    as Box<dyn std::any::Any>
            }
        };
        if let Some(http) =
            options.downcast_mut::<gix::protocol::transport::client::blocking_io::http::Options>()
        {
            http.extra_headers.push(header);
        }
        connection.with_transport_options(options)
    } else {
        connection
    };
    Ok(connection)
}

fn convert_refs(refs: &[gix::protocol::handshake::Ref]) -> Vec<RemoteRef> {
    use gix::protocol::handshake::Ref;
    refs.iter()
        .filter_map(|r| match r {
            Ref::Peeled {
                full_ref_name,
                tag,
                object,
            } => Some(RemoteRef {
                name: full_ref_name.to_string(),
                target: *tag,
                peeled: Some(*object),
                symbolic_target: None,
            }),
            Ref::Direct {
                full_ref_name,
                object,
            } => Some(RemoteRef {
                name: full_ref_name.to_string(),
                target: *object,
                peeled: None,
                symbolic_target: None,
            }),
            Ref::Symbolic {
                full_ref_name,
                target,
                tag,
                object,
            } => Some(RemoteRef {
                name: full_ref_name.to_string(),
                target: tag.unwrap_or(*object),
                peeled: tag.map(|_| *object),
                symbolic_target: Some(target.to_string()),
            }),
            Ref::Unborn { .. } => None,
        })
        .collect()
}

/// Turns a gix error into ours, recognising authentication failures. gix's messages carry
/// the URL we gave it, which never contains credentials; the password itself is never part
/// of a gix error.
fn classify(url: &RepoUrl, operation: &'static str, error: gix::Error) -> GitError {
    let chain = format!("{error:#}");
    let lower = chain.to_ascii_lowercase();
    let source: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
    if lower.contains("401")
        || lower.contains("403")
        || lower.contains("authenticat")
        || lower.contains("credentials")
    {
        GitError::Authentication {
            url: url.as_str().to_owned(),
            source,
        }
    } else {
        GitError::Remote {
            operation,
            url: url.as_str().to_owned(),
            message: chain.lines().next().unwrap_or_default().to_owned(),
            source,
        }
    }
}

/// Settings of a [`RepoCache`].
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Where the bare repositories live (one sub-directory per normalised URL).
    pub root: PathBuf,
    /// Upper bound of the bytes all cached repositories may use. After each fetch, whole
    /// repositories not in use are evicted, least recently used first, until the total fits.
    /// A single repository larger than the budget is kept while in use.
    pub max_bytes: u64,
}

#[derive(Debug, Default)]
struct Entry {
    /// Bytes on disk, measured after the last fetch.
    bytes: u64,
    /// When a handle for it was last handed out.
    last_used: Option<Instant>,
    /// Live [`RepoHandle`]s and running operations; evicted only at zero.
    users: u64,
}

type SharedFetch = Shared<BoxFuture<'static, Result<FetchOutcome, GitError>>>;

#[derive(Debug, Default)]
struct State {
    entries: HashMap<RepoUrl, Entry>,
    inflight: HashMap<RepoUrl, SharedFetch>,
    /// Serialises "is the commit here, else fetch" per repository (see
    /// [`RepoCache::fetch_for_commit`]).
    commit_gates: HashMap<RepoUrl, Arc<tokio::sync::Mutex<()>>>,
}

#[derive(Debug)]
struct Inner {
    config: CacheConfig,
    state: Mutex<State>,
    fetches: AtomicU64,
    listings: AtomicU64,
    evictions: AtomicU64,
    /// Most bytes one fetch may receive.
    max_fetch_bytes: AtomicU64,
}

/// The bare repository cache: one repository per normalised URL; see the [module docs](self).
///
/// Cloning is cheap and shares the cache.
#[derive(Clone, Debug)]
pub struct RepoCache {
    inner: Arc<Inner>,
}

/// A cached repository kept safe from eviction while this handle lives.
#[derive(Debug)]
pub struct RepoHandle {
    inner: Arc<Inner>,
    url: RepoUrl,
    path: PathBuf,
}

impl RepoHandle {
    /// The bare repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The normalised URL.
    pub fn url(&self) -> &RepoUrl {
        &self.url
    }

    /// Opens the repository (isolated from system/user configuration).
    pub fn open(&self) -> Result<gix::Repository, GitError> {
        open_isolated(&self.path)
    }
}

impl Drop for RepoHandle {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        if let Some(entry) = state.entries.get_mut(&self.url) {
            entry.users = entry.users.saturating_sub(1);
        }
    }
}

/// Snapshot of a cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Network fetches started.
    pub fetches: u64,
    /// Remote ref listings started.
    pub listings: u64,
    /// Repositories evicted to stay within the byte budget.
    pub evictions: u64,
    /// Bytes of all cached repositories, as last measured.
    pub bytes: u64,
    /// Repositories in the cache.
    pub repositories: usize,
}

/// Locks `m`, carrying on after a panic elsewhere poisoned it (the guarded state is always
/// left consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RepoCache {
    /// Creates the cache, creating `config.root` if needed. Repositories already on disk
    /// (from an earlier run) are adopted: they count against the budget and are the first
    /// to be evicted. Leftovers of interrupted creations and evictions are deleted. Blocking
    /// (it walks the cache directory); call it at start-up.
    pub fn new(config: CacheConfig) -> Result<Self, GitError> {
        let root_err = |what: &str, e: std::io::Error| GitError::Cache {
            path: config.root.clone(),
            what: what.to_owned(),
            source: Arc::new(e),
        };
        std::fs::create_dir_all(&config.root)
            .map_err(|e| root_err("creating the cache directory", e))?;
        let mut state = State::default();
        let entries = std::fs::read_dir(&config.root)
            .map_err(|e| root_err("listing the cache directory", e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && (name.contains(".init-") || name.contains(".evicted-")) {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let Ok(recorded) = std::fs::read_to_string(path.join(URL_MARKER)) else {
                continue;
            };
            match RepoUrl::parse(&recorded) {
                Ok(url) if url.cache_dir_name() == name => {
                    let bytes = dir_size(&path);
                    state.entries.insert(
                        url,
                        Entry {
                            bytes,
                            last_used: None,
                            users: 0,
                        },
                    );
                }
                _ => {
                    tracing::warn!(dir = %path.display(), "ignoring an unknown directory in the git cache")
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
                fetches: AtomicU64::new(0),
                listings: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                max_fetch_bytes: AtomicU64::new(u64::MAX),
            }),
        })
    }

    /// Limits what one fetch may receive (default: unlimited); a fetch that passes it fails
    /// with [`GitError::TooLarge`] and leaves the cached repository as it was.
    pub fn set_max_fetch_bytes(&self, bytes: u64) {
        self.inner.max_fetch_bytes.store(bytes, Ordering::SeqCst);
    }

    /// The directory a URL is cached in.
    pub fn dir_for(&self, url: &RepoUrl) -> PathBuf {
        self.inner.dir_for(url)
    }

    /// Counters, for tests and metrics.
    pub fn stats(&self) -> CacheStats {
        let state = lock(&self.inner.state);
        CacheStats {
            fetches: self.inner.fetches.load(Ordering::SeqCst),
            listings: self.inner.listings.load(Ordering::SeqCst),
            evictions: self.inner.evictions.load(Ordering::SeqCst),
            bytes: state.entries.values().map(|e| e.bytes).sum(),
            repositories: state.entries.len(),
        }
    }

    fn acquire(&self, url: &RepoUrl) -> RepoHandle {
        let mut state = lock(&self.inner.state);
        let entry = state.entries.entry(url.clone()).or_default();
        entry.users += 1;
        entry.last_used = Some(Instant::now());
        RepoHandle {
            inner: Arc::clone(&self.inner),
            url: url.clone(),
            path: self.dir_for(url),
        }
    }

    /// Returns a handle on the cached repository without fetching (it may be empty).
    pub fn handle(&self, url: &RepoUrl) -> RepoHandle {
        self.acquire(url)
    }

    /// Returns a handle on the cached repository once it holds `commit`, fetching only when
    /// it does not yet.
    ///
    /// Any number of concurrent callers wanting commits of one repository cause at most one
    /// fetch: the check and the fetch are serialised per repository, so a caller that finds
    /// the commit missing just as another caller's fetch completes looks again instead of
    /// fetching a second time.
    pub async fn fetch_for_commit(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
        commit: gix::ObjectId,
    ) -> Result<RepoHandle, GitError> {
        url.check_supported()?;
        let has_commit = |handle: &RepoHandle| {
            handle
                .open()
                .ok()
                .is_some_and(|repo| repo.find_commit(commit).is_ok())
        };
        let handle = self.acquire(url);
        if has_commit(&handle) {
            return Ok(handle);
        }
        let gate = {
            let mut state = lock(&self.inner.state);
            Arc::clone(state.commit_gates.entry(url.clone()).or_default())
        };
        let _turn = gate.lock().await;
        if has_commit(&handle) {
            return Ok(handle);
        }
        let (handle, _) = self.fetch(url, credentials).await?;
        Ok(handle)
    }

    /// Fetches all branches and tags of `url` into its cached bare repository and returns a
    /// handle that keeps it from being evicted.
    ///
    /// Concurrent calls for one repository share one fetch: a caller arriving while a fetch
    /// is in flight waits for it and gets its result instead of fetching again.
    pub async fn fetch(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
    ) -> Result<(RepoHandle, FetchOutcome), GitError> {
        url.check_supported()?;
        let handle = self.acquire(url);
        let shared = {
            let mut state = lock(&self.inner.state);
            if let Some(existing) = state.inflight.get(url) {
                existing.clone()
            } else {
                self.inner.fetches.fetch_add(1, Ordering::SeqCst);
                let inner = Arc::clone(&self.inner);
                let dir = handle.path.clone();
                let key = url.clone();
                let credentials = credentials.clone();
                let span = tracing::info_span!("git_fetch", url = %key);
                // A blocking task runs to completion (and leaves the in-flight map) even if
                // every caller is cancelled; callers share its outcome. The budget is
                // enforced here, once per fetch, not once per caller sharing it.
                let task = tokio::task::spawn_blocking(move || {
                    let _entered = span.enter();
                    let limit = inner.max_fetch_bytes.load(Ordering::SeqCst);
                    let result = fetch_blocking_limited(&dir, &key, &credentials, limit);
                    let bytes = dir_size(&dir);
                    {
                        let mut state = lock(&inner.state);
                        state.inflight.remove(&key);
                        if result.is_ok()
                            && let Some(entry) = state.entries.get_mut(&key)
                        {
                            entry.bytes = bytes;
                        }
                    }
                    match &result {
                        Ok(_) => tracing::debug!(url = %key, "fetched"),
                        Err(error) => tracing::warn!(url = %key, %error, "fetch failed"),
                    }
                    inner.enforce_budget_blocking();
                    result
                });
                let worker_url = url.clone();
                let shared = async move {
                    task.await
                        .unwrap_or_else(|e| Err(worker_error(&worker_url, e)))
                }
                .boxed()
                .shared();
                state.inflight.insert(url.clone(), shared.clone());
                shared
            }
        };
        let outcome = shared.await?;
        Ok((handle, outcome))
    }

    /// Lists the remote's refs without fetching objects (no caching here; see
    /// [`crate::revision::RefCache`]).
    pub async fn list_refs(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
    ) -> Result<Vec<RemoteRef>, GitError> {
        url.check_supported()?;
        let handle = self.acquire(url);
        self.inner.listings.fetch_add(1, Ordering::SeqCst);
        let dir = handle.path.clone();
        let task_url = url.clone();
        let credentials = credentials.clone();
        let span = tracing::debug_span!("git_list_refs", url = %url);
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            list_refs_blocking(&dir, &task_url, &credentials)
        })
        .await
        .unwrap_or_else(|e| Err(worker_error(url, e)));
        drop(handle);
        result
    }

    /// Evicts least recently used repositories that nobody uses until the total size fits
    /// the budget. Every fetch does this when it finishes; public so a service can also call
    /// it on a timer.
    pub async fn enforce_budget(&self) {
        let inner = Arc::clone(&self.inner);
        if let Err(error) =
            tokio::task::spawn_blocking(move || inner.enforce_budget_blocking()).await
        {
            tracing::warn!(%error, "git cache eviction task failed");
        }
    }
}

impl Inner {
    fn dir_for(&self, url: &RepoUrl) -> PathBuf {
        self.config.root.join(url.cache_dir_name())
    }

    /// [`RepoCache::enforce_budget`], on the calling (blocking) thread.
    fn enforce_budget_blocking(&self) {
        let victims = {
            let mut state = lock(&self.state);
            let mut total: u64 = state.entries.values().map(|e| e.bytes).sum();
            let mut candidates: Vec<(Option<Instant>, RepoUrl, u64)> = state
                .entries
                .iter()
                .filter(|(url, e)| e.users == 0 && !state.inflight.contains_key(*url))
                .map(|(url, e)| (e.last_used, url.clone(), e.bytes))
                .collect();
            candidates.sort();
            let mut victims = Vec::new();
            for (_, url, bytes) in candidates {
                if total <= self.config.max_bytes {
                    break;
                }
                // Renamed away while the state lock is held, so a fetch that starts right
                // after this (and creates the directory anew) never races with the deletion.
                let dir = self.dir_for(&url);
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let doomed = dir.with_file_name(format!(
                    ".{}.evicted-{}-{}",
                    url.cache_dir_name(),
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                match std::fs::rename(&dir, &doomed) {
                    Ok(()) => {
                        self.evictions.fetch_add(1, Ordering::SeqCst);
                        victims.push((url.clone(), doomed));
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(url = %url, %error, "could not evict a repository");
                        continue;
                    }
                }
                total = total.saturating_sub(bytes);
                state.entries.remove(&url);
            }
            victims
        };
        for (url, doomed) in victims {
            tracing::info!(url = %url, "evicted repository from the git cache");
            if let Err(error) = std::fs::remove_dir_all(&doomed) {
                tracing::warn!(url = %url, %error, "could not delete an evicted repository");
            }
        }
    }
}

/// A blocking task that panicked or was cancelled, as the error its callers see.
fn worker_error(url: &RepoUrl, error: tokio::task::JoinError) -> GitError {
    GitError::Worker {
        url: url.to_string(),
        message: error.to_string(),
    }
}

/// Total size in bytes of the regular files under `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(url: &str) -> String {
        RepoUrl::parse(url).expect("valid").as_str().to_owned()
    }

    #[test]
    fn normalises_urls() {
        assert_eq!(
            n("https://GitHub.com/Org/Repo.git"),
            "https://github.com/Org/Repo"
        );
        assert_eq!(
            n("https://github.com/Org/Repo/"),
            "https://github.com/Org/Repo"
        );
        assert_eq!(
            n("HTTPS://github.com:443/o/r.git/"),
            "https://github.com/o/r"
        );
        assert_eq!(
            n("https://user:pw@github.com/o/r"),
            "https://github.com/o/r"
        );
        let u = RepoUrl::parse("https://user:pw@Host/o/r.git").expect("valid");
        assert_eq!(u.fetch_url(), "https://Host/o/r.git");
        assert_eq!(u, RepoUrl::parse("https://host/o/r").expect("valid"));
        assert_eq!(n("http://h:8080/o/r"), "http://h:8080/o/r");
        assert_eq!(n("file:///srv/repo.git"), "file:///srv/repo");
        assert_eq!(n("/srv/repo/"), "file:///srv/repo");
        assert_eq!(
            n("git@github.com:org/repo.git"),
            "ssh://github.com/org/repo"
        );
        assert!(RepoUrl::parse("").is_err());
        assert!(RepoUrl::parse("no-scheme").is_err());
        assert!(RepoUrl::parse("file://relative").is_err());
    }

    #[test]
    fn invalid_url_error_hides_credentials() {
        let err = RepoUrl::parse("https://u:hunter2@/x").expect_err("no host");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn cache_dir_names_are_stable_and_distinct() {
        let a = RepoUrl::parse("https://h/o/r").expect("valid");
        let b = RepoUrl::parse("https://H/o/r.git").expect("valid");
        let c = RepoUrl::parse("https://h/o/R").expect("valid");
        assert_eq!(a.cache_dir_name(), b.cache_dir_name());
        assert_ne!(a.cache_dir_name(), c.cache_dir_name());
        assert!(
            a.cache_dir_name()
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        );
    }

    #[test]
    fn a_directory_of_another_url_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = RepoUrl::parse("https://h/a").expect("valid");
        let b = RepoUrl::parse("https://h/b").expect("valid");
        let dir = tmp.path().join("x");
        open_or_init(&dir, &a).expect("created");
        open_or_init(&dir, &a).expect("reopened");
        let err = open_or_init(&dir, &b).expect_err("conflict");
        assert!(matches!(err, GitError::CacheConflict { .. }), "{err}");
    }

    #[test]
    fn ssh_is_refused_clearly() {
        let url = RepoUrl::parse("ssh://git@github.com/o/r").expect("valid");
        let err = url.check_supported().expect_err("ssh unsupported");
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Credentials::Bearer {
            token: "tok123".into(),
        };
        assert!(!format!("{t:?}").contains("tok123"));
    }
}
