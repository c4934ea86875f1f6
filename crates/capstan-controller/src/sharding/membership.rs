//! Controller membership: who is alive, from etcd leases.
//!
//! Each controller member [`Membership::join`]s: it grants an etcd lease (TTL
//! [`DEFAULT_TTL`], configurable) and writes its [`MemberInfo`] as JSON at
//! `/capstan/shards/members/<name>` bound to that lease. The key lives exactly as long as the
//! member keeps its lease alive: [`Membership::leave`] revokes it (the key disappears at
//! once, so a rolling restart hands over without waiting), and a member that dies or is
//! paused past the TTL loses it when the lease expires. Every member (and any observer)
//! reads the same keys — [`live_members`] once, [`member_changes`] as a stream — and feeds the
//! sorted names to the [`Ring`](super::Ring):
//!
//! ```no_run
//! # use capstan_controller::sharding::{Epsilon, Ring, membership::{Membership, MemberInfo, DEFAULT_TTL}};
//! # async fn demo(etcd: capstan_store::EtcdStore) -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! let me = Membership::join(&etcd, MemberInfo::new("controller-0"), DEFAULT_TTL).await?;
//! let mut changes = me.changes();
//! while let Some(members) = changes.next().await {
//!     let ring = Ring::with_members(Epsilon::DEFAULT, members?.iter().map(|m| m.name.as_str()));
//!     // assign, take and release ownership keys...
//! #   drop(ring);
//! }
//! # Ok(()) }
//! ```
//!
//! A name is held by one live member at a time: joining with a name whose key exists is
//! refused ([`MembershipError::NameTaken`]). A member killed without leaving therefore blocks
//! its name until its lease expires (at most the TTL); its restart retries until then.
//!
//! When [`Membership::alive`] turns `false` the lease is lost (etcd unreachable or the process
//! paused for longer than the TTL): the key is gone, other members have already moved this
//! member's clusters away, and the member must stop acting as one and join again.

use std::time::Duration;

use capstan_store::follow::prefix_changes;
use capstan_store::{EtcdStore, Lease, Precondition, Revision, Store, StoreError};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where members register: `/capstan/shards/members/<name>`.
pub const MEMBERS_PREFIX: &str = "/capstan/shards/members/";

/// The default lease TTL: a dead member's clusters are reassigned after at most this long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The longest member name (a DNS label's length limit is 63; pod names go to 253).
pub const MAX_NAME_BYTES: usize = 253;

/// Page size of membership lists.
const LIST_PAGE: usize = 500;

/// What a member publishes about itself: the JSON value of its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's name, unique among live members: what the ring hashes (e.g. the pod
    /// name). Letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// How much this member carries relative to others (1 = a standard member): the ring
    /// gives it that share of the clusters' weight ([`super::Ring::join_with_capacity`]).
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Where the member answers live-state questions about the Applications of the clusters
    /// it owns (`http://host:port`), for the API tier; `None` if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_url: Option<String>,
}

fn default_capacity() -> u32 {
    1
}

impl MemberInfo {
    /// A member of capacity 1.
    pub fn new(name: impl Into<String>) -> Self {
        MemberInfo {
            name: name.into(),
            capacity: default_capacity(),
            live_url: None,
        }
    }

    /// Sets the live-state address.
    pub fn with_live_url(mut self, url: impl Into<String>) -> Self {
        self.live_url = Some(url.into());
        self
    }

    /// Sets the capacity.
    pub fn with_capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }
}

