//! A pool of repo-servers behind one [`ManifestSource`]: which `capstand repo-server` answers
//! a request, and what happens when it cannot.
//!
//! **Routing is by repository, not round-robin.** A repo-server is fast because of what it has
//! on disk: the bare Git cache of a repository and the renders of its commits. If every
//! controller spread a repository's requests over all repo-servers, each of them would clone
//! and fetch every repository. [`RepoPool`] therefore sends all requests for one repository
//! (its [normalised URL](crate::git::RepoUrl)) to the same repo-server, using *rendezvous
//! (highest-random-weight) hashing*: every address is scored by a stable 64-bit hash of
//! (address, repository URL) — the first 8 bytes of a SHA-256 — and the highest score wins.
//! The hash is the same in every process and release, so every controller replica agrees on
//! the owner of a repository without talking to the others. When a repo-server joins or
//! leaves, only the repositories it wins (or won) move, about 1/N of them; the others keep
//! their warm caches.
//!
//! **Failover only when no answer came.** The preference order ([`RepoPool::order`]) is the
//! list of addresses by score. A request goes to the first; it goes on to the next only when
//! the error is [`ErrorKind::Unavailable`] — the repo-server could not be reached (connection
//! refused, connect timeout, or the connection broke mid-request because it died: requests
//! only read, so sending one again is safe; [`RepoClient`] reports every transport failure
//! so), is shutting down, or is overloaded (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `ABORTED`). Every other error
//! is an answer and is returned at once: a path that does not exist, a chart that does not
//! render or credentials that are refused fail the same way on every repo-server, and trying
//! them all would multiply the work. [`ErrorKind::DeadlineExceeded`] is an answer too: the
//! request was sent and the repo-server (or one of its tools) was working on it; sending it
//! again would double the wait for a render that is most likely just slow. Note that a
//! repo-server also reports a Git host it cannot reach as `Unavailable`, so such a request is
//! tried once per repo-server — bounded by the pool's size, and right when the cause is the
//! first repo-server's own network.
//!
//! A repo-server that could not be reached goes to the end of every order for a few seconds
//! (`DOWN_FOR`), so a dead one costs one failed attempt now and then rather than one per
//! request until its registration expires; it gets its repositories back once it answers.
//!
//! The set of addresses is live: [`RepoPool::new`] takes a [`watch::Receiver`] that the caller
//! feeds (from the repo-servers' registrations); every request reads its current value. One
//! [`RepoClient`] per address is created at first use and reused (it reconnects by itself);
//! it is dropped once its address has left the set.
//!
//! Metrics ([`RepoPool::register`]):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `capstan_repo_pool_requests_total` | counter | `server` (one per attempt) |
//! | `capstan_repo_pool_failovers_total` | counter | |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::Digest;
use tokio::sync::watch;

use crate::client::{ManifestSource, RepoClient};
use crate::git::{Credentials, RepoUrl};
use crate::service::{ErrorKind, GenerateError, Generated, ManifestRequest};

type ServerLabels = Vec<(String, String)>;

/// How long a repo-server that could not be reached is tried last.
const DOWN_FOR: Duration = Duration::from_secs(5);

/// Repo-servers chosen per repository by rendezvous hashing, with failover to the next
/// choice when one cannot be reached (see the [module docs](self)). Cheap to clone: clones
/// share the clients and the metrics.
#[derive(Clone, Debug)]
pub struct RepoPool {
    endpoints: watch::Receiver<Vec<String>>,
    timeout: Duration,
    clients: Arc<Mutex<HashMap<String, RepoClient>>>,
    /// Addresses that could not be reached lately → until when they go last.
    down: Arc<Mutex<HashMap<String, Instant>>>,
    requests: Family<ServerLabels, Counter>,
    failovers: Counter,
}

impl RepoPool {
    /// A pool over the live set of repo-server addresses (`http://host:port`) in
    /// `endpoints`; each request to one of them may take at most `timeout`
    /// (see [`RepoClient::connect_lazy`]).
    pub fn new(endpoints: watch::Receiver<Vec<String>>, timeout: Duration) -> Self {
        Self {
            endpoints,
            timeout,
            clients: Arc::default(),
            down: Arc::default(),
            requests: Family::default(),
            failovers: Counter::default(),
        }
    }

    /// A pool over a set of addresses that never changes.
    pub fn fixed(endpoints: Vec<String>, timeout: Duration) -> Self {
        // The receiver keeps the last value after the sender is gone.
        let (_, rx) = watch::channel(endpoints);
        Self::new(rx, timeout)
    }

    /// The current addresses in the order a request for the repository at `repo_url` tries
    /// them: highest rendezvous score first (ties, which a 64-bit hash makes unlikely, by
    /// address). Duplicate addresses count once.
    pub fn order(&self, repo_url: &str) -> Vec<String> {
        let endpoints = self.endpoints.borrow().clone();
        rendezvous_order(endpoints, repo_url)
    }

