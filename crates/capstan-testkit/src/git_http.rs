//! A smart-HTTP Git server for tests: the system `git http-backend` behind a small axum server.
//!
//! [`GitHttpServer::start`] serves every repository under a root directory (`<root>/<name>.git`,
//! bare or not) and any repository mounted with [`GitHttpServer::url_for`] or
//! [`GitHttpServer::mount`], on `127.0.0.1` at a port the kernel picks. Each request runs
//! `git http-backend` as a CGI program: the request body is streamed to its stdin and its
//! output is parsed (`Status:` and other headers, a blank line, the body) and streamed back,
//! so fetches of any size and protocol v2 (the `Git-Protocol` header) work like on a real
//! forge.
//!
//! Optional HTTP basic auth and bearer tokens guard every request; a request without valid
//! credentials gets `401` with `WWW-Authenticate`. Pushes (`git-receive-pack`) are refused with
//! `403` unless [`GitHttpOptions::allow_push`] is set. Upload-pack is configured permissively
//! (`uploadpack.allowFilter`, `uploadpack.allowAnySHA1InWant`) so clients may fetch single
//! commits and use partial clones.
//!
//! The server runs on its own thread with its own tokio runtime, so one server (for example in a
//! `static`) can be shared by all tests of a binary even though each `#[tokio::test]` has its own
//! runtime. Dropping the server stops it. [`GitHttpServer::stats`] counts requests by kind, and
//! [`GitHttpServer::recent_errors`] keeps the last few failures for a test's diagnostics.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use futures::StreamExt as _;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{ChildStdout, Command};
use tokio::sync::watch;

use crate::git::GitRepo;

/// How many failures [`GitHttpServer::recent_errors`] keeps.
pub const RECENT_ERRORS: usize = 32;
/// How long in-flight requests may take to finish once the server is dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Largest CGI response header block accepted from `git http-backend`.
const MAX_CGI_HEADER: usize = 64 * 1024;
/// How much of `git http-backend`'s stderr is kept per request for diagnostics.
const MAX_STDERR: usize = 16 * 1024;
/// Read size when streaming the CGI body back.
const CHUNK: usize = 32 * 1024;

/// Credentials for HTTP basic auth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// Expected user name; passed to `git http-backend` as `REMOTE_USER`.
    pub username: String,
    /// Expected password.
    pub password: String,
}

/// How a [`GitHttpServer`] authenticates and what it allows.
///
/// With neither `basic_auth` nor `bearer_token`, every request is anonymous and allowed. With
/// one or both, a request must present one valid credential.
#[derive(Clone, Debug)]
pub struct GitHttpOptions {
    /// Require these basic-auth credentials (or the bearer token, if also set).
    pub basic_auth: Option<BasicAuth>,
    /// Require `Authorization: Bearer <token>` (or the basic-auth credentials, if also set).
    pub bearer_token: Option<String>,
    /// Serve `git-receive-pack` (pushes). Off by default: pushes get `403`. When on, pushing to
    /// the checked-out branch of a non-bare repository updates its work tree
    /// (`receive.denyCurrentBranch=updateInstead`).
    pub allow_push: bool,
    /// Realm named in `WWW-Authenticate`.
    pub realm: String,
}

impl Default for GitHttpOptions {
    fn default() -> Self {
        Self {
            basic_auth: None,
            bearer_token: None,
            allow_push: false,
            realm: "capstan-test-git".to_owned(),
        }
    }
}

