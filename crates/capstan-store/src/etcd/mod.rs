//! The etcd backend: the production store, over etcd's v3 API (`etcd-client`).
//!
//! Start with [`EtcdStore::connect`]. The store's semantics are etcd's, so this is a
//! translation rather than a re-implementation (the mapping is in `docs/store.md`):
//!
//! - every key is stored under [`EtcdOptions::namespace`] (empty by default, so Capstan's keys
//!   are etcd's keys), which lets several installations — or tests — share one etcd;
//! - `get` and `list` are `Range`s (a list's pages pin the first page's revision with
//!   `Range.revision`, and continue with this crate's [`ContinueToken`]);
//! - `txn` is one etcd `Txn`: the compares map one to one, the operations are `Put`s and
//!   `DeleteRange`s with `prev_kv`, and the failure branch reads every compared key so a failed
//!   transaction reports which compares failed against the keys' metadata at that same
//!   revision (`put` and `delete` are the trait's provided methods on top of it);
//! - `watch.rs`: a watch is an etcd watch from the requested revision that survives broken
//!   streams: it re-establishes itself from the last revision it has fully delivered, so a
//!   restarted etcd costs neither an event nor a duplicate, and it ends with
//!   [`StoreError::Compacted`] when etcd no longer has the history it needs;
//! - `lease.rs`: [`EtcdStore::grant_lease`] grants an etcd lease and keeps it alive in the
//!   background; keys written through [`Lease::put`] or [`Lease::txn`] vanish with it (on
//!   [`Lease::revoke`] at once, or when it expires). What membership and ownership keys need.
//!
//! Revisions, compaction and the cluster's history are etcd's and therefore shared by every
//! namespace of one etcd: another writer (another namespace) advances the revision too, and
//! [`Store::compact`] compacts the whole etcd.
//!
//! Every request has a deadline ([`EtcdOptions::request_timeout`]); nothing is retried except a
//! broken watch stream (bounded by [`EtcdOptions::watch_reconnect_timeout`]), because a write
//! whose answer was lost cannot be repeated blindly — the caller re-reads and decides.
//!
//! Not yet supported: TLS to etcd and etcd's authentication (user and password); see
//! `docs/store.md`.

mod lease;
mod watch;

pub use lease::Lease;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client as etcd;
use futures::future::BoxFuture;
use tracing::{debug, info};

use crate::error::{Result, StoreError, display_key};
use crate::limits::{
    ContinueToken, MAX_KEY_BYTES, MAX_REQUEST_BYTES, prefix_end, validate_key, validate_prefix,
    validate_txn,
};
use crate::store::{Store, WatchStream};
use crate::types::{
    Compare, CompareFailure, CompareOp, CompareTarget, KeyMeta, KeyValue, ListOptions, ListPage,
    Revision, Txn, TxnOp, TxnOpResult, TxnResponse,
};

/// The smallest `--max-request-bytes` the etcd server must run with: this crate's largest
/// request ([`MAX_REQUEST_BYTES`]) plus room for the key, the namespace and framing. etcd's
/// default (1.5 MiB) refuses values near [`crate::limits::MAX_VALUE_BYTES`].
pub const REQUIRED_MAX_REQUEST_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;

/// Options of [`EtcdStore::connect`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs of the etcd members (`http://host:2379`). Requests are balanced over them.
    pub endpoints: Vec<String>,
    /// Bytes put in front of every key in etcd, e.g. `/capstan-prod` (no trailing `/` needed:
    /// Capstan's keys start with `/`). Empty by default: keys are stored as they are. At most
    /// [`MAX_KEY_BYTES`] bytes, no NUL byte.
    pub namespace: Vec<u8>,
    /// How long [`EtcdStore::connect`] waits for etcd to answer a first request, and each
    /// attempt to (re-)establish a watch waits for etcd to accept it. Default: 10 s.
    pub connect_timeout: Duration,
    /// The deadline of every request (get, list, transaction, compaction). Default: 30 s.
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive (interval, timeout) on the connections to etcd: finds a dead
    /// connection (and so a silently broken watch) without waiting for TCP. etcd refuses pings
    /// more frequent than its `--grpc-keepalive-min-time` (5 s by default). Default: 10 s, 10 s.
    pub keep_alive: Option<(Duration, Duration)>,
    /// How long a watch whose stream broke (etcd restarted, connection lost, leader lost) keeps
    /// trying to re-establish it, with backoff, before it ends with an error. Default: 60 s.
    pub watch_reconnect_timeout: Duration,
    /// The largest response accepted from etcd (a list without a limit, a watch response
    /// catching up on many revisions). Default: 256 MiB.
    pub max_response_bytes: usize,
}

