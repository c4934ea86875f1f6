//! Deliveries as each provider documents them (payloads trimmed to what is read, plus some
//! of what is not), signed and unsigned, and the index's matching rules.

use std::collections::HashMap;

use super::*;

const SECRET: &str = "s3cret-webhook";

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        github: SECRET.into(),
        gitlab: SECRET.into(),
        gitea: SECRET.into(),
        bitbucket_server: SECRET.into(),
        bitbucket_uuid: "{82b5b1e1-3c83-4c10-a59c-6b6e8a4f1f3e}".into(),
    }
}

/// Parses with these headers (looked up case-insensitively, as an HTTP server does).
fn deliver(
    headers: &[(&str, &str)],
    body: &str,
    secrets: &WebhookSecrets,
) -> Result<Delivery, WebhookError> {
    let map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    parse_delivery(
        |name| map.get(&name.to_ascii_lowercase()).map(String::as_str),
        body.as_bytes(),
        secrets,
    )
}

fn push(delivery: Result<Delivery, WebhookError>) -> Push {
    match delivery {
        Ok(Delivery::Push(push)) => push,
        other => panic!("not a push: {other:?}"),
    }
}

const GITHUB_PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
  "after": "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5",
  "repository": {
    "id": 1296269,
    "full_name": "Octo-Org/Hello-World",
    "html_url": "https://github.com/Octo-Org/Hello-World",
    "clone_url": "https://github.com/Octo-Org/Hello-World.git",
    "ssh_url": "git@github.com:Octo-Org/Hello-World.git",
    "default_branch": "main"
  },
  "pusher": {"name": "octocat"},
  "commits": [
    {"id": "59b20b8", "added": ["apps/web/new.yaml"], "removed": [], "modified": ["README.md"]},
    {"id": "0d1a26e", "added": [], "removed": ["apps/old/cm.yaml"], "modified": []}
  ]
}"#;

#[test]
fn github_pushes_are_verified_and_read() {
    let signature = format!("sha256={}", sign(GITHUB_PUSH.as_bytes()));
    let p = push(deliver(
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
        ],
        GITHUB_PUSH,
        &secrets(),
    ));
    assert_eq!(p.provider, Provider::GitHub);
    assert_eq!(
        p.refs,
        [PushedRef {
            name: "main".into(),
            tag: false
        }]
    );
    assert_eq!(p.default_branch.as_deref(), Some("main"));
    assert_eq!(p.repo_urls.len(), 3);
    let files: Vec<&str> = p
        .changed_files
        .as_ref()
        .expect("listed")
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        files,
        ["README.md", "apps/old/cm.yaml", "apps/web/new.yaml"]
    );
}

