//! Waiting on conditions with deadlines (never fixed sleeps).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::process::ProcessExited;

/// Polls `check` until it returns `Ok(Some(value))` or `timeout` passes.
///
/// `Ok(None)` means "not yet"; an `Err` is remembered and reported if the deadline passes,
/// so the final error says what was last seen. A [`ProcessExited`] error ends the wait at
/// once: a dead component will not become ready. Polling backs off from 20 ms to 500 ms.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    let mut last = String::from("condition not met yet");
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) if err.downcast_ref::<ProcessExited>().is_some() => {
                return Err(err.context(format!("while waiting for {what}")));
            }
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "timed out after {timeout:?} waiting for {what}: {last}"
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Blocking twin of [`wait_until`] for code that runs outside a runtime.
pub fn wait_until_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    let mut last = String::from("condition not met yet");
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "timed out after {timeout:?} waiting for {what}: {last}"
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
