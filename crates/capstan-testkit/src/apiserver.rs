//! Real `kube-apiserver`s on loopback, each with its own etcd prefix, TLS, token
//! authentication and RBAC authorization — the target clusters of Capstan's tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::etcd::Etcd;
use crate::net::free_port;
use crate::pki::{CertAndKey, TestCa, random_token, signing_key_pem};
use crate::process::ManagedProcess;
use crate::tools;
use crate::wait::wait_until;
use crate::workdir::WorkDir;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A user the apiserver knows by a static bearer token.
#[derive(Clone)]
pub struct TokenUser {
    /// The user name, e.g. `admin` or `system:kube-scheduler`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for TokenUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenUser")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// A running kube-apiserver.
#[derive(Debug)]
pub struct KubeApiServer {
    name: String,
    // Field order matters: the apiserver stops before its dir goes and before its etcd.
    process: ManagedProcess,
    port: u16,
    ca_pem: String,
    users: Vec<TokenUser>,
    sa_key_path: PathBuf,
    ca_path: PathBuf,
    /// The CA behind `--client-ca-file` too: it signs client certificates on request.
    ca: TestCa,
    dir: WorkDir,
    etcd: Arc<Etcd>,
}

/// Users every test apiserver is started with. `admin` is cluster-admin (system:masters);
/// the others are the identities the control-plane components use, bound by the
/// apiserver's bootstrap RBAC policy.
const BUILTIN_USERS: &[(&str, &[&str])] = &[
    ("admin", &["system:masters"]),
    ("system:kube-controller-manager", &[]),
    ("system:kube-scheduler", &[]),
    ("kwok", &["system:masters"]),
];

impl KubeApiServer {
    /// Starts an apiserver on its own new etcd.
    pub async fn start() -> Result<Self> {
        let etcd = Arc::new(Etcd::start().await?);
        Self::start_on(etcd, "cluster").await
    }

    /// Starts an apiserver on a shared etcd, under the etcd prefix `/registry-<name>-<port>`,
    /// so several apiservers (several "clusters") can share one etcd.
    pub async fn start_on(etcd: Arc<Etcd>, name: &str) -> Result<Self> {
        let mut last_err = None;
        for _ in 0..3 {
            match Self::start_once(etcd.clone(), name).await {
                Ok(server) => return Ok(server),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "kube-apiserver failed to start; retrying on a new port");
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("kube-apiserver did not start")))
    }