/// Why joining or reading membership failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The name cannot be a member name.
    #[error("{name:?} is not a valid controller member name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another live member holds the name.
    #[error(
        "controller member name {name:?} is already held by a live member (key {key}); give each controller a unique name, or wait up to the lease TTL if its previous process died without leaving"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// Its key.
        key: String,
    },
    /// A member's value could not be encoded.
    #[error("cannot encode member {name:?} as JSON")]
    Encode {
        /// The name.
        name: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed.
    #[error("membership in etcd failed")]
    Store(#[from] StoreError),
}

/// This process's membership: its lease and key. Not `Clone`: one owner decides when to leave.
///
/// Dropping it without [`Membership::leave`] stops the keep-alives without revoking: the key
/// stays until the TTL passes, as if the process had been killed.
#[derive(Debug)]
pub struct Membership {
    store: EtcdStore,
    me: MemberInfo,
    lease: Lease,
    revision: Revision,
}

impl Membership {
    /// Registers `me` under a new lease of `ttl` ([`DEFAULT_TTL`] unless configured).
    ///
    /// Fails with [`MembershipError::NameTaken`] if a live member has the name (the lease
    /// just granted is revoked), [`MembershipError::InvalidName`] for a bad name, and
    /// [`MembershipError::Store`] when etcd fails.
    pub async fn join(
        etcd: &EtcdStore,
        me: MemberInfo,
        ttl: Duration,
    ) -> Result<Self, MembershipError> {
        validate_name(&me.name)?;
        let key = member_key(&me.name);
        let value = serde_json::to_vec(&me).map_err(|source| MembershipError::Encode {
            name: me.name.clone(),
            source,
        })?;
        let lease = etcd.grant_lease(ttl).await?;
        match lease
            .put(key.as_bytes(), value, Precondition::MustNotExist)
            .await
        {
            Ok(put) => {
                info!(member = %me.name, capacity = me.capacity, ttl = ?lease.ttl(), revision = put.revision, "joined the controller membership");
                Ok(Membership {
                    store: etcd.clone(),
                    me,
                    lease,
                    revision: put.revision,
                })
            }
            Err(error) => {
                if let Err(revoke) = lease.revoke().await {
                    warn!(error = %revoke, "could not revoke the lease of a failed join; it expires with its TTL");
                }
                Err(match error {
                    StoreError::Conflict { .. } => {
                        MembershipError::NameTaken { name: me.name, key }
                    }
                    other => other.into(),
                })
            }
        }
    }

    /// This member.
    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    /// The lease's TTL as etcd granted it.
    pub fn ttl(&self) -> Duration {
        self.lease.ttl()
    }

    /// The store revision at which this member's key was written.
    pub fn joined_at(&self) -> Revision {
        self.revision
    }

    /// The lease, e.g. to bind this member's ownership keys to it.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// `true` while the membership is kept alive; `false` for good once the lease is lost.
    pub fn alive(&self) -> watch::Receiver<bool> {
        self.lease.alive()
    }

    /// The live members now, sorted by name ([`live_members`]).
    pub async fn members(&self) -> Result<Vec<MemberInfo>, MembershipError> {
        Ok(live_members(&self.store).await?.0)
    }

    /// The sorted member list, now and after every change ([`member_changes`]).
    pub fn changes(&self) -> BoxStream<'static, Result<Vec<MemberInfo>, MembershipError>> {
        member_changes(self.store.clone())
    }

    /// Leaves: revokes the lease, so the key is deleted at once and the others reassign this
    /// member's clusters without waiting for the TTL.
    pub async fn leave(self) -> Result<(), MembershipError> {
        let name = self.me.name;
        self.lease.revoke().await?;
        info!(member = %name, "left the controller membership");
        Ok(())
    }

    /// Stops keeping the lease alive without revoking it, as a killed or paused process
    /// would: the key disappears when the TTL passes. For tests and fault drills.
    pub fn stop_keep_alive(&self) {
        self.lease.stop_keep_alive();
    }
}

/// The key of member `name`.
pub fn member_key(name: &str) -> String {
    format!("{MEMBERS_PREFIX}{name}")
}

