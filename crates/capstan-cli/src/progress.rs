//! Waiting for an Application to reach a state, and showing the way there: on a terminal,
//! every resource's change is printed to stderr as it happens (stdout stays for the result,
//! so `-o json` output remains parseable); elsewhere nothing is printed until the end.
//!
//! Waiting polls `get` once a second: it works the same over gRPC and REST, through any
//! proxy, and costs the server one map lookup per poll.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{AppAt, Client};
use crate::error::{CliError, CliResult, Exit};
use crate::output::{or, text};

/// How often the state is read.
const POLL: Duration = Duration::from_secs(1);

/// What to wait for (all that are set).
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    /// `Synced`.
    pub sync: bool,
    /// `Healthy`.
    pub health: bool,
    /// No operation pending or running.
    pub operation: bool,
    /// `Suspended` (or `Healthy`).
    pub suspended: bool,
    /// `Degraded`.
    pub degraded: bool,
}

impl Want {
    fn met(&self, app: &Value) -> bool {
        let sync = text(app, "/status/sync/status");
        let health = text(app, "/status/health/status");
        let idle = app["operation"].is_null()
            && !matches!(
                text(app, "/status/operationState/phase").as_str(),
                "Running" | "Terminating"
            );
        (!self.sync || sync == "Synced")
            && (!self.health || health == "Healthy")
            && (!self.operation || idle)
            && (!self.suspended || health == "Suspended" || health == "Healthy")
            && (!self.degraded || health == "Degraded")
    }
}

/// The store revision an Application was read at (0 when it does not say).
fn revision(app: &Value) -> u64 {
    text(app, "/metadata/resourceVersion").parse().unwrap_or(0)
}

/// Whether `app` shows the operation that `started` (the answer to a sync or rollback)
/// requested as finished: a read from before the request (a replica whose copy of the store
/// lags) says nothing about it, and an operation that finished has a phase.
fn finished_since(app: &Value, started: &Value) -> bool {
    revision(app) >= revision(started)
        && app["operation"].is_null()
        && matches!(
            text(app, "/status/operationState/phase").as_str(),
            "Succeeded" | "Failed" | "Error"
        )
}

