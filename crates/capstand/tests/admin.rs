//! `capstand admin health` and `capstand admin diff` as a user runs them: the real binary on
//! files in a temporary directory, checking stdout, stderr and the exit status.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use capstan_testkit::wait::wait_until_blocking;
use serde_json::Value;

/// What one run of `capstand` left behind.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON Lines of stdout.
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `capstand ARGS` in `dir` (stdin from `stdin`, if any) and waits for it to exit, at
/// most a minute: a check that hangs fails the test instead of blocking it.
fn capstand(dir: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Run> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Output goes to files, so a large output cannot block the child on a full pipe.
    let (out_path, err_path) = (dir.join(format!("out{n}")), dir.join(format!("err{n}")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstand"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let waited = wait_until_blocking("capstand to exit", Duration::from_secs(60), || {
        Ok(child.try_wait()?)
    });
    let status = match waited {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out_path)?,
        stderr: std::fs::read_to_string(err_path)?,
    };
    Ok(run)
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), text)?;
    Ok(())
}

const LIVE_OBJECTS: &str = r#"# A rollout halfway through.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  generation: 4
spec:
  replicas: 3
status:
  observedGeneration: 4
  replicas: 3
  updatedReplicas: 1
  availableReplicas: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9c
  namespace: shop
spec:
  restartPolicy: Always
status:
  phase: Running
  containerStatuses:
  - name: app
    restartCount: 6
    state:
      waiting:
        reason: CrashLoopBackOff
        message: back-off 5m0s restarting failed container=app pod=web-7d9c
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
"#;

#[test]
fn health_gives_builtin_verdicts_as_json_lines() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    write(tmp.path(), "live.yaml", LIVE_OBJECTS)?;
    let run = capstand(tmp.path(), &["admin", "health", "live.yaml"], None)?;
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert_eq!(
        lines[0],
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web",
            "status": "Progressing",
            "message": "Waiting for rollout to finish: 1 out of 3 new replicas have been updated...",
            "check": "builtin"
        })
    );
    assert_eq!(lines[1]["status"], "Degraded");
    assert_eq!(
        lines[1]["message"],
        "back-off 5m0s restarting failed container=app pod=web-7d9c"
    );
    assert_eq!(lines[2]["status"], Value::Null);
    assert_eq!(lines[2]["check"], "none");
    assert!(
        lines[2]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no health check for ConfigMap")),
        "{run:?}"
    );

    // The same from stdin as one array; in CI, the Degraded pod fails the run.
    let run = capstand(
        tmp.path(),
        &["admin", "health", "-", "-o", "json", "--fail-on-unhealthy"],
        Some(LIVE_OBJECTS),
    )?;
    assert_eq!(run.code, 1, "{run:?}");
    let array: Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(array.as_array().map(Vec::len), Some(3), "{run:?}");
    assert_eq!(array[1]["status"], "Degraded");

    // `kubectl get -o yaml` wraps objects in a List.
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
         "status": {"phase": "Bound"}}
    ]});
    write(tmp.path(), "list.json", &list.to_string())?;
    let run = capstand(
        tmp.path(),
        &["admin", "health", "list.json", "--fail-on-unhealthy"],
        None,
    )?;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.lines()[0]["status"], "Healthy");
    Ok(())
}

const WIDGETS: &str = r#"apiVersion: example.com/v1
kind: Widget
metadata: {name: ready-one, namespace: lab}
status:
  conditions:
  - {type: Ready, status: "True", message: all gears turning}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: stuck, namespace: lab}
status:
  conditions:
  - {type: Ready, status: "False", message: gear 3 is jammed}
"#;

const WIDGET_CHECK: &str = r#"
hs = {status = "Progressing", message = "Waiting for the widget"}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.status == "True" then
      hs = {status = "Healthy", message = c.message}
    elseif c.type == "Ready" then
      hs = {status = "Degraded", message = c.message}
    end
  end
end
return hs
"#;

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

