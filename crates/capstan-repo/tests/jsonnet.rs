//! Jsonnet in directory sources, through `RepoServer::generate`: a repository served over
//! smart HTTP, evaluated in process (no helm or kustomize needed).

use capstan_model::{ApplicationSource, DirectorySource, JsonnetOptions, JsonnetVar, SourceType};
use capstan_repo::git::Credentials;
use capstan_repo::render::env::AppContext;
use capstan_repo::service::{
    ErrorKind, GenerateError, ManifestRequest, RepoServer, RepoServerConfig,
};
use capstan_testkit::git::GitRepo;
use capstan_testkit::git_http::{GitHttpOptions, GitHttpServer};

const TOKEN: &str = "jsonnet-token";

struct Setup {
    _server: GitHttpServer,
    _repo: GitRepo,
    url: String,
    _tmp: tempfile::TempDir,
    config: RepoServerConfig,
}

fn setup(files: &[(&str, &str)]) -> anyhow::Result<Setup> {
    let repo = GitRepo::init()?;
    repo.write_all(files)?;
    repo.commit("jsonnet fixtures")?;
    let server = GitHttpServer::start_temp(GitHttpOptions::default().with_bearer_token(TOKEN))?;
    let url = server.url_for(&repo)?;
    let tmp = tempfile::tempdir()?;
    let config = RepoServerConfig::new(tmp.path().join("work"));
    Ok(Setup {
        _server: server,
        _repo: repo,
        url,
        _tmp: tmp,
        config,
    })
}

fn request(url: &str, path: &str, directory: DirectorySource) -> ManifestRequest {
    let mut source = ApplicationSource::git(url, path, "HEAD");
    source.directory = Some(directory);
    ManifestRequest {
        source,
        app: AppContext {
            name: "guestbook".to_owned(),
            namespace: "team-a".to_owned(),
            ..AppContext::default()
        },
        credentials: Credentials::Bearer {
            token: TOKEN.to_owned(),
        },
        ..ManifestRequest::default()
    }
}

fn var(name: &str, value: &str, code: bool) -> JsonnetVar {
    JsonnetVar {
        name: name.to_owned(),
        value: value.to_owned(),
        code,
    }
}