impl GitHttpOptions {
    /// Anonymous read-only access (the default).
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Requires HTTP basic auth with these credentials.
    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.basic_auth = Some(BasicAuth {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Requires `Authorization: Bearer <token>`.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Allows or refuses pushes; see [`GitHttpOptions::allow_push`].
    pub fn with_push(mut self, allow: bool) -> Self {
        self.allow_push = allow;
        self
    }

    fn requires_auth(&self) -> bool {
        self.basic_auth.is_some() || self.bearer_token.is_some()
    }
}

/// A snapshot of a server's request counters. Every request increments `requests` first, so
/// once a `git` client has exited, all of its requests are counted. The per-kind counters
/// (`info_refs`, `upload_packs`, `receive_packs`, `protocol_v2`, `gzip_bodies`) count authorized requests
/// only; note that `git` sends credentials from a URL only after a first `401` challenge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GitHttpStats {
    /// All requests, including refused ones.
    pub requests: u64,
    /// Ref advertisements (`GET …/info/refs?service=…`), one per `ls-remote`, clone or fetch.
    pub info_refs: u64,
    /// `POST …/git-upload-pack`: fetch negotiations and pack downloads (with protocol v2 also
    /// `ls-refs`, so an `ls-remote` counts one).
    pub upload_packs: u64,
    /// `POST …/git-receive-pack` requests that were let through (pushes).
    pub receive_packs: u64,
    /// Requests that carried `Git-Protocol: version=2`.
    pub protocol_v2: u64,
    /// Requests whose body was gzip-compressed (`Content-Encoding: gzip`; git does this for
    /// negotiation bodies over 1 KiB).
    pub gzip_bodies: u64,
    /// Requests refused with `401`.
    pub unauthorized: u64,
    /// Requests refused with `403` (pushes when pushing is off) or `400` (bad paths).
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    info_refs: AtomicU64,
    upload_packs: AtomicU64,
    receive_packs: AtomicU64,
    protocol_v2: AtomicU64,
    gzip_bodies: AtomicU64,
    unauthorized: AtomicU64,
    rejected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> GitHttpStats {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        GitHttpStats {
            requests: get(&self.requests),
            info_refs: get(&self.info_refs),
            upload_packs: get(&self.upload_packs),
            receive_packs: get(&self.receive_packs),
            protocol_v2: get(&self.protocol_v2),
            gzip_bodies: get(&self.gzip_bodies),
            unauthorized: get(&self.unauthorized),
            rejected: get(&self.rejected),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

/// State shared by the handle and the server thread.
#[derive(Debug)]
struct Inner {
    root: PathBuf,
    options: GitHttpOptions,
    /// `<name>.git` → repository directory served as that URL.
    mounts: Mutex<HashMap<String, PathBuf>>,
    counters: Counters,
    errors: Mutex<VecDeque<String>>,
    /// `HOME` of every `git http-backend`, so no user configuration leaks in.
    backend_home: PathBuf,
}

impl Inner {
    fn record_error(&self, error: String) {
        tracing::warn!(error = %error, "git http server error");
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if errors.len() == RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(error);
    }

    /// Where `git http-backend` should look: `(GIT_PROJECT_ROOT, PATH_INFO)`.
    fn route(&self, path_info: &str) -> (PathBuf, String) {
        let trimmed = path_info.trim_start_matches('/');
        let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let mounts = self
            .mounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match mounts.get(first) {
            Some(dir) => (dir.clone(), format!("/{rest}")),
            None => (self.root.clone(), path_info.to_owned()),
        }
    }
}

/// A smart-HTTP Git server on `127.0.0.1`; see the [module docs](self).
#[derive(Debug)]
pub struct GitHttpServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    _backend_home: TempDir,
    _temp_root: Option<TempDir>,
}

impl GitHttpServer {
    /// Starts serving the repositories under `root` (`<root>/<name>.git`). The directory is
    /// created if missing. Returns once the port is bound; connections made before the server
    /// thread is running wait in the listen backlog.
    pub fn start(root: impl AsRef<Path>, options: GitHttpOptions) -> anyhow::Result<Self> {
        Self::start_inner(root.as_ref().to_path_buf(), options, None)
    }

    /// Starts a server whose root is a fresh temporary directory, deleted with the server.
    /// Create repositories in it with [`GitRepo::init_at`]`(server.root().join("x.git"))` or
    /// mount existing ones with [`GitHttpServer::url_for`].
    pub fn start_temp(options: GitHttpOptions) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("capstan-git-http-")
            .tempdir()
            .context("creating the git http server's root directory")?;
        Self::start_inner(root.path().to_path_buf(), options, Some(root))
    }

    fn start_inner(
        root: PathBuf,
        options: GitHttpOptions,
        temp_root: Option<TempDir>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let root = std::fs::canonicalize(&root)
            .with_context(|| format!("resolving {}", root.display()))?;
        let backend_home = tempfile::Builder::new()
            .prefix("capstan-git-http-home-")
            .tempdir()
            .context("creating HOME for git http-backend")?;

        let listener =
            StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("git-http-worker")
            .enable_all()
            .build()
            .context("building the git http server's runtime")?;

        let inner = Arc::new(Inner {
            root,
            options,
            mounts: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            errors: Mutex::new(VecDeque::new()),
            backend_home: backend_home.path().to_path_buf(),
        });
        let (shutdown, stop) = watch::channel(false);
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let thread_inner = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name(format!("git-http-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, app, stop, thread_inner));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("spawning the git http server thread")?;
        tracing::debug!(%addr, "git http server started");

        Ok(Self {
            inner,
            addr,
            shutdown,
            thread: Some(thread),
            _backend_home: backend_home,
            _temp_root: temp_root,
        })
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory whose `<name>.git` repositories are served.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The options the server was started with.
    pub fn options(&self) -> &GitHttpOptions {
        &self.inner.options
    }

    /// `http://127.0.0.1:PORT/<name>.git` (`name` may already end in `.git`).
    pub fn url(&self, name: &str) -> String {
        format!("{}/{}", self.base_url(), with_git_suffix(name))
    }

    /// Like [`GitHttpServer::url`] with the basic-auth credentials in the URL
    /// (`http://user:password@127.0.0.1:PORT/<name>.git`); the plain URL without basic auth.
    /// User name and password are used verbatim, so keep test credentials URL-safe.
    pub fn url_with_credentials(&self, name: &str) -> String {
        match &self.inner.options.basic_auth {
            Some(auth) => format!(
                "http://{}:{}@{}/{}",
                auth.username,
                auth.password,
                self.addr,
                with_git_suffix(name)
            ),
            None => self.url(name),
        }
    }

    /// Serves the repository at `dir` (a work tree or a bare repository) as
    /// `/<name>.git`, taking precedence over `<root>/<name>.git`; returns its URL. Mounting the
    /// same name again replaces the earlier directory.
    pub fn mount(&self, name: &str, dir: impl AsRef<Path>) -> anyhow::Result<String> {
        let key = with_git_suffix(name);
        ensure!(
            !key.contains('/') && !key.contains('\\') && !key.starts_with('.') && key.len() > 4,
            "cannot mount a repository as {name:?}: use a plain name such as \"app\""
        );
        let dir = dir.as_ref();
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
        self.inner
            .mounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, dir);
        Ok(self.url(name))
    }

    /// Serves `repo` as `/<repo.name()>.git` and returns that URL. The server only keeps the
    /// path: keep `repo` alive while clients use the URL.
    pub fn url_for(&self, repo: &GitRepo) -> anyhow::Result<String> {
        self.mount(repo.name(), repo.path())
    }

    /// Total requests so far, including refused ones.
    pub fn request_count(&self) -> u64 {
        self.inner.counters.requests.load(Ordering::SeqCst)
    }

    /// Request counters by kind.
    pub fn stats(&self) -> GitHttpStats {
        self.inner.counters.snapshot()
    }

    /// The last [`RECENT_ERRORS`] failures (refused paths, backend failures with their stderr,
    /// 5xx responses), oldest first. Authentication failures are counted, not recorded.
    pub fn recent_errors(&self) -> Vec<String> {
        self.inner
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        // The receiver lives as long as the server thread; if it is gone there is nothing to stop.
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!(addr = %self.addr, "git http server thread panicked");
        }
    }
}

fn with_git_suffix(name: &str) -> String {
    if name.ends_with(".git") {
        name.to_owned()
    } else {
        format!("{name}.git")
    }
}

/// Runs the axum server until shutdown is signalled, then drains for at most [`SHUTDOWN_GRACE`].
async fn serve(
    listener: StdTcpListener,
    app: Router,
    stop: watch::Receiver<bool>,
    inner: Arc<Inner>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            inner.record_error(format!("cannot register the listener with tokio: {err}"));
            return;
        }
    };
    let mut graceful_stop = stop.clone();
    let mut hard_stop = stop;
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        // An error means the handle is gone, which is also a reason to stop.
        let _ = graceful_stop.wait_for(|stopped| *stopped).await;
    });
    let deadline = async move {
        let _ = hard_stop.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => {
            if let Err(err) = result {
                inner.record_error(format!("server stopped with an error: {err}"));
            }
        }
        () = deadline => {
            tracing::warn!("git http server: requests still running after the shutdown grace period; abandoning them");
        }
    }
}