#[test]
fn health_uses_custom_lua_checks_from_the_config() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    write(tmp.path(), "widgets.yaml", WIDGETS)?;
    // The whole argocd-cm ConfigMap, as exported from a cluster, with keys for other parts
    // of the system; the Deployment check overrides the built-in one.
    let config = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-cm}}\ndata:\n  url: https://cd.example.com\n  resource.customizations.ignoreDifferences.apps_Deployment: |\n    jsonPointers: [/spec/replicas]\n  resource.customizations.health.example.com_Widget: |\n{}  resource.customizations.health.apps_Deploy*: |\n    return {{status = \"Suspended\", message = \"frozen by policy\"}}\n",
        indent(WIDGET_CHECK, 4)
    );
    write(tmp.path(), "argocd-cm.yaml", &config)?;
    let run = capstand(
        tmp.path(),
        &[
            "admin",
            "health",
            "widgets.yaml",
            "--config",
            "argocd-cm.yaml",
        ],
        None,
    )?;
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.lines();
    assert_eq!(lines[0]["status"], "Healthy", "{run:?}");
    assert_eq!(lines[0]["message"], "all gears turning");
    assert_eq!(lines[0]["check"], "lua");
    assert_eq!(lines[1]["status"], "Degraded");
    assert_eq!(lines[1]["message"], "gear 3 is jammed");

    write(tmp.path(), "live.yaml", LIVE_OBJECTS)?;
    let run = capstand(
        tmp.path(),
        &["admin", "health", "live.yaml", "-c", "argocd-cm.yaml"],
        None,
    )?;
    assert_eq!(run.lines()[0]["status"], "Suspended", "{run:?}");
    assert_eq!(run.lines()[0]["check"], "lua");

    // Without the configuration, a Widget has no health.
    let run = capstand(tmp.path(), &["admin", "health", "widgets.yaml"], None)?;
    assert_eq!(run.lines()[0]["check"], "none", "{run:?}");
    Ok(())
}

#[test]
fn hostile_lua_is_stopped_by_the_configured_limit() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    write(tmp.path(), "widgets.yaml", WIDGETS)?;
    write(
        tmp.path(),
        "health.yaml",
        "resource.customizations.health.example.com_Widget: |\n  while true do end\n\
         capstan.health.lua.timeoutMillis: \"300\"\n\
         capstan.health.lua.maxInstructions: \"1000000000000\"\n",
    )?;
    let started = std::time::Instant::now();
    let run = capstand(
        tmp.path(),
        &["admin", "health", "widgets.yaml", "--config", "health.yaml"],
        None,
    )?;
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 2, "{run:?}");
    for line in &lines {
        assert_eq!(line["status"], "Unknown", "{run:?}");
        assert_eq!(
            line["message"],
            "health check \"example.com/Widget\" stopped: it ran longer than 300 ms"
        );
    }
    // Two evaluations of 300 ms each, plus start-up; far below the helper's minute.
    assert!(started.elapsed() < Duration::from_secs(20), "{run:?}");

    let run = capstand(
        tmp.path(),
        &[
            "admin",
            "health",
            "widgets.yaml",
            "--config",
            "health.yaml",
            "--fail-on-unhealthy",
        ],
        None,
    )?;
    assert_eq!(run.code, 1, "{run:?}");
    Ok(())
}

#[test]
fn configuration_errors_name_the_check() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    write(tmp.path(), "widgets.yaml", WIDGETS)?;
    write(
        tmp.path(),
        "health.yaml",
        "resource.customizations.health.example.com_Widget: |\n  if obj.status then\n    return {status = 'Healthy'}\n",
    )?;
    let run = capstand(
        tmp.path(),
        &["admin", "health", "widgets.yaml", "--config", "health.yaml"],
        None,
    )?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.contains("health.yaml"), "{run:?}");
    assert!(
        run.stderr
            .contains("health check \"example.com/Widget\" does not compile"),
        "{run:?}"
    );
    assert!(run.stderr.contains("'end' expected"), "{run:?}");

    write(
        tmp.path(),
        "bad-key.yaml",
        "resource.customizations.health.a_b_c: \"return {}\"\n",
    )?;
    let run = capstand(
        tmp.path(),
        &[
            "admin",
            "health",
            "widgets.yaml",
            "--config",
            "bad-key.yaml",
        ],
        None,
    )?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("resource.customizations.health.a_b_c"),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn malformed_input_names_file_document_and_line() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    write(
        tmp.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b\ndata: {}\n",
    )?;
    let run = capstand(tmp.path(), &["admin", "health", "bad.yaml"], None)?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.contains("bad.yaml:"), "{run:?}");
    assert!(run.stderr.contains("(document 2): invalid YAML"), "{run:?}");

    write(
        tmp.path(),
        "not-k8s.yaml",
        "apiVersion: v1\nkind: ConfigMap\n---\n# no kind here\nmetadata: {name: x}\n",
    )?;
    let run = capstand(tmp.path(), &["admin", "health", "not-k8s.yaml"], None)?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("not-k8s.yaml:5 (document 2): not a Kubernetes object"),
        "{run:?}"
    );

    let run = capstand(tmp.path(), &["admin", "health", "absent.yaml"], None)?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("absent.yaml"), "{run:?}");

    // A usage error is exit status 2 too (clap's convention, and diff(1)'s).
    let run = capstand(tmp.path(), &["admin", "health"], None)?;
    assert_eq!(run.code, 2, "{run:?}");
    Ok(())
}

