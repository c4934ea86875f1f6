//! Work directories for components, cleaned up even after a killed test run.
//!
//! Each component gets `$TMPDIR/capstan-testkit/<pid>-<name>-<n>/`. The directory is removed
//! on drop; directories whose owning process no longer exists (a test binary that was
//! SIGKILLed never runs its destructors) are swept the first time the testkit is used.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// A directory owned by one component, removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates a fresh directory named after `name`.
    pub fn new(name: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = base_dir();
        sweep_stale_once(&base);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("{}-{name}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        // Keep directories of failed runs for inspection when asked to.
        let keep = std::env::var_os("CAPSTAN_TESTKIT_KEEP").is_some();
        Ok(Self { path, keep })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn base_dir() -> PathBuf {
    std::env::temp_dir().join("capstan-testkit")
}

fn sweep_stale_once(base: &Path) {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}
