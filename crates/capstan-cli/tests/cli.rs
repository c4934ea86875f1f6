//! `capstan` as scripts and people see it: exit codes and what errors say, table and JSON
//! output, REST instead of gRPC, shell completions, help.

mod common;

use anyhow::Result;
use common::{ControlPlane, path};
use serde_json::{Value, json};

/// Runs `body` against `plane`, printing capstand's log when it fails.
async fn with_log<F: Future<Output = Result<()>>>(plane: &ControlPlane, body: F) -> Result<()> {
    let outcome = body.await;
    if outcome.is_err() {
        eprintln!("capstand log:\n{}", plane.log_tail());
    }
    outcome
}

#[tokio::test]
async fn errors_say_what_to_do_and_exit_with_the_documented_codes() -> Result<()> {
    let plane = ControlPlane::start("cli-errors", &["--account", "alice=login"]).await?;
    with_log(&plane, async {
        // No server anywhere: a usage error pointing at login.
        let none = plane.run(&["app", "list"]).await?.expect(2)?;
        assert!(none.stderr.contains("no server given"), "{}", none.stderr);
        assert!(none.stderr.contains("capstan login"), "{}", none.stderr);
        // Nobody listening.
        let port = capstan_testkit::net::free_port()?.to_string();
        let down = plane
            .run(&["--server", &format!("127.0.0.1:{port}"), "--plaintext", "app", "list"])
            .await?
            .expect(7)?;
        assert!(down.stderr.contains("cannot reach"), "{}", down.stderr);
        // A wrong password.
        let ca = plane.ca();
        let wrong = plane
            .run_with(
                &["login", &plane.server(), "--server-ca", path(&ca), "--username", "admin", "--password-stdin"],
                "not-the-password\n",
            )
            .await?
            .expect(3)?;
        assert!(!wrong.stderr.contains("not-the-password"), "{}", wrong.stderr);
        // A certificate nobody vouches for.
        let untrusted = plane
            .run_with(&["login", &plane.server(), "--username", "admin", "--password-stdin"], "x\n")
            .await?
            .expect(7)?;
        assert!(untrusted.stderr.contains("--server-ca"), "{}", untrusted.stderr);

        plane.login_admin().await?;
        let missing = plane.run(&["app", "get", "nope"]).await?.expect(5)?;
        assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
        let no_dest = plane
            .run(&["app", "create", "x", "--repo", &plane.repo_url])
            .await?
            .expect(2)?;
        assert!(no_dest.stderr.contains("--dest-server or --dest-name"), "{}", no_dest.stderr);
        let bad_flag = plane.run(&["app", "list", "--colour"]).await?.expect(2)?;
        assert!(bad_flag.stderr.contains("--colour"), "{}", bad_flag.stderr);
        let bad_resource = plane
            .run(&["app", "sync", "x", "--resource", "Deployment/web"])
            .await?
            .expect(2)?;
        assert!(bad_resource.stderr.contains("GROUP:KIND:NAME"), "{}", bad_resource.stderr);

        // Files: malformed YAML names the file and line; another kind is refused.
        let bad = plane.tmp.path().join("bad.yaml");
        std::fs::write(&bad, "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: x\nspec:\n  source: [unclosed\n")?;
        let malformed = plane.run(&["app", "create", "-f", path(&bad)]).await?.expect(2)?;
        assert!(malformed.stderr.contains("bad.yaml"), "{}", malformed.stderr);
        assert!(malformed.stderr.contains("line"), "{}", malformed.stderr);
        let map = plane.tmp.path().join("map.yaml");
        std::fs::write(&map, common::guestbook("blue"))?;
        let not_app = plane.run(&["app", "create", "-f", path(&map)]).await?.expect(2)?;
        assert!(not_app.stderr.contains("map.yaml") && not_app.stderr.contains("ConfigMap"), "{}", not_app.stderr);
        let absent = plane.run(&["app", "create", "-f", "absent.yaml"]).await?.expect(2)?;
        assert!(absent.stderr.contains("absent.yaml"), "{}", absent.stderr);

        // An account without rights: refused with the can-i hint; can-i answers no.
        plane
            .run(&[
                "account", "update-password", "--account", "alice",
                "--current-password", &plane.admin_password()?, "--new-password", "alice-passw0rd",
            ])
            .await?
            .ok()?;
        plane
            .run_with(
                &["login", &plane.server(), "--server-ca", path(&ca), "--username", "alice", "--password-stdin", "--name", "alice"],
                "alice-passw0rd\n",
            )
            .await?
            .ok()?;
        let denied = plane
            .run(&["app", "create", "y", "--repo", &plane.repo_url, "--dest-server", "https://kubernetes.default.svc"])
            .await?
            .expect(4)?;
        assert!(denied.stderr.contains("can-i"), "{}", denied.stderr);
        let can_i = plane.run(&["account", "can-i", "create", "applications", "default/y"]).await?.ok()?;
        assert_eq!(can_i.stdout.trim(), "no");
        // Back to admin by context; the same check says yes.
        plane.run(&["context", &plane.server()]).await?.ok()?;
        let admin_can = plane.run(&["account", "can-i", "create", "applications", "default/y"]).await?.ok()?;
        assert_eq!(admin_can.stdout.trim(), "yes");
        let no_context = plane.run(&["context", "nope"]).await?.expect(5)?;
        assert!(no_context.stderr.contains("capstan login"), "{}", no_context.stderr);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn tables_and_json_keep_their_shape() -> Result<()> {
    let plane = ControlPlane::start("cli-output", &[]).await?;
    with_log(&plane, async {
        plane.login_admin().await?;
        plane
            .run(&[
                "proj", "create", "team-a", "--description", "Team A",
                "--src", "https://git.example.com/team-a/*",
                "--dest", "https://kubernetes.default.svc,team-a-*",
            ])
            .await?
            .ok()?;
        plane.run(&["proj", "add-source", "team-a", "https://git.example.com/shared.git"]).await?.ok()?;
        plane.run(&["proj", "allow-cluster-resource", "team-a", "", "Namespace"]).await?.ok()?;
        plane.run(&["proj", "deny-namespace-resource", "team-a", "", "ResourceQuota"]).await?.ok()?;
        plane.run(&["proj", "role", "create", "team-a", "deployer"]).await?.ok()?;
        plane.run(&["proj", "role", "add-policy", "team-a", "deployer", "-a", "sync"]).await?.ok()?;
        plane
            .run(&["proj", "windows", "add", "team-a", "--kind", "deny", "--schedule", "0 22 * * *", "--duration", "8h", "--applications", "*"])
            .await?
            .ok()?;
        let get = plane.run(&["proj", "get", "team-a"]).await?.ok()?;
        assert_eq!(
            get.stdout,
            "Name:                        team-a\n\
             Description:                 Team A\n\
             Sources:                     https://git.example.com/team-a/*, https://git.example.com/shared.git\n\
             Destinations:                https://kubernetes.default.svc,team-a-*\n\
             Allowed Cluster Resources:   \"\"/Namespace\n\
             Denied Cluster Resources:    <none>\n\
             Denied Namespaced Resources: \"\"/ResourceQuota\n\
             Roles:                       deployer\n\
             Sync Windows:                deny 0 22 * * * 8h\n"
        );
        let json: Value = serde_json::from_str(&plane.run(&["proj", "get", "team-a", "-o", "json"]).await?.ok()?.stdout)?;
        assert_eq!(
            json["spec"]["roles"],
            json!([{"name": "deployer", "policies": ["p, proj:team-a:deployer, applications, sync, team-a/*, allow"]}])
        );
        let windows = plane.run(&["proj", "windows", "list", "team-a"]).await?.ok()?;
        assert_eq!(
            windows.stdout,
            "ID  KIND  SCHEDULE    DURATION  APPLICATIONS  NAMESPACES  CLUSTERS  MANUALSYNC  TIMEZONE\n\
             0   deny  0 22 * * *  8h        *                                   Disabled\n"
        );

        let windows: Value = serde_json::from_str(
            &plane
                .run(&["proj", "windows", "list", "team-a", "-o", "json"])
                .await?
                .ok()?
                .stdout,
        )?;
        assert_eq!(windows[0]["schedule"], json!("0 22 * * *"), "{windows}");

        let projects = plane.run(&["proj", "list", "-o", "name"]).await?.ok()?;
        assert!(projects.stdout.lines().any(|l| l == "team-a"), "{}", projects.stdout);
        let accounts = plane.run(&["account", "list"]).await?.ok()?;
        assert!(accounts.stdout.starts_with("NAME   ENABLED  CAPABILITIES\nadmin  true"), "{}", accounts.stdout);

        // Applications from flags: the spec as Argo CD users expect it.
        plane
            .run(&[
                "app", "create", "web", "--project", "team-a", "--repo", "https://git.example.com/team-a/web.git",
                "--path", "deploy", "--revision", "v1", "--dest-server", "https://kubernetes.default.svc",
                "--dest-namespace", "team-a-web", "--sync-option", "CreateNamespace=true", "--label", "tier=web",
            ])
            .await?
            .ok()?;
        let app: Value = serde_json::from_str(&plane.run(&["app", "get", "web", "-o", "json"]).await?.ok()?.stdout)?;
        assert_eq!(
            app["spec"],
            json!({
                "source": {"repoURL": "https://git.example.com/team-a/web.git", "path": "deploy", "targetRevision": "v1"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "team-a-web"},
                "project": "team-a",
                "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
            })
        );
        assert_eq!(app["metadata"]["labels"], json!({"tier": "web"}));
        plane.run(&["app", "set", "web", "--revision", "v2", "--sync-policy", "automated", "--self-heal"]).await?.ok()?;
        plane.run(&["app", "unset", "web", "--sync-option", "CreateNamespace=true"]).await?.ok()?;
        let app: Value = serde_json::from_str(&plane.run(&["app", "get", "web", "-o", "json"]).await?.ok()?.stdout)?;
        assert_eq!(app["spec"]["source"]["targetRevision"], json!("v2"));
        assert_eq!(app["spec"]["syncPolicy"], json!({"automated": {"selfHeal": true}}));

        let names = plane.run(&["app", "list", "-o", "name"]).await?.ok()?;
        assert_eq!(names.stdout, "web\n");
        let table = plane.run(&["app", "list", "-p", "team-a"]).await?.ok()?;
        let mut lines = table.stdout.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        assert_eq!(header, ["NAME", "CLUSTER", "NAMESPACE", "PROJECT", "STATUS", "HEALTH", "SYNCPOLICY", "CONDITIONS"]);
        let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        assert_eq!(&row[..4], ["web", "https://kubernetes.default.svc", "team-a-web", "team-a"], "{}", table.stdout);
        let empty = plane.run(&["app", "list", "-p", "nobody"]).await?.ok()?;
        assert_eq!(empty.stdout.lines().count(), 1, "{}", empty.stdout);
        let yaml = plane.run(&["app", "list", "-o", "yaml"]).await?.ok()?;
        assert!(yaml.stdout.starts_with("- apiVersion: capstan.dev/v1alpha1\n"), "{}", yaml.stdout);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rest_does_what_grpc_does() -> Result<()> {
    let plane = ControlPlane::start("cli-rest", &[]).await?;
    with_log(&plane, async {
        let ca = plane.ca();
        plane
            .run_with(
                &["--rest", "login", &plane.server(), "--server-ca", path(&ca), "--username", "admin", "--password-stdin"],
                &format!("{}\n", plane.admin_password()?),
            )
            .await?
            .ok()?;
        // The context remembers REST.
        let config = std::fs::read_to_string(plane.home().join(".config/capstan/config"))?;
        assert!(config.contains("rest: true"), "{config}");
        // An Argo CD Application file.
        let file = plane.tmp.path().join("argo.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: argo-app\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: {}\n    path: guestbook\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {}\n",
                plane.repo_url, plane.ns
            ),
        )?;
        plane.run(&["app", "create", "-f", path(&file)]).await?.ok()?;
        // The same again is no change (as in Argo CD); a different spec needs --upsert.
        plane.run(&["app", "create", "-f", path(&file)]).await?.ok()?;
        let changed = plane.tmp.path().join("changed.yaml");
        std::fs::write(&changed, std::fs::read_to_string(&file)?.replace("path: guestbook", "path: other"))?;
        let exists = plane.run(&["app", "create", "-f", path(&changed)]).await?.expect(6)?;
        assert!(exists.stderr.contains("--upsert"), "{}", exists.stderr);
        plane.run(&["app", "create", "-f", path(&file), "--upsert"]).await?.ok()?;
        let got: Value = serde_json::from_str(&plane.run(&["app", "get", "argo-app", "-o", "json"]).await?.ok()?.stdout)?;
        assert_eq!(got["spec"]["source"]["path"], json!("guestbook"));
        let manifests = plane.run(&["app", "manifests", "argo-app"]).await?.ok()?;
        assert!(manifests.stdout.contains("color: blue"), "{}", manifests.stdout);
        let sync = plane.run(&["app", "sync", "argo-app", "--timeout", "120", "-o", "json"]).await?.ok()?;
        let synced: Value = serde_json::from_str(&sync.stdout)?;
        assert_eq!(synced["status"]["operationState"]["phase"], json!("Succeeded"), "{synced}");
        plane.run(&["app", "diff", "argo-app"]).await?.ok()?;
        let resources = plane.run(&["app", "resources", "argo-app", "-o", "name"]).await?.ok()?;
        assert_eq!(resources.stdout, format!("ConfigMap/{}/guestbook\n", plane.ns));
        // A project role's token (may only read the project's apps) works on its own, from
        // the environment.
        plane.run(&["proj", "role", "create", "default", "reader"]).await?.ok()?;
        plane.run(&["proj", "role", "add-policy", "default", "reader", "-a", "get"]).await?.ok()?;
        let token = plane
            .run(&["proj", "role", "create-token", "default", "reader", "--expires-in", "1h"])
            .await?
            .ok()?;
        let token = token.stdout.trim().to_owned();
        let with_token = plane
            .command(&["--rest", "--server", &plane.server(), "--server-ca", path(&ca), "app", "list", "-o", "name"])
            .env("CAPSTAN_AUTH_TOKEN", &token)
            .env("HOME", plane.tmp.path().join("elsewhere"))
            .output()
            .await?;
        assert_eq!(String::from_utf8_lossy(&with_token.stdout), "argo-app\n");
        let tokens = plane.run(&["proj", "role", "list-tokens", "default", "reader"]).await?.ok()?;
        assert_eq!(tokens.stdout.lines().count(), 2, "{}", tokens.stdout);
        plane.run(&["app", "delete", "argo-app", "--yes", "--wait"]).await?.ok()?;
        plane.run(&["app", "list", "-o", "name"]).await?.ok()?;
        Ok(())
    })
    .await
}

/// A proxy that passes REST to `upstream` and answers gRPC with an HTML error page, as a
/// proxy that does not route gRPC does; its port.
async fn grpc_blocking_proxy(upstream: String) -> Result<u16> {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use axum::response::{IntoResponse, Response};

    async fn forward(upstream: String, request: Request<Body>) -> Result<Response> {
        let grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            let page = [(header::CONTENT_TYPE, "text/html")];
            return Ok((StatusCode::NOT_FOUND, page, "<html>Not Found</html>").into_response());
        }
        let path = request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut outgoing =
            reqwest::Client::new().request(request.method().clone(), format!("{upstream}{path}"));
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(value) = request.headers().get(&name) {
                outgoing = outgoing.header(name, value.as_bytes());
            }
        }
        let body = to_bytes(request.into_body(), 64 << 20).await?;
        let answer = outgoing.body(body).send().await?;
        let status = StatusCode::from_u16(answer.status().as_u16())?;
        Ok((status, answer.bytes().await?).into_response())
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().fallback(move |request: Request<Body>| {
        let upstream = upstream.clone();
        async move {
            forward(upstream, request)
                .await
                .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

#[tokio::test]
async fn falls_back_to_rest_behind_a_proxy_that_blocks_grpc() -> Result<()> {
    let plane = ControlPlane::start("cli-proxy", &["--insecure"]).await?;
    with_log(&plane, async {
        let proxy = grpc_blocking_proxy(format!("http://{}", plane.server())).await?;
        let through = format!("127.0.0.1:{proxy}");
        plane
            .run_with(
                &[
                    "login",
                    &through,
                    "--plaintext",
                    "--username",
                    "admin",
                    "--password-stdin",
                ],
                &format!("{}\n", plane.admin_password()?),
            )
            .await?
            .ok()?;
        // The context remembers that only REST gets through.
        let config = std::fs::read_to_string(plane.home().join(".config/capstan/config"))?;
        assert!(config.contains("rest: true"), "{config}");
        plane
            .run(&[
                "app",
                "create",
                "web",
                "--repo",
                &plane.repo_url,
                "--path",
                "guestbook",
                "--dest-server",
                "https://kubernetes.default.svc",
                "--dest-namespace",
                &plane.ns,
            ])
            .await?
            .ok()?;
        let names = plane.run(&["app", "list", "-o", "name"]).await?.ok()?;
        assert_eq!(names.stdout, "web\n");
        // Without the context's knowledge, a fresh run finds it out again by itself.
        let fresh = plane
            .command(&[
                "--server",
                &through,
                "--plaintext",
                "app",
                "get",
                "web",
                "-o",
                "name",
            ])
            .env("CAPSTAN_AUTH_TOKEN", token_of(&config))
            .env("HOME", plane.tmp.path().join("elsewhere"))
            .output()
            .await?;
        assert_eq!(
            String::from_utf8_lossy(&fresh.stdout),
            "web\n",
            "{}",
            String::from_utf8_lossy(&fresh.stderr)
        );
        // Straight to the server, gRPC works as usual (and nothing forces REST).
        let direct = plane
            .command(&[
                "--server",
                &plane.server(),
                "--plaintext",
                "app",
                "list",
                "-o",
                "name",
            ])
            .env("CAPSTAN_AUTH_TOKEN", token_of(&config))
            .output()
            .await?;
        assert_eq!(String::from_utf8_lossy(&direct.stdout), "web\n");
        Ok(())
    })
    .await
}

/// The token of the (only) context in a config file.
fn token_of(config: &str) -> String {
    let config: Value = serde_saphyr::from_str(config).unwrap_or_default();
    config["contexts"][0]["authToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn completions_and_help_are_there_for_every_shell_and_command() -> Result<()> {
    let plane = ControlPlane::start("cli-help", &[]).await?;
    for (shell, marker) in [
        ("bash", "_capstan()"),
        ("zsh", "#compdef capstan"),
        ("fish", "complete -c capstan"),
    ] {
        let script = plane.run(&["completion", shell]).await?.ok()?;
        assert!(
            script.stdout.contains(marker),
            "{shell}: {}",
            &script.stdout[..200.min(script.stdout.len())]
        );
        assert!(script.stdout.contains("rollback"), "{shell}");
    }
    let help = plane.run(&["--help"]).await?.ok()?;
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    assert!(
        help.stdout.contains("CAPSTAN_AUTH_TOKEN"),
        "{}",
        help.stdout
    );
    for command in [
        vec!["app", "create"],
        vec!["app", "sync"],
        vec!["app", "diff"],
        vec!["login"],
        vec!["cluster", "add"],
        vec!["repo", "add"],
        vec!["proj", "create"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let help = plane.run(&args).await?.ok()?;
        assert!(
            help.stdout.contains("Examples:"),
            "{command:?}: {}",
            help.stdout
        );
    }
    let version = plane.run(&["version", "--client"]).await?.ok()?;
    assert!(
        version.stdout.starts_with("capstan: "),
        "{}",
        version.stdout
    );
    Ok(())
}
