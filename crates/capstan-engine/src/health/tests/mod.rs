//! Unit tests: objects written as real clusters report them, the verdicts Argo CD gives.

mod aggregate;
mod builtin;
mod lua;

use super::{HealthAssessor, HealthStatusCode, HealthVerdict};
use serde_json::Value;

/// The built-in verdict for an object, which must have a check.
fn builtin(obj: &Value) -> (HealthStatusCode, String) {
    let verdict: HealthVerdict = HealthAssessor::builtin_only()
        .assess(obj)
        .expect("kind has a built-in check");
    (verdict.status, verdict.message)
}

fn expect(obj: &Value, status: HealthStatusCode, message: &str) {
    assert_eq!(
        builtin(obj),
        (status, message.to_owned()),
        "object: {obj:#}"
    );
}
