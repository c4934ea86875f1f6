//! What `cluster add` and `cluster rotate-auth` need from Kubernetes: a kubeconfig context,
//! and a handful of calls to its API server to give Capstan a service account of its own,
//! as Argo CD's `argocd-manager` — a few HTTPS requests, not a Kubernetes client library.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{CliError, CliResult, Exit};
use crate::http::{Connector, Http};
use crate::tls::{TlsOptions, client_config};

/// The service account Capstan's controller acts as in a cluster added this way.
pub const MANAGER: &str = "capstan-manager";
/// Its cluster role (everything, as Argo CD's manager role).
const MANAGER_ROLE: &str = "capstan-manager-role";

#[derive(Debug, Default, Deserialize)]
struct KubeConfig {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default, rename = "current-context")]
    current_context: String,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    #[serde(default)]
    server: String,
    #[serde(default)]
    certificate_authority_data: String,
    #[serde(default)]
    certificate_authority: String,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    tls_server_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    token: String,
    #[serde(default)]
    token_file: String,
    #[serde(default)]
    client_certificate_data: String,
    #[serde(default)]
    client_key_data: String,
    #[serde(default)]
    client_certificate: String,
    #[serde(default)]
    client_key: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    exec: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ContextEntry {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
}

/// A kubeconfig context, resolved: where the API server is and how to authenticate.
#[derive(Clone, Debug, Default)]
pub struct KubeContext {
    /// The context's name.
    pub name: String,
    /// The API server URL.
    pub server: String,
    /// CA (PEM) to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip certificate checks.
    pub insecure: bool,
    /// The name to check the certificate against.
    pub server_name: String,
    /// Bearer token.
    pub token: String,
    /// Client certificate and key (PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Basic auth.
    pub basic: Option<(String, String)>,
}

/// The kubeconfig path: `--kubeconfig`, else `$KUBECONFIG`'s first entry, else ~/.kube/config.
pub fn kubeconfig_path(flag: Option<&Path>) -> CliResult<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    if let Some(paths) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty())
        && let Some(first) = std::env::split_paths(&paths).next()
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::usage("HOME is not set: pass --kubeconfig"))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// Reads context `name` (empty: the current context) from the kubeconfig at `path`.
pub fn load_context(path: &Path, name: &str) -> CliResult<KubeContext> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the kubeconfig {}: {e}",
            path.display()
        ))
    })?;
    let config: KubeConfig =
        serde_saphyr::from_str_with_options(&text, crate::secret_yaml_options()).map_err(|e| {
            CliError::usage(format!(
                "the kubeconfig {} does not parse: {e}",
                path.display()
            ))
        })?;
    let name = if name.is_empty() {
        config.current_context.clone()
    } else {
        name.to_owned()
    };
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.value.as_ref())
        .ok_or_else(|| {
            let known: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
            CliError::new(
                Exit::NotFound,
                format!("no context {name:?} in {}", path.display()),
            )
            .hint(format!("its contexts: {}", known.join(", ")))
        })?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.value.as_ref())
        .ok_or_else(|| {
            CliError::usage(format!(
                "context {name:?} names the missing cluster {:?}",
                context.cluster
            ))
        })?;
    let empty = UserEntry::default();
    let user = config
        .users
        .iter()
        .find(|u| u.name == context.user)
        .and_then(|u| u.value.as_ref())
        .unwrap_or(&empty);
    let base = path.parent().unwrap_or(Path::new("."));
    let file = |p: &str| -> CliResult<Vec<u8>> {
        let path = base.join(p);
        std::fs::read(&path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    };
    let data = |d: &str, what: &str| -> CliResult<Vec<u8>> {
        STANDARD
            .decode(d.trim())
            .map_err(|e| CliError::usage(format!("context {name:?}: {what} is not base64: {e}")))
    };
    let ca_pem = if !cluster.certificate_authority_data.is_empty() {
        Some(data(
            &cluster.certificate_authority_data,
            "certificate-authority-data",
        )?)
    } else if !cluster.certificate_authority.is_empty() {
        Some(file(&cluster.certificate_authority)?)
    } else {
        None
    };
    let cert = if !user.client_certificate_data.is_empty() {
        Some(data(
            &user.client_certificate_data,
            "client-certificate-data",
        )?)
    } else if !user.client_certificate.is_empty() {
        Some(file(&user.client_certificate)?)
    } else {
        None
    };
    let key = if !user.client_key_data.is_empty() {
        Some(data(&user.client_key_data, "client-key-data")?)
    } else if !user.client_key.is_empty() {
        Some(file(&user.client_key)?)
    } else {
        None
    };
    let token = if !user.token.is_empty() {
        user.token.clone()
    } else if !user.token_file.is_empty() {
        String::from_utf8_lossy(&file(&user.token_file)?)
            .trim()
            .to_owned()
    } else {
        String::new()
    };
    let identity = cert.zip(key);
    let basic = (!user.username.is_empty()).then(|| (user.username.clone(), user.password.clone()));
    if token.is_empty() && identity.is_none() && basic.is_none() {
        let why = if user.exec.is_some() {
            "it authenticates through an exec plugin, which capstan does not run"
        } else {
            "it has no token, client certificate or password"
        };
        return Err(CliError::usage(format!("context {name:?}: {why}"))
            .hint("use a context with a token or client certificate"));
    }
    Ok(KubeContext {
        name,
        server: cluster.server.trim_end_matches('/').to_owned(),
        ca_pem,
        insecure: cluster.insecure_skip_tls_verify,
        server_name: cluster.tls_server_name.clone(),
        token,
        identity,
        basic,
    })
}

