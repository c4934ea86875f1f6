//! [`RepoPool`] against real repo-servers: in-process tonic servers on loopback, each serving
//! a [`RepoServer`] with its own work dir, and real Git repositories built by the testkit.

use std::collections::HashMap;
use std::time::Duration;

use capstan_model::ApplicationSource;
use capstan_repo::client::ManifestSource;
use capstan_repo::git::Credentials;
use capstan_repo::pool::RepoPool;
use capstan_repo::service::{
    CacheOutcome, ErrorKind, ManifestRequest, RepoServer, RepoServerConfig,
};
use capstan_testkit::git::GitRepo;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(20);

/// A repo-server serving gRPC on a loopback port.
struct Running {
    address: String,
    server: RepoServer,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let server = RepoServer::new(RepoServerConfig::new(dir.path().join("work"))).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(capstan_repo::grpc::service(server.clone()))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Ok(Self {
            address,
            server,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        })
    }

    /// Requests this repo-server has answered (from any cache, or with an error).
    fn answered(&self) -> u64 {
        let s = self.server.stats();
        s.memory_hits + s.shared_hits + s.renders + s.failures
    }

    /// Stops serving (graceful: open connections get GOAWAY) and waits until the listener
    /// and every connection are gone.
    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task).await???;
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn start_servers(n: usize) -> anyhow::Result<Vec<Running>> {
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        servers.push(Running::start().await?);
    }
    Ok(servers)
}

/// A repository with one plain-directory app under `app/`.
fn repo(name: &str) -> anyhow::Result<GitRepo> {
    let repo = GitRepo::init()?;
    repo.write(
        "app/cm.yaml",
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"),
    )?;
    repo.commit("app")?;
    Ok(repo)
}

fn request(url: &str, path: &str) -> ManifestRequest {
    ManifestRequest {
        source: ApplicationSource::git(url, path, "HEAD"),
        ..ManifestRequest::default()
    }
}