impl Default for EtcdOptions {
    /// A local etcd (`http://127.0.0.1:2379`), no namespace.
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            namespace: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive: Some((Duration::from_secs(10), Duration::from_secs(10))),
            watch_reconnect_timeout: Duration::from_secs(60),
            max_response_bytes: 256 * 1024 * 1024,
        }
    }
}

impl EtcdOptions {
    /// The defaults, with these endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdOptions::default()
        }
    }

    /// Sets the namespace (the prefix of every key in etcd).
    pub fn namespace(mut self, namespace: impl Into<Vec<u8>>) -> Self {
        self.namespace = namespace.into();
        self
    }
}

/// What went wrong talking to etcd: the source of a [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// etcd did not answer in time: it is down, unreachable, or overloaded.
    #[error(
        "etcd at {endpoints} did not answer within {timeout:?}; check that it is running and reachable from here"
    )]
    Timeout {
        /// The configured endpoints.
        endpoints: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// etcd could not be reached: connection refused, no route, DNS, or no leader.
    #[error(
        "etcd at {endpoints} is unavailable ({detail}); check that it is running and reachable from here"
    )]
    Unavailable {
        /// The configured endpoints.
        endpoints: String,
        /// The gRPC status and the chain of causes.
        detail: String,
    },
    /// A request failed: a transport error or an error etcd returned.
    #[error("etcd at {endpoints} failed the request: {detail}")]
    Request {
        /// The configured endpoints.
        endpoints: String,
        /// The gRPC status and the chain of causes.
        detail: String,
    },
    /// etcd refused a request as too large: it runs with a smaller `--max-request-bytes` than
    /// Capstan's limits need.
    #[error(
        "etcd at {endpoints} refused the request as too large ({detail}); run etcd with --max-request-bytes={REQUIRED_MAX_REQUEST_BYTES} or more (docs/store.md)"
    )]
    RequestTooLarge {
        /// The configured endpoints.
        endpoints: String,
        /// etcd's message.
        detail: String,
    },
    /// A broken watch stream could not be re-established in time.
    #[error(
        "the watch of {prefix:?} lost its stream to etcd at {endpoints} and could not re-establish it within {timeout:?}; last error: {last}; watch again from the revision of the last event seen"
    )]
    WatchLost {
        /// The watched prefix (without the namespace).
        prefix: String,
        /// The configured endpoints.
        endpoints: String,
        /// [`EtcdOptions::watch_reconnect_timeout`].
        timeout: Duration,
        /// What the last attempt failed with.
        last: String,
    },
    /// The endpoints now answer for another etcd cluster: its data was replaced (restored
    /// from a backup, or a new cluster on the same address), so revisions no longer mean
    /// what they meant.
    #[error(
        "etcd at {endpoints} is now cluster {found:#x}, not cluster {expected:#x} it was when connected; its data was replaced: reconnect (and relist)"
    )]
    ClusterChanged {
        /// The configured endpoints.
        endpoints: String,
        /// The cluster id seen when connecting.
        expected: u64,
        /// The cluster id etcd reports now.
        found: u64,
    },
    /// A write bound to a lease failed because the lease is gone: it expired (its holder
    /// kept it alive too late, e.g. after a pause or a partition longer than its TTL) or was
    /// revoked. Its keys are gone too; the holder grants a new lease.
    #[error(
        "etcd lease {lease:#x} has expired or was revoked (etcd at {endpoints}); its keys are gone: grant a new lease"
    )]
    LeaseExpired {
        /// The configured endpoints.
        endpoints: String,
        /// The lease id.
        lease: i64,
    },
    /// etcd answered with something the store cannot use (a response without a header, or
    /// results that do not match the request).
    #[error("etcd at {endpoints} gave an unexpected answer: {what}")]
    Unexpected {
        /// The configured endpoints.
        endpoints: String,
        /// What was wrong with it.
        what: String,
    },
}

