//! etcd leases: keys that live only while their writer does.
//!
//! [`EtcdStore::grant_lease`] grants a lease with a TTL and starts a background task that keeps
//! it alive (a keep-alive every third of the TTL, on one gRPC stream re-opened when it breaks).
//! Keys written through [`Lease::put`] or [`Lease::txn`] are bound to the lease: etcd deletes
//! them when the lease is revoked ([`Lease::revoke`], at once) or expires (the writer died, was
//! paused, or lost etcd for longer than the TTL), and a watcher sees an ordinary delete.
//!
//! [`Lease::alive`] tells the holder when it lost the lease: it turns `false` once etcd answers
//! that the lease is gone, or once the TTL has passed since the last keep-alive etcd confirmed
//! (measured from when that keep-alive was *sent*, so the holder gives up no later than etcd
//! expires the lease). It never turns `true` again: a lost lease is gone for good, and its
//! holder grants a new one.
//!
//! Dropping a [`Lease`] stops the keep-alives without revoking (there is no async drop): its
//! keys stay until the TTL passes, exactly as when the process is killed. Call
//! [`Lease::revoke`] to leave at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client as etcd;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{CallError, EtcdError, EtcdStore, Inner, describe};
use crate::error::{Result, StoreError};
use crate::store::{put_response, put_txn};
use crate::types::{Precondition, PutResponse, Txn, TxnResponse};

/// A granted etcd lease, kept alive in the background until it is revoked or dropped.
///
/// Not `Clone`: one owner decides when the lease ends. Share the [`Lease::alive`] receiver to
/// let others follow it.
pub struct Lease {
    store: EtcdStore,
    id: i64,
    ttl: Duration,
    alive: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &format_args!("{:#x}", self.id))
            .field("ttl", &self.ttl)
            .field("alive", &*self.alive.borrow())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1 s; etcd may raise it
    /// to its own minimum, see [`Lease::ttl`]) and starts keeping it alive. Must be called
    /// inside a Tokio runtime (the keep-alive task is spawned on it).
    ///
    /// Fails with [`StoreError::Backend`] when etcd does not grant it within
    /// [`super::EtcdOptions::request_timeout`].
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        const OP: &str = "granting a lease";
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let mut client = self.inner.lease.clone();
        let sent = Instant::now();
        let response = self
            .call(client.grant(seconds, None))
            .await
            .map_err(|error| self.failure(OP, error))?;
        self.header_revision(OP, response.header())?;
        if !response.error().is_empty() || response.ttl() <= 0 {
            return Err(self.unexpected(
                OP,
                format!(
                    "lease grant answered with ttl {} and error {:?}",
                    response.ttl(),
                    response.error()
                ),
            ));
        }
        let (id, ttl) = (response.id(), secs(response.ttl()));
        let (sender, alive) = watch::channel(true);
        let keeper = tokio::spawn(keep_alive(
            Arc::clone(&self.inner),
            id,
            ttl,
            sent + ttl,
            sender,
        ));
        info!(lease = %format_args!("{id:#x}"), ?ttl, "granted etcd lease");
        Ok(Lease {
            store: self.clone(),
            id,
            ttl,
            alive,
            keeper,
        })
    }
}

impl Lease {
    /// etcd's id of the lease.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL etcd granted: how long the keys outlive the last keep-alive.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Follows the lease: `true` while it is kept alive, `false` (for good) once it is lost.
    /// A holder that sees `false` must assume its keys are gone.
    pub fn alive(&self) -> watch::Receiver<bool> {
        self.alive.clone()
    }

    /// Whether the lease is still kept alive (the current value of [`Lease::alive`]).
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Writes `key` bound to the lease, under `precondition` (a failed one is
    /// [`StoreError::Conflict`], as for [`crate::Store::put`]). Writing with a lease that has
    /// expired fails with [`StoreError::Backend`] (source [`EtcdError::LeaseExpired`]).
    pub async fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        precondition: Precondition,
    ) -> Result<PutResponse> {
        let response = self.txn(put_txn(key, value, precondition)).await?;
        put_response(key, response)
    }