fn encode(pool: &RepoPool) -> anyhow::Result<String> {
    let mut registry = prometheus_client::registry::Registry::default();
    pool.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[tokio::test]
async fn a_repository_always_goes_to_its_first_choice() -> anyhow::Result<()> {
    let servers = start_servers(3).await?;
    let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    // Two controllers, configured with the addresses in different orders.
    let a = RepoPool::fixed(addresses.clone(), TIMEOUT);
    let b = RepoPool::fixed(addresses.iter().rev().cloned().collect(), TIMEOUT);

    let repos = (0..6)
        .map(|i| repo(&format!("cm-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut expected: HashMap<String, u64> = HashMap::new();
    for r in &repos {
        let url = r.file_url();
        let first = a.order(&url)[0].clone();
        assert_eq!(b.order(&url), a.order(&url), "{url}");
        // Another spelling of the same repository is the same repository.
        assert_eq!(a.order(&format!("{url}.git"))[0], first, "{url}");

        let before = servers
            .iter()
            .find(|s| s.address == first)
            .expect("first choice is one of the servers")
            .answered();
        let from_a = a.generate(request(&url, "app")).await?;
        assert_eq!(from_a.manifests.revision, r.head()?);
        let from_b = b.generate(request(&url, "app")).await?;
        // The second controller's request found the first one's render: same server.
        assert_eq!(from_b.cache, CacheOutcome::Memory, "{url}");
        let server = servers
            .iter()
            .find(|s| s.address == first)
            .expect("first choice is one of the servers");
        assert_eq!(server.answered(), before + 2, "{url} went to {first}");
        *expected.entry(first).or_default() += 2;
    }
    for s in &servers {
        let want = expected.get(&s.address).copied().unwrap_or(0);
        assert_eq!(s.answered(), want, "{}", s.address);
        assert_eq!(a.requests(&s.address) + b.requests(&s.address), want);
    }
    assert_eq!(a.failovers() + b.failovers(), 0);

    let text = encode(&a)?;
    let first = &a.order(&repos[0].file_url())[0];
    assert!(
        text.contains(&format!(
            "capstan_repo_pool_requests_total{{server=\"{first}\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains("capstan_repo_pool_failovers_total 0"),
        "{text}"
    );
    Ok(())
}

#[test]
fn the_order_is_stable_and_removing_a_server_moves_only_its_repositories() {
    let three: Vec<String> = (1..=3).map(|i| format!("http://repo-{i}:8081")).collect();
    let removed = three[1].clone();
    let two: Vec<String> = three.iter().filter(|a| **a != removed).cloned().collect();
    let all = RepoPool::fixed(three.clone(), TIMEOUT);
    let fewer = RepoPool::fixed(two, TIMEOUT);

    // Pinned: the hash is part of the contract (every controller, every release, agrees).
    assert_eq!(
        all.order("https://github.com/argoproj/argocd-example-apps.git"),
        PINNED_ORDER.map(str::to_owned)
    );

    let mut had_removed_first = 0;
    for i in 0..1000 {
        let url = format!("https://git.example.com/org/repo-{i}.git");
        let before = all.order(&url);
        assert_eq!(before, all.order(&url), "stable between calls");
        let mut sorted = before.clone();
        sorted.sort();
        assert_eq!(sorted, three, "every server appears once");

        let after = fewer.order(&url);
        let expected: Vec<String> = before.iter().filter(|a| **a != removed).cloned().collect();
        assert_eq!(after, expected, "the others keep their relative order");
        if before[0] == removed {
            had_removed_first += 1;
        } else {
            assert_eq!(
                after[0], before[0],
                "{url} moved although its server stayed"
            );
        }
    }
    // About a third of the repositories had the removed server first.
    assert!(
        (250..420).contains(&had_removed_first),
        "{had_removed_first} of 1000"
    );
}

#[test]
fn spellings_of_one_repository_share_an_order() {
    let pool = RepoPool::fixed(
        (0..5).map(|i| format!("http://10.0.0.{i}:8081")).collect(),
        TIMEOUT,
    );
    let a = pool.order("https://git.example.com/team/deploy.git");
    assert_eq!(a, pool.order("https://GIT.example.com:443/team/deploy/"));
    assert_eq!(a, pool.order("https://user:pw@git.example.com/team/deploy"));
    assert_eq!(a.len(), 5);
}

#[test]
fn duplicates_count_once_and_the_given_order_does_not_matter() {
    let mut servers: Vec<String> = (0..4).map(|i| format!("http://10.0.0.{i}:8081")).collect();
    let a = RepoPool::fixed(servers.clone(), TIMEOUT).order("https://h/r");
    servers.reverse();
    servers.push(servers[0].clone());
    assert_eq!(RepoPool::fixed(servers, TIMEOUT).order("https://h/r"), a);
}

#[test]
fn repositories_spread_over_all_servers() {
    let pool = RepoPool::fixed(
        (0..4).map(|i| format!("http://10.0.0.{i}:8081")).collect(),
        TIMEOUT,
    );
    let mut firsts: HashMap<String, usize> = HashMap::new();
    for i in 0..4000 {
        let order = pool.order(&format!("https://h/org/repo-{i}"));
        *firsts.entry(order[0].clone()).or_default() += 1;
    }
    assert_eq!(firsts.len(), 4);
    // ~1000 each; ±200 is about 7 standard deviations for a uniform hash.
    assert!(
        firsts.values().all(|&n| (800..1200).contains(&n)),
        "{firsts:?}"
    );
}

/// Computed independently: SHA-256(u64 BE len(address) ‖ address ‖ normalised URL), the
/// first 8 bytes big-endian, highest first.
const PINNED_ORDER: [&str; 3] = [
    "http://repo-2:8081",
    "http://repo-3:8081",
    "http://repo-1:8081",
];

#[tokio::test]
async fn an_unreachable_first_choice_fails_over_to_the_next() -> anyhow::Result<()> {
    let mut servers = start_servers(2).await?;
    let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    let pool = RepoPool::fixed(addresses, TIMEOUT);
    let r = repo("failover")?;
    let url = r.file_url();
    let order = pool.order(&url);
    let first = servers
        .iter()
        .position(|s| s.address == order[0])
        .expect("a server");
    let second = 1 - first;

    // Connected and answering first, so the pool holds a live connection to it.
    pool.generate(request(&url, "app")).await?;
    assert_eq!(servers[first].answered(), 1);
    servers[first].stop().await?;

    let generated = pool.generate(request(&url, "app")).await?;
    assert_eq!(generated.manifests.revision, r.head()?);
    assert_eq!(servers[second].answered(), 1);
    assert_eq!(pool.failovers(), 1);
    assert_eq!(pool.requests(&order[0]), 2);
    assert_eq!(pool.requests(&order[1]), 1);

    // The unreachable one now goes last for a while: no second failed attempt.
    let commit = pool
        .resolve_commit(&url, &Credentials::None, "HEAD", false)
        .await?;
    assert_eq!(commit, r.head()?);
    assert_eq!(pool.failovers(), 1);
    assert_eq!(pool.requests(&order[0]), 2);
    assert_eq!(pool.requests(&order[1]), 2);
    assert!(encode(&pool)?.contains("capstan_repo_pool_failovers_total 1"));

    // With every server gone, the last one tried (the one down first) answers the error.
    servers[second].stop().await?;
    let err = pool
        .generate(request(&url, "app"))
        .await
        .expect_err("nothing is serving");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains(&order[0]), "{err}");
    assert_eq!(pool.failovers(), 2);
    Ok(())
}

#[tokio::test]
async fn an_answer_is_returned_without_trying_another_server() -> anyhow::Result<()> {
    let servers = start_servers(2).await?;
    let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    let pool = RepoPool::fixed(addresses, TIMEOUT);
    let r = repo("answer")?;
    let url = r.file_url();
    let order = pool.order(&url);

    let err = pool
        .generate(request(&url, "does/not/exist"))
        .await
        .expect_err("no such path");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains("does/not/exist"), "{err}");
    let err = pool
        .resolve_commit(&url, &Credentials::None, "no-such-branch", false)
        .await
        .expect_err("no such revision");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    assert_eq!(pool.requests(&order[0]), 2);
    assert_eq!(pool.requests(&order[1]), 0);
    assert_eq!(pool.failovers(), 0);
    let other = servers
        .iter()
        .find(|s| s.address == order[1])
        .expect("a server");
    assert_eq!(other.answered(), 0);
    assert_eq!(other.server.stats().ref_listings, 0);
    Ok(())
}

#[tokio::test]
async fn an_empty_set_is_a_clear_unavailable_error() {
    let pool = RepoPool::fixed(Vec::new(), TIMEOUT);
    assert!(pool.order("https://h/r").is_empty());
    let err = pool
        .generate(request("https://h/r", "app"))
        .await
        .expect_err("no servers");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("no repo-server is registered"),
        "{err}"
    );
    let err = pool
        .resolve_commit("https://h/r", &Credentials::None, "HEAD", false)
        .await
        .expect_err("no servers");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("no repo-server is registered"),
        "{err}"
    );
}

#[tokio::test]
async fn the_set_follows_the_watch_channel() -> anyhow::Result<()> {
    let servers = start_servers(2).await?;
    let (tx, rx) = watch::channel(Vec::new());
    let pool = RepoPool::new(rx, TIMEOUT);
    let r = repo("live")?;
    let url = r.file_url();

    let err = pool
        .generate(request(&url, "app"))
        .await
        .expect_err("nothing registered yet");
    assert_eq!(err.kind, ErrorKind::Unavailable);

    tx.send(vec![servers[0].address.clone()])?;
    pool.generate(request(&url, "app")).await?;
    assert_eq!(servers[0].answered(), 1);

    // The first server is replaced by the second: requests follow at once.
    tx.send(vec![servers[1].address.clone()])?;
    assert_eq!(pool.order(&url), [servers[1].address.clone()]);
    pool.generate(request(&url, "app")).await?;
    assert_eq!(servers[1].answered(), 1);
    assert_eq!(servers[0].answered(), 1);

    // Both registered: the repository goes to its rendezvous winner.
    tx.send(servers.iter().map(|s| s.address.clone()).collect())?;
    let first = pool.order(&url)[0].clone();
    let winner = servers
        .iter()
        .find(|s| s.address == first)
        .expect("a server");
    let before = winner.answered();
    pool.generate(request(&url, "app")).await?;
    assert_eq!(winner.answered(), before + 1);

    // A malformed registration is skipped, not fatal to the repositories it would win.
    tx.send(vec!["not a url".to_owned(), servers[0].address.clone()])?;
    let before = servers[0].answered();
    pool.generate(request(&url, "app")).await?;
    assert_eq!(servers[0].answered(), before + 1);
    tx.send(vec!["not a url".to_owned()])?;
    let err = pool
        .generate(request(&url, "app"))
        .await
        .expect_err("no usable address");
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");
    assert_eq!(pool.failovers(), 0);
    Ok(())
}