#[test]
fn bad_missing_or_replayed_signatures_are_refused_before_parsing() {
    let other_body = GITHUB_PUSH.replace("main", "evil");
    let signature_of_original = format!("sha256={}", sign(GITHUB_PUSH.as_bytes()));
    for (headers, body) in [
        // A valid signature of another body (a replay with an edited payload).
        (
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", signature_of_original.as_str()),
            ],
            other_body.as_str(),
        ),
        (vec![("X-GitHub-Event", "push")], GITHUB_PUSH),
        (
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", "sha256=zz"),
            ],
            GITHUB_PUSH,
        ),
        (
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", "md5=00"),
            ],
            GITHUB_PUSH,
        ),
        // Not even JSON, but the signature is checked first.
        (
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", "sha256=00"),
            ],
            "{not json",
        ),
    ] {
        let err = deliver(&headers, body, &secrets()).expect_err("refused");
        assert!(
            matches!(
                err,
                WebhookError::Unauthorized {
                    provider: Provider::GitHub,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
}

#[test]
fn without_a_secret_deliveries_are_accepted_and_other_events_ignored() {
    let none = WebhookSecrets::default();
    assert!(matches!(
        deliver(&[("X-GitHub-Event", "push")], GITHUB_PUSH, &none),
        Ok(Delivery::Push(_))
    ));
    let signature = format!("sha256={}", sign(b"{\"zen\": \"Keep it simple.\"}"));
    assert_eq!(
        deliver(
            &[
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", &signature)
            ],
            "{\"zen\": \"Keep it simple.\"}",
            &secrets(),
        ),
        Ok(Delivery::Ignored {
            event: "ping".into()
        })
    );
}

#[test]
fn unknown_oversized_and_malformed_deliveries_are_clear_errors() {
    assert_eq!(
        deliver(&[("Content-Type", "application/json")], "{}", &secrets()),
        Err(WebhookError::UnknownProvider)
    );
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        parse_delivery(|_| Some("push"), &huge, &WebhookSecrets::default()),
        Err(WebhookError::TooLarge(MAX_BODY_BYTES + 1))
    );
    let none = WebhookSecrets::default();
    for body in [
        "{not json",
        "{\"ref\": \"refs/heads/main\"}",
        "{\"ref\": \"main\", \"repository\": {\"html_url\": \"https://h/o/r\"}}",
    ] {
        let err = deliver(&[("X-GitHub-Event", "push")], body, &none).expect_err(body);
        assert!(
            matches!(err, WebhookError::Malformed { .. }),
            "{body}: {err}"
        );
    }
}

const GITLAB_TAG_PUSH: &str = r#"{
  "object_kind": "tag_push",
  "ref": "refs/tags/v1.4.0",
  "project": {
    "web_url": "https://gitlab.example.com/platform/deploy",
    "git_http_url": "https://gitlab.example.com/platform/deploy.git",
    "git_ssh_url": "git@gitlab.example.com:platform/deploy.git",
    "default_branch": "main"
  },
  "commits": [],
  "total_commits_count": 0
}"#;

#[test]
fn gitlab_pushes_are_checked_by_token() {
    let p = push(deliver(
        &[
            ("X-Gitlab-Event", "Tag Push Hook"),
            ("X-Gitlab-Token", SECRET),
        ],
        GITLAB_TAG_PUSH,
        &secrets(),
    ));
    assert_eq!(
        p.refs,
        [PushedRef {
            name: "v1.4.0".into(),
            tag: true
        }]
    );
    assert_eq!(p.changed_files, Some(BTreeSet::new()));
    for token in ["wrong", ""] {
        let err = deliver(
            &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)],
            GITLAB_TAG_PUSH,
            &secrets(),
        )
        .expect_err("wrong token");
        assert!(matches!(err, WebhookError::Unauthorized { .. }), "{err}");
    }
}

const GITEA_PUSH: &str = r#"{
  "ref": "refs/heads/release",
  "repository": {
    "html_url": "https://gitea.example.com/ops/apps",
    "clone_url": "https://gitea.example.com/ops/apps.git",
    "ssh_url": "ssh://git@gitea.example.com:2222/ops/apps.git",
    "default_branch": "main"
  },
  "commits": [{"added": [], "removed": [], "modified": ["envs/prod/values.yaml"]}]
}"#;

#[test]
fn gitea_pushes_are_signed_without_a_prefix() {
    let p = push(deliver(
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &sign(GITEA_PUSH.as_bytes())),
        ],
        GITEA_PUSH,
        &secrets(),
    ));
    assert_eq!(p.provider, Provider::Gitea);
    assert_eq!(p.refs[0].name, "release");
    let err = deliver(
        &[
            ("X-Gitea-Event", "push"),
            (
                "X-Gitea-Signature",
                &format!("sha256={}", sign(GITEA_PUSH.as_bytes())),
            ),
        ],
        GITEA_PUSH,
        &secrets(),
    )
    .expect_err("a prefix is not Gitea's form");
    assert!(matches!(err, WebhookError::Unauthorized { .. }));
}