/// A connection to one API server.
#[derive(Debug)]
pub struct Kube {
    http: Http,
    context: KubeContext,
}

impl Kube {
    /// A client for `context`.
    pub fn new(context: &KubeContext) -> CliResult<Kube> {
        let tls = client_config(
            &TlsOptions {
                ca_pem: context.ca_pem.clone(),
                insecure: context.insecure,
                identity: context.identity.clone(),
            },
            &[b"http/1.1"],
        )?;
        let http = Http::new(
            Connector::new(Some(Arc::new(tls))),
            Duration::from_secs(30),
            64 << 20,
        );
        Ok(Kube {
            http,
            context: context.clone(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> CliResult<(u16, Value)> {
        let url = format!("{}{path}", self.context.server);
        let mut headers = Vec::new();
        if !self.context.token.is_empty() {
            headers.push(("authorization", format!("Bearer {}", self.context.token)));
        } else if let Some((user, password)) = &self.context.basic {
            let pair = STANDARD.encode(format!("{user}:{password}"));
            headers.push(("authorization", format!("Basic {pair}")));
        }
        let body = body.map(|body| {
            headers.push(("content-type", "application/json".to_owned()));
            Bytes::from(body.to_string())
        });
        let response = self
            .http
            .send(method, &url, &headers, body)
            .await
            .map_err(|e| {
                CliError::new(
                    Exit::Unavailable,
                    format!("cannot reach the cluster at {}: {e}", self.context.server),
                )
            })?;
        let status = response.status;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Creates `object` at `collection`; one that exists already is replaced when
    /// `replace` (a role whose rules must be ours), else kept.
    async fn ensure(&self, collection: &str, object: &Value, replace: bool) -> CliResult<()> {
        let (status, answer) = self.call(Method::POST, collection, Some(object)).await?;
        match status {
            200..=299 => Ok(()),
            409 if replace => {
                let path = format!(
                    "{collection}/{}",
                    object["metadata"]["name"].as_str().unwrap_or_default()
                );
                let (status, answer) = self.call(Method::PUT, &path, Some(object)).await?;
                check(status, &answer, &path)
            }
            409 => Ok(()),
            _ => check(status, &answer, collection),
        }
    }

    /// Gives Capstan a service account with a cluster-admin role in `namespace` (created when
    /// missing), and returns a long-lived token for it.
    pub async fn install_manager(&self, namespace: &str) -> CliResult<String> {
        self.ensure(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            false,
        )
        .await?;
        self.ensure(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": MANAGER, "namespace": namespace}}),
            false,
        )
        .await?;
        self.ensure(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": MANAGER_ROLE},
                "rules": [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            }),
            true,
        )
        .await?;
        self.ensure(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("{MANAGER_ROLE}-binding")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MANAGER_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": MANAGER, "namespace": namespace}],
            }),
            true,
        )
        .await?;
        let (_, token) = self.new_token(namespace).await?;
        Ok(token)
    }

    /// A new token Secret for the manager account (Kubernetes' token controller fills it
    /// in); its name and the token.
    pub async fn new_token(&self, namespace: &str) -> CliResult<(String, String)> {
        let collection = format!("/api/v1/namespaces/{namespace}/secrets");
        let (status, created) = self
            .call(
                Method::POST,
                &collection,
                Some(&json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                    "metadata": {
                        "generateName": format!("{MANAGER}-token-"),
                        "namespace": namespace,
                        "annotations": {"kubernetes.io/service-account.name": MANAGER},
                    },
                })),
            )
            .await?;
        check(status, &created, &collection)?;
        let name = created["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let path = format!("{collection}/{name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, secret) = self.call(Method::GET, &path, None).await?;
            check(status, &secret, &path)?;
            if let Some(token) = secret["data"]["token"].as_str().filter(|t| !t.is_empty()) {
                let token = STANDARD.decode(token).map_err(|e| {
                    CliError::other(format!("the token in {path} is not base64: {e}"))
                })?;
                return Ok((name, String::from_utf8_lossy(&token).into_owned()));
            }
            if Instant::now() >= deadline {
                return Err(CliError::new(
                    Exit::Timeout,
                    format!("the cluster did not fill in the token of {path} within 30s"),
                )
                .hint("its kube-controller-manager must run the token controller; or add the cluster with --direct"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes the manager's token Secrets other than `keep` (the old ones, on rotation);
    /// how many.
    pub async fn delete_tokens_except(&self, namespace: &str, keep: &str) -> CliResult<usize> {
        let collection = format!("/api/v1/namespaces/{namespace}/secrets");
        let (status, list) = self
            .call(
                Method::GET,
                &format!("{collection}?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token"),
                None,
            )
            .await?;
        check(status, &list, &collection)?;
        let mut deleted = 0;
        for secret in list["items"].as_array().into_iter().flatten() {
            let name = secret["metadata"]["name"].as_str().unwrap_or_default();
            let owner = &secret["metadata"]["annotations"]["kubernetes.io/service-account.name"];
            if name != keep && owner == MANAGER {
                let path = format!("{collection}/{name}");
                let (status, answer) = self.call(Method::DELETE, &path, None).await?;
                if status != 404 {
                    check(status, &answer, &path)?;
                }
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

fn check(status: u16, answer: &Value, path: &str) -> CliResult<()> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let message = answer["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.to_string());
    let exit = match status {
        401 => Exit::Unauthenticated,
        403 => Exit::PermissionDenied,
        404 => Exit::NotFound,
        _ => Exit::Other,
    };
    Err(CliError::new(
        exit,
        format!("the cluster refused {path} ({status}): {message}"),
    ))
}

/// The registration of a cluster: its spec's `config` for `token` (or, `--direct`, the
/// context's own credentials).
pub fn cluster_config(context: &KubeContext, token: Option<&str>) -> Value {
    let mut tls = json!({});
    if let Some(ca) = &context.ca_pem {
        tls["caData"] = json!(STANDARD.encode(ca));
    }
    if context.insecure {
        tls["insecure"] = json!(true);
    }
    if !context.server_name.is_empty() {
        tls["serverName"] = json!(context.server_name);
    }
    let mut config = json!({ "tlsClientConfig": tls });
    match token {
        Some(token) => config["bearerToken"] = json!(token),
        None => {
            if !context.token.is_empty() {
                config["bearerToken"] = json!(context.token);
            }
            if let Some((cert, key)) = &context.identity {
                config["tlsClientConfig"]["certData"] = json!(STANDARD.encode(cert));
                config["tlsClientConfig"]["keyData"] = json!(STANDARD.encode(key));
            }
            if let Some((user, password)) = &context.basic {
                config["username"] = json!(user);
                config["password"] = json!(password);
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_resolve_their_cluster_and_user() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config");
        std::fs::write(dir.path().join("ca.crt"), "PEM")?;
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    token: t0k\n- name: x\n  user:\n    exec: {command: aws}\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n- name: b\n  context: {cluster: c, user: x}\n",
        )?;
        let a = load_context(&path, "")?;
        assert_eq!(
            (a.name.as_str(), a.server.as_str(), a.token.as_str()),
            ("a", "https://10.0.0.1:6443", "t0k")
        );
        assert_eq!(a.ca_pem.as_deref(), Some(&b"PEM"[..]));
        let config = cluster_config(&a, Some("sa-token"));
        assert_eq!(config["bearerToken"], json!("sa-token"));
        assert_eq!(
            config["tlsClientConfig"]["caData"],
            json!(STANDARD.encode("PEM"))
        );
        let exec = load_context(&path, "b").expect_err("exec is not run");
        assert!(exec.message.contains("exec plugin"), "{exec}");
        let missing = load_context(&path, "nope").expect_err("missing");
        assert_eq!(missing.exit, Exit::NotFound);
        assert!(missing.to_string().contains("a, b"), "{missing}");
        Ok(())
    }
}