/// The store on an etcd cluster. Cheap to clone; clones share the connections.
///
/// Dropping the last clone closes the connections; there is nothing to flush, so there is
/// no `close`.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    kv: etcd::KvClient,
    watch: etcd::WatchClient,
    lease: etcd::LeaseClient,
    options: EtcdOptions,
    /// The endpoints, joined, for messages.
    endpoints: String,
    /// The cluster answering at connect time; a different one later is an error.
    cluster_id: u64,
    /// The highest compaction point this handle has seen (its own compactions and watch
    /// cancellations): a lower bound of etcd's, used where etcd does not say it.
    compact_revision: AtomicU64,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("namespace", &display_key(&self.inner.options.namespace))
            .field("cluster_id", &format_args!("{:#x}", self.inner.cluster_id))
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd and checks, with a real request bounded by
    /// [`EtcdOptions::connect_timeout`], that it answers (the client alone connects lazily and
    /// would "succeed" against a closed port).
    ///
    /// Fails with [`StoreError::InvalidRequest`] for unusable options (no endpoint, a bad URL),
    /// [`StoreError::InvalidKey`] for a bad namespace, and [`StoreError::Backend`] (source
    /// [`EtcdError`]) when etcd does not answer.
    ///
    /// ```no_run
    /// use capstan_store::{EtcdOptions, EtcdStore, Precondition, Store};
    ///
    /// # async fn demo() -> capstan_store::Result<()> {
    /// let options = EtcdOptions::new(["http://etcd-0.etcd:2379", "http://etcd-1.etcd:2379"])
    ///     .namespace("/capstan-prod");
    /// let store = EtcdStore::connect(options).await?;
    /// // Stored in etcd as `/capstan-prod/capstan/settings/argocd/main/spec`.
    /// store
    ///     .put(b"/capstan/settings/argocd/main/spec", b"{}".to_vec(), Precondition::MustNotExist)
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        validate_namespace(&options.namespace)?;
        if options.endpoints.is_empty() {
            return Err(StoreError::invalid_request(
                "no etcd endpoint given: name at least one client URL, e.g. http://127.0.0.1:2379",
            ));
        }
        let endpoints = options.endpoints.join(",");
        // Connecting and the readiness check below fail alike.
        let failed = |error: EtcdError| StoreError::backend("connecting to etcd", error);
        let timed_out = |endpoints: String| EtcdError::Timeout {
            endpoints,
            timeout: options.connect_timeout,
        };
        let mut connect = etcd::ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // Fail (and let a watch move to another member) instead of waiting on a member
            // that lost its leader.
            .with_require_leader(true);
        if let Some((interval, timeout)) = options.keep_alive {
            connect = connect.with_keep_alive(interval, timeout);
        }
        let client = match tokio::time::timeout(
            options.connect_timeout,
            etcd::Client::connect(&options.endpoints, Some(connect)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(
                error @ (etcd::Error::InvalidArgs(_)
                | etcd::Error::InvalidUri(_)
                | etcd::Error::EndpointError(_)),
            )) => {
                return Err(StoreError::invalid_request(format!(
                    "etcd endpoints {endpoints:?} are not usable: {}",
                    describe(&error)
                )));
            }
            Ok(Err(error)) => return Err(failed(connect_error(endpoints, &error))),
            Err(_) => return Err(failed(timed_out(endpoints))),
        };
        let kv = client
            .kv_client()
            .max_decoding_message_size(options.max_response_bytes);
        let watch = client
            .watch_client()
            .max_decoding_message_size(options.max_response_bytes);
        let lease = client.lease_client();

        // The readiness check: a linearizable read, so a member without a leader fails it too.
        let mut probe = kv.clone();
        let header = match tokio::time::timeout(
            options.connect_timeout,
            probe.get(
                revision_probe_key(&options.namespace),
                Some(etcd::GetOptions::new().with_count_only()),
            ),
        )
        .await
        {
            Ok(Ok(mut response)) => response.take_header(),
            Ok(Err(error)) => return Err(failed(connect_error(endpoints, &error))),
            Err(_) => return Err(failed(timed_out(endpoints))),
        };
        let Some(header) = header else {
            return Err(StoreError::backend(
                "connecting to etcd",
                EtcdError::Unexpected {
                    endpoints,
                    what: "a response without a header".to_string(),
                },
            ));
        };
        let (revision, cluster_id) = (to_revision(header.revision()), header.cluster_id());
        info!(
            endpoints = %endpoints,
            namespace = %display_key(&options.namespace),
            revision,
            cluster_id = %format_args!("{cluster_id:#x}"),
            "connected to etcd store"
        );
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                kv,
                watch,
                lease,
                options,
                endpoints,
                cluster_id,
                compact_revision: AtomicU64::new(0),
            }),
        })
    }

    /// The options the store was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.inner.options
    }

    /// The id of the etcd cluster this store talks to.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// [`Store::txn`], with every `Put` bound to `lease` ([`NO_LEASE`]: none). The leased
    /// form is [`Lease::txn`].
    async fn apply_txn(&self, txn: Txn, lease: i64) -> Result<TxnResponse> {
        const OP: &str = "applying a transaction";
        validate_txn(&txn)?;
        let compares = txn
            .compares
            .iter()
            .map(|compare| self.compare(compare))
            .collect::<Result<Vec<_>>>()?;
        let success: Vec<etcd::TxnOp> = txn
            .success
            .iter()
            .map(|op| match op {
                TxnOp::Put { key, value } => etcd::TxnOp::put(
                    self.full_key(key),
                    value.clone(),
                    Some(etcd::PutOptions::new().with_prev_key().with_lease(lease)),
                ),
                TxnOp::Delete { key } => etcd::TxnOp::delete(
                    self.full_key(key),
                    Some(etcd::DeleteOptions::new().with_prev_key()),
                ),
            })
            .collect();
        // When a compare fails, read every compared key in the same transaction, so the
        // failures are reported against the state the compares were evaluated on.
        let mut compared: Vec<&[u8]> = Vec::new();
        for compare in &txn.compares {
            if !compared.contains(&compare.key.as_slice()) {
                compared.push(&compare.key);
            }
        }
        let failure: Vec<etcd::TxnOp> = compared
            .iter()
            .map(|key| {
                etcd::TxnOp::get(
                    self.full_key(key),
                    Some(etcd::GetOptions::new().with_keys_only()),
                )
            })
            .collect();
        let request = etcd::Txn::new()
            .when(compares)
            .and_then(success)
            .or_else(failure);
        let mut kv = self.inner.kv.clone();
        let response = self
            .call(kv.txn(request))
            .await
            .map_err(|error| self.failure(OP, error))?;
        let revision = self.header_revision(OP, response.header())?;
        let answers = response.op_responses();

        if response.succeeded() {
            if answers.len() != txn.success.len() {
                return Err(self.unexpected(
                    OP,
                    format!(
                        "{} results for a transaction of {} operations",
                        answers.len(),
                        txn.success.len()
                    ),
                ));
            }
            let mut results = Vec::with_capacity(answers.len());
            for (op, answer) in txn.success.iter().zip(answers) {
                results.push(match (op, answer) {
                    (TxnOp::Put { .. }, etcd::TxnOpResponse::Put(put)) => TxnOpResult::Put {
                        prev: put
                            .prev_key()
                            .cloned()
                            .map(|kv| self.key_value(OP, kv))
                            .transpose()?,
                    },
                    (TxnOp::Delete { .. }, etcd::TxnOpResponse::Delete(mut delete)) => {
                        TxnOpResult::Delete {
                            prev: delete
                                .take_prev_kvs()
                                .into_iter()
                                .next()
                                .map(|kv| self.key_value(OP, kv))
                                .transpose()?,
                        }
                    }
                    _ => {
                        return Err(self.unexpected(
                            OP,
                            "transaction results that do not match its operations",
                        ));
                    }
                });
            }
            return Ok(TxnResponse {
                succeeded: true,
                revision,
                results,
                failures: Vec::new(),
            });
        }

        if answers.len() != compared.len() {
            return Err(self.unexpected(
                OP,
                format!(
                    "{} reads for the {} keys of a failed transaction's compares",
                    answers.len(),
                    compared.len()
                ),
            ));
        }
        let mut metas = Vec::with_capacity(compared.len());
        for (key, answer) in compared.iter().zip(answers) {
            let etcd::TxnOpResponse::Get(get) = answer else {
                return Err(self.unexpected(
                    OP,
                    "a failed transaction's reads answered with another operation",
                ));
            };
            let meta = get.kvs().first().map_or(KeyMeta::ABSENT, |kv| KeyMeta {
                create_revision: to_revision(kv.create_revision()),
                mod_revision: to_revision(kv.mod_revision()),
                version: to_revision(kv.version()),
            });
            metas.push((*key, meta));
        }
        let failures: Vec<CompareFailure> = txn
            .compares
            .iter()
            .enumerate()
            .filter_map(|(index, compare)| {
                let meta = metas
                    .iter()
                    .find(|(key, _)| *key == compare.key.as_slice())
                    .map_or(KeyMeta::ABSENT, |(_, meta)| *meta);
                (!compare.matches(meta)).then_some(CompareFailure {
                    index,
                    current: meta,
                })
            })
            .collect();
        if failures.is_empty() {
            return Err(self.unexpected(
                OP,
                "a failed transaction whose compares all hold on the keys' metadata",
            ));
        }
        Ok(TxnResponse {
            succeeded: false,
            revision,
            results: Vec::new(),
            failures,
        })
    }

    /// Runs one request with the request deadline.
    async fn call<T>(
        &self,
        request: impl Future<Output = std::result::Result<T, etcd::Error>>,
    ) -> std::result::Result<T, CallError> {
        match tokio::time::timeout(self.inner.options.request_timeout, request).await {
            Ok(result) => result.map_err(CallError::Etcd),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// The store error of a failed request that has no more specific meaning.
    fn failure(&self, op: &'static str, error: CallError) -> StoreError {
        let endpoints = self.inner.endpoints.clone();
        let source = match error {
            CallError::Timeout => EtcdError::Timeout {
                endpoints,
                timeout: self.inner.options.request_timeout,
            },
            CallError::Etcd(error) => match classify_etcd(&error) {
                Kind::TooLarge => EtcdError::RequestTooLarge {
                    endpoints,
                    detail: describe(&error),
                },
                Kind::Unavailable => EtcdError::Unavailable {
                    endpoints,
                    detail: describe(&error),
                },
                _ => EtcdError::Request {
                    endpoints,
                    detail: describe(&error),
                },
            },
        };
        StoreError::backend(op, source)
    }

    fn unexpected(&self, op: &'static str, what: impl Into<String>) -> StoreError {
        StoreError::backend(
            op,
            EtcdError::Unexpected {
                endpoints: self.inner.endpoints.clone(),
                what: what.into(),
            },
        )
    }

    /// The revision of a response, after checking that it comes from the same cluster.
    fn header_revision(
        &self,
        op: &'static str,
        header: Option<&etcd::ResponseHeader>,
    ) -> Result<Revision> {
        let header = header.ok_or_else(|| self.unexpected(op, "a response without a header"))?;
        check_cluster(&self.inner, op, header.cluster_id())?;
        Ok(to_revision(header.revision()))
    }

    /// `Compacted` for a request that etcd refused as compacted, where etcd does not say the
    /// compaction point: the best lower bound known.
    fn compacted(&self, at_least: Revision) -> StoreError {
        StoreError::Compacted {
            compact_revision: self.note_compacted(at_least),
        }
    }

    /// Records a compaction point seen; returns the highest one known.
    fn note_compacted(&self, revision: Revision) -> Revision {
        note_compacted(&self.inner, revision)
    }

    /// `FutureRevision` for a request etcd refused as being in the future.
    async fn future_revision(&self, requested: Revision) -> StoreError {
        match self.current_revision().await {
            Ok(current) => StoreError::FutureRevision { requested, current },
            Err(error) => error,
        }
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        full_key(&self.inner.options.namespace, key)
    }

    /// A key read from etcd, without the namespace.
    fn user_key(&self, op: &'static str, key: Vec<u8>) -> Result<Vec<u8>> {
        user_key(&self.inner.options.namespace, key)
            .ok_or_else(|| self.unexpected(op, "a key outside the store's namespace"))
    }

    fn key_value(&self, op: &'static str, kv: etcd::KeyValue) -> Result<KeyValue> {
        let (create_revision, mod_revision, version) =
            (kv.create_revision(), kv.mod_revision(), kv.version());
        let (key, value) = kv.into_key_value();
        Ok(KeyValue {
            key: self.user_key(op, key)?,
            value,
            create_revision: to_revision(create_revision),
            mod_revision: to_revision(mod_revision),
            version: to_revision(version),
        })
    }

    fn compare(&self, compare: &Compare) -> Result<etcd::Compare> {
        let operand = i64::try_from(compare.operand).map_err(|_| {
            StoreError::invalid_request(format!(
                "the compare on key {:?} has operand {}, more than etcd's largest revision ({})",
                display_key(&compare.key),
                compare.operand,
                i64::MAX
            ))
        })?;
        let op = match compare.op {
            CompareOp::Equal => etcd::CompareOp::Equal,
            CompareOp::NotEqual => etcd::CompareOp::NotEqual,
            CompareOp::Less => etcd::CompareOp::Less,
            CompareOp::Greater => etcd::CompareOp::Greater,
        };
        let key = self.full_key(&compare.key);
        Ok(match compare.target {
            CompareTarget::ModRevision => etcd::Compare::mod_revision(key, op, operand),
            CompareTarget::CreateRevision => etcd::Compare::create_revision(key, op, operand),
            CompareTarget::Version => etcd::Compare::version(key, op, operand),
        })
    }
}

/// The lease id etcd reads as "no lease".
const NO_LEASE: i64 = 0;

/// How a request failed.
#[derive(Debug)]
enum CallError {
    /// The deadline passed.
    Timeout,
    /// The client or etcd returned an error.
    Etcd(etcd::Error),
}

/// The errors etcd gives a meaning to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Compacted,
    FutureRevision,
    TooLarge,
    Unavailable,
    Other,
}