const BITBUCKET_SERVER_PUSH: &str = r#"{
  "eventKey": "repo:refs_changed",
  "repository": {
    "slug": "deploy",
    "links": {"clone": [
      {"href": "ssh://git@bitbucket.example.com:7999/plat/deploy.git", "name": "ssh"},
      {"href": "https://bitbucket.example.com/scm/plat/deploy.git", "name": "http"}
    ]}
  },
  "changes": [
    {"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "type": "UPDATE"},
    {"ref": {"id": "refs/tags/v2", "displayId": "v2", "type": "TAG"}, "type": "ADD"}
  ]
}"#;

const BITBUCKET_CLOUD_PUSH: &str = r#"{
  "push": {"changes": [
    {"new": {"type": "branch", "name": "main", "target": {"hash": "709d658dc5b6d6afcd46049c2f332ee3f515a67d"}}, "old": {"type": "branch", "name": "main"}}
  ]},
  "repository": {
    "full_name": "team/deploy",
    "links": {"html": {"href": "https://bitbucket.org/team/deploy"}},
    "mainbranch": {"name": "main"}
  }
}"#;

#[test]
fn bitbucket_server_and_cloud_pushes() {
    let p = push(deliver(
        &[
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Request-Id", "b1f1e1a0"),
            (
                "X-Hub-Signature",
                &format!("sha256={}", sign(BITBUCKET_SERVER_PUSH.as_bytes())),
            ),
        ],
        BITBUCKET_SERVER_PUSH,
        &secrets(),
    ));
    assert_eq!(p.provider, Provider::BitbucketServer);
    assert_eq!(
        p.refs,
        [
            PushedRef {
                name: "main".into(),
                tag: false
            },
            PushedRef {
                name: "v2".into(),
                tag: true
            }
        ]
    );
    assert_eq!(p.changed_files, None, "Bitbucket lists no files");

    let p = push(deliver(
        &[
            ("X-Event-Key", "repo:push"),
            ("X-Hook-UUID", "82B5B1E1-3C83-4C10-A59C-6B6E8A4F1F3E"),
        ],
        BITBUCKET_CLOUD_PUSH,
        &secrets(),
    ));
    assert_eq!(p.provider, Provider::BitbucketCloud);
    assert_eq!(p.default_branch.as_deref(), Some("main"));
    let err = deliver(
        &[
            ("X-Event-Key", "repo:push"),
            ("X-Hook-UUID", "{00000000-0000-0000-0000-000000000000}"),
        ],
        BITBUCKET_CLOUD_PUSH,
        &secrets(),
    )
    .expect_err("another hook");
    assert!(matches!(err, WebhookError::Unauthorized { .. }));
}

#[test]
fn repository_urls_match_whatever_their_form() {
    let key = |u: &str| repo_key(u).expect(u);
    let same = [
        "https://github.com/Octo-Org/Hello-World",
        "https://github.com/octo-org/hello-world.git",
        "https://user:token@GitHub.com:443/Octo-Org/Hello-World/",
        "git@github.com:Octo-Org/Hello-World.git",
        "ssh://git@github.com/Octo-Org/Hello-World",
        "http://github.com/Octo-Org/Hello-World",
    ];
    for url in same {
        assert_eq!(key(url), "github.com/octo-org/hello-world", "{url}");
    }
    assert_ne!(key("https://github.com/octo-org/hello"), key(same[0]));
    assert_ne!(key("https://gitlab.com/octo-org/hello-world"), key(same[0]));
    assert_eq!(repo_key("not a url"), None);
}

fn app(name: &str, repo: &str, revision: &str, path: &str, paths: Option<&str>) -> Application {
    let mut app = capstan_model::parse_application_yaml(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  project: default\n  source:\n    repoURL: {repo}\n    path: {path}\n    targetRevision: {revision:?}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {name}\n"
    ))
    .expect("valid");
    if let Some(paths) = paths {
        app.metadata
            .annotations
            .insert(MANIFEST_GENERATE_PATHS.into(), paths.into());
    }
    app
}