    async fn start_once(etcd: Arc<Etcd>, name: &str) -> Result<Self> {
        let binary = tools::kubernetes("kube-apiserver")?;
        let dir = WorkDir::new(&format!("apiserver-{name}"))?;
        let port = free_port()?;

        let ca = TestCa::new(&format!("capstan-testkit-{name}-ca"))?;
        let serving = ca.serving_cert(
            "kube-apiserver",
            &["127.0.0.1", "localhost", "kubernetes", "kubernetes.default"],
        )?;
        let ca_path = write(&dir, "ca.crt", &ca.cert_pem)?;
        let cert_path = write(&dir, "apiserver.crt", &serving.cert_pem)?;
        let key_path = write(&dir, "apiserver.key", &serving.key_pem)?;
        let (sa_private, sa_public) = signing_key_pem()?;
        let sa_key_path = write(&dir, "sa.key", &sa_private)?;
        let sa_pub_path = write(&dir, "sa.pub", &sa_public)?;

        let mut users = Vec::new();
        let mut token_file = String::new();
        for (i, (user, groups)) in BUILTIN_USERS.iter().enumerate() {
            let token = random_token()?;
            token_file.push_str(&format!(
                "{token},{user},uid-{i},\"{}\"\n",
                groups.join(",")
            ));
            users.push(TokenUser {
                name: (*user).to_owned(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                token,
            });
        }
        let tokens_path = write(&dir, "tokens.csv", &token_file)?;

        let args = vec![
            format!("--etcd-servers={}", etcd.endpoint()),
            format!("--etcd-prefix=/registry-{name}-{port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--tls-cert-file={}", cert_path.display()),
            format!("--tls-private-key-file={}", key_path.display()),
            format!("--client-ca-file={}", ca_path.display()),
            format!("--token-auth-file={}", tokens_path.display()),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", sa_pub_path.display()),
            format!(
                "--service-account-signing-key-file={}",
                sa_key_path.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            // The apiserver is reachable on loopback only, which is not a valid endpoint
            // address for the `kubernetes` Service; nothing in a test cluster needs it.
            "--endpoint-reconciler-type=none".to_owned(),
            "--enable-priority-and-fairness=false".to_owned(),
            "--profiling=false".to_owned(),
            "--v=1".to_owned(),
        ];
        let mut process =
            ManagedProcess::spawn("kube-apiserver", &binary, &args, &dir.join("apiserver.log"))?;
        // Catch an immediate crash (bad flag, port taken) before building a client.
        std::thread::sleep(Duration::from_millis(50));
        process.check_running()?;

        let mut server = Self {
            name: name.to_owned(),
            port,
            ca_pem: ca.cert_pem.clone(),
            users,
            sa_key_path,
            ca_path,
            ca,
            process,
            dir,
            etcd,
        };
        server.wait_ready().await?;
        tracing::info!(name, url = %server.url(), "kube-apiserver ready");
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = self.client().await?;
        let result = wait_until("kube-apiserver /readyz", READY_TIMEOUT, || {
            let running = self.process.check_running();
            let client = client.clone();
            async move {
                running?;
                let request = http::Request::get("/readyz").body(Vec::new())?;
                match client.request_text(request).await {
                    Ok(body) if body.trim() == "ok" => Ok(Some(())),
                    Ok(body) => Err(anyhow!("/readyz: {body}")),
                    Err(err) => Err(anyhow!("/readyz: {err}")),
                }
            }
        })
        .await;
        result.with_context(|| format!("kube-apiserver log tail:\n{}", self.process.log_tail(40)))
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The name given at start (used in the etcd prefix and kubeconfig names).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate (PEM) that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate the server accepts, for user `common_name` in group
    /// `organization` (e.g. `system:masters` for a cluster admin).
    pub fn client_cert(&self, common_name: &str, organization: Option<&str>) -> Result<CertAndKey> {
        self.ca.client_cert(common_name, organization)
    }

    /// Path of the CA certificate file.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Path of the service-account signing key (the controller-manager needs it).
    pub fn service_account_key_path(&self) -> &Path {
        &self.sa_key_path
    }

    /// A token user by name (`admin`, `system:kube-controller-manager`, ...).
    pub fn user(&self, name: &str) -> Result<&TokenUser> {
        self.users
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| anyhow!("no test user {name}"))
    }

    /// The cluster-admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.users[0].token
    }

    /// A kubeconfig (YAML) for `user`, with the CA embedded.
    pub fn kubeconfig_yaml_for(&self, user: &str) -> Result<String> {
        let user = self.user(user)?;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let context = format!("capstan-{}", self.name);
        Ok(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user_name}\n  user:\n    token: {token}\ncontexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {user_name}\ncurrent-context: {context}\n",
            url = self.url(),
            user_name = user.name.replace(':', "-"),
            token = user.token,
        ))
    }

    /// The admin kubeconfig (YAML).
    pub fn kubeconfig_yaml(&self) -> Result<String> {
        self.kubeconfig_yaml_for("admin")
    }

    /// Writes the kubeconfig for `user` into the server's work dir and returns its path.
    pub fn kubeconfig_file_for(&self, user: &str) -> Result<PathBuf> {
        write(
            &self.dir,
            &format!("{}.kubeconfig", user.replace(':', "-")),
            &self.kubeconfig_yaml_for(user)?,
        )
    }

    /// Writes the admin kubeconfig into the server's work dir and returns its path.
    pub fn kubeconfig_file(&self) -> Result<PathBuf> {
        self.kubeconfig_file_for("admin")
    }

    /// A new cluster-admin client. Create one per test (a client is tied to the runtime that
    /// created it; a shared apiserver outlives many test runtimes).
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_yaml()?)
            .context("parsing generated kubeconfig")?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("building client config")?;
        kube::Client::try_from(config).context("building kube client")
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns its name.
    pub async fn test_namespace(&self, prefix: &str) -> Result<String> {
        let name = format!("{prefix}-{}", &random_token()?[..8]);
        let api: Api<Namespace> = Api::all(self.client().await?);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(name)
    }

    /// The apiserver process (log tail, signals).
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// The etcd this apiserver stores its objects in.
    pub fn etcd(&self) -> &Arc<Etcd> {
        &self.etcd
    }

    /// The server's work directory (certificates, kubeconfigs, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write(dir: &WorkDir, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
