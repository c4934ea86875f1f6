//! Reaching a target cluster: its address, TLS settings and credentials
//! ([`ClusterConnection`]), turned into a [`kube::Client`].
//!
//! Credentials come in the forms Argo CD's cluster secrets hold: a bearer token, a client
//! certificate and key, basic auth, or an exec provider (a command that prints a
//! client-go `ExecCredential`, e.g. `aws eks get-token`, `gke-gcloud-auth-plugin`,
//! `kubelogin`). A connection is built from a registered [`capstan_model::ClusterSpec`]
//! ([`ClusterConnection::from_spec`]) or from a kubeconfig
//! ([`ClusterConnection::from_kubeconfig`], what `capstan cluster add` reads).
//!
//! The client is built through an in-memory kubeconfig, so TLS, token refresh and exec
//! plugins behave exactly as with `kubectl`. Exec plugins never get a terminal: Capstan is
//! a server ([`kube::config::ExecInteractiveMode::Never`]).
//!
//! Errors never carry credentials: kube's message for a failed exec plugin includes the
//! command's environment, so [`explain`] rewrites it (see [`ClusterError`]).

use base64::Engine as _;
use capstan_model::{ClusterSpec, Sensitive};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// The API version exec plugins are asked to answer in when none is configured.
pub const DEFAULT_EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1beta1";

/// Errors building or checking a cluster connection.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A field of the connection is unusable.
    #[error("cluster {server}: {field}: {problem}")]
    Invalid {
        /// The API server URL.
        server: String,
        /// Which field (`tlsClientConfig.caData`, `execProviderConfig`, ...).
        field: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The kubeconfig could not be read or lacks what is needed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// kube could not build a client from the settings (bad PEM, bad URL, ...).
    #[error("cluster {server}: cannot build a client: {message}")]
    Client {
        /// The API server URL.
        server: String,
        /// What kube said.
        message: String,
        /// kube's error.
        #[source]
        source: Option<kube::Error>,
    },
    /// The API server could not be reached or refused the request.
    #[error("cluster {server}: {message}")]
    Request {
        /// The API server URL.
        server: String,
        /// What failed and what to check (credentials scrubbed).
        message: String,
        /// HTTP status, when the server answered.
        status: Option<u16>,
        /// kube's error, unless its text would reveal credentials.
        #[source]
        source: Option<kube::Error>,
    },
}

impl ClusterError {
    /// The HTTP status the API server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Request { status, .. } => *status,
            _ => None,
        }
    }
}

/// A client certificate and its private key (PEM).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: Sensitive,
}

/// User name and password.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Sensitive,
}

/// A client-go credential plugin: a command that prints an `ExecCredential`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecProvider {
    /// The command (a path, or a name looked up in `PATH`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables; values may be credentials.
    pub env: Vec<(String, Sensitive)>,
    /// `client.authentication.k8s.io/v1` or `/v1beta1` (default).
    pub api_version: String,
    /// Shown when the command cannot be started.
    pub install_hint: String,
}

/// Everything needed to talk to one cluster's API server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterConnection {
    /// The API server URL, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// CA bundle to trust (PEM); `None` trusts the system roots.
    pub ca_pem: Option<String>,
    /// Skip verifying the server's certificate (testing only).
    pub insecure: bool,
    /// Name to verify the server certificate against (and send as SNI) instead of the
    /// URL's host: for API servers reached through an IP or a tunnel.
    pub tls_server_name: Option<String>,
    /// HTTP(S) or SOCKS5 proxy for requests to the server.
    pub proxy_url: Option<String>,
    /// Do not ask for gzip responses.
    pub disable_compression: bool,
    /// Bearer token.
    pub bearer_token: Option<Sensitive>,
    /// Basic auth.
    pub basic_auth: Option<BasicAuth>,
    /// Client certificate (may be combined with a token).
    pub client_certificate: Option<ClientCertificate>,
    /// Exec credential plugin.
    pub exec: Option<ExecProvider>,
}

/// Who the API server says we are, and its version ([`ClusterConnection::connect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// `gitVersion`, e.g. `v1.37.0`.
    pub server_version: String,
    /// The authenticated user name.
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
}