fn names(found: &[ObjectRef]) -> Vec<&str> {
    found.iter().map(|o| o.name.as_str()).collect()
}

fn github_push(reference: &str, files: &[&str]) -> Push {
    Push {
        provider: Provider::GitHub,
        repo_urls: vec!["https://github.com/Octo-Org/Hello-World".into()],
        refs: vec![short_ref(reference).expect("a ref")],
        default_branch: Some("main".into()),
        changed_files: Some(files.iter().map(|f| (*f).to_owned()).collect()),
    }
}

#[test]
fn the_index_finds_only_the_apps_a_push_moves() {
    let repo = "git@github.com:octo-org/hello-world.git";
    let mut index = AppIndex::default();
    let apps = [
        app("head", repo, "HEAD", "apps/head", None),
        app("main", repo, "main", "apps/main", None),
        app("heads-main", repo, "refs/heads/main", "apps/x", None),
        app("release", repo, "release", "apps/release", None),
        app(
            "pinned",
            repo,
            "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5",
            "apps/p",
            None,
        ),
        app("semver", repo, ">=1.0.0 <2.0.0", "apps/s", None),
        app("tag", repo, "v1.4.0", "apps/t", None),
        app("web-only", repo, "main", "apps/web", Some(".")),
        app(
            "shared-lib",
            repo,
            "main",
            "apps/api",
            Some("/lib;../common"),
        ),
        app(
            "other-repo",
            "https://github.com/octo-org/other",
            "main",
            "apps/head",
            None,
        ),
    ];
    for a in &apps {
        index.put(&ObjectRef::new("capstan", a.metadata.name.clone()), a);
    }
    assert_eq!(index.len(), apps.len());

    let found = index.affected(&github_push("refs/heads/main", &["README.md"]));
    assert_eq!(names(&found), ["head", "heads-main", "main"]);

    let found = index.affected(&github_push("refs/heads/main", &["apps/web/deploy.yaml"]));
    assert_eq!(names(&found), ["head", "heads-main", "main", "web-only"]);

    let found = index.affected(&github_push("refs/heads/main", &["lib/base.yaml"]));
    assert_eq!(names(&found), ["head", "heads-main", "main", "shared-lib"]);
    let found = index.affected(&github_push("refs/heads/main", &["apps/common/x.yaml"]));
    assert_eq!(names(&found), ["head", "heads-main", "main", "shared-lib"]);

    let found = index.affected(&github_push("refs/heads/release", &[]));
    assert_eq!(names(&found), ["release"]);

    let found = index.affected(&github_push("refs/tags/v1.4.0", &[]));
    assert_eq!(names(&found), ["semver", "tag"]);
    // A tag outside the range moves nothing.
    assert!(
        index
            .affected(&github_push("refs/tags/v2.0.0", &[]))
            .is_empty()
    );

    // Without a file list (Bitbucket) the annotation cannot filter: refreshed.
    let mut no_files = github_push("refs/heads/main", &[]);
    no_files.changed_files = None;
    assert!(names(&index.affected(&no_files)).contains(&"web-only"));

    // Without the default branch, HEAD follows every branch.
    let mut unknown_default = github_push("refs/heads/release", &[]);
    unknown_default.default_branch = None;
    assert_eq!(
        names(&index.affected(&unknown_default)),
        ["head", "release"]
    );

    // Re-indexing replaces, removing forgets.
    let main = ObjectRef::new("capstan", "main");
    index.put(&main, &app("main", repo, "release", "apps/main", None));
    assert!(!names(&index.affected(&github_push("refs/heads/main", &[]))).contains(&"main"));
    index.remove(&main);
    assert!(!names(&index.affected(&github_push("refs/heads/release", &[]))).contains(&"main"));
    assert_eq!(index.len(), apps.len() - 1);
}