/// gRPC's `UNAVAILABLE` status code (fixed by the gRPC spec): the server cannot be reached, or
/// etcd has no leader.
const GRPC_UNAVAILABLE: i32 = 14;

/// Recognises etcd's errors by their (stable, documented) messages: `rpctypes` in etcd.
fn classify(error: &CallError) -> Kind {
    match error {
        CallError::Etcd(error) => classify_etcd(error),
        CallError::Timeout => Kind::Other,
    }
}

fn classify_etcd(error: &etcd::Error) -> Kind {
    match error {
        etcd::Error::GRpcStatus(status) => match classify_message(status.message()) {
            Kind::Other if status.code() as i32 == GRPC_UNAVAILABLE => Kind::Unavailable,
            kind => kind,
        },
        etcd::Error::TransportError(_) => Kind::Unavailable,
        _ => Kind::Other,
    }
}

fn classify_message(message: &str) -> Kind {
    if message.contains("required revision has been compacted") {
        Kind::Compacted
    } else if message.contains("required revision is a future revision") {
        Kind::FutureRevision
    } else if message.contains("request is too large")
        || message.contains("received message larger than max")
    {
        Kind::TooLarge
    } else {
        Kind::Other
    }
}

/// An etcd client error as one line: the gRPC code and message, then every cause.
fn describe(error: &etcd::Error) -> String {
    let (mut text, mut source) = match error {
        etcd::Error::GRpcStatus(status) => (
            format!("{:?}: {}", status.code(), status.message()),
            std::error::Error::source(status),
        ),
        etcd::Error::TransportError(transport) => {
            (transport.to_string(), std::error::Error::source(transport))
        }
        other => (other.to_string(), None),
    };
    while let Some(cause) = source {
        // gRPC and transport errors repeat their causes' messages; say each once.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn connect_error(endpoints: String, error: &etcd::Error) -> EtcdError {
    let detail = describe(error);
    match classify_etcd(error) {
        Kind::Unavailable => EtcdError::Unavailable { endpoints, detail },
        _ => EtcdError::Request { endpoints, detail },
    }
}

fn check_cluster(inner: &Inner, op: &'static str, found: u64) -> Result<()> {
    if found != 0 && inner.cluster_id != 0 && found != inner.cluster_id {
        return Err(StoreError::backend(
            op,
            EtcdError::ClusterChanged {
                endpoints: inner.endpoints.clone(),
                expected: inner.cluster_id,
                found,
            },
        ));
    }
    Ok(())
}

fn note_compacted(inner: &Inner, revision: Revision) -> Revision {
    inner
        .compact_revision
        .fetch_max(revision, Ordering::AcqRel)
        .max(revision)
}

fn validate_namespace(namespace: &[u8]) -> Result<()> {
    let reason = if namespace.len() > MAX_KEY_BYTES {
        format!(
            "the etcd namespace is {} bytes, more than the limit of {MAX_KEY_BYTES}",
            namespace.len()
        )
    } else if namespace.contains(&0) {
        "the etcd namespace contains a NUL byte".to_string()
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: display_key(namespace),
        reason,
    })
}