/// Decodes Argo CD's "base64 of PEM"; PEM written as is is accepted too.
fn pem_field(
    server: &str,
    field: &'static str,
    value: &str,
) -> Result<Option<String>, ClusterError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.starts_with("-----BEGIN") {
        return Ok(Some(value.to_owned()));
    }
    let invalid = |problem: String| ClusterError::Invalid {
        server: server.to_owned(),
        field,
        problem,
    };
    let compact: String = value.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| invalid(format!("not base64-encoded PEM ({e})")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| invalid("decodes to binary, not PEM text".into()))?;
    if !text.contains("-----BEGIN") {
        return Err(invalid(
            "decodes to text without a PEM block (-----BEGIN ...)".into(),
        ));
    }
    Ok(Some(text))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

impl ClusterConnection {
    /// A connection to `server` with no credentials and the system trust roots.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            ..Self::default()
        }
    }

    /// The connection a registered cluster describes. `caData`, `certData` and `keyData`
    /// are base64 of PEM, as in Argo CD's cluster secrets. `awsAuthConfig` runs
    /// `aws eks get-token` as an exec provider (the AWS CLI must be installed).
    pub fn from_spec(spec: &ClusterSpec) -> Result<Self, ClusterError> {
        let server = spec.server.trim().to_owned();
        let c = &spec.config;
        let tls = &c.tls_client_config;
        let client_certificate = match (
            pem_field(&server, "tlsClientConfig.certData", &tls.cert_data)?,
            pem_field(&server, "tlsClientConfig.keyData", tls.key_data.expose())?,
        ) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientCertificate {
                cert_pem,
                key_pem: Sensitive::new(key_pem),
            }),
            (None, None) => None,
            _ => {
                return Err(ClusterError::Invalid {
                    server,
                    field: "tlsClientConfig",
                    problem: "certData and keyData must be set together".into(),
                });
            }
        };
        let exec = if let Some(e) = &c.exec_provider_config {
            Some(ExecProvider {
                command: e.command.clone(),
                args: e.args.clone(),
                env: e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                api_version: e.api_version.clone(),
                install_hint: e.install_hint.clone(),
            })
        } else if let Some(aws) = &c.aws_auth_config {
            let mut args = vec![
                "eks".to_owned(),
                "get-token".to_owned(),
                "--cluster-name".to_owned(),
                aws.cluster_name.clone(),
                "--output".to_owned(),
                "json".to_owned(),
            ];
            if !aws.role_arn.is_empty() {
                args.extend(["--role-arn".to_owned(), aws.role_arn.clone()]);
            }
            let env = non_empty(&aws.profile)
                .map(|p| vec![("AWS_PROFILE".to_owned(), Sensitive::new(p))])
                .unwrap_or_default();
            Some(ExecProvider {
                command: "aws".into(),
                args,
                env,
                api_version: DEFAULT_EXEC_API_VERSION.into(),
                install_hint: "install the AWS CLI v2 (`aws`) next to the controller".into(),
            })
        } else {
            None
        };
        let conn = Self {
            ca_pem: pem_field(&server, "tlsClientConfig.caData", &tls.ca_data)?,
            insecure: tls.insecure,
            tls_server_name: non_empty(&tls.server_name),
            proxy_url: non_empty(&c.proxy_url),
            disable_compression: c.disable_compression,
            bearer_token: (!c.bearer_token.is_empty()).then(|| c.bearer_token.clone()),
            basic_auth: (!c.username.is_empty()).then(|| BasicAuth {
                username: c.username.clone(),
                password: c.password.clone(),
            }),
            client_certificate,
            exec,
            server,
        };
        conn.validate()?;
        Ok(conn)
    }

    /// The connection of `context` (or the current context) in a kubeconfig. Files the
    /// kubeconfig refers to (`certificate-authority`, `client-certificate`, `client-key`,
    /// `tokenFile`) are read now, so the connection stands on its own.
    pub fn from_kubeconfig(yaml: &str, context: Option<&str>) -> Result<Self, ClusterError> {
        let doc: Value = serde_saphyr::from_str(yaml)
            .map_err(|e| ClusterError::Kubeconfig(format!("not valid YAML: {e}")))?;
        let context_name = match context {
            Some(c) => c.to_owned(),
            None => doc
                .get("current-context")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    ClusterError::Kubeconfig(
                        "no current-context is set: name the context to use".into(),
                    )
                })?
                .to_owned(),
        };
        let named = |list: &str, name: &str, field: &str| -> Result<Value, ClusterError> {
            doc.get(list)
                .and_then(Value::as_array)
                .and_then(|items| {
                    items
                        .iter()
                        .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
                })
                .and_then(|i| i.get(field))
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> = doc
                        .get(list)
                        .and_then(Value::as_array)
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(|i| i.get("name").and_then(Value::as_str))
                                .collect()
                        })
                        .unwrap_or_default();
                    ClusterError::Kubeconfig(format!(
                        "{list}: no entry named {name:?} (found: {})",
                        known.join(", ")
                    ))
                })
        };
        let ctx = named("contexts", &context_name, "context")?;
        let cluster_name = ctx
            .get("cluster")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cluster = named("clusters", cluster_name, "cluster")?;
        let user = match ctx.get("user").and_then(Value::as_str) {
            Some(u) if !u.is_empty() => named("users", u, "user")?,
            _ => json!({}),
        };
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let server = s(&cluster, "server").ok_or_else(|| {
            ClusterError::Kubeconfig(format!("cluster {cluster_name:?} has no server"))
        })?;
        let read = |path: String, what: &str| {
            std::fs::read_to_string(&path)
                .map_err(|e| ClusterError::Kubeconfig(format!("reading {what} file {path}: {e}")))
        };
        let ca_pem = match (
            s(&cluster, "certificate-authority-data"),
            s(&cluster, "certificate-authority"),
        ) {
            (Some(data), _) => pem_field(&server, "certificate-authority-data", &data)?,
            (None, Some(path)) => Some(read(path, "certificate-authority")?),
            (None, None) => None,
        };
        let cert = match (
            s(&user, "client-certificate-data"),
            s(&user, "client-certificate"),
        ) {
            (Some(data), _) => pem_field(&server, "client-certificate-data", &data)?,
            (None, Some(path)) => Some(read(path, "client-certificate")?),
            (None, None) => None,
        };
        let key = match (s(&user, "client-key-data"), s(&user, "client-key")) {
            (Some(data), _) => pem_field(&server, "client-key-data", &data)?,
            (None, Some(path)) => Some(read(path, "client-key")?),
            (None, None) => None,
        };
        let client_certificate = match (cert, key) {
            (Some(cert_pem), Some(key)) => Some(ClientCertificate {
                cert_pem,
                key_pem: Sensitive::new(key),
            }),
            (None, None) => None,
            _ => {
                return Err(ClusterError::Kubeconfig(
                    "user has a client certificate without a key, or a key without a certificate"
                        .into(),
                ));
            }
        };
        let token = match (s(&user, "token"), s(&user, "tokenFile")) {
            (Some(t), _) => Some(t),
            (None, Some(path)) => Some(read(path, "token")?.trim().to_owned()),
            (None, None) => None,
        };
        if user.get("auth-provider").is_some() {
            return Err(ClusterError::Kubeconfig(
                "the user authenticates with an auth-provider plugin, which client-go removed; use an exec plugin (e.g. kubelogin, gke-gcloud-auth-plugin)".into(),
            ));
        }
        let exec = user.get("exec").map(|e| ExecProvider {
            command: s(e, "command").unwrap_or_default(),
            args: e
                .get("args")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            env: e
                .get("env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| {
                            Some((
                                s(v, "name")?,
                                Sensitive::new(s(v, "value").unwrap_or_default()),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            api_version: s(e, "apiVersion").unwrap_or_default(),
            install_hint: s(e, "installHint").unwrap_or_default(),
        });
        let conn = Self {
            ca_pem,
            insecure: cluster
                .get("insecure-skip-tls-verify")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            tls_server_name: s(&cluster, "tls-server-name"),
            proxy_url: s(&cluster, "proxy-url"),
            disable_compression: cluster
                .get("disable-compression")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bearer_token: token.map(Sensitive::new),
            basic_auth: s(&user, "username").map(|username| BasicAuth {
                username,
                password: Sensitive::new(s(&user, "password").unwrap_or_default()),
            }),
            client_certificate,
            exec,
            server,
        };
        conn.validate()?;
        Ok(conn)
    }

    /// Checks the combination of settings.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |field, problem: &str| ClusterError::Invalid {
            server: self.server.clone(),
            field,
            problem: problem.to_owned(),
        };
        if self.server.is_empty() {
            return Err(invalid("server", "no API server URL is set"));
        }
        if !(self.server.starts_with("https://") || self.server.starts_with("http://")) {
            return Err(invalid("server", "must be an https:// (or http://) URL"));
        }
        let methods = [
            self.bearer_token.is_some(),
            self.basic_auth.is_some(),
            self.exec.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(invalid(
                "config",
                "set only one of bearerToken, username/password and execProviderConfig",
            ));
        }
        if let Some(exec) = &self.exec
            && exec.command.trim().is_empty()
        {
            return Err(invalid(
                "execProviderConfig.command",
                "the exec provider has no command",
            ));
        }
        if self.insecure && self.ca_pem.is_some() {
            return Err(invalid(
                "tlsClientConfig",
                "insecure and caData exclude each other: drop insecure to verify against the CA",
            ));
        }
        Ok(())
    }

    /// The connection as a one-context kubeconfig (credentials included; never log it).
    pub fn to_kubeconfig(&self) -> Result<Kubeconfig, ClusterError> {
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let mut cluster = json!({"server": self.server});
        if let Some(ca) = &self.ca_pem {
            cluster["certificate-authority-data"] = json!(b64(ca));
        }
        if self.insecure {
            cluster["insecure-skip-tls-verify"] = json!(true);
        }
        if let Some(name) = &self.tls_server_name {
            cluster["tls-server-name"] = json!(name);
        }
        if let Some(proxy) = &self.proxy_url {
            cluster["proxy-url"] = json!(proxy);
        }
        if self.disable_compression {
            cluster["disable-compression"] = json!(true);
        }
        let mut user = json!({});
        if let Some(token) = &self.bearer_token {
            user["token"] = json!(token.expose());
        }
        if let Some(basic) = &self.basic_auth {
            user["username"] = json!(basic.username);
            user["password"] = json!(basic.password.expose());
        }
        if let Some(cert) = &self.client_certificate {
            user["client-certificate-data"] = json!(b64(&cert.cert_pem));
            user["client-key-data"] = json!(b64(cert.key_pem.expose()));
        }
        if let Some(exec) = &self.exec {
            let env: Vec<Value> = exec
                .env
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value.expose()}))
                .collect();
            let api_version = if exec.api_version.is_empty() {
                DEFAULT_EXEC_API_VERSION
            } else {
                &exec.api_version
            };
            let mut e = json!({
                "command": exec.command,
                "args": exec.args,
                "env": env,
                "apiVersion": api_version,
                "interactiveMode": "Never",
            });
            if !exec.install_hint.is_empty() {
                e["installHint"] = json!(exec.install_hint);
            }
            user["exec"] = e;
        }
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "target", "cluster": cluster}],
            "users": [{"name": "capstan", "user": user}],
            "contexts": [{"name": "target", "context": {"cluster": "target", "user": "capstan"}}],
            "current-context": "target",
        });
        serde_json::from_value(doc).map_err(|e| ClusterError::Client {
            server: self.server.clone(),
            message: format!("building the in-memory kubeconfig: {e}"),
            source: None,
        })
    }

    /// The kube client configuration.
    pub async fn config(&self) -> Result<kube::Config, ClusterError> {
        self.validate()?;
        let kubeconfig = self.to_kubeconfig()?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| ClusterError::Client {
                    server: self.server.clone(),
                    message: explain_chain(&e),
                    source: None,
                })?;
        // A dead server should fail a request in seconds, not hang a reconcile.
        config.connect_timeout = Some(std::time::Duration::from_secs(10));
        Ok(config)
    }

    /// A client for the cluster. Nothing is sent yet; see [`Self::connect`].
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(|e| {
            let (message, source) = explain(e);
            ClusterError::Client {
                server: self.server.clone(),
                message,
                source,
            }
        })
    }

    /// A client, checked: asks the server for its version and who it takes us for (a
    /// `SelfSubjectReview`), so wrong credentials fail here with a clear message.
    pub async fn connect(&self) -> Result<(kube::Client, ConnectionInfo), ClusterError> {
        let client = self.client().await?;
        let info = check(&client, &self.server).await?;
        Ok((client, info))
    }
}

