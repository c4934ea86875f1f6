//! Capstan's repo-server plumbing: Git with gix, revision resolution, reading trees from the
//! object database, and the renderers.
//!
//! Layered like gix: the plumbing functions ([`git::fetch_blocking`], [`revision::resolve`],
//! [`tree::read_dir`], [`render::directory::render`]) take their inputs, caches and limits as
//! arguments and do no concurrency of their own; [`git::RepoCache`] and
//! [`revision::RefCache`] are the service-level pieces that own concurrency (coalesced
//! fetches, a TTL cache of remote ref listings, a disk budget).
//!
//! Start reading at [`git::RepoCache::fetch`], then [`revision::resolve`], [`tree::read_dir`]
//! and [`render::directory::render`]. The user-facing behaviour is described in
//! `docs/repo-server.md`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use capstan_repo::git::{CacheConfig, Credentials, RepoCache, RepoUrl};
//! use capstan_repo::render::directory::{DirectoryOptions, render};
//! use capstan_repo::revision::RefCache;
//! use capstan_repo::tree::{TreeLimits, read_dir};
//!
//! let repos = RepoCache::new(CacheConfig { root: "/var/cache/capstan/git".into(), max_bytes: 10 << 30 })?;
//! let refs = RefCache::new(repos.clone(), RefCache::DEFAULT_TTL);
//! let url = RepoUrl::parse("https://git.example.com/team/deploy.git")?;
//! let creds = Credentials::Bearer { token: "…".into() };
//!
//! let commit = refs.resolve(&url, &creds, "^1.2").await?.commit;
//! let (handle, _) = repos.fetch(&url, &creds).await?;
//! let files = read_dir(&handle.open()?, commit, "apps/guestbook", true, &TreeLimits::default())?;
//! let rendered = render(&files.files, &DirectoryOptions { recurse: true, ..Default::default() })?;
//! println!("{} manifests", rendered.manifests.len());
//! # let _ = Duration::ZERO;
//! # Ok(())
//! # }
//! ```

pub mod application;
pub mod checkout;
pub mod client;
pub mod git;
pub mod grpc;
pub mod metrics;
pub mod pool;
pub mod registered;
pub mod render;
pub mod revision;
pub mod service;
pub mod shared_cache;
pub mod tree;
