//! Rules for `Cluster` and `Repository`.

use super::meta::check_metadata;
use super::names::{check_dns1123_label, check_dns1123_subdomain};
use super::{Report, Validate, ValidationErrors, check_http_url, check_unique};
use crate::cluster::{Cluster, ClusterConfig};
use crate::path::FieldPath;
use crate::repository::{Repository, RepositoryType};

const EXEC_API_VERSIONS: &[&str] = &[
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

impl Validate for Cluster {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        check_metadata(&mut report, &self.metadata);
        let spec = &self.spec;
        let path = FieldPath::root().field("spec");
        if spec.server.is_empty() {
            report.error(
                &path.field("server"),
                "required; set the cluster's API server URL, e.g. https://10.0.0.1:6443",
            );
        } else {
            report.check(
                &path.field("server"),
                check_http_url(&spec.server, &["https", "http"]),
            );
        }
        if spec.name.chars().any(char::is_control) {
            report.error(
                &path.field("name"),
                "contains control characters; remove them",
            );
        }
        let namespaces = path.field("namespaces");
        for (i, ns) in spec.namespaces.iter().enumerate() {
            report.check(&namespaces.index(i), check_dns1123_label(ns));
        }
        check_unique(
            &mut report,
            &namespaces,
            spec.namespaces.iter().map(String::as_str).enumerate(),
            "namespace",
        );
        if spec.cluster_resources && spec.namespaces.is_empty() {
            report.error(
                &path.field("clusterResources"),
                "only applies when namespaces is set (without namespaces every resource is managed); remove it or list the namespaces",
            );
        }
        if !spec.project.is_empty() {
            report.check(
                &path.field("project"),
                check_dns1123_subdomain(&spec.project),
            );
        }
        if let Some(shard) = spec.shard
            && shard < 0
        {
            report.error(
                &path.field("shard"),
                format!("{shard} is negative; use 0 or more, or remove it"),
            );
        }
        check_config(&mut report, &path.field("config"), &spec.config);
        report.finish()
    }
}

