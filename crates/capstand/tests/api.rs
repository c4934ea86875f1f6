//! `capstand api` as an operator runs it: two replicas (real processes) over one real etcd,
//! started at the same moment, behave as one — a login on one is a session on the other, an
//! Application created on one is read on the other, a logout on one is refused on the other
//! — and exactly one of them creates the admin account.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use capstan_testkit::net::free_port;
use capstan_testkit::process::ManagedProcess;
use capstan_testkit::shared;
use capstan_testkit::wait::wait_until;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

struct Replica {
    process: ManagedProcess,
    base: String,
    password_file: std::path::PathBuf,
}

fn replica(dir: &std::path::Path, name: &str, etcd: &str, prefix: &str) -> Result<Replica> {
    let port = free_port()?;
    let password_file = dir.join(format!("{name}-initial-admin-password"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_capstand"));
    command
        .args(["--log-format", "json", "api", "--insecure"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--etcd-endpoints", etcd, "--etcd-prefix", prefix])
        .arg("--encryption-key-file")
        .arg(dir.join("encryption.key"))
        .arg("--initial-admin-password-file")
        .arg(&password_file)
        .current_dir(dir);
    let process = ManagedProcess::spawn_command(name, command, &dir.join(format!("{name}.log")))?;
    Ok(Replica {
        process,
        base: format!("http://127.0.0.1:{port}"),
        password_file,
    })
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn two_replicas_over_one_etcd_behave_as_one() -> Result<()> {
    let etcd = shared::etcd().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("encryption.key"),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
    )?;
    let prefix = format!("/api-replicas-{}", std::process::id());
    let mut a = replica(dir.path(), "a", &etcd.endpoint(), &prefix)?;
    let mut b = replica(dir.path(), "b", &etcd.endpoint(), &prefix)?;
    let outcome = async {
        for replica in [&mut a, &mut b] {
            let base = replica.base.clone();
            wait_until("a replica's API", DEADLINE, || {
                let alive = replica.process.check_running();
                let url = format!("{base}/api/version");
                async move {
                    alive?;
                    Ok(reqwest::get(url)
                        .await
                        .ok()
                        .filter(|r| r.status().is_success()))
                }
            })
            .await?;
        }
        // Exactly one of them created the admin account and wrote its password.
        let written: Vec<_> = [&a, &b]
            .into_iter()
            .filter(|r| r.password_file.exists())
            .collect();
        assert_eq!(written.len(), 1, "both or neither wrote the admin password");
        let password = std::fs::read_to_string(&written[0].password_file)?;

        // A session from A is good on B.
        let (status, login) = call(
            reqwest::Method::POST,
            format!("{}/api/v1/session", a.base),
            None,
            Some(json!({"username": "admin", "password": password.trim()})),
        )
        .await?;
        assert_eq!(status, 200, "{login}");
        let token = login["token"].as_str().context("a token")?.to_owned();
        let (status, info) = call(
            reqwest::Method::GET,
            format!("{}/api/v1/session/userinfo", b.base),
            Some(&token),
            None,
        )
        .await?;
        assert_eq!(
            (status, &info["username"]),
            (200, &json!("admin")),
            "{info}"
        );

        // An Application created on A is read on B.
        let app = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "guestbook"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://git.example.com/apps.git", "path": "guestbook"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
            },
        });
        let (status, created) = call(
            reqwest::Method::POST,
            format!("{}/api/v1/applications", a.base),
            Some(&token),
            Some(app),
        )
        .await?;
        assert_eq!(status, 200, "{created}");
        let seen = wait_until("the app on B", DEADLINE, || {
            let url = format!("{}/api/v1/applications/guestbook", b.base);
            let token = token.clone();
            async move {
                let (status, app) = call(reqwest::Method::GET, url, Some(&token), None).await?;
                Ok((status == 200).then_some(app))
            }
        })
        .await?;
        assert_eq!(seen["spec"]["source"]["path"], json!("guestbook"));
        // What only a controller knows is Unavailable here, said plainly.
        let (status, answer) = call(
            reqwest::Method::GET,
            format!("{}/api/v1/applications/guestbook/managed-resources", b.base),
            Some(&token),
            None,
        )
        .await?;
        assert_eq!(status, 503, "{answer}");

        // A logout on B ends the session on A too.
        let (status, _) = call(
            reqwest::Method::DELETE,
            format!("{}/api/v1/session", b.base),
            Some(&token),
            None,
        )
        .await?;
        assert_eq!(status, 200);
        wait_until("the revoked session refused on A", DEADLINE, || {
            let url = format!("{}/api/v1/session/userinfo", a.base);
            let token = token.clone();
            async move {
                let (status, _) = call(reqwest::Method::GET, url, Some(&token), None).await?;
                Ok((status == 401).then_some(()))
            }
        })
        .await?;

        // A stops cleanly on SIGTERM; B serves on.
        a.process.signal(libc::SIGTERM)?;
        wait_until("A to exit", DEADLINE, || {
            let exited = a.process.check_running().is_err();
            async move { Ok(exited.then_some(())) }
        })
        .await?;
        let log = std::fs::read_to_string(a.process.log_path())?;
        assert!(log.contains("API stopped"), "{log}");
        let (status, _) = call(
            reqwest::Method::GET,
            format!("{}/api/version", b.base),
            None,
            None,
        )
        .await?;
        assert_eq!(status, 200);
        Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!(
            "A:\n{}\nB:\n{}",
            a.process.log_tail(30),
            b.process.log_tail(30)
        );
    }
    outcome
}

#[tokio::test]
async fn without_the_encryption_key_it_refuses_to_start_and_says_why() -> Result<()> {
    let etcd = shared::etcd().await?;
    let output = Command::new(env!("CARGO_BIN_EXE_capstand"))
        .args(["api", "--insecure", "--etcd-endpoints", &etcd.endpoint()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--encryption-key-file is required"),
        "{stderr}"
    );
    Ok(())
}
