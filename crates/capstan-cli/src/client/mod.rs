//! The API client: every method the CLI calls, over gRPC, or over REST where a proxy blocks
//! gRPC (`--rest`, or found out on the first call: see [`Client::call`]).
//!
//! Both transports answer the same JSON (the API sends objects as JSON text over gRPC too),
//! so each method returns a [`Value`] of one shape whichever transport carried it, and
//! errors become the same [`CliError`]. A method names its gRPC call and its REST request
//! ([`RestCall`]) side by side; [`Client::call`] runs one of them. The methods are in
//! [`apps`] (Applications) and [`admin`] (sessions, accounts, projects, repositories,
//! clusters).

mod admin;
mod apps;

pub use apps::AppAt;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

use capstan_proto::api::v1 as pb;
use http::Method;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use crate::error::{CliError, CliResult, Exit};
use crate::http::{Connector, Http};
use crate::tls::{TlsOptions, client_config};

/// Where the API is and how to reach it.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `host:port` or a URL.
    pub server: String,
    /// The bearer token, when logged in.
    pub token: Option<String>,
    /// Plain HTTP.
    pub plaintext: bool,
    /// TLS trust.
    pub tls: TlsOptions,
    /// REST only.
    pub rest: bool,
}

impl Target {
    /// The server's base URL (`https://host:port`, or `http://` with `plaintext`).
    pub fn base_url(&self) -> CliResult<String> {
        let server = self.server.trim().trim_end_matches('/');
        if server.is_empty() {
            return Err(CliError::usage("no server given")
                .hint("log in with `capstan login SERVER`, or pass --server or CAPSTAN_SERVER"));
        }
        let url = if server.starts_with("https://") || server.starts_with("http://") {
            server.to_owned()
        } else if self.plaintext {
            format!("http://{server}")
        } else {
            format!("https://{server}")
        };
        url.parse::<http::Uri>().map_err(|e| {
            CliError::usage(format!("the server {server:?} is not an address: {e}"))
        })?;
        Ok(url)
    }
}

/// The API client (cheap to clone).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: String,
    token: Option<String>,
    channel: Channel,
    http: Http,
    /// Set once gRPC is known not to get through: every later call goes over REST.
    rest: AtomicBool,
}

/// How long a REST exchange may take (a sync's answer comes at once; waiting polls).
const REST_TIMEOUT: Duration = Duration::from_secs(120);

