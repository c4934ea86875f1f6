//! Capstan's API tier (`capstand api`, and part of the all-in-one): the stateless front door
//! the CLI, the web UI, automation and Git providers use.
//!
//! Built so far: [`rbac`], authorization with Argo CD's `policy.csv` grammar and semantics;
//! [`webhook`], Git push deliveries verified, read and matched to the Applications they
//! affect through an index; [`query`], Application listings filtered, paged and trimmed on
//! the server; [`live`], the interface to the controller's live state (managed resources,
//! diffs, resource trees, events).
//! The services, sessions, SSO and webhooks are being built (see the tracker); the design is
//! `docs/architecture.md`.

pub mod accounts;
pub mod auth;
pub mod error;
pub mod grpc;
pub mod live;
pub mod mirror;
pub mod openapi;
pub mod query;
pub mod rbac;
pub mod remote_live;
pub mod rest;
pub mod server;
pub mod service;
pub mod sso;
pub mod webhook;