fn names(m: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = m
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["kind"].as_str().unwrap_or("?"),
                m["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    v.sort();
    v
}

const CM: &str = "function(name) { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } }";

#[tokio::test]
async fn jsonnet_sources_render() -> anyhow::Result<()> {
    let s = setup(&[
        ("lib/cm.libsonnet", CM),
        ("vendor/k/labels.libsonnet", "{ team: 'a' }"),
        // Objects, arrays, a List, imports (relative, libs, source dir), importstr, a library
        // file beside them, and YAML next to Jsonnet.
        (
            "app/object.jsonnet",
            "local cm = import '../lib/cm.libsonnet'; cm('object') + { metadata+: { labels: import 'labels.libsonnet' } }",
        ),
        (
            "app/array.jsonnet",
            "local cm = import 'local.libsonnet'; [cm('array-1'), cm('array-2')]",
        ),
        ("app/local.libsonnet", "import '../lib/cm.libsonnet'"),
        (
            "app/list.jsonnet",
            "local cm = import 'local.libsonnet'; { apiVersion: 'v1', kind: 'List', items: [cm('list-1'), cm('list-2')] }",
        ),
        (
            "app/data.jsonnet",
            "(import 'local.libsonnet')('data') + { data: { text: importstr 'files/text.txt' } }",
        ),
        ("app/files/text.txt", "hello from importstr\n"),
        (
            "app/plain.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: plain\n",
        ),
        (
            "app/sub/nested.jsonnet",
            "(import '../local.libsonnet')('nested')",
        ),
        (
            "app/sub/other.jsonnet",
            "(import '../local.libsonnet')('other')",
        ),
        (
            "app/skip-test.jsonnet",
            "error 'excluded files are not evaluated'",
        ),
        // Variables.
        (
            "vars/main.jsonnet",
            "function(replicas, tier='none') { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: std.extVar('name') }, spec: { replicas: replicas, tier: tier, owner: std.extVar('owner'), build: std.extVar('build') } }",
        ),
    ])?;
    let server = RepoServer::new(s.config.clone()).await?;

    let libs = JsonnetOptions {
        libs: vec!["vendor/k".to_owned()],
        ..JsonnetOptions::default()
    };
    let dir = DirectorySource {
        jsonnet: libs.clone(),
        exclude: "*-test.jsonnet".to_owned(),
        ..DirectorySource::default()
    };
    let out = server.generate(request(&s.url, "app", dir)).await?;
    let m = &out.manifests;
    assert_eq!(m.source_type, SourceType::Directory);
    assert_eq!(
        names(&m.manifests),
        [
            "ConfigMap/array-1",
            "ConfigMap/array-2",
            "ConfigMap/data",
            "ConfigMap/list-1",
            "ConfigMap/list-2",
            "ConfigMap/object",
            "Secret/plain",
        ]
    );
    let find = |name: &str| {
        m.manifests
            .iter()
            .find(|v| v["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(find("object")["metadata"]["labels"]["team"], "a");
    assert_eq!(find("data")["data"]["text"], "hello from importstr\n");
    let skipped = |path: &str| {
        m.skipped
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        skipped("local.libsonnet").contains("Jsonnet library"),
        "{:?}",
        m.skipped
    );
    assert!(
        skipped("skip-test.jsonnet").contains("exclude"),
        "{:?}",
        m.skipped
    );

    // recurse + include: only the matching Jsonnet file of the sub-directory.
    let dir = DirectorySource {
        recurse: true,
        include: "sub/n*".to_owned(),
        jsonnet: libs,
        ..DirectorySource::default()
    };
    let out = server.generate(request(&s.url, "app", dir)).await?;
    assert_eq!(names(&out.manifests.manifests), ["ConfigMap/nested"]);

    // extVars and TLAs: strings and code, with the build environment substituted.
    let dir = DirectorySource {
        jsonnet: JsonnetOptions {
            ext_vars: vec![
                var("name", "${ARGOCD_APP_NAME}-web", false),
                var("owner", "$ARGOCD_APP_NAMESPACE", false),
                var("build", "{ app: '${ARGOCD_APP_NAME}', n: 1 + 1 }", true),
            ],
            tlas: vec![
                var("replicas", "2 * 3", true),
                var("tier", "${ARGOCD_APP_PROJECT_NAME}front", false),
            ],
            libs: Vec::new(),
        },
        ..DirectorySource::default()
    };
    let out = server.generate(request(&s.url, "vars", dir)).await?;
    let d = &out.manifests.manifests[0];
    assert_eq!(d["metadata"]["name"], "guestbook-web");
    assert_eq!(d["spec"]["replicas"], 6);
    assert_eq!(
        d["spec"]["tier"], "front",
        "an unset variable substitutes as empty"
    );
    assert_eq!(d["spec"]["owner"], "team-a");
    assert_eq!(
        d["spec"]["build"],
        serde_json::json!({"app": "guestbook", "n": 2})
    );
    Ok(())
}

/// Renders `path` with default options and returns the error.
async fn fails(server: &RepoServer, url: &str, path: &str) -> GenerateError {
    match server
        .generate(request(url, path, DirectorySource::default()))
        .await
    {
        Ok(m) => panic!("{path} rendered: {:?}", m.manifests.manifests),
        Err(e) => e,
    }
}

#[tokio::test]
async fn jsonnet_errors_are_clear() -> anyhow::Result<()> {
    let deep = format!("{{ v: {}1{} }}", "[".repeat(100_000), "]".repeat(100_000));
    let s = setup(&[
        ("up/main.jsonnet", "import '../../../../etc/passwd'"),
        ("abs/main.jsonnet", "{\n  a: importstr '/etc/passwd',\n}"),
        (
            "missing/main.jsonnet",
            "local x = 1;\nimport 'nope.libsonnet'",
        ),
        ("syntax/main.jsonnet", "{\n  a: 1,\n  b: ,\n}"),
        ("runtime/main.jsonnet", "local x = 1;\n\nerror 'boom'"),
        (
            "recursion/main.jsonnet",
            "local f(n) = f(n + 1) + 1;\n{ kind: 'K', v: f(0) }",
        ),
        ("nesting/main.jsonnet", deep.as_str()),
        ("scalar/main.jsonnet", "'just a string'"),
        ("elements/main.jsonnet", "[{ kind: 'K' }, 42]"),
    ])?;
    let server = RepoServer::new(s.config.clone()).await?;
    let url = s.url.as_str();

    for path in ["up", "abs"] {
        let e = fails(&server, url, path).await;
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{path}: {e:?}");
        assert!(
            e.message.contains(&format!("{path}/main.jsonnet")) && e.message.contains("is refused"),
            "{path}: {}",
            e.message
        );
        assert!(e.message.contains("etc/passwd"), "{path}: {}", e.message);
        assert!(!e.message.contains("root:"), "{path}: leaked /etc/passwd");
    }
    let e = fails(&server, url, "abs").await;
    assert!(
        e.message
            .starts_with("abs/main.jsonnet:2: jsonnet: import \"/etc/passwd\" is refused"),
        "{}",
        e.message
    );

    let e = fails(&server, url, "missing").await;
    assert!(
        e.message.starts_with(
            "missing/main.jsonnet:2: jsonnet: import \"nope.libsonnet\": file not found"
        ),
        "{}",
        e.message
    );

    let e = fails(&server, url, "syntax").await;
    assert!(
        e.message
            .starts_with("syntax/main.jsonnet:3: jsonnet: syntax error"),
        "{}",
        e.message
    );

    let e = fails(&server, url, "runtime").await;
    assert!(
        e.message
            .starts_with("runtime/main.jsonnet:3: jsonnet: runtime error: boom"),
        "{}",
        e.message
    );

    let e = fails(&server, url, "recursion").await;
    assert!(
        e.message.contains("call stack exceeded 500 frames"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("recursion/main.jsonnet:1"),
        "{}",
        e.message
    );

    let e = fails(&server, url, "nesting").await;
    assert!(
        e.message.contains("nests more than 1000 levels"),
        "{}",
        e.message
    );

    let e = fails(&server, url, "scalar").await;
    assert!(
        e.message.contains("scalar/main.jsonnet") && e.message.contains("the output is a string"),
        "{}",
        e.message
    );
    let e = fails(&server, url, "elements").await;
    assert!(
        e.message
            .contains("element 1 of the output array is a number"),
        "{}",
        e.message
    );

    // The server is still serving after all that.
    let e = fails(&server, url, "runtime").await;
    assert!(e.message.contains("boom"));
    Ok(())
}

#[tokio::test]
async fn only_evaluated_jsonnet_needs_a_checkout() -> anyhow::Result<()> {
    // A checkout writes the whole repository, so a file over the size limit anywhere in it
    // makes every checkout fail: a render that succeeds made none.
    let big = "x".repeat(4096);
    let s = setup(&[
        ("big/blob.txt", big.as_str()),
        (
            "app/a.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n",
        ),
        (
            "app/main.jsonnet",
            "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'j' } }",
        ),
    ])?;
    let mut config = s.config.clone();
    config.tree_limits.max_file_bytes = 1024;
    let server = RepoServer::new(config).await?;

    let yaml_only = DirectorySource {
        include: "*.yaml".to_owned(),
        ..DirectorySource::default()
    };
    let out = server.generate(request(&s.url, "app", yaml_only)).await?;
    assert_eq!(names(&out.manifests.manifests), ["Secret/a"]);

    let e = match server
        .generate(request(&s.url, "app", DirectorySource::default()))
        .await
    {
        Ok(m) => panic!("rendered without a checkout: {:?}", m.manifests.manifests),
        Err(e) => e,
    };
    assert!(e.message.contains("big/blob.txt"), "{}", e.message);
    Ok(())
}

/// The same repo-server with Jsonnet evaluated in a child process (as `capstand` runs it).
fn isolated(mut config: RepoServerConfig) -> RepoServerConfig {
    config.jsonnet_child = Some(capstan_repo::render::jsonnet_child::JsonnetChild {
        program: env!("CARGO_BIN_EXE_capstan-jsonnet").into(),
        args: Vec::new(),
    });
    config
}

#[tokio::test]
async fn in_a_child_process_hostile_programs_fail_only_their_request() -> anyhow::Result<()> {
    let s = setup(&[
        (
            "ok/main.jsonnet",
            "local lib = import 'lib.libsonnet'; [lib.cm(std.extVar('who')), {apiVersion: 'v1', kind: 'Secret', metadata: {name: 's'}}]",
        ),
        (
            "ok/lib.libsonnet",
            "{ cm(n): {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: n}} }",
        ),
        (
            "ok/plain.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n",
        ),
        (
            "chain/main.jsonnet",
            "local a = [if i == 0 then 0 else a[i - 1] + 1 for i in std.range(0, 1000000)]; {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x'}, data: {n: std.toString(a[1000000])}}",
        ),
        (
            "forever/main.jsonnet",
            "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x'}, data: {n: std.toString(std.foldl(function(acc, i) acc + i, std.range(1, 2000000000), 0))}}",
        ),
        ("broken/main.jsonnet", "{ a: error 'boom' }.a"),
    ])?;
    let mut config = isolated(s.config.clone());
    config.tool_limits.timeout = std::time::Duration::from_secs(5);
    let server = RepoServer::new(config).await?;
    let options = DirectorySource {
        jsonnet: JsonnetOptions {
            ext_vars: vec![var("who", "${ARGOCD_APP_NAME}", false)],
            ..JsonnetOptions::default()
        },
        ..DirectorySource::default()
    };

    let ok = server
        .generate(request(&s.url, "ok", options.clone()))
        .await?;
    assert_eq!(ok.manifests.source_type, SourceType::Directory);
    assert_eq!(
        names(&ok.manifests.manifests),
        ["ConfigMap/guestbook", "Secret/s", "Service/svc"]
    );

    let err = server
        .generate(request(&s.url, "chain", options.clone()))
        .await
        .expect_err("a lazy chain that overflows the stack");
    assert!(err.message.contains("crashed"), "{err}");

    let err = server
        .generate(request(&s.url, "forever", options.clone()))
        .await
        .expect_err("a program that runs for ever");
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded, "{err}");

    let err = server
        .generate(request(&s.url, "broken", options.clone()))
        .await
        .expect_err("a Jsonnet error");
    assert!(
        err.message.contains("broken/main.jsonnet") && err.message.contains("boom"),
        "{err}"
    );

    // The server is unharmed: the good source still renders (from its cache or afresh).
    let again = server.generate(request(&s.url, "ok", options)).await?;
    assert_eq!(again.manifests, ok.manifests);
    Ok(())
}
