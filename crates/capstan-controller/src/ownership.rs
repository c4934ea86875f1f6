//! Which clusters this controller member reconciles, behind one interface from day one.
//!
//! The loop asks [`Ownership::owns`] before touching a cluster and attaches
//! [`Ownership::fences`] to every status write, so a member that lost a cluster cannot write
//! for it. The all-in-one process owns every cluster ([`OwnAll`], no fences); the sharded
//! implementation (leases and ownership keys in etcd, consistent hashing) plugs in here
//! without changing the loop.

use capstan_store::Compare;

/// The clusters a member may reconcile.
pub trait Ownership: Send + Sync + std::fmt::Debug {
    /// Whether this member owns `cluster` (its server URL) now.
    fn owns(&self, cluster: &str) -> bool;
    /// The compares a status or operation write for `cluster` must carry: they fail once
    /// ownership moved, even if this member has not noticed yet.
    fn fences(&self, cluster: &str) -> Vec<Compare>;
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