const LIVE_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  uid: 0b6a7a8e-1f0e-4c55-9a43-8f3f1a3c7e21
  resourceVersion: "81723"
  generation: 7
  creationTimestamp: "2024-05-01T10:00:00Z"
  annotations:
    deployment.kubernetes.io/revision: "3"
  managedFields:
  - manager: kubectl
    operation: Apply
spec:
  replicas: 5
  progressDeadlineSeconds: 600
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: registry.example.com/web:1.4.2
        imagePullPolicy: IfNotPresent
status:
  replicas: 5
"#;

fn desired_deployment(replicas: u32, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: {image}
"#
    )
}

#[test]
fn diff_reports_equal_different_and_ignored() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    write(tmp.path(), "live.yaml", LIVE_DEPLOYMENT)?;
    write(
        tmp.path(),
        "same.yaml",
        &desired_deployment(5, "registry.example.com/web:1.4.2"),
    )?;
    write(
        tmp.path(),
        "scaled.yaml",
        &desired_deployment(2, "registry.example.com/web:1.4.2"),
    )?;
    write(
        tmp.path(),
        "upgraded.yaml",
        &desired_deployment(2, "registry.example.com/web:1.5.0"),
    )?;
    write(
        tmp.path(),
        "argocd-cm.yaml",
        "resource.customizations.health.Pod: \"return {status = 'Healthy'}\"\n\
         resource.customizations.ignoreDifferences.apps_Deployment: |\n  jsonPointers:\n  - /spec/replicas\n",
    )?;
    let diff = |desired: &str, extra: &[&str]| {
        let mut args = vec![
            "admin",
            "diff",
            "--live",
            "live.yaml",
            "--desired",
            desired,
            "--namespace",
            "shop",
        ];
        args.extend_from_slice(extra);
        capstand(tmp.path(), &args, None)
    };

    // Server-owned fields and server defaults are not differences.
    let run = diff("same.yaml", &[])?;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout, "===== apps/Deployment shop/web: equal ======\n",
        "{run:?}"
    );

    let run = diff("scaled.yaml", &[])?;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .starts_with("===== apps/Deployment shop/web: differs ======\n--- live\n+++ desired\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains("\n-  replicas: 5\n"), "{run:?}");
    assert!(run.stdout.contains("\n+  replicas: 2\n"), "{run:?}");

    // The configured ignoreDifferences hides the replicas, not the image.
    let run = diff("scaled.yaml", &["--config", "argocd-cm.yaml"])?;
    assert_eq!(run.code, 0, "{run:?}");
    let run = diff(
        "upgraded.yaml",
        &["--config", "argocd-cm.yaml", "-o", "json"],
    )?;
    assert_eq!(run.code, 1, "{run:?}");
    let records: Value = serde_json::from_str(&run.stdout)?;
    let record = &records[0];
    assert_eq!(record["group"], "apps");
    assert_eq!(record["kind"], "Deployment");
    assert_eq!(record["namespace"], "shop");
    assert_eq!(record["name"], "web");
    assert_eq!(record["modified"], true);
    assert!(record["live"]["spec"].get("replicas").is_none(), "{run:?}");
    let unified = record["unified"].as_str().unwrap_or_default();
    assert!(
        unified.contains("+        image: registry.example.com/web:1.5.0"),
        "{unified}"
    );
    assert!(!unified.contains("replicas"), "{unified}");

    // The Application form of the same rule; its namespace matches the manifest placed in
    // --namespace.
    write(
        tmp.path(),
        "app-form.yaml",
        "ignoreDifferences:\n- group: apps\n  kind: Deployment\n  name: web\n  namespace: shop\n  jsonPointers: [/spec/replicas]\n",
    )?;
    let run = diff("scaled.yaml", &["--config", "app-form.yaml"])?;
    assert_eq!(run.code, 0, "{run:?}");
    Ok(())
}

