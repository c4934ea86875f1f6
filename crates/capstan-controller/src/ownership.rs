//! Which clusters this controller member reconciles, behind one interface from day one.
//!
//! The loop asks [`Ownership::owns`] before touching a cluster and attaches
//! [`Ownership::fences`] to every status and operation write, so a member that lost a cluster
//! cannot write for it. The all-in-one process owns every cluster ([`OwnAll`], no fences); the
//! sharded implementation ([`crate::sharding::ShardOwnership`]: leases and ownership keys in
//! etcd, consistent hashing) plugs in here without changing the loop.

use capstan_model::{ApplicationDestination, ControllerShard};
use capstan_store::Compare;
use tokio::sync::watch;

/// The clusters a member may reconcile.
pub trait Ownership: Send + Sync + std::fmt::Debug {
    /// Whether this member owns `cluster` (its server URL) now.
    fn owns(&self, cluster: &str) -> bool;

    /// The compares a status or operation write for `cluster` must carry: they fail once
    /// ownership moved, even if this member has not noticed yet.
    fn fences(&self, cluster: &str) -> Vec<Compare>;

    /// Whether this member reports on an Application whose destination is not a cluster it
    /// has connected (not registered, or registered and owned but failing to connect). One
    /// member must say so, not every member.
    fn owns_destination(&self, _destination: &ApplicationDestination) -> bool {
        true
    }

    /// What a status written for `cluster` records about its writer (`status.controller`);
    /// `None` where there is nothing to tell (one member owns everything).
    fn stamp(&self, _cluster: &str) -> Option<ControllerShard> {
        None
    }

    /// Changes to what this member owns (the value is a generation number), for whoever
    /// must act on them at once (connecting and dropping clusters, refreshing their
    /// Applications); `None` when ownership never changes.
    fn changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// Owns every cluster (the all-in-one control plane: one member, nothing to fence).
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnAll;

impl Ownership for OwnAll {
    fn owns(&self, _cluster: &str) -> bool {
        true
    }

    fn fences(&self, _cluster: &str) -> Vec<Compare> {
        Vec::new()
    }
}