/// Asks `client`'s server for its version and the identity it authenticated.
pub async fn check(client: &kube::Client, server: &str) -> Result<ConnectionInfo, ClusterError> {
    let request_error = |e: kube::Error| {
        let status = status_of(&e);
        let (message, source) = explain(e);
        ClusterError::Request {
            server: server.to_owned(),
            message,
            status,
            source,
        }
    };
    let version = client.apiserver_version().await.map_err(request_error)?;
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(request_error)?;
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    Ok(ConnectionInfo {
        server_version: version.git_version,
        user: user.username.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
    })
}

/// The HTTP status of an error the API server answered with.
pub fn status_of(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The error chain as one line, duplicates dropped.
fn explain_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// A message for a kube error that says what to check, and the error itself unless its
/// text would reveal credentials.
///
/// kube formats a failed exec plugin with the command's `Debug` form, which lists the
/// environment variables given to it (where tokens and keys are passed); that error is
/// replaced by the plugin's exit status and standard error.
pub fn explain(err: kube::Error) -> (String, Option<kube::Error>) {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = current {
        if let Some(auth) = e.downcast_ref::<kube::client::AuthError>() {
            match auth {
                kube::client::AuthError::AuthExecRun { out, .. } => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let stderr = stderr.trim();
                    let tail: String = stderr
                        .chars()
                        .rev()
                        .take(500)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    return (
                        format!(
                            "the exec credential plugin failed ({}){}",
                            out.status,
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!(": {tail}")
                            }
                        ),
                        None,
                    );
                }
                kube::client::AuthError::AuthExecStart(io) => {
                    return (
                        format!(
                            "the exec credential plugin could not be started ({io}): is the command installed and on PATH?"
                        ),
                        None,
                    );
                }
                _ => {}
            }
        }
        current = e.source();
    }
    let chain = explain_chain(&err);
    let hint = match &err {
        kube::Error::Api(status) if status.code == 401 => {
            " — the API server rejected the credentials: check the bearer token, client certificate or exec provider (expired or revoked tokens look the same)"
        }
        kube::Error::Api(status) if status.code == 403 => {
            " — authenticated but not allowed: grant the identity Capstan uses RBAC for this (or check that credentials were sent at all: anonymous requests are forbidden too)"
        }
        _ if chain.contains("certificate")
            || chain.contains("UnknownIssuer")
            || chain.contains("NotValidForName") =>
        {
            " — TLS verification failed: check caData, serverName, or the server's address"
        }
        _ if chain.contains("Connection refused")
            || chain.contains("timed out")
            || chain.contains("dns error") =>
        {
            " — the API server is not reachable at this address"
        }
        _ => "",
    };
    (format!("{chain}{hint}"), Some(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::cluster::{
        AwsAuthConfig, ClusterConfig, ExecProviderConfig, TlsClientConfig,
    };

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn specs_decode_base64_pem_and_map_credentials() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        let spec = ClusterSpec {
            server: "https://10.0.0.1:6443".into(),
            config: ClusterConfig {
                bearer_token: "t0ken".into(),
                tls_client_config: TlsClientConfig {
                    ca_data: b64.clone(),
                    server_name: "kubernetes".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let conn = ClusterConnection::from_spec(&spec).expect("valid");
        assert_eq!(conn.ca_pem.as_deref(), Some(PEM));
        assert_eq!(
            conn.bearer_token.as_ref().map(Sensitive::expose),
            Some("t0ken")
        );
        assert_eq!(conn.tls_server_name.as_deref(), Some("kubernetes"));
        assert!(
            !format!("{conn:?}").contains("t0ken"),
            "Debug never shows credentials"
        );

        let mut bad = spec.clone();
        bad.config.tls_client_config.ca_data = "%%%".into();
        let err = ClusterConnection::from_spec(&bad).expect_err("invalid");
        assert!(err.to_string().contains("tlsClientConfig.caData"), "{err}");

        let mut half = spec.clone();
        half.config.tls_client_config.cert_data = b64;
        assert!(ClusterConnection::from_spec(&half).is_err());

        let mut two = spec.clone();
        two.config.exec_provider_config = Some(ExecProviderConfig {
            command: "x".into(),
            ..Default::default()
        });
        let err = ClusterConnection::from_spec(&two).expect_err("two methods");
        assert!(err.to_string().contains("only one of"), "{err}");
    }

    #[test]
    fn aws_auth_becomes_an_exec_provider() {
        let spec = ClusterSpec {
            server: "https://eks.example".into(),
            config: ClusterConfig {
                aws_auth_config: Some(AwsAuthConfig {
                    cluster_name: "prod".into(),
                    role_arn: "arn:aws:iam::1:role/x".into(),
                    profile: "ops".into(),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let exec = ClusterConnection::from_spec(&spec)
            .expect("valid")
            .exec
            .expect("exec");
        assert_eq!(exec.command, "aws");
        assert!(
            exec.args
                .windows(2)
                .any(|w| w == ["--cluster-name", "prod"])
        );
        assert!(
            exec.args
                .windows(2)
                .any(|w| w == ["--role-arn", "arn:aws:iam::1:role/x"])
        );
        assert_eq!(exec.env[0].0, "AWS_PROFILE");
    }

    #[test]
    fn kubeconfigs_are_read_by_context() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c1\n  cluster:\n    server: https://one\n    certificate-authority-data: {b64}\n- name: c2\n  cluster:\n    server: https://two\n    insecure-skip-tls-verify: true\nusers:\n- name: u1\n  user:\n    token: abc\n- name: u2\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: get-token\n      args: [--x]\n      env:\n      - name: SECRET\n        value: s3cret\ncontexts:\n- name: a\n  context: {{cluster: c1, user: u1}}\n- name: b\n  context: {{cluster: c2, user: u2}}\n"
        );
        let a = ClusterConnection::from_kubeconfig(&yaml, None).expect("current");
        assert_eq!(a.server, "https://one");
        assert_eq!(a.ca_pem.as_deref(), Some(PEM));
        assert_eq!(a.bearer_token.as_ref().map(Sensitive::expose), Some("abc"));
        let b = ClusterConnection::from_kubeconfig(&yaml, Some("b")).expect("named");
        assert!(b.insecure);
        let exec = b.exec.expect("exec");
        assert_eq!(
            (exec.command.as_str(), exec.args.as_slice()),
            ("get-token", ["--x".to_owned()].as_slice())
        );
        assert_eq!(exec.env[0].1.expose(), "s3cret");
        let err = ClusterConnection::from_kubeconfig(&yaml, Some("nope")).expect_err("unknown");
        assert!(err.to_string().contains("found: a, b"), "{err}");
    }

    #[test]
    fn the_in_memory_kubeconfig_carries_every_setting() {
        let conn = ClusterConnection {
            server: "https://127.0.0.1:6443".into(),
            ca_pem: Some(PEM.into()),
            tls_server_name: Some("kubernetes".into()),
            exec: Some(ExecProvider {
                command: "/bin/token".into(),
                env: vec![("K".into(), "v".into())],
                ..Default::default()
            }),
            ..Default::default()
        };
        let kc = conn.to_kubeconfig().expect("builds");
        let cluster = kc.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.tls_server_name.as_deref(), Some("kubernetes"));
        assert!(cluster.certificate_authority_data.is_some());
        let user = kc.auth_infos[0].auth_info.as_ref().expect("user");
        let exec = user.exec.as_ref().expect("exec");
        assert_eq!(exec.api_version.as_deref(), Some(DEFAULT_EXEC_API_VERSION));
        assert_eq!(
            exec.interactive_mode,
            Some(kube::config::ExecInteractiveMode::Never)
        );
        assert_eq!(exec.env.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn invalid_urls_and_exclusive_tls_options_are_rejected() {
        assert!(ClusterConnection::new("").validate().is_err());
        assert!(ClusterConnection::new("10.0.0.1:6443").validate().is_err());
        let conn = ClusterConnection {
            insecure: true,
            ca_pem: Some(PEM.into()),
            ..ClusterConnection::new("https://x")
        };
        assert!(conn.validate().is_err());
    }
}