/// What a request asks the backend for, as far as counting and push policy care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    AdvertiseUploadPack,
    AdvertiseReceivePack,
    UploadPack,
    ReceivePack,
    Other,
}

impl Service {
    fn classify(method: &Method, path_info: &str, query: &str) -> Self {
        let wants = |name: &str| {
            query
                .split('&')
                .any(|pair| pair == format!("service={name}"))
        };
        if path_info.ends_with("/info/refs") {
            if wants("git-receive-pack") {
                return Self::AdvertiseReceivePack;
            }
            if wants("git-upload-pack") {
                return Self::AdvertiseUploadPack;
            }
        }
        if method == Method::POST {
            if path_info.ends_with("/git-upload-pack") {
                return Self::UploadPack;
            }
            if path_info.ends_with("/git-receive-pack") {
                return Self::ReceivePack;
            }
        }
        Self::Other
    }

    fn is_push(self) -> bool {
        matches!(self, Self::AdvertiseReceivePack | Self::ReceivePack)
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let counters = &inner.counters;
    bump(&counters.requests);
    let (parts, body) = request.into_parts();

    let remote_user = match authorize(&inner.options, &parts.headers) {
        Ok(user) => user,
        Err(()) => {
            bump(&counters.unauthorized);
            return unauthorized(&inner.options);
        }
    };

    let path_info = match decode_path(parts.uri.path()) {
        Ok(path) => path,
        Err(reason) => {
            bump(&counters.rejected);
            inner.record_error(format!("{} {}: {reason}", parts.method, parts.uri.path()));
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let service = Service::classify(&parts.method, &path_info, query);
    if service.is_push() && !inner.options.allow_push {
        bump(&counters.rejected);
        return (
            StatusCode::FORBIDDEN,
            "pushing is disabled on this test git server\n",
        )
            .into_response();
    }
    match service {
        Service::AdvertiseUploadPack | Service::AdvertiseReceivePack => bump(&counters.info_refs),
        Service::UploadPack => bump(&counters.upload_packs),
        Service::ReceivePack => bump(&counters.receive_packs),
        Service::Other => {}
    }
    let header_value = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let git_protocol = header_value(HeaderName::from_static("git-protocol"));
    if git_protocol
        .as_deref()
        .is_some_and(|p| p.split(':').any(|f| f == "version=2"))
    {
        bump(&counters.protocol_v2);
    }

    let content_encoding = header_value(header::CONTENT_ENCODING);
    if content_encoding
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
    {
        bump(&counters.gzip_bodies);
    }
    let (project_root, routed_path) = inner.route(&path_info);
    let cgi = CgiRequest {
        method: parts.method.to_string(),
        project_root,
        path_info: routed_path,
        query: query.to_owned(),
        content_type: header_value(header::CONTENT_TYPE),
        content_length: header_value(header::CONTENT_LENGTH),
        content_encoding,
        git_protocol,
        remote_user,
        peer,
    };
    let what = format!("{} {}", parts.method, parts.uri);
    match run_backend(&inner, cgi, body, what.clone()).await {
        Ok(response) => {
            if response.status().is_server_error() {
                inner.record_error(format!(
                    "{what}: git http-backend answered {}",
                    response.status()
                ));
            }
            response
        }
        Err(err) => {
            inner.record_error(format!("{what}: {err:#}"));
            (
                StatusCode::BAD_GATEWAY,
                format!("git http-backend failed: {err:#}\n"),
            )
                .into_response()
        }
    }
}

/// `Ok(Some(user))` for valid basic auth, `Ok(None)` when anonymous access is allowed or a
/// valid bearer token was sent, `Err(())` otherwise.
fn authorize(options: &GitHttpOptions, headers: &HeaderMap) -> Result<Option<String>, ()> {
    if !options.requires_auth() {
        return Ok(None);
    }
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(());
    };
    let (scheme, credentials) = value.trim().split_once(' ').ok_or(())?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("basic")
        && let Some(expected) = &options.basic_auth
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| ())?;
        let decoded = String::from_utf8(decoded).map_err(|_| ())?;
        let (user, password) = decoded.split_once(':').ok_or(())?;
        if user == expected.username && password == expected.password {
            return Ok(Some(user.to_owned()));
        }
    }
    if scheme.eq_ignore_ascii_case("bearer")
        && let Some(expected) = &options.bearer_token
        && credentials == expected
    {
        return Ok(None);
    }
    Err(())
}

