//! The CLI's one way to open connections and speak HTTP: a connector (plain TCP, or TLS with
//! the CLI's rustls configuration) that gRPC (tonic) and the small HTTP client below share,
//! for the API's REST fallback, the SSO provider and kube-apiservers.
//!
//! Why not reqwest: its rustls support is a cargo feature, and features are unified across a
//! workspace build — turning it on here would make every other crate's reqwest client panic
//! for want of a default crypto provider. hyper is in the build anyway (tonic, axum).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection, with or without TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (`http://`).
    Plain(TcpStream),
    /// TLS (`https://`).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

/// Opens connections to a URI's host: TLS with `tls` for `https`, plain TCP for `http`.
#[derive(Clone, Debug)]
pub struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Connector {
    /// A connector; without `tls`, `https` URIs are refused.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Connector {
        Connector { tls }
    }

    async fn connect(self, uri: Uri) -> io::Result<TokioIo<Stream>> {
        let host = uri
            .host()
            .ok_or_else(|| io::Error::other("the address has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))??;
        tcp.set_nodelay(true)?;
        if !https {
            return Ok(TokioIo::new(Stream::Plain(tcp)));
        }
        let config = self
            .tls
            .ok_or_else(|| io::Error::other("https without a TLS configuration"))?;
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(TokioIo::new(Stream::Tls(Box::new(tls))))
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection, or it broke before an answer (with the causes).
    Connection(String),
    /// No whole answer within the time allowed.
    Timeout(String),
    /// An answer that could not be read (too large, cut short).
    Answer(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connection(m) | Failure::Timeout(m) | Failure::Answer(m) => f.write_str(m),
        }
    }
}

/// A small HTTP/1.1 and HTTP/2 client.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

impl Http {
    /// A client over `connector`; each exchange may take `timeout` and answer `max_body` bytes.
    pub fn new(connector: Connector, timeout: Duration, max_body: usize) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            max_body,
        }
    }

    /// Sends `method url` with `headers` and `body`. The error says what failed, causes
    /// included (a refused connection, a certificate problem).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Failure::Connection(format!("the request cannot be sent: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Connection(causes(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| {
                    Failure::Answer(format!(
                        "reading it failed ({e}); the most read is {} MiB",
                        self.max_body >> 20
                    ))
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Failure::Timeout(format!("no answer within {}s", self.timeout.as_secs()))
            })?
    }
}

/// An error with its chain of causes, `a: b: c`.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}
