//! The on-CPU time of the current thread, for single-threaded CPU-bound measurements.
//!
//! On a shared machine (other builds and tests running), wall time of a CPU-bound loop
//! mostly measures how often the scheduler lets it run. The kernel's per-thread run time
//! (`/proc/thread-self/schedstat`, nanoseconds on a CPU) does not count the waiting, so it
//! measures the code. It still counts cache and frequency effects of the neighbours.

use std::time::{Duration, Instant};

/// Time the current thread has spent on a CPU, when the kernel reports it.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Wall and on-CPU time of one measured section, on the current thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spent {
    /// Wall-clock time.
    pub wall: Duration,
    /// On-CPU time of the thread, when the kernel reports it.
    pub cpu: Option<Duration>,
}

impl Spent {
    /// The on-CPU time, else the wall time.
    pub(crate) fn best(&self) -> Duration {
        self.cpu.unwrap_or(self.wall)
    }
}

/// Runs `f` on the current thread and measures it.
pub(crate) fn measure<T>(f: impl FnOnce() -> T) -> (T, Spent) {
    let cpu_before = thread_cpu_time();
    let started = Instant::now();
    let out = f();
    let wall = started.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    (out, Spent { wall, cpu })
}