    /// [`crate::Store::txn`] with every `Put` of the transaction bound to the lease.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.store
            .apply_txn(txn, self.id)
            .await
            .map_err(|error| self.lease_error(error))
    }

    /// Stops the keep-alives and revokes the lease: etcd deletes its keys at once. Revoking a
    /// lease that already expired is not an error.
    pub async fn revoke(self) -> Result<()> {
        const OP: &str = "revoking a lease";
        self.keeper.abort();
        let mut client = self.store.inner.lease.clone();
        let result = self.store.call(client.revoke(self.id)).await;
        match result {
            Ok(response) => {
                self.store.header_revision(OP, response.header())?;
                info!(lease = %format_args!("{:#x}", self.id), "revoked etcd lease");
                Ok(())
            }
            Err(CallError::Etcd(error)) if lease_not_found(&error) => {
                debug!(lease = %format_args!("{:#x}", self.id), "the lease to revoke had already expired");
                Ok(())
            }
            Err(error) => Err(self.store.failure(OP, error)),
        }
    }

    /// Stops the keep-alives without revoking, as a killed process would: the lease expires
    /// after its TTL. [`Lease::alive`] does not change (the keys are still there until then).
    /// Dropping the lease does the same.
    pub fn stop_keep_alive(&self) {
        self.keeper.abort();
    }

    /// A "lease not found" answer is the lease's expiry, said plainly.
    fn lease_error(&self, error: StoreError) -> StoreError {
        match &error {
            StoreError::Backend { source, .. }
                if source.to_string().contains("requested lease not found") =>
            {
                StoreError::backend(
                    "writing with a lease",
                    EtcdError::LeaseExpired {
                        endpoints: self.store.inner.endpoints.clone(),
                        lease: self.id,
                    },
                )
            }
            _ => error,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or_default())
}

fn lease_not_found(error: &etcd::Error) -> bool {
    match error {
        etcd::Error::GRpcStatus(status) => status.message().contains("requested lease not found"),
        etcd::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

/// The first wait before re-opening a broken keep-alive stream; doubles up to a second.
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Keeps lease `id` alive until it is lost (then reports it through `alive` and ends) or the
/// task is aborted. `expires` is when etcd expires the lease at the latest, as far as this
/// side knows.
async fn keep_alive(
    inner: Arc<Inner>,
    id: i64,
    ttl: Duration,
    mut expires: Instant,
    alive: watch::Sender<bool>,
) {
    let lease = format!("{id:#x}");
    let interval = (ttl / 3).max(Duration::from_millis(100));
    let mut stream: Option<(etcd::LeaseKeeper, etcd::LeaseKeepAliveStream)> = None;
    let mut retry = RETRY_START;
    let mut next = Instant::now() + interval;
    let why = loop {
        let now = Instant::now();
        if now >= expires {
            break format!("no keep-alive was confirmed for the lease's TTL ({ttl:?})");
        }
        let deadline = expires.min(now + inner.options.request_timeout);
        let Some((keeper, responses)) = stream.as_mut() else {
            let mut client = inner.lease.clone();
            let sent = Instant::now();
            match tokio::time::timeout_at(deadline, client.keep_alive(id)).await {
                Ok(Ok(opened)) => {
                    // Opening sends a keep-alive and waits for its answer.
                    expires = sent + ttl;
                    stream = Some(opened);
                    retry = RETRY_START;
                    next = sent + interval;
                }
                Ok(Err(error)) if lease_not_found(&error) => {
                    break "etcd answered that the lease is not found (expired or revoked)"
                        .to_string();
                }
                Ok(Err(error)) => {
                    warn!(%lease, error = %describe(&error), "could not open the lease keep-alive stream; retrying");
                    tokio::time::sleep(
                        retry.min(expires.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
                Err(_) => {
                    warn!(%lease, "etcd did not answer the lease keep-alive in time; retrying");
                }
            }
            continue;
        };
        tokio::time::sleep_until(next.min(expires)).await;
        if Instant::now() >= expires {
            continue;
        }
        let sent = Instant::now();
        next = sent + interval;
        let deadline = expires.min(sent + inner.options.request_timeout);
        let answer = tokio::time::timeout_at(deadline, async {
            keeper.keep_alive().await?;
            responses.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {
                expires = sent + secs(response.ttl());
                debug!(%lease, ttl = response.ttl(), "lease kept alive");
            }
            Ok(Ok(Some(_))) => {
                break "etcd answered that the lease is not found (expired or revoked)".to_string();
            }
            Ok(Ok(None)) => {
                warn!(%lease, "etcd closed the lease keep-alive stream; re-opening it");
                stream = None;
            }
            Ok(Err(error)) => {
                warn!(%lease, error = %describe(&error), "the lease keep-alive stream broke; re-opening it");
                stream = None;
            }
            Err(_) => {
                warn!(%lease, "etcd did not answer a lease keep-alive in time; re-opening the stream");
                stream = None;
            }
        }
    };
    warn!(%lease, reason = %why, "etcd lease lost: its keys are (or are about to be) gone");
    alive.send_replace(false);
}
