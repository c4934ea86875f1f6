//! Crash safety: a writer process is SIGKILLed in the middle of writing, and every write it had
//! acknowledged must be in the file when it is opened again.
//!
//! The writer is this test binary, re-executed with `CAPSTAN_STORE_CRASH_WRITER` set to the store
//! path and filtered to the `crash_writer_child` test, which is a no-op in normal runs. It prints
//! `ACK <key> <revision>` (flushed) after each acknowledged put.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capstan_store::conformance::next_events;
use capstan_store::{EmbeddedOptions, EmbeddedStore, Precondition, Revision, Store, WatchEvent};

const CHILD_ENV: &str = "CAPSTAN_STORE_CRASH_WRITER";
const ROUND_ENV: &str = "CAPSTAN_STORE_CRASH_ROUND";
const WRITERS: usize = 4;

/// The value written for a key: deterministic, a few KiB, so commits span several pages.
fn value_for(key: &str) -> Vec<u8> {
    let mut value = Vec::new();
    while value.len() < 3000 {
        value.extend_from_slice(key.as_bytes());
        value.push(b';');
    }
    value
}

/// The writer process. Does nothing unless started by `acknowledged_writes_survive_sigkill`.
#[test]
fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round = std::env::var(ROUND_ENV).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = EmbeddedStore::open(&path, EmbeddedOptions::default())
            .await
            .expect("child: open store");
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = store.clone();
                let round = round.clone();
                tokio::spawn(async move {
                    // Runs until the parent kills the process.
                    for i in 0u64.. {
                        let key = format!("/crash/{round}/{writer}/{i:08}");
                        let revision = store
                            .put(key.as_bytes(), value_for(&key), Precondition::MustNotExist)
                            .await
                            .expect("child: put")
                            .revision;
                        let mut stdout = std::io::stdout().lock();
                        writeln!(stdout, "ACK {key} {revision}").expect("child: write ack");
                        stdout.flush().expect("child: flush ack");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("child: writer task");
        }
    });
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a writer on `path`, waits for `acks` acknowledgements, SIGKILLs it, and returns every
/// acknowledged (key, revision) it printed.
fn run_and_kill_writer(path: &Path, round: usize, acks: usize) -> Vec<(String, Revision)> {
    let exe = std::env::current_exe().expect("test binary path");
    let child = Command::new(exe)
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer process");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = Vec::new();
    while acked.len() < acks {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                if let Some(ack) = parse_ack(&line) {
                    acked.push(ack);
                }
            }
            Err(error) => panic!(
                "writer produced {} of {acks} acks before {error:?}",
                acked.len()
            ),
        }
    }
    // SIGKILL, mid-write: the writers are still busy.
    child.0.kill().expect("kill the writer");
    let status = child.0.wait().expect("reap the writer");
    assert!(!status.success(), "the writer was killed, not finished");
    // Acks printed before the kill, still in the pipe, count too.
    drop(child);
    for line in received.iter() {
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    reader.join().expect("reader thread");
    acked
}

fn parse_ack(line: &str) -> Option<(String, Revision)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let key = parts.next()?.to_string();
    let revision = parts.next()?.parse().ok()?;
    Some((key, revision))
}

/// Checks every acknowledged write, usability, and a consistent replay.
async fn verify(path: &Path, acked: &BTreeMap<String, Revision>) -> Revision {
    let store = EmbeddedStore::open(path, EmbeddedOptions::default())
        .await
        .expect("reopen after the crash");
    for (key, revision) in acked {
        let kv = store
            .get(key.as_bytes())
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged write {key} (revision {revision}) was lost"));
        assert_eq!(kv.mod_revision, *revision, "{key}: revision");
        assert_eq!(kv.value, value_for(key), "{key}: value");
    }
    let max_acked = acked.values().copied().max().unwrap_or(0);
    let current = store.current_revision().await.expect("revision");
    assert!(
        current >= max_acked,
        "the revision went back: {current} < {max_acked}"
    );

    // Watch from 0 replays a consistent history: strictly increasing revisions (one put per
    // revision here), every acknowledged write in it, and it rebuilds the current state.
    let state = store.list_all(b"/crash/", 500).await.expect("list");
    let revision = state.revision;
    let mut watch = store.watch(b"/crash/", 0);
    let events = next_events(&mut watch, state.entries.len()).await;
    let mut replayed = BTreeMap::new();
    let mut last = 0;
    for event in &events {
        let WatchEvent::Put { kv, .. } = event else {
            panic!("only puts were made: {event:?}")
        };
        assert!(kv.mod_revision > last, "replay out of order");
        assert!(kv.mod_revision <= revision);
        last = kv.mod_revision;
        replayed.insert(kv.key.clone(), (kv.mod_revision, kv.value.clone()));
    }
    let listed: BTreeMap<Vec<u8>, (Revision, Vec<u8>)> = state
        .entries
        .into_iter()
        .map(|kv| (kv.key, (kv.mod_revision, kv.value)))
        .collect();
    assert_eq!(replayed, listed, "replaying the history rebuilds the state");
    for (key, revision) in acked {
        assert_eq!(
            replayed.get(key.as_bytes()).map(|(revision, _)| *revision),
            Some(*revision)
        );
    }

    // Usable: new writes get new, higher revisions and reach the watcher.
    let mut after = store.watch(b"/verify/", current);
    let next = store
        .put(b"/verify/after", b"v".to_vec(), Precondition::None)
        .await
        .expect("write after crash")
        .revision;
    assert!(
        next > current,
        "revision {next} reused or went back (current {current})"
    );
    let event = next_events(&mut after, 1).await;
    assert_eq!(event[0].revision(), next);
    store
        .delete(b"/verify/after", Precondition::None)
        .await
        .expect("cleanup");
    let head = store.current_revision().await.expect("revision");
    store.close().await.expect("close");
    head
}

/// Acknowledged writes survive SIGKILL, across several crash rounds on the same file.
#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return; // Never recurse from the child.
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut acked = BTreeMap::new();
    let mut head = 0;
    for round in 0..3 {
        let round_acks = run_and_kill_writer(&path, round, 150 + round * 100);
        assert!(round_acks.len() >= 150);
        for (key, revision) in round_acks {
            assert!(
                revision > head,
                "round {round}: revision {revision} not above the previous head {head}"
            );
            assert!(
                acked.insert(key.clone(), revision).is_none(),
                "{key} acknowledged twice"
            );
        }
        head = runtime.block_on(verify(&path, &acked));
    }
}