fn is_base64(text: &str) -> bool {
    let cleaned: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if cleaned.is_empty() || !cleaned.len().is_multiple_of(4) {
        return false;
    }
    let padding = cleaned.iter().rev().take_while(|b| **b == b'=').count();
    padding <= 2
        && cleaned[..cleaned.len() - padding]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn check_config(report: &mut Report, path: &FieldPath, c: &ClusterConfig) {
    let mut methods = Vec::new();
    if !c.bearer_token.is_empty() {
        methods.push("bearerToken");
    }
    if !c.username.is_empty() || !c.password.is_empty() {
        methods.push("username/password");
    }
    if c.aws_auth_config.is_some() {
        methods.push("awsAuthConfig");
    }
    if c.exec_provider_config.is_some() {
        methods.push("execProviderConfig");
    }
    if methods.len() > 1 {
        report.error(
            path,
            format!(
                "use one way to authenticate, found {}; remove the others",
                methods.join(" and ")
            ),
        );
    }
    if !c.username.is_empty() && c.password.is_empty() {
        report.error(
            &path.field("password"),
            "required with username; set the password",
        );
    }
    if c.username.is_empty() && !c.password.is_empty() {
        report.error(
            &path.field("username"),
            "required with password; set the user name",
        );
    }
    let tls = path.field("tlsClientConfig");
    let t = &c.tls_client_config;
    if t.cert_data.is_empty() != t.key_data.is_empty() {
        report.error(
            &tls,
            "set both certData and keyData (a client certificate and its key), or neither",
        );
    }
    for (field, value) in [
        ("caData", t.ca_data.as_str()),
        ("certData", t.cert_data.as_str()),
        ("keyData", t.key_data.expose()),
    ] {
        if !value.is_empty() && !is_base64(value) {
            report.error(
                &tls.field(field),
                "must be base64-encoded PEM; encode the PEM file with base64",
            );
        }
    }
    if t.insecure && !t.ca_data.is_empty() {
        report.error(
            &tls.field("insecure"),
            "insecure skips server verification, so caData would be ignored; remove one of them",
        );
    }
    if let Some(aws) = &c.aws_auth_config
        && aws.cluster_name.is_empty()
    {
        report.error(
            &path.field("awsAuthConfig").field("clusterName"),
            "required; set the EKS cluster name",
        );
    }
    if let Some(exec) = &c.exec_provider_config {
        let ep = path.field("execProviderConfig");
        if exec.command.is_empty() {
            report.error(
                &ep.field("command"),
                "required; set the command that prints credentials",
            );
        }
        if !EXEC_API_VERSIONS.contains(&exec.api_version.as_str()) {
            report.error(
                &ep.field("apiVersion"),
                format!(
                    "{:?} is not an exec credential API; use {}",
                    exec.api_version,
                    crate::suggest::quoted_list(EXEC_API_VERSIONS)
                ),
            );
        }
    }
    if !c.proxy_url.is_empty() {
        report.check(
            &path.field("proxyUrl"),
            check_http_url(&c.proxy_url, &["http", "https", "socks5"]),
        );
    }
}

/// Whether a Git URL has one of the forms Git understands.
fn check_git_url(url: &str) -> Result<(), String> {
    if let Some((scheme, _)) = url.split_once("://") {
        return if ["https", "http", "ssh", "git", "file"].contains(&scheme) {
            check_http_url(url, &["https", "http", "ssh", "git", "file"]).or_else(|e| {
                // file:///path has no host and is fine.
                if scheme == "file" { Ok(()) } else { Err(e) }
            })
        } else {
            Err(format!(
                "{url:?} uses the scheme {scheme:?}; use https://, ssh:// or git@host:path"
            ))
        };
    }
    // scp-like: user@host:path
    match url.split_once(':') {
        Some((user_host, path)) if user_host.contains('@') && !path.is_empty() => Ok(()),
        _ => Err(format!(
            "{url:?} is not a Git URL; write https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git"
        )),
    }
}

fn is_ssh_url(url: &str) -> bool {
    url.starts_with("ssh://") || (!url.contains("://") && url.contains('@') && url.contains(':'))
}

impl Validate for Repository {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        check_metadata(&mut report, &self.metadata);
        let s = &self.spec;
        let path = FieldPath::root().field("spec");
        let kind = s.repo_type_or_default();
        let url = path.field("url");
        if s.url.is_empty() {
            report.error(&url, "required; set the repository URL");
        } else {
            match kind {
                RepositoryType::Git => report.check(&url, check_git_url(&s.url)),
                RepositoryType::Helm => {
                    report.check(&url, check_http_url(&s.url, &["https", "http", "oci"]))
                }
                RepositoryType::Oci => report.check(&url, check_http_url(&s.url, &["oci"])),
            }
        }
        if kind == RepositoryType::Helm && s.name.is_empty() {
            report.error(
                &path.field("name"),
                "required for Helm repositories; name the repository",
            );
        }
        if !s.project.is_empty() {
            report.check(&path.field("project"), check_dns1123_subdomain(&s.project));
        }
        if !s.ssh_private_key.is_empty() {
            if kind != RepositoryType::Git || !is_ssh_url(&s.url) {
                report.error(
                    &path.field("sshPrivateKey"),
                    "only applies to Git over SSH; use an ssh:// or git@host:path URL, or remove the key",
                );
            } else if !s
                .ssh_private_key
                .expose()
                .trim_start()
                .starts_with("-----BEGIN")
            {
                report.error(
                    &path.field("sshPrivateKey"),
                    "must be a PEM private key (-----BEGIN … PRIVATE KEY-----)",
                );
            }
        }
        if s.enable_lfs && kind != RepositoryType::Git {
            report.error(
                &path.field("enableLfs"),
                "only applies to Git repositories; remove it",
            );
        }
        if s.enable_oci && kind != RepositoryType::Helm {
            report.error(
                &path.field("enableOCI"),
                "only applies to Helm repositories; for OCI registries use type: oci",
            );
        }
        if s.insecure_oci_force_http && kind != RepositoryType::Oci {
            report.error(
                &path.field("insecureOCIForceHttp"),
                "only applies to OCI repositories (type: oci); remove it",
            );
        }
        if !s.username.is_empty() && s.password.is_empty() {
            report.error(
                &path.field("password"),
                "required with username; set the password or access token",
            );
        }
        if s.username.is_empty() && !s.password.is_empty() {
            report.error(&path.field("username"), "required with password; set the user name (any non-empty name works for token auth)");
        }
        if s.tls_client_cert_data.is_empty() != s.tls_client_cert_key.is_empty() {
            report.error(
                &path,
                "set both tlsClientCertData and tlsClientCertKey, or neither",
            );
        }
        if !s.github_app_private_key.is_empty() && s.github_app_id <= 0 {
            report.error(
                &path.field("githubAppID"),
                "required with githubAppPrivateKey; set the GitHub App id",
            );
        }
        if s.github_app_id < 0 {
            report.error(&path.field("githubAppID"), "must be positive");
        }
        if s.github_app_installation_id < 0 {
            report.error(&path.field("githubAppInstallationID"), "must be positive");
        }
        if !s.github_app_enterprise_base_url.is_empty() {
            report.check(
                &path.field("githubAppEnterpriseBaseUrl"),
                check_http_url(&s.github_app_enterprise_base_url, &["https", "http"]),
            );
        }
        if !s.proxy.is_empty() {
            report.check(
                &path.field("proxy"),
                check_http_url(&s.proxy, &["http", "https"]),
            );
        }
        report.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_git_urls() {
        assert!(is_base64("LS0tLS1CRUdJTg=="));
        assert!(!is_base64("not base64!"));
        assert!(!is_base64("abc"));
        for ok in [
            "https://github.com/argoproj/argocd-example-apps.git",
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "file:///tmp/repo",
        ] {
            assert_eq!(check_git_url(ok), Ok(()), "{ok}");
        }
        for bad in ["github.com/org/repo", "ftp://host/repo", "https://"] {
            assert!(check_git_url(bad).is_err(), "{bad}");
        }
    }
}