#[test]
fn diff_pairs_objects_and_reports_one_sided_ones() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let extra_live = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leftover, namespace: shop}\ndata: {a: b}\n";
    write(
        tmp.path(),
        "live.yaml",
        &format!("{LIVE_DEPLOYMENT}---\n{extra_live}"),
    )?;
    let new_service = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 80}]\n";
    write(
        tmp.path(),
        "desired.yaml",
        &format!(
            "{}---\n{new_service}",
            desired_deployment(5, "registry.example.com/web:1.4.2")
        ),
    )?;
    let run = capstand(
        tmp.path(),
        &[
            "admin",
            "diff",
            "--live",
            "live.yaml",
            "--desired",
            "desired.yaml",
            "-n",
            "shop",
        ],
        None,
    )?;
    assert_eq!(run.code, 1, "{run:?}");
    let headers: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("====="))
        .collect();
    assert_eq!(
        headers,
        [
            "===== apps/Deployment shop/web: equal ======",
            "===== Service shop/web: missing live ======",
            "===== ConfigMap shop/leftover: not desired ======",
        ],
        "{run:?}"
    );
    assert!(run.stdout.contains("+  - port: 80"), "{run:?}");
    assert!(run.stderr.contains("2 of 3 resource(s) differ"), "{run:?}");

    // The same object twice in one file is an input error.
    write(
        tmp.path(),
        "twice.yaml",
        &format!("{extra_live}---\n{extra_live}"),
    )?;
    let run = capstand(
        tmp.path(),
        &[
            "admin",
            "diff",
            "--live",
            "twice.yaml",
            "--desired",
            "desired.yaml",
        ],
        None,
    )?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "twice.yaml:6 (document 2): ConfigMap shop/leftover appears a second time (first at twice.yaml:1 (document 1))"
        ),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn diff_masks_secret_values() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // "hunter2" and "s3cr3t-new", base64.
    write(
        tmp.path(),
        "live.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\ntype: Opaque\ndata:\n  user: YWRtaW4=\n  password: aHVudGVyMg==\n",
    )?;
    write(
        tmp.path(),
        "desired.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\ntype: Opaque\nstringData:\n  user: admin\n  password: s3cr3t-new\n",
    )?;
    for format in ["text", "json"] {
        let run = capstand(
            tmp.path(),
            &[
                "admin",
                "diff",
                "--live",
                "live.yaml",
                "--desired",
                "desired.yaml",
                "-o",
                format,
            ],
            None,
        )?;
        assert_eq!(run.code, 1, "{run:?}");
        for secret in [
            "aHVudGVyMg",
            "hunter2",
            "s3cr3t-new",
            "czNjcjN0LW5ldw",
            "YWRtaW4",
        ] {
            assert!(
                !run.stdout.contains(secret),
                "{format} shows {secret}: {run:?}"
            );
            assert!(
                !run.stderr.contains(secret),
                "{format} shows {secret}: {run:?}"
            );
        }
        assert!(run.stdout.contains("++++++++"), "{run:?}");
        assert!(run.stdout.contains("password"), "{run:?}");
    }
    Ok(())
}

#[test]
fn help_explains_usage_and_exit_status() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    for (command, needles) in [
        (
            "health",
            &["--fail-on-unhealthy", "Exit status:", "kubectl get"][..],
        ),
        (
            "diff",
            &["--live", "--desired", "Exit status:", "1  differences"][..],
        ),
    ] {
        let run = capstand(tmp.path(), &["admin", command, "--help"], None)?;
        assert_eq!(run.code, 0, "{run:?}");
        for needle in needles {
            assert!(run.stdout.contains(needle), "{command}: {needle}: {run:?}");
        }
    }
    Ok(())
}