/// etcd's revisions are `i64`s that are never negative.
fn to_revision(value: i64) -> Revision {
    u64::try_from(value).unwrap_or_default()
}

fn to_etcd_revision(revision: Revision) -> Result<i64> {
    i64::try_from(revision).map_err(|_| {
        StoreError::invalid_request(format!(
            "revision {revision} is more than etcd's largest revision ({})",
            i64::MAX
        ))
    })
}

fn full_key(namespace: &[u8], key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(namespace.len() + key.len());
    full.extend_from_slice(namespace);
    full.extend_from_slice(key);
    full
}

fn user_key(namespace: &[u8], mut key: Vec<u8>) -> Option<Vec<u8>> {
    if !key.starts_with(namespace) {
        return None;
    }
    key.drain(..namespace.len());
    Some(key)
}

/// etcd's key range `[start, end)` of every key (in the namespace) that starts with `prefix`.
/// etcd has no empty key: "everything" is `["\0", "\0")`, where an `end` of `"\0"` means "to the
/// end of the key space".
fn key_range(namespace: &[u8], prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = full_key(namespace, prefix);
    let end = prefix_end(&start).unwrap_or_else(|| vec![0]);
    if start.is_empty() {
        (vec![0], end)
    } else {
        (start, end)
    }
}