fn validate_name(name: &str) -> Result<(), MembershipError> {
    let reason = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > MAX_NAME_BYTES {
        format!("it is longer than {MAX_NAME_BYTES} bytes")
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        format!("it contains {bad:?} (allowed: letters, digits, '.', '_', '-')")
    } else {
        return Ok(());
    };
    Err(MembershipError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Decodes a member key's value; `None` (with a warning) for a value that is not a member of
/// that name, which is left out of the view rather than breaking it.
fn decode(key: &[u8], value: &[u8]) -> Option<MemberInfo> {
    let name = key.strip_prefix(MEMBERS_PREFIX.as_bytes())?;
    match serde_json::from_slice::<MemberInfo>(value) {
        Ok(member) if member.name.as_bytes() == name => Some(member),
        Ok(member) => {
            warn!(key = %String::from_utf8_lossy(key), name = %member.name, "a member key whose value names another member; ignored");
            None
        }
        Err(error) => {
            warn!(key = %String::from_utf8_lossy(key), %error, "a member key whose value is not a member; ignored");
            None
        }
    }
}

/// The live members, sorted by name, and the revision they were read at.
pub async fn live_members(
    store: &dyn Store,
) -> Result<(Vec<MemberInfo>, Revision), MembershipError> {
    let page = store.list_all(MEMBERS_PREFIX.as_bytes(), LIST_PAGE).await?;
    let members = page
        .entries
        .iter()
        .filter_map(|kv| decode(&kv.key, &kv.value))
        .collect();
    Ok((members, page.revision))
}

/// The sorted live members, first as they are now, then each time the list changes (a member
/// joins, leaves, expires, or republishes a different value): a watch of [`MEMBERS_PREFIX`]
/// that lists again when it ends (history compacted, etcd gone for longer than the watch's
/// reconnect timeout), so it never misses the latest state (intermediate states may be
/// skipped) — [`capstan_store::follow::prefix_changes`]. A failed list is yielded as an `Err`
/// and retried with backoff: the stream does not end.
pub fn member_changes<S>(store: S) -> BoxStream<'static, Result<Vec<MemberInfo>, MembershipError>>
where
    S: Store + Clone + 'static,
{
    prefix_changes(store, MEMBERS_PREFIX)
        .map(|entries| {
            Ok(entries?
                .iter()
                .filter_map(|(key, value)| decode(key, value))
                .collect())
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("controller-0").is_ok());
        assert!(validate_name("capstan.controller_1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn values_decode_with_a_default_capacity() {
        let key = member_key("c-1");
        assert_eq!(
            decode(key.as_bytes(), br#"{"name":"c-1"}"#),
            Some(MemberInfo::new("c-1"))
        );
        assert_eq!(
            decode(key.as_bytes(), br#"{"name":"c-1","capacity":3}"#),
            Some(MemberInfo::new("c-1").with_capacity(3))
        );
        assert_eq!(decode(key.as_bytes(), br#"{"name":"c-2"}"#), None);
        assert_eq!(decode(key.as_bytes(), b"not json"), None);
    }

    /// The watch behind `member_changes` ends with `Compacted` when it fell behind the
    /// compaction point; the stream relists and reports the state it missed. (Shown on the
    /// embedded store: `member_changes` takes any store, and an etcd watch that is already
    /// established is not cut by a compaction.)
    #[tokio::test]
    async fn changes_relist_after_a_compacted_watch() {
        use capstan_store::{EmbeddedOptions, EmbeddedStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path().join("store.redb"), EmbeddedOptions::default())
            .await
            .expect("open");
        let put = |name: &'static str| {
            let store = store.clone();
            async move {
                let value = serde_json::to_vec(&MemberInfo::new(name)).expect("json");
                store
                    .put(member_key(name).as_bytes(), value, Precondition::None)
                    .await
                    .expect("put")
                    .revision
            }
        };
        put("a").await;
        let mut changes = member_changes(store.clone());
        let first = changes.next().await.expect("an item").expect("a list");
        assert_eq!(first, vec![MemberInfo::new("a")]);
        // While nobody polls the stream: b comes and goes, c joins, history is compacted.
        put("b").await;
        store
            .delete(member_key("b").as_bytes(), Precondition::None)
            .await
            .expect("delete");
        let last = put("c").await;
        store.compact(last).await.expect("compact");
        let next = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .expect("a report after the relist")
            .expect("an item")
            .expect("a list");
        assert_eq!(next, vec![MemberInfo::new("a"), MemberInfo::new("c")]);
    }
}
