//! Capstan's controller: the loop that makes Git the source of truth.
//!
//! - [`controller`]: the loop — store watch, cluster-cache changes and resync timers feed the
//!   queue; workers run [`reconcile::Reconciler::reconcile`].
//! - [`reconcile`]: one Application: render, [`compare`], write status, automated sync
//!   (persisted step by step through [`operations`]), history.
//! - [`live`]: what the API shows of an Application's live state (managed resources with
//!   diffs, a diff against given manifests, the resource tree, events), answered from the
//!   cluster caches through the reconcile's own comparison.
//! - [`children`]: app of apps — Applications and AppProjects among the manifests are
//!   written to the store as managed children.
//! - [`ownership`]: which clusters this member reconciles; status writes are fenced on it.
//! - [`sharding`]: which member should own which cluster — consistent hashing with bounded,
//!   weighted loads, a pure function of the membership view (not wired into the loop yet).
//! - [`queue`]: the work queue every reconcile goes through — one entry per Application
//!   however often it is asked for, refresh requests before periodic ones, hard refresh
//!   winning over normal, and a per-Application rate limit with backoff.
//! - [`project`]: what an AppProject permits (sources, destinations, resource kinds),
//!   checked before anything touches a cluster.
//! - [`windows`]: sync windows (allow/deny, cron schedule, duration, time zone, manual-sync
//!   override).
//!
//! The user guide is `docs/controller.md`.

pub use controller::{Controller, ControllerConfig};
pub use metrics::ControllerMetrics;
pub use reconcile::{ClusterHandle, Reconciler};

pub mod children;
pub mod clusters;
pub mod compare;
pub mod controller;
pub mod live;
pub mod metrics;
pub mod operations;
pub mod orphans;
pub mod ownership;
pub mod project;
pub mod queue;
pub mod reconcile;
pub mod sharding;
mod slots;
pub mod windows;
