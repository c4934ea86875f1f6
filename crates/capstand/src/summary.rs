//! The all-in-one's settle report (`--summary-out`): once every Application in the store is
//! Synced and Healthy — or once the deadline passes — a table of every Application's sync and
//! health is written to a file, for the script that started capstand to show (there is no API
//! to ask yet) and for `scripts/up.sh --check` to judge.
//!
//! Only statuses written by this process count (`reconciledAt` at or after its start; the
//! controller writes each Application's status once after a start even when nothing
//! changed): a restart must not report what the previous run saw.
//!
//! The first line says which of the two happened: `settled: …` or `not settled: …`; the table
//! follows. The file is written through a temporary file and a rename, so a script waiting
//! for it never reads half a report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use capstan_model::{HealthStatusCode, SyncStatusCode};
use capstan_store::Store;
use capstan_store::kinds::Applications;
use capstan_store::typed::TypedStore;
use tracing::{info, warn};

/// How often the store is read while waiting; cheap (one listing of the Applications).
const POLL: Duration = Duration::from_millis(500);

/// One Application's line in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLine {
    pub name: String,
    pub sync: String,
    pub health: String,
    pub revision: String,
    /// Why it is not settled: the first condition, or the last operation's failure message.
    pub message: String,
}

impl AppLine {
    fn settled(&self) -> bool {
        self.sync == SyncStatusCode::Synced.as_str()
            && self.health == HealthStatusCode::Healthy.as_str()
    }
}

/// Waits until every Application is Synced and Healthy as seen since `since` (at least one
/// exists) or `timeout` passes, then writes the report to `path`. Failing to write is
/// logged, never fatal: the report is a convenience, the control plane keeps running.
pub async fn report_when_settled(
    store: Arc<dyn Store>,
    path: PathBuf,
    since: SystemTime,
    timeout: Duration,
) {
    let apps = TypedStore::<Applications>::new(store);
    let started = Instant::now();
    let deadline = started + timeout;
    // reconciledAt has whole seconds.
    let since = since.duration_since(UNIX_EPOCH).map_or(UNIX_EPOCH, |d| {
        UNIX_EPOCH + Duration::from_secs(d.as_secs())
    });
    let lines = loop {
        match lines(&apps, since).await {
            Ok(lines) if !lines.is_empty() && lines.iter().all(AppLine::settled) => {
                break lines;
            }
            Ok(lines) if Instant::now() >= deadline => break lines,
            Ok(_) => {}
            Err(e) if Instant::now() >= deadline => {
                warn!(error = %e, "reading the Applications for the report failed");
                break Vec::new();
            }
            Err(_) => {}
        }
        tokio::time::sleep(POLL).await;
    };
    let report = render(&lines, started.elapsed());
    match write_atomically(&path, &report) {
        Ok(()) => {
            info!(path = %path.display(), settled = report.starts_with("settled"), "wrote the Applications report")
        }
        Err(e) => warn!(error = %format!("{e:#}"), "writing the Applications report failed"),
    }
}

async fn lines(apps: &TypedStore<Applications>, since: SystemTime) -> anyhow::Result<Vec<AppLine>> {
    let list = apps.list(None).await?;
    let mut lines: Vec<AppLine> = list
        .items
        .into_iter()
        .map(|item| {
            // A status from before this start is what the last run saw: not seen yet.
            let status = item
                .status
                .map(|s| s.value)
                .filter(|s| {
                    s.reconciled_at
                        .as_ref()
                        .and_then(|t| humantime::parse_rfc3339(&t.0).ok())
                        .is_some_and(|t| t >= since)
                })
                .unwrap_or_default();
            let text = |s: Option<&'static str>| s.unwrap_or("Unknown").to_owned();
            let message = status
                .conditions
                .first()
                .map(|c| format!("{}: {}", c.condition_type, c.message))
                .or_else(|| {
                    status
                        .operation_state
                        .as_ref()
                        .filter(|o| {
                            o.phase.is_some_and(|p| {
                                p != capstan_model::OperationPhase::Succeeded
                                    && p != capstan_model::OperationPhase::Running
                            })
                        })
                        .map(|o| o.message.clone())
                })
                .unwrap_or_default();
            AppLine {
                name: item.object.name,
                sync: text(status.sync.status.map(SyncStatusCode::as_str)),
                health: text(status.health.status.map(HealthStatusCode::as_str)),
                revision: status.sync.revision.chars().take(7).collect(),
                message,
            }
        })
        .collect();
    lines.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(lines)
}

/// The report: a first line saying whether everything settled, then an aligned table.
pub fn render(lines: &[AppLine], waited: Duration) -> String {
    let settled = lines.iter().filter(|l| l.settled()).count();
    let mut out = if !lines.is_empty() && settled == lines.len() {
        format!(
            "settled: all {} Applications Synced and Healthy after {}s\n",
            lines.len(),
            waited.as_secs()
        )
    } else {
        format!(
            "not settled: {settled} of {} Applications Synced and Healthy after {}s\n",
            lines.len(),
            waited.as_secs()
        )
    };
    let width = |f: fn(&AppLine) -> &str, title: &str| {
        lines
            .iter()
            .map(|l| f(l).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (name, sync, health) = (
        width(|l| &l.name, "NAME"),
        width(|l| &l.sync, "SYNC"),
        width(|l| &l.health, "HEALTH"),
    );
    out.push_str(&format!(
        "{:name$}  {:sync$}  {:health$}  {:8} MESSAGE\n",
        "NAME", "SYNC", "HEALTH", "REVISION"
    ));
    for l in lines {
        out.push_str(
            format!(
                "{:name$}  {:sync$}  {:health$}  {:8} {}",
                l.name, l.sync, l.health, l.revision, l.message
            )
            .trim_end(),
        );
        out.push('\n');
    }
    out
}

fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, sync: &str, health: &str, message: &str) -> AppLine {
        AppLine {
            name: name.into(),
            sync: sync.into(),
            health: health.into(),
            revision: "1a2b3c4".into(),
            message: message.into(),
        }
    }

    #[test]
    fn the_first_line_says_whether_everything_settled() {
        let all = [
            line("guestbook", "Synced", "Healthy", ""),
            line("helm-guestbook", "Synced", "Healthy", ""),
        ];
        let report = render(&all, Duration::from_secs(42));
        assert!(
            report.starts_with("settled: all 2 Applications Synced and Healthy after 42s\n"),
            "{report}"
        );

        let some = [
            line("guestbook", "Synced", "Healthy", ""),
            line(
                "waves",
                "OutOfSync",
                "Progressing",
                "SyncError: hook failed",
            ),
        ];
        let report = render(&some, Duration::from_secs(300));
        assert!(
            report.starts_with("not settled: 1 of 2 Applications"),
            "{report}"
        );
        assert!(report.contains("SyncError: hook failed"), "{report}");
        assert!(render(&[], Duration::ZERO).starts_with("not settled: 0 of 0"));
    }

    #[test]
    fn columns_are_aligned_to_the_longest_value() {
        let report = render(
            &[
                line("a", "Synced", "Healthy", ""),
                line("much-longer-name", "OutOfSync", "Missing", ""),
            ],
            Duration::ZERO,
        );
        let rows: Vec<&str> = report.lines().skip(1).collect();
        let column = |row: &str, word: &str| row.find(word).expect(word);
        assert_eq!(column(rows[0], "SYNC"), column(rows[1], "Synced"));
        assert_eq!(column(rows[1], "Synced"), column(rows[2], "OutOfSync"));
        assert_eq!(column(rows[0], "HEALTH"), column(rows[2], "Missing"));
    }
}
