//! Components finding each other through etcd: a component registers its address under a
//! lease ([`Registration`]), and its clients follow the registered addresses ([`follow`]).
//! Used by repo-servers (`/capstan/repo-servers/`), which controllers route to.
//!
//! A registration lives as long as its process keeps the lease alive: a repo-server that is
//! killed drops out of every controller's pool within the TTL (and controllers fail over to
//! the next repo-server meanwhile); one that stops cleanly revokes its lease and drops out at
//! once.

use std::time::Duration;

use capstan_store::follow::prefix_changes;
use capstan_store::{EtcdStore, Precondition};
use futures::StreamExt as _;
use tokio::sync::watch;
use tracing::{info, warn};

/// Where repo-servers register: `/capstan/repo-servers/<address, percent-encoded>` → the
/// address (`http://HOST:PORT`).
pub const REPO_SERVERS: &str = "/capstan/repo-servers/";

/// The TTL of a registration.
pub const TTL: Duration = Duration::from_secs(10);

/// How long to wait after a failure before trying again.
const RETRY: Duration = Duration::from_secs(1);

fn key(prefix: &str, address: &str) -> String {
    capstan_store::limits::key_with_segment(prefix, address)
}

/// The address others reach a listener at: `given` (an `--advertise…` flag), else `http://`
/// + `listen`, which must then not be a wildcard address (`flag` names the flag to give).
pub fn advertised(
    given: Option<&str>,
    listen: std::net::SocketAddr,
    flag: &str,
) -> anyhow::Result<String> {
    match given {
        Some(url) => Ok(url.to_owned()),
        None if listen.ip().is_unspecified() => anyhow::bail!(
            "{listen} is a wildcard address: give {flag} http://HOST:PORT, the address other components reach it at"
        ),
        None => Ok(format!("http://{listen}")),
    }
}

/// A registration kept alive by a task: registered again if the lease is lost.
#[derive(Debug)]
pub struct Registration {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Registration {
    /// Registers `address` under `prefix` and keeps it registered.
    pub fn start(etcd: EtcdStore, prefix: &'static str, address: String) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let key = key(prefix, &address);
            loop {
                let lease = match etcd.grant_lease(TTL).await {
                    Ok(lease) => lease,
                    Err(error) => {
                        warn!(%error, "registering in etcd failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(RETRY) => continue,
                            _ = &mut stopped => return,
                        }
                    }
                };
                if let Err(error) = lease
                    .put(
                        key.as_bytes(),
                        address.clone().into_bytes(),
                        Precondition::None,
                    )
                    .await
                {
                    warn!(%error, "registering in etcd failed; retrying");
                    let _ = lease.revoke().await;
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        _ = &mut stopped => return,
                    }
                }
                info!(%address, key = %key, "registered in etcd");
                let mut alive = lease.alive();
                let lost = async move { alive.wait_for(|alive| !*alive).await.is_ok() };
                tokio::select! {
                    _ = lost => {
                        warn!(%address, "the registration's lease was lost; registering again");
                    }
                    _ = &mut stopped => {
                        if let Err(error) = lease.revoke().await {
                            warn!(%error, "revoking the registration failed; it expires with its TTL");
                        }
                        return;
                    }
                }
            }
        });
        Self { task, stop }
    }

    /// Removes the registration at once (revokes its lease).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The addresses registered under `prefix`, sorted, kept up to date by a task that lives as
/// long as a receiver does ([`capstan_store::follow::prefix_changes`]).
pub fn follow(etcd: EtcdStore, prefix: &'static str) -> watch::Receiver<Vec<String>> {
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut changes = prefix_changes(etcd, prefix);
        loop {
            let registered = tokio::select! {
                () = tx.closed() => return,
                next = changes.next() => match next {
                    Some(Ok(registered)) => registered,
                    // Logged and retried with backoff by the stream.
                    Some(Err(_)) => continue,
                    None => return,
                },
            };
            let mut now: Vec<String> = registered
                .values()
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .collect();
            now.sort();
            now.dedup();
            tx.send_if_modified(|current| {
                if *current == now {
                    return false;
                }
                info!(prefix, registered = ?now, "registrations changed");
                *current = now;
                true
            });
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_default_to_the_listener_but_never_a_wildcard() {
        let local: std::net::SocketAddr = "127.0.0.1:8081".parse().expect("an address");
        let any: std::net::SocketAddr = "0.0.0.0:8081".parse().expect("an address");
        assert_eq!(
            advertised(None, local, "--advertise").expect("a default"),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            advertised(Some("http://repo-0:8081"), any, "--advertise").expect("given"),
            "http://repo-0:8081"
        );
        let error = advertised(None, any, "--advertise").expect_err("a wildcard");
        assert!(error.to_string().contains("give --advertise"), "{error}");
    }

    #[test]
    fn keys_encode_the_address() {
        assert_eq!(
            key(REPO_SERVERS, "http://10.0.0.1:8081"),
            "/capstan/repo-servers/http%3A%2F%2F10.0.0.1%3A8081"
        );
    }
}