    /// Registers the pool's metrics (see the [module docs](self)) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "capstan_repo_pool_requests",
            "Requests sent to each repo-server by the pool, counting every attempt",
            self.requests.clone(),
        );
        registry.register(
            "capstan_repo_pool_failovers",
            "Requests passed on to the next repo-server because one could not be reached",
            self.failovers.clone(),
        );
    }

    /// Attempts sent to the repo-server at `server` so far.
    pub fn requests(&self, server: &str) -> u64 {
        self.requests
            .get(&server_labels(server))
            .map_or(0, |c| c.get())
    }

    /// Requests passed on to the next repo-server so far.
    pub fn failovers(&self) -> u64 {
        self.failovers.get()
    }

    /// The clients to try for `repo_url`, in order; drops the clients of addresses that
    /// have left the set.
    fn candidates(&self, repo_url: &str) -> Result<Vec<RepoClient>, GenerateError> {
        let mut order = self.order(repo_url);
        {
            // Those that could not be reached lately go last (a stable partition: the
            // repository's order is kept among the rest), so a dead repo-server costs one
            // failed attempt per DOWN_FOR, not one per request, until its registration goes.
            let mut down = self.down.lock().expect("never left poisoned");
            let now = Instant::now();
            down.retain(|_, until| *until > now);
            order.sort_by_key(|address| down.contains_key(address));
        }
        if order.is_empty() {
            return Err(GenerateError {
                kind: ErrorKind::Unavailable,
                message: "no repo-server is registered; start `capstand repo-server` \
                          (or check that its registration reaches this process)"
                    .to_owned(),
            });
        }
        let mut clients = self
            .clients
            .lock()
            .expect("the client map is never left poisoned: no code panics holding it");
        clients.retain(|address, _| order.contains(address));
        let mut candidates = Vec::with_capacity(order.len());
        let mut invalid = None;
        for address in &order {
            if let Some(client) = clients.get(address) {
                candidates.push(client.clone());
                continue;
            }
            match RepoClient::connect_lazy(address, self.timeout) {
                Ok(client) => {
                    clients.insert(address.clone(), client.clone());
                    candidates.push(client);
                }
                // A malformed registration must not take the others' repositories down.
                Err(e) => {
                    tracing::warn!(server = %address, error = %e, "skipping a repo-server address");
                    invalid = Some(e);
                }
            }
        }
        match invalid {
            Some(e) if candidates.is_empty() => Err(e),
            _ => Ok(candidates),
        }
    }

    /// Runs `call` against the repo-servers for `repo_url` in order until one answers.
    async fn route<T, F, Fut>(&self, repo_url: &str, call: F) -> Result<T, GenerateError>
    where
        F: Fn(RepoClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, GenerateError>>,
    {
        let candidates = self.candidates(repo_url)?;
        let last = candidates.len().saturating_sub(1);
        let mut last_error = None;
        for (i, client) in candidates.into_iter().enumerate() {
            let server = client.url().to_owned();
            self.requests.get_or_create(&server_labels(&server)).inc();
            let result = call(client).await;
            let mut down = self.down.lock().expect("never left poisoned");
            if matches!(&result, Err(e) if e.kind == ErrorKind::Unavailable) {
                down.insert(server.clone(), Instant::now() + DOWN_FOR);
            } else {
                down.remove(&server);
            }
            drop(down);
            match result {
                Err(e) if e.kind == ErrorKind::Unavailable && i < last => {
                    self.failovers.inc();
                    tracing::warn!(
                        %server,
                        // Normalised: a URL may carry a password; the normal form has none.
                        repo = %RepoUrl::parse(repo_url).map_or_else(|_| String::new(), |u| u.to_string()),
                        error = %e,
                        "repo-server unavailable; trying the next one"
                    );
                    last_error = Some(e);
                }
                other => return other,
            }
        }
        // Unreachable in practice: the last candidate's result is always returned above.
        Err(last_error.unwrap_or_else(|| GenerateError {
            kind: ErrorKind::Unavailable,
            message: "no repo-server is registered".to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl ManifestSource for RepoPool {
    async fn generate(&self, req: ManifestRequest) -> Result<Generated, GenerateError> {
        let repo_url = req.source.repo_url.clone();
        self.route(&repo_url, |client| {
            let req = req.clone();
            async move { client.generate(req).await }
        })
        .await
    }

    async fn resolve_commit(
        &self,
        url: &str,
        credentials: &Credentials,
        revision: &str,
        no_cache: bool,
    ) -> Result<String, GenerateError> {
        self.route(url, |client| async move {
            client
                .resolve_commit(url, credentials, revision, no_cache)
                .await
        })
        .await
    }
}

fn server_labels(server: &str) -> ServerLabels {
    vec![("server".to_owned(), server.to_owned())]
}

/// `endpoints` (deduplicated) by descending rendezvous score for `repo_url`.
fn rendezvous_order(mut endpoints: Vec<String>, repo_url: &str) -> Vec<String> {
    // Spellings of one repository (`.git`, trailing `/`, case of the host) share a server;
    // a URL that does not parse is routed as given (every server will refuse it the same).
    let repo = RepoUrl::parse(repo_url)
        .map_or_else(|_| repo_url.trim().to_owned(), |u| u.as_str().to_owned());
    endpoints.sort_unstable();
    endpoints.dedup();
    let mut scored: Vec<(u64, String)> = endpoints
        .into_iter()
        .map(|address| (score(&address, &repo), address))
        .collect();
    scored.sort_unstable_by(|(sa, aa), (sb, ab)| sb.cmp(sa).then_with(|| aa.cmp(ab)));
    scored.into_iter().map(|(_, address)| address).collect()
}

/// The rendezvous weight of `address` for `repo`: the first 8 bytes of
/// SHA-256(len(address) ‖ address ‖ repo), big-endian. The length prefix keeps
/// (`ab`, `c`) and (`a`, `bc`) apart.
fn score(address: &str, repo: &str) -> u64 {
    let mut hasher = sha2::Sha256::new();
    hasher.update((address.len() as u64).to_be_bytes());
    hasher.update(address.as_bytes());
    hasher.update(repo.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}