impl Client {
    /// A client for `target`; nothing is sent until the first call.
    pub fn new(target: &Target) -> CliResult<Client> {
        let base = target.base_url()?;
        let tls = base.starts_with("https://");
        let endpoint = Endpoint::from_shared(base.clone())
            .map_err(|e| CliError::usage(format!("the server address {base:?}: {e}")))?
            .connect_timeout(crate::http::CONNECT_TIMEOUT)
            .timeout(REST_TIMEOUT);
        let config = if tls {
            Some(Arc::new(client_config(&target.tls, &[b"h2", b"http/1.1"])?))
        } else {
            None
        };
        // gRPC needs HTTP/2: its connections offer only h2.
        let grpc_config = config.as_ref().map(|c| {
            let mut c = rustls::ClientConfig::clone(c);
            c.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(c)
        });
        let channel = endpoint.connect_with_connector_lazy(Connector::new(grpc_config));
        let http = Http::new(Connector::new(config), REST_TIMEOUT, MAX_ANSWER_BYTES);
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                token: target.token.clone().filter(|t| !t.is_empty()),
                channel,
                http,
                rest: AtomicBool::new(target.rest),
            }),
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Whether calls go over REST.
    pub fn uses_rest(&self) -> bool {
        self.inner.rest.load(Ordering::Relaxed)
    }

    /// A gRPC request with the token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.inner.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// One call: over gRPC unless REST is chosen; when gRPC turns out not to get through
    /// (something on the way answers plain HTTP, see [`not_grpc`]), this call and every
    /// later one go over REST.
    async fn call<G>(&self, grpc: G, rest: RestCall) -> CliResult<Value>
    where
        G: AsyncFnOnce(Channel) -> Result<Value, tonic::Status>,
    {
        if !self.uses_rest() {
            match grpc(self.inner.channel.clone()).await {
                Ok(value) => return Ok(value),
                Err(status) if not_grpc(&status) => {
                    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                        eprintln!(
                            "gRPC does not get through ({}); using REST",
                            status.message()
                        );
                    }
                    self.inner.rest.store(true, Ordering::Relaxed);
                }
                Err(status) => return Err(status_error(&status)),
            }
        }
        self.send(rest).await
    }

    /// Sends a REST request; the answer's JSON, or the error it carries.
    async fn send(&self, call: RestCall) -> CliResult<Value> {
        let inner = &self.inner;
        let mut url = format!("{}{}", inner.base, call.path);
        if !call.query.is_empty() {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (key, value) in &call.query {
                form.append_pair(key, value);
            }
            url.push('?');
            url.push_str(&form.finish());
        }
        let mut headers = Vec::new();
        if let Some(token) = &inner.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let body = call.body.map(|body| {
            headers.push(("content-type", "application/json".to_owned()));
            Bytes::from(body.to_string())
        });
        let answer = inner
            .http
            .send(call.method, &url, &headers, body)
            .await
            .map_err(|e| failed(&inner.base, &e))?;
        let status = answer.status;
        let bytes = answer.body;
        let parsed = serde_json::from_slice::<Value>(&bytes);
        let value = match parsed {
            _ if bytes.iter().all(u8::is_ascii_whitespace) => Value::Null,
            Ok(value) => value,
            // Success without JSON is no success: a proxy or login page answered instead.
            Err(_) if (200..300).contains(&status) => {
                let start: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                return Err(CliError::new(
                    Exit::Unavailable,
                    format!("the answer from {url} is not the API's JSON: {start}"),
                )
                .hint("is a proxy or a login page in the way? check the server address"));
            }
            Err(_) => Value::String(String::from_utf8_lossy(&bytes).chars().take(300).collect()),
        };
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["message"]
            .as_str()
            .or_else(|| value["error"].as_str())
            .or_else(|| value.as_str())
            .unwrap_or_default()
            .to_owned();
        let code = value["code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .map(tonic::Code::from)
            .unwrap_or_else(|| code_of_http(status));
        Err(CliError::from_server(code, &message))
    }
}

