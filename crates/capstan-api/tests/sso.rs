//! Single sign-on end to end against a real OpenID Connect provider (oidc-provider, started
//! by the testkit): a browser's login through `/auth/login` and `/auth/callback` (code flow
//! with PKCE), the CLI's exchange of an ID token it obtained itself, group claims mapped to
//! RBAC roles, and the refusals — a tampered or foreign ID token, a forged state, an SSO
//! identity named like a local account.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use capstan_api::auth::oidc::{Oidc, OidcConfig};
use capstan_api::rbac::Policy;
use capstan_api::server::ApiMetrics;
use capstan_api::service::{Api, ApiConfig};
use capstan_api::sso::Sso;
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use capstan_testkit::oidc::{Browser, OidcClient, OidcProvider};

const POLICY: &str =
    "p, role:deployers, applications, sync, */*, allow\ng, platform-team, role:deployers\n";

struct Setup {
    base: String,
    provider: OidcProvider,
    config: OidcConfig,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Result<Setup> {
    let port = capstan_testkit::net::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(
        &[OidcClient {
            id: "capstan".into(),
            secret: "capstan-client-secret".into(),
            redirect_uris: vec![format!("{base}/auth/callback")],
        }],
        &[("alice", &["platform-team"]), ("admin", &[])],
        &["admin"],
        Duration::from_secs(600),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("s.redb"), EmbeddedOptions::default()).await?);
    let api = Api::start(
        store.clone(),
        None,
        ApiConfig::new(Policy::parse(POLICY, None)?),
    )
    .await?
    .api;
    let config = OidcConfig {
        issuer: provider.issuer().to_owned(),
        client_id: "capstan".into(),
        client_secret: "capstan-client-secret".into(),
        extra_audiences: Vec::new(),
        scopes: vec!["email".into(), "groups".into()],
        groups_claim: "groups".into(),
        redirect_url: format!("{base}/auth/callback"),
    };
    let oidc = Oidc::new(config.clone())?;
    let sso = Sso::new(api.clone(), Some(Arc::new(oidc)), false);
    let router = capstan_api::server::router_with_sso(api, sso, Arc::new(ApiMetrics::default()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(capstan_api::server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    Ok(Setup {
        base,
        provider,
        config,
        store,
        _dir: dir,
    })
}

async fn userinfo(base: &str, token: &str) -> Result<(u16, serde_json::Value)> {
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v1/session/userinfo"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((
        status,
        serde_json::from_str(&response.text().await?).unwrap_or_default(),
    ))
}

#[tokio::test]
async fn a_browser_signs_in_with_the_provider_and_its_groups_reach_rbac() -> Result<()> {
    let setup = setup().await?;
    let base = &setup.base;
    let mut browser = Browser::new()?;
    let start = format!("{base}/auth/login?return_url=/applications");
    let callback = browser
        .sign_in(&start, "alice", &format!("{base}/auth/callback"))
        .await
        .with_context(|| setup.provider.log_tail(30))?;

    // A forged state is refused, and so is the callback without the login's cookie.
    let forged = callback.replace("state=", "state=x");
    let (status, _, _) = browser.request(reqwest::Method::GET, &forged, None).await?;
    assert_eq!(status, 401);
    let (status, _, _) = Browser::new()?
        .request(reqwest::Method::GET, &callback, None)
        .await?;
    assert_eq!(status, 401);

    let (status, location, body) = browser
        .request(reqwest::Method::GET, &callback, None)
        .await?;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        location.as_deref(),
        Some(format!("{base}/applications").as_str())
    );
    let token = browser
        .cookie(base, "argocd.token")
        .context("the session cookie")?;
    let (status, info) = userinfo(base, &token).await?;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["username"], "alice@example.com");
    assert_eq!(info["groups"], serde_json::json!(["platform-team"]));

    // The group maps to role:deployers through `g, platform-team, role:deployers`.
    let can = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/account/can-i/applications/sync/team-a/web"
        ))
        .bearer_auth(&token)
        .send()
        .await?
        .text()
        .await?;
    assert!(can.contains("yes"), "{can}");
    let cannot = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/account/can-i/applications/delete/team-a/web"
        ))
        .bearer_auth(&token)
        .send()
        .await?
        .text()
        .await?;
    assert!(cannot.contains("no"), "{cannot}");

    // An SSO group bound to a project role (`roles[].groups`): the user acts in that role,
    // whose lines count inside its project only.
    let project = capstan_model::parse_app_project_yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: team-a}\nspec:\n  roles:\n  - name: releasers\n    groups: [platform-team]\n    policies:\n    - p, proj:team-a:releasers, applications, delete, team-a/*, allow\n    - p, proj:team-a:releasers, applications, delete, team-b/*, allow\n",
    )?;
    capstan_store::typed::TypedStore::<capstan_store::kinds::AppProjects>::new(setup.store.clone())
        .create(
            &capstan_store::typed::ObjectRef::new("capstan", "team-a"),
            &project,
        )
        .await?;
    let can_i = |object: &'static str| {
        let url = format!("{base}/api/v1/account/can-i/applications/delete/{object}");
        let token = token.clone();
        async move {
            let answer = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await?
                .text()
                .await?;
            anyhow::Ok(answer.contains("yes"))
        }
    };
    capstan_testkit::wait::wait_until(
        "the group's project role in effect",
        Duration::from_secs(10),
        || {
            let check = can_i("team-a/web");
            async move { Ok(check.await?.then_some(())) }
        },
    )
    .await?;
    assert!(
        !can_i("team-b/web").await?,
        "a role's line outside its project grants nothing"
    );

    // The code was used once; replaying the callback fails at the provider.
    let (status, _, _) = browser
        .request(reqwest::Method::GET, &callback, None)
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

/// An ID token for `user`, obtained as the CLI does: its own code flow with PKCE (here with
/// Capstan's relying-party code), the code exchanged at the provider's token endpoint.
async fn id_token_for(setup: &Setup, user: &str) -> Result<String> {
    let cli = Oidc::new(setup.config.clone())?;
    let (verifier, challenge) = capstan_api::auth::oidc::pkce_pair();
    let url = cli
        .authorization_url("cli-state", "cli-nonce", &challenge)
        .await?;
    let mut browser = Browser::new()?;
    let back = browser
        .sign_in(&url, user, &setup.config.redirect_url)
        .await
        .with_context(|| setup.provider.log_tail(30))?;
    let code = back
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .context("a code in the redirect")?;
    let code: String = form_urlencoded::parse(format!("c={code}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Ok(cli.exchange(&code, &verifier).await?)
}

async fn exchange(base: &str, body: String) -> Result<(u16, serde_json::Value)> {
    let response = reqwest::Client::new()
        .post(format!("{base}/auth/token"))
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((
        status,
        serde_json::from_str(&response.text().await?).unwrap_or_default(),
    ))
}

#[tokio::test]
async fn an_id_token_is_exchanged_for_a_session_and_tampered_or_local_names_are_refused()
-> Result<()> {
    let setup = setup().await?;
    let base = &setup.base;
    let id_token = id_token_for(&setup, "alice").await?;
    let (status, answer) =
        exchange(base, serde_json::json!({"idToken": id_token}).to_string()).await?;
    assert_eq!(status, 200, "{answer}");
    let session = answer["token"].as_str().context("a session")?.to_owned();
    let (status, info) = userinfo(base, &session).await?;
    assert_eq!(
        (status, info["username"].clone()),
        (200, "alice@example.com".into())
    );

    // Tampered: one character of the payload changed, so the signature no longer holds.
    let mut parts: Vec<String> = id_token.split('.').map(str::to_owned).collect();
    let middle = parts[1].len() / 2;
    let flipped = if &parts[1][middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    parts[1].replace_range(middle..=middle, flipped);
    let tampered = parts.join(".");
    let (status, answer) =
        exchange(base, serde_json::json!({"idToken": tampered}).to_string()).await?;
    assert_eq!(status, 401, "{answer}");
    // Not a JWT, not JSON, and a Capstan session (HMAC-signed: never accepted as an ID token).
    assert_eq!(
        exchange(base, r#"{"idToken":"not-a-jwt"}"#.into()).await?.0,
        401
    );
    assert_eq!(exchange(base, "not json".into()).await?.0, 400);
    assert_eq!(
        exchange(base, serde_json::json!({"idToken": session}).to_string())
            .await?
            .0,
        401
    );

    // An identity named like a local account (no email, so its `sub`, "admin") is refused.
    let admin_token = id_token_for(&setup, "admin").await?;
    let (status, answer) = exchange(
        base,
        serde_json::json!({"idToken": admin_token}).to_string(),
    )
    .await?;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("local account"),
        "{answer}"
    );
    Ok(())
}
