//! Capstan's engine: the counterpart of Argo CD's gitops-engine. It will hold the cluster
//! cache, diff and sync; today it holds **health**.
//!
//! - [`diff`]: compares a desired manifest with the live object (normalisation,
//!   `ignoreDifferences` JSON pointers, Secret masking, unified diff). Start at [`diff::diff`].
//! - [`health`]: judges live objects (built-in checks for core kinds, custom checks in
//!   sandboxed Lua with Argo CD's `health.lua` contract) and rolls them up into an
//!   Application's health. Start at [`health::HealthAssessor`].
//!
//! Objects are handled as [`serde_json::Value`], the form the watch-based cluster cache keeps
//! dynamic objects in. The user guide is `docs/health.md`.

pub mod cache;
pub mod cluster;
pub mod diff;
pub mod health;
pub mod resources;
pub mod sync;

pub use health::{HealthAssessor, HealthConfig, HealthStatusCode, HealthVerdict};