/// The REST request of a call: what goes to Argo CD's path when gRPC does not get through.
#[derive(Debug)]
struct RestCall {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl RestCall {
    fn new(method: Method, path: impl Into<String>) -> RestCall {
        RestCall {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    fn get(path: impl Into<String>) -> RestCall {
        RestCall::new(Method::GET, path)
    }

    fn post(path: impl Into<String>) -> RestCall {
        RestCall::new(Method::POST, path)
    }

    fn put(path: impl Into<String>) -> RestCall {
        RestCall::new(Method::PUT, path)
    }

    fn delete(path: impl Into<String>) -> RestCall {
        RestCall::new(Method::DELETE, path)
    }

    /// Adds query parameters (repeated keys stay repeated).
    fn query(mut self, query: Vec<(&'static str, String)>) -> RestCall {
        self.query.extend(query);
        self
    }

    /// Adds `key=value` unless `value` is empty.
    fn param(mut self, key: &'static str, value: &str) -> RestCall {
        if !value.is_empty() {
            self.query.push((key, value.to_owned()));
        }
        self
    }

    /// The JSON body.
    fn body(mut self, body: Value) -> RestCall {
        self.body = Some(body);
        self
    }
}

/// The largest REST answer read (a list page of thousands of apps fits).
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One path segment, percent-encoded (repository and cluster URLs travel in the path).
fn segment(text: &str) -> String {
    percent_encode(text)
}

fn code_of_http(status: u16) -> tonic::Code {
    match status {
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 => tonic::Code::AlreadyExists,
        429 => tonic::Code::ResourceExhausted,
        502..=504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

/// A REST exchange that failed: no answer in time, a broken or oversized answer, or no
/// connection at all.
fn failed(base: &str, error: &crate::http::Failure) -> CliError {
    use crate::http::Failure;
    match error {
        Failure::Timeout(message) => {
            CliError::new(Exit::Timeout, format!("{base} did not answer: {message}"))
        }
        Failure::Answer(message) => CliError::other(format!("the answer from {base}: {message}")),
        Failure::Connection(message) => {
            CliError::new(Exit::Unavailable, format!("cannot reach {base}: {message}")).hint(
                "check the address, that the server runs, and TLS (--insecure, --server-ca, --plaintext)",
            )
        }
    }
}

/// Whether a gRPC failure means that something on the way answered plain HTTP with an error
/// status or another content type (a proxy without gRPC support), so the request never
/// reached the API and REST may get through where gRPC did not. A broken connection is not
/// such a sign: the API may have acted, and the request is not sent again.
fn not_grpc(status: &tonic::Status) -> bool {
    let message = status.message();
    let http_error = message.contains("HTTP status code")
        || (message.contains("while receiving response with status")
            && !message.contains("with status: 200"));
    matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unimplemented
    ) && (http_error || message.contains("content-type"))
}

/// A gRPC status as the user's error; transport failures say what could not be reached.
fn status_error(status: &tonic::Status) -> CliError {
    if status.code() == tonic::Code::Unavailable || status.code() == tonic::Code::Unknown {
        let mut message = status.message().to_owned();
        let mut source = std::error::Error::source(status);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        if status.code() == tonic::Code::Unavailable || message.contains("transport error") {
            return CliError::new(Exit::Unavailable, format!("cannot reach the server: {message}"))
                .hint("check the address, that the server runs, and TLS (--insecure, --server-ca, --plaintext); if a proxy blocks gRPC, add --rest");
        }
        return CliError::from_server(status.code(), &message);
    }
    CliError::from_server(status.code(), status.message())
}

/// A method answering nothing: `null` whichever transport.
fn empty<T>(_: tonic::Response<T>) -> Value {
    Value::Null
}

fn json_of(response: tonic::Response<pb::Json>) -> Result<Value, tonic::Status> {
    serde_json::from_str(&response.into_inner().json)
        .map_err(|e| tonic::Status::internal(format!("the server's JSON: {e}")))
}

/// A list's entries: an array, or `{"items": [...]}`.
pub fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn string_field(value: &Value, field: &str) -> CliResult<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::other(format!("the server's answer has no {field:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_get_a_scheme_and_bad_ones_a_usage_error() {
        let target = |server: &str, plaintext: bool| Target {
            server: server.to_owned(),
            plaintext,
            ..Target::default()
        };
        assert_eq!(
            target("localhost:8080", false).base_url().ok().as_deref(),
            Some("https://localhost:8080")
        );
        assert_eq!(
            target("localhost:8080", true).base_url().ok().as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            target("http://h:1/", false).base_url().ok().as_deref(),
            Some("http://h:1")
        );
        assert_eq!(
            target("", false).base_url().map_err(|e| e.exit).err(),
            Some(Exit::Usage)
        );
        assert_eq!(
            target("bad host:x", false)
                .base_url()
                .map_err(|e| e.exit)
                .err(),
            Some(Exit::Usage)
        );
    }

    #[test]
    fn names_in_another_namespace_and_path_segments() {
        assert_eq!(
            AppAt::parse("team/web", ""),
            AppAt {
                name: "web".into(),
                namespace: "team".into()
            }
        );
        assert_eq!(AppAt::parse("web", "ns").to_string(), "ns/web");
        assert_eq!(
            segment("https://git.example/a b.git"),
            "https%3A%2F%2Fgit.example%2Fa%20b.git"
        );
    }

    #[test]
    fn only_a_plain_http_error_answer_switches_to_rest() {
        let switches = [
            tonic::Status::internal(
                "protocol error: received message with invalid compression flag: 60 (valid flags are 0 and 1) while receiving response with status: 404 Not Found",
            ),
            tonic::Status::unknown("grpc-status header missing, mapped from HTTP status code 502"),
            tonic::Status::internal(
                "protocol error: received message with invalid content-type: text/html",
            ),
        ];
        for status in &switches {
            assert!(not_grpc(status), "{status:?}");
        }
        let stays = [
            // The connection broke: the API may have acted; never send it again.
            tonic::Status::internal("h2 protocol error: error reading a body from connection"),
            tonic::Status::unavailable("transport error"),
            tonic::Status::not_found("application x not found"),
            tonic::Status::internal(
                "protocol error: received message with invalid compression flag: 60 while receiving response with status: 200 OK",
            ),
        ];
        for status in &stays {
            assert!(!not_grpc(status), "{status:?}");
        }
    }

    #[test]
    fn lists_come_as_arrays_or_items() {
        assert_eq!(items(json!([1, 2])), vec![json!(1), json!(2)]);
        assert_eq!(items(json!({"items": [3]})), vec![json!(3)]);
        assert!(items(json!({"items": null})).is_empty());
    }
}