/// Waits until `want` holds for `at` (at most `limit`); the Application then. `started`,
/// the answer to a sync or rollback, is shown first, and then the operation it requested
/// must have finished (not an earlier one).
pub async fn wait(
    client: &Client,
    at: &AppAt,
    want: Want,
    limit: Option<Duration>,
    started: Option<&Value>,
) -> CliResult<Value> {
    let deadline = limit.map(|l| Instant::now() + l);
    let mut shown = Shown::new();
    if let Some(app) = started {
        shown.show(at, app);
    }
    loop {
        let app = client.get_app(at, "").await?;
        let stale = started.is_some_and(|s| revision(&app) < revision(s));
        if !stale {
            shown.show(at, &app);
        }
        let requested_done = started.is_none_or(|s| finished_since(&app, s));
        if !stale && requested_done && want.met(&app) {
            return Ok(app);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "'{at}' did not get there in time: sync {}, health {}, operation {}",
                    or(text(&app, "/status/sync/status"), "-"),
                    or(text(&app, "/status/health/status"), "-"),
                    or(text(&app, "/status/operationState/phase"), "-"),
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the controller has done the refresh `before` asked for (the refresh
/// annotation is gone); the Application then.
pub async fn wait_refreshed(
    client: &Client,
    at: &AppAt,
    before: &Value,
    limit: Duration,
) -> CliResult<Value> {
    let deadline = Instant::now() + limit;
    let mut app = before.clone();
    loop {
        if app["metadata"]["annotations"][capstan_model::REFRESH_ANNOTATION].is_null() {
            return Ok(app);
        }
        if Instant::now() >= deadline {
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "the controller did not refresh '{at}' within {}s",
                    limit.as_secs()
                ),
            )
            .hint("is the controller running? `capstan app get` shows the last state"));
        }
        tokio::time::sleep(POLL).await;
        app = client.get_app(at, "").await?;
    }
}

/// Waits until `at` no longer exists.
pub async fn wait_deleted(client: &Client, at: &AppAt, limit: Option<Duration>) -> CliResult<()> {
    let deadline = limit.map(|l| Instant::now() + l);
    loop {
        match client.get_app(at, "").await {
            Err(error) if error.exit == Exit::NotFound => return Ok(()),
            Err(error) => return Err(error),
            Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(CliError::new(
                    Exit::Timeout,
                    format!("'{at}' is still there"),
                ));
            }
            Ok(app) => {
                if std::io::stderr().is_terminal() {
                    let left = app["status"]["resources"].as_array().map_or(0, Vec::len);
                    eprintln!("'{at}': deleting, {left} resources left");
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What was printed last, per line key, so only changes are printed.
struct Shown {
    enabled: bool,
    lines: BTreeMap<String, String>,
}

impl Shown {
    fn new() -> Shown {
        Shown {
            enabled: std::io::stderr().is_terminal(),
            lines: BTreeMap::new(),
        }
    }

    fn show(&mut self, at: &AppAt, app: &Value) {
        if !self.enabled {
            return;
        }
        for (key, line) in progress_lines(at, app) {
            if self.lines.get(&key) != Some(&line) {
                eprintln!("{}", crate::output::clean(&line));
                self.lines.insert(key, line);
            }
        }
    }
}

/// The progress lines of an Application: one for the Application, one per resource (its
/// sync, health and the last sync's message), keyed so changes can be told apart.
pub fn progress_lines(at: &AppAt, app: &Value) -> Vec<(String, String)> {
    let phase = if app["operation"].is_object() {
        "Pending".to_owned()
    } else {
        text(app, "/status/operationState/phase")
    };
    let mut lines = vec![(
        String::new(),
        format!(
            "{at}: operation {} | sync {} | health {}",
            or(phase, "-"),
            or(text(app, "/status/sync/status"), "-"),
            or(text(app, "/status/health/status"), "-")
        ),
    )];
    let messages: BTreeMap<String, String> =
        app["status"]["operationState"]["syncResult"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (resource_key(r), text(r, "/message")))
            .collect();
    for r in app["status"]["resources"].as_array().into_iter().flatten() {
        let key = resource_key(r);
        let mut line = format!(
            "  {key}  {}  {}",
            or(text(r, "/status"), "-"),
            or(text(r, "/health/status"), "-")
        );
        if let Some(message) = messages.get(&key).filter(|m| !m.is_empty()) {
            line.push_str(&format!("  {message}"));
        }
        if r["hook"] == json!(true) {
            line.push_str("  (hook)");
        }
        lines.push((key, line));
    }
    lines
}

fn resource_key(r: &Value) -> String {
    let namespace = text(r, "/namespace");
    if namespace.is_empty() {
        format!("{}/{}", text(r, "/kind"), text(r, "/name"))
    } else {
        format!("{}/{}/{}", text(r, "/kind"), namespace, text(r, "/name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fresh_read_of_the_requested_operation_finishes_it() {
        let started = json!({"metadata": {"resourceVersion": "12"}, "operation": {"sync": {}},
            "status": {"operationState": {"phase": "Succeeded"}}});
        // A lagging replica's copy: before the request, the previous operation's result.
        let stale = json!({"metadata": {"resourceVersion": "8"},
            "status": {"operationState": {"phase": "Succeeded"}}});
        assert!(!finished_since(&stale, &started));
        // Picked up, not finished; then finished.
        let running = json!({"metadata": {"resourceVersion": "13"},
            "status": {"operationState": {"phase": "Running"}}});
        assert!(!finished_since(&running, &started));
        let never = json!({"metadata": {"resourceVersion": "13"}, "status": {}});
        assert!(!finished_since(&never, &started));
        let done = json!({"metadata": {"resourceVersion": "14"},
            "status": {"operationState": {"phase": "Failed"}}});
        assert!(finished_since(&done, &started));
    }

    #[test]
    fn a_pending_operation_is_not_idle_and_lines_show_each_resource() {
        let app = json!({
            "operation": {"sync": {}},
            "status": {
                "sync": {"status": "Synced"}, "health": {"status": "Healthy"},
                "operationState": {"phase": "Succeeded", "syncResult": {"resources": [
                    {"kind": "Deployment", "namespace": "web", "name": "ui", "message": "created"}
                ]}},
                "resources": [{"kind": "Deployment", "namespace": "web", "name": "ui", "status": "Synced", "health": {"status": "Progressing"}}],
            }
        });
        let want = Want {
            operation: true,
            ..Want::default()
        };
        assert!(!want.met(&app), "the requested operation has not started");
        let mut done = app.clone();
        done["operation"] = Value::Null;
        assert!(want.met(&done));
        assert!(
            !Want {
                health: true,
                ..Want::default()
            }
            .met(&json!({"status": {"health": {"status": "Progressing"}}}))
        );
        let at = AppAt {
            name: "g".into(),
            namespace: String::new(),
        };
        let lines = progress_lines(&at, &app);
        assert_eq!(
            lines[0].1,
            "g: operation Pending | sync Synced | health Healthy"
        );
        assert_eq!(
            lines[1].1,
            "  Deployment/web/ui  Synced  Progressing  created"
        );
    }
}
