//! Capstan's gRPC API, generated from the `.proto` files in the workspace's `proto/` directory
//! (the source of truth for the API's shape).
//!
//! Model objects cross the API as JSON in Argo CD's wire format (`source_json`), decoded with
//! `capstan-model`; this crate holds only the generated messages, clients and servers.

#![allow(
    missing_docs,
    clippy::all,
    missing_debug_implementations,
    unreachable_pub
)]

/// The repo-server API (`capstan.repo.v1`).
pub mod repo {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("capstan.repo.v1");
    }
}

/// The public API (`capstan.api.v1`): Applications, sessions, accounts, version.
pub mod api {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("capstan.api.v1");
    }
}