fn unauthorized(options: &GitHttpOptions) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    let realm = options.realm.replace(['"', '\\'], "");
    let mut challenges = Vec::new();
    if options.basic_auth.is_some() {
        challenges.push(format!("Basic realm=\"{realm}\""));
    }
    if options.bearer_token.is_some() {
        challenges.push(format!("Bearer realm=\"{realm}\""));
    }
    for challenge in challenges {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Percent-decodes the request path into `PATH_INFO` and refuses anything that could leave
/// the project root: `.` or `..` segments, empty segments, backslashes and NUL bytes.
fn decode_path(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {raw:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(out).map_err(|_| format!("path {raw:?} is not UTF-8"))?;
    if !path.starts_with('/') || path.len() == 1 {
        return Err(format!("path {raw:?} names no repository"));
    }
    if path.contains(['\0', '\\']) {
        return Err(format!("path {raw:?} contains a NUL byte or a backslash"));
    }
    if path[1..]
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return Err(format!("path {raw:?} contains an empty, . or .. segment"));
    }
    Ok(path)
}

/// The CGI meta-variables of one request.
#[derive(Debug)]
struct CgiRequest {
    method: String,
    project_root: PathBuf,
    path_info: String,
    query: String,
    content_type: Option<String>,
    content_length: Option<String>,
    content_encoding: Option<String>,
    git_protocol: Option<String>,
    remote_user: Option<String>,
    peer: SocketAddr,
}

/// Runs `git http-backend` for one request and turns its CGI output into a streamed response.
async fn run_backend(
    inner: &Arc<Inner>,
    cgi: CgiRequest,
    body: Body,
    what: String,
) -> anyhow::Result<Response> {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .current_dir(&cgi.project_root)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &inner.backend_home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "capstan-testkit")
        .env("GIT_PROJECT_ROOT", &cgi.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &cgi.path_info)
        .env("REQUEST_METHOD", &cgi.method)
        .env("QUERY_STRING", &cgi.query)
        .env("REMOTE_ADDR", cgi.peer.ip().to_string())
        .env("REMOTE_PORT", cgi.peer.port().to_string());
    let optional = [
        ("CONTENT_TYPE", &cgi.content_type),
        ("CONTENT_LENGTH", &cgi.content_length),
        ("HTTP_CONTENT_ENCODING", &cgi.content_encoding),
        ("GIT_PROTOCOL", &cgi.git_protocol),
        ("REMOTE_USER", &cgi.remote_user),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    // Command-line configuration: it overrides repository config and counts as protected, so
    // `safe.directory` applies. `http.receivepack` is explicit because http-backend would
    // otherwise allow pushes whenever REMOTE_USER is set.
    let push = if inner.options.allow_push {
        "true"
    } else {
        "false"
    };
    let config = [
        ("http.receivepack", push),
        ("http.uploadpack", "true"),
        ("receive.denyCurrentBranch", "updateInstead"),
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowAnySHA1InWant", "true"),
        ("safe.directory", "*"),
    ];
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key);
        cmd.env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let mut child = cmd.spawn().context("starting git http-backend")?;
    let stdin = child
        .stdin
        .take()
        .context("git http-backend has no stdin pipe")?;
    let mut stdout = child
        .stdout
        .take()
        .context("git http-backend has no stdout pipe")?;
    let stderr = child
        .stderr
        .take()
        .context("git http-backend has no stderr pipe")?;

    tokio::spawn(feed_stdin(body, stdin));
    let waiter_inner = Arc::clone(inner);
    tokio::spawn(async move {
        let stderr = read_capped(stderr, MAX_STDERR).await;
        match child.wait().await {
            Ok(status) if status.success() => {
                if !stderr.trim().is_empty() {
                    tracing::debug!(request = %what, stderr = %stderr.trim(), "git http-backend stderr");
                }
            }
            Ok(status) => waiter_inner.record_error(format!(
                "{what}: git http-backend exited with {status}: {}",
                stderr.trim()
            )),
            Err(err) => {
                waiter_inner.record_error(format!("{what}: waiting for git http-backend: {err}"))
            }
        }
    });

    let (head, leftover) = read_cgi_head(&mut stdout).await?;
    let (status, headers) = parse_cgi_head(&head)?;
    let leading = futures::stream::iter(
        (!leftover.is_empty()).then(|| Ok::<_, io::Error>(Bytes::from(leftover))),
    );
    let body = Body::from_stream(leading.chain(stream_reader(stdout)));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Copies the request body into the backend's stdin, then closes it so the backend sees EOF.
async fn feed_stdin(body: Body, mut stdin: tokio::process::ChildStdin) {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            // The client went away mid-request; closing stdin ends the backend's read.
            break;
        };
        if stdin.write_all(&chunk).await.is_err() {
            // The backend stopped reading (it answered early or failed); its exit status says why.
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Reads all of `reader`, keeping at most `cap` bytes, lossily decoded.
async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Reads the CGI header block; returns it and whatever body bytes were read past it.
async fn read_cgi_head(stdout: &mut ChildStdout) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((end, sep)) = find_blank_line(&buf) {
            let body = buf.split_off(end + sep);
            buf.truncate(end);
            let head = String::from_utf8(buf).context("git http-backend sent non-UTF-8 headers")?;
            return Ok((head, body));
        }
        ensure!(
            buf.len() <= MAX_CGI_HEADER,
            "git http-backend sent more than {MAX_CGI_HEADER} bytes without ending its headers"
        );
        let n = stdout
            .read(&mut chunk)
            .await
            .context("reading git http-backend's output")?;
        ensure!(
            n > 0,
            "git http-backend exited before ending its headers (got {:?})",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Position and length of the first `\r\n\r\n` or `\n\n`.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Turns CGI headers into a status and HTTP headers. `Status:` sets the status (default 200);
/// hop-by-hop headers are dropped because hyper frames the streamed body itself.
fn parse_cgi_head(head: &str) -> anyhow::Result<(StatusCode, HeaderMap)> {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("git http-backend sent a malformed header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .with_context(|| format!("git http-backend sent a bad status {value:?}"))?;
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("git http-backend sent a bad header name {name:?}"))?;
        if matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "keep-alive" | "upgrade"
        ) {
            continue;
        }
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("git http-backend sent a bad value for {name}"))?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

/// Streams a reader in chunks until EOF; an I/O error ends the stream after being yielded.
fn stream_reader(
    reader: ChildStdout,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            Err(err) => Some((Err(err), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_path_refuses_traversal() {
        assert_eq!(
            decode_path("/a.git/info/refs").as_deref(),
            Ok("/a.git/info/refs")
        );
        assert_eq!(
            decode_path("/a%20b.git/HEAD").as_deref(),
            Ok("/a b.git/HEAD")
        );
        for bad in [
            "/../etc/passwd",
            "/a.git/../../x",
            "/%2e%2e/x",
            "/a.git/%2E%2e/x",
            "/./a.git",
            "//a.git",
            "/a.git//x",
            "/",
            "/a%5c..%5cb",
            "/a%00",
            "/a%zz",
        ] {
            assert!(decode_path(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn parses_cgi_head() {
        let (status, headers) = parse_cgi_head(
            "Status: 403 Forbidden\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked",
        )
        .expect("valid head");
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
        assert!(headers.get("transfer-encoding").is_none());
        let (status, _) = parse_cgi_head("Content-Type: x/y").expect("valid head");
        assert_eq!(status, StatusCode::OK);
        assert!(parse_cgi_head("no colon here").is_err());
    }

    #[test]
    fn finds_the_header_terminator() {
        assert_eq!(find_blank_line(b"A: b\r\n\r\nbody"), Some((4, 4)));
        assert_eq!(find_blank_line(b"A: b\n\nbody\r\n\r\n"), Some((4, 2)));
        assert_eq!(find_blank_line(b"A: b\r\n"), None);
    }

    #[test]
    fn classifies_services() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            Service::classify(&get, "/a.git/info/refs", "service=git-upload-pack"),
            Service::AdvertiseUploadPack
        );
        assert_eq!(
            Service::classify(&get, "/a.git/info/refs", "x=1&service=git-receive-pack"),
            Service::AdvertiseReceivePack
        );
        assert_eq!(
            Service::classify(&post, "/a.git/git-upload-pack", ""),
            Service::UploadPack
        );
        assert_eq!(
            Service::classify(&post, "/a.git/git-receive-pack", ""),
            Service::ReceivePack
        );
        assert_eq!(Service::classify(&get, "/a.git/HEAD", ""), Service::Other);
    }

    #[test]
    fn authorizes_basic_and_bearer() {
        let options = GitHttpOptions::default()
            .with_basic_auth("alice", "s3cret")
            .with_bearer_token("tok");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).expect("ascii"),
            );
            authorize(&options, &headers)
        };
        let basic = |creds: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )
        };
        assert_eq!(with(&basic("alice:s3cret")), Ok(Some("alice".to_owned())));
        assert_eq!(with(&basic("alice:wrong")), Err(()));
        assert_eq!(with(&basic("bob:s3cret")), Err(()));
        assert_eq!(with("Bearer tok"), Ok(None));
        assert_eq!(with("Bearer nope"), Err(()));
        assert_eq!(authorize(&options, &HeaderMap::new()), Err(()));
        assert_eq!(
            authorize(&GitHttpOptions::anonymous(), &HeaderMap::new()),
            Ok(None)
        );
    }
}