/// A key that is never a store key (keys have no NUL), inside the namespace (so a user limited
/// to it may read it): what `current_revision` reads to learn the revision.
fn revision_probe_key(namespace: &[u8]) -> Vec<u8> {
    full_key(namespace, &[0])
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move {
            const OP: &str = "reading a key";
            validate_key(key)?;
            let mut kv = self.inner.kv.clone();
            let mut response = self
                .call(kv.get(self.full_key(key), None))
                .await
                .map_err(|error| self.failure(OP, error))?;
            self.header_revision(OP, response.header())?;
            response
                .take_kvs()
                .into_iter()
                .next()
                .map(|kv| self.key_value(OP, kv))
                .transpose()
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a [u8],
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            const OP: &str = "listing keys";
            let (at, start_after) = crate::limits::list_position(prefix, &options)?;
            let (mut start, end) = key_range(&self.inner.options.namespace, prefix);
            if let Some(last) = &start_after {
                // The next key after `last`.
                start = self.full_key(last);
                start.push(0);
            }
            let mut request = etcd::GetOptions::new().with_range(end);
            if let Some(limit) = options.limit.filter(|limit| *limit > 0) {
                request = request.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            if let Some(at) = at {
                request = request.with_revision(to_etcd_revision(at)?);
            }
            let mut kv = self.inner.kv.clone();
            let mut response = match self.call(kv.get(start, Some(request))).await {
                Ok(response) => response,
                Err(error) => {
                    return Err(match (classify(&error), at) {
                        (Kind::Compacted, Some(at)) => self.compacted(at + 1),
                        (Kind::FutureRevision, Some(at)) => self.future_revision(at).await,
                        _ => self.failure(OP, error),
                    });
                }
            };
            // A read at a past revision answers with the current revision in its header.
            let current = self.header_revision(OP, response.header())?;
            let revision = at.unwrap_or(current);
            let more = response.more();
            let entries = response
                .take_kvs()
                .into_iter()
                .map(|kv| self.key_value(OP, kv))
                .collect::<Result<Vec<_>>>()?;
            let continue_token = match (more, entries.last()) {
                (true, Some(last)) => Some(
                    ContinueToken {
                        revision,
                        last_key: last.key.clone(),
                    }
                    .encode(),
                ),
                _ => None,
            };
            debug!(
                prefix = %display_key(prefix),
                revision,
                count = entries.len(),
                more,
                "listed"
            );
            Ok(ListPage {
                entries,
                revision,
                continue_token,
            })
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        Box::pin(self.apply_txn(txn, NO_LEASE))
    }

    fn watch(&self, prefix: &[u8], from_revision: Revision) -> WatchStream {
        if let Err(error) = validate_prefix(prefix) {
            return Box::pin(futures::stream::once(async move { Err(error) }));
        }
        watch::stream(Arc::clone(&self.inner), prefix.to_vec(), from_revision)
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            const OP: &str = "compacting history";
            if revision == 0 {
                // Nothing is older than revision 0: never newer than the compaction point.
                return Err(self.compacted(0));
            }
            let target = to_etcd_revision(revision)?;
            let mut kv = self.inner.kv.clone();
            match self
                .call(kv.compact(target, Some(etcd::CompactionOptions::new().with_physical())))
                .await
            {
                Ok(response) => {
                    self.header_revision(OP, response.header())?;
                    self.note_compacted(revision);
                    info!(revision, "compacted etcd history");
                    Ok(())
                }
                Err(error) => Err(match classify(&error) {
                    Kind::Compacted => self.compacted(revision),
                    Kind::FutureRevision => self.future_revision(revision).await,
                    _ => self.failure(OP, error),
                }),
            }
        })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move {
            const OP: &str = "reading the current revision";
            let mut kv = self.inner.kv.clone();
            let response = self
                .call(kv.get(
                    revision_probe_key(&self.inner.options.namespace),
                    Some(etcd::GetOptions::new().with_count_only()),
                ))
                .await
                .map_err(|error| self.failure(OP, error))?;
            self.header_revision(OP, response.header())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_exactly_the_prefix() {
        assert_eq!(key_range(b"", b""), (vec![0], vec![0]));
        assert_eq!(key_range(b"", b"/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(key_range(b"", b"\xff\xff"), (b"\xff\xff".to_vec(), vec![0]));
        assert_eq!(key_range(b"/ns", b""), (b"/ns".to_vec(), b"/nt".to_vec()));
        assert_eq!(
            key_range(b"/ns", b"/p\xff"),
            (b"/ns/p\xff".to_vec(), b"/ns/q".to_vec())
        );
    }

    #[test]
    fn namespaces_are_added_and_removed() {
        assert_eq!(full_key(b"/ns", b"/a"), b"/ns/a");
        assert_eq!(user_key(b"/ns", b"/ns/a".to_vec()), Some(b"/a".to_vec()));
        assert_eq!(user_key(b"/ns", b"/other/a".to_vec()), None);
        assert_eq!(user_key(b"", b"/a".to_vec()), Some(b"/a".to_vec()));
        assert!(validate_namespace(b"/ns").is_ok());
        assert!(validate_namespace(b"").is_ok());
        assert!(validate_namespace(b"/n\0s").is_err());
        assert!(validate_namespace(&vec![b'n'; MAX_KEY_BYTES + 1]).is_err());
    }

    #[test]
    fn etcd_errors_are_recognised() {
        assert_eq!(
            classify_message("etcdserver: mvcc: required revision has been compacted"),
            Kind::Compacted
        );
        assert_eq!(
            classify_message("etcdserver: mvcc: required revision is a future revision"),
            Kind::FutureRevision
        );
        assert_eq!(
            classify_message("etcdserver: request is too large"),
            Kind::TooLarge
        );
        assert_eq!(
            classify_message("grpc: received message larger than max (3000000 vs. 2621440)"),
            Kind::TooLarge
        );
        assert_eq!(classify_message("etcdserver: no leader"), Kind::Other);
    }

    #[test]
    fn revisions_convert_without_panics() {
        assert_eq!(to_revision(-1), 0);
        assert_eq!(to_revision(7), 7);
        assert!(to_etcd_revision(u64::MAX).is_err());
        assert_eq!(to_etcd_revision(7).expect("in range"), 7);
    }
}
