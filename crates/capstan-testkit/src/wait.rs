//! Waiting on conditions with deadlines (never fixed sleeps).

use std::future::Future;
use std::ops::ControlFlow;
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
    let mut poll = Poll::new(what, timeout);
    loop {
        match poll.step(check().await) {
            ControlFlow::Break(result) => return result,
            ControlFlow::Continue(delay) => tokio::time::sleep(delay).await,
        }
    }
}

/// Blocking twin of [`wait_until`] for code that runs outside a runtime.
pub fn wait_until_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let mut poll = Poll::new(what, timeout);
    loop {
        match poll.step(check()) {
            ControlFlow::Break(result) => return result,
            ControlFlow::Continue(delay) => std::thread::sleep(delay),
        }
    }
}

/// The deadline, back-off and last error shared by both waits.
struct Poll<'a> {
    what: &'a str,
    timeout: Duration,
    deadline: Instant,
    delay: Duration,
    last: String,
}

impl<'a> Poll<'a> {
    fn new(what: &'a str, timeout: Duration) -> Self {
        Self {
            what,
            timeout,
            deadline: Instant::now() + timeout,
            delay: Duration::from_millis(10),
            last: String::from("condition not met yet"),
        }
    }

    /// Judges one attempt: done (with the value or the final error), or how long to sleep.
    fn step<T>(&mut self, attempt: Result<Option<T>>) -> ControlFlow<Result<T>, Duration> {
        match attempt {
            Ok(Some(value)) => return ControlFlow::Break(Ok(value)),
            Ok(None) => {}
            Err(err) if err.downcast_ref::<ProcessExited>().is_some() => {
                return ControlFlow::Break(Err(
                    err.context(format!("while waiting for {}", self.what))
                ));
            }
            Err(err) => self.last = format!("{err:#}"),
        }
        if Instant::now() >= self.deadline {
            return ControlFlow::Break(Err(anyhow!(
                "timed out after {:?} waiting for {}: {}",
                self.timeout,
                self.what,
                self.last
            )));
        }
        self.delay = (self.delay * 2).min(Duration::from_millis(500));
        ControlFlow::Continue(self.delay)
    }
}
