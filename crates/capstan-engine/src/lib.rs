//! Capstan's engine: the counterpart of Argo CD's gitops-engine. Given desired manifests
//! and a target cluster, it tells what differs and what is healthy, and applies the
//! difference.
//!
//! - [`cluster`]: connecting to a cluster (token, client certificate, CA, exec provider,
//!   kubeconfig). Start at [`cluster::ClusterConnection`].
//! - [`cache`]: the watch-based cluster cache (discovery, watches with atomic relists,
//!   compact entries, the object → Application index by tracking annotation or label, the
//!   ownership tree). Start at [`cache::ClusterCache`].
//! - [`diff`]: desired vs live (normalisation, every `ignoreDifferences` form,
//!   compare-options, Secret masking, unified diff); client-side and server-side (dry-run
//!   apply). Start at [`diff::client_side_diff`] and [`diff::server_side_diff`].
//! - [`health`]: judges live objects (built-in checks for core kinds, custom checks in
//!   sandboxed Lua with Argo CD's `health.lua` contract) and rolls them up into an
//!   Application's health. Start at [`health::HealthAssessor`].
//! - [`sync`]: phases, waves, hooks, prune and sync options, run step by step with a
//!   serialisable state. Start at [`sync::SyncRunner`].
//! - [`resources`]: what the others share: [`resources::ResourceKey`] and the discovery-backed
//!   [`resources::ApiResolver`].
//!
//! Objects are handled as [`serde_json::Value`]. User guides: `docs/cluster-cache.md`,
//! `docs/diff.md`, `docs/health.md`, `docs/sync.md`.

pub mod cache;
pub mod cluster;
pub mod diff;
pub mod health;
pub mod resources;
pub mod sync;

pub use health::{HealthAssessor, HealthConfig, HealthStatusCode, HealthVerdict};
