//! Evaluating a source's Jsonnet files in a supervised child process.
//!
//! jrsonnet cannot be interrupted and some programs overflow the native stack (see
//! [`super::jsonnet`]): in process, a hostile repository could abort the repo-server or keep a
//! CPU thread busy forever. In a child process, the same program only kills the child: the
//! [`ToolRunner`] applies its timeout, output limit and concurrency limit, kills the child on
//! cancellation, and the request fails with a clear error while the server goes on.
//!
//! The protocol is private to Capstan: the parent writes a [`ChildRequest`] as JSON to a file
//! and runs `PROGRAM [ARGS…] REQUEST_FILE`; the child ([`child_main`], behind the
//! `capstan-jsonnet` binary and the hidden `capstand jsonnet-eval`) evaluates every listed file
//! on a thread with a large stack and prints a [`ChildResponse`] as JSON on stdout.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use capstan_model::JsonnetOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RenderError;
use super::jsonnet::Evaluator;
use super::process::{Invocation, ToolRunner};

/// How to start the child: a program and the arguments before the request file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonnetChild {
    /// The program (`capstan-jsonnet`, or `capstand`).
    pub program: PathBuf,
    /// Arguments before the request file (`["jsonnet-eval"]` for `capstand`).
    pub args: Vec<String>,
}

/// What the parent asks the child.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The checkout's root.
    pub root: PathBuf,
    /// The source path inside it.
    pub source_path: String,
    /// The source's Jsonnet options.
    pub options: JsonnetOptions,
    /// The build environment.
    pub env: Vec<(String, String)>,
    /// Files to evaluate, repository-relative, in order.
    pub files: Vec<String>,
}

/// The result for one file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileResult {
    /// Its manifests.
    Manifests(Vec<Value>),
    /// Why it failed.
    Error {
        /// 1-based line, when known.
        line: Option<usize>,
        /// The message.
        message: String,
    },
}

/// What the child answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildResponse {
    /// One result per requested file, keyed by its path.
    pub results: HashMap<String, FileResult>,
    /// An error that concerns no single file (a bad library path).
    pub error: Option<String>,
}

/// Stack of the child's evaluation thread. Only touched pages cost memory; a program that
/// still overflows it kills the child, not the repo-server.
const CHILD_STACK_BYTES: usize = 256 << 20;

/// Evaluates `files` of the checkout at `root` in a child process; the results are keyed by
/// repository-relative path.
pub async fn evaluate_in_child(
    runner: &ToolRunner,
    child: &JsonnetChild,
    root: &Path,
    source_path: &str,
    options: &JsonnetOptions,
    env: &[(String, String)],
    files: Vec<String>,
) -> Result<HashMap<String, FileResult>, RenderError> {
    let request = ChildRequest {
        root: root.to_owned(),
        source_path: source_path.to_owned(),
        options: options.clone(),
        env: env.to_vec(),
        files,
    };
    let parent = root.parent().unwrap_or(root);
    let file = tempfile::Builder::new()
        .prefix("jsonnet-request-")
        .suffix(".json")
        .tempfile_in(parent)
        .map_err(RenderError::io("creating a Jsonnet request file"))?;
    let body = serde_json::to_vec(&request)
        .map_err(|e| RenderError::io("encoding a Jsonnet request")(std::io::Error::other(e)))?;
    std::fs::write(file.path(), body).map_err(RenderError::io("writing a Jsonnet request"))?;
    let mut args: Vec<OsString> = child.args.iter().map(OsString::from).collect();
    args.push(file.path().into());
    let out = runner
        .run(Invocation {
            tool: "jsonnet",
            program: &child.program,
            command: "evaluate",
            args,
            cwd: root,
            env: Vec::new(),
        })
        .await
        .map_err(|e| match e {
            RenderError::ToolFailed { status, stderr, .. } => RenderError::Jsonnet {
                file: source_path.to_owned(),
                line: None,
                message: format!(
                    "the evaluation crashed ({status}), most likely by recursing too deeply (for example a long chain of values defined from each other); {}",
                    stderr.lines().last().unwrap_or_default()
                ),
            },
            other => other,
        })?;
    let response: ChildResponse =
        serde_json::from_slice(&out).map_err(|e| RenderError::Jsonnet {
            file: source_path.to_owned(),
            line: None,
            message: format!("the evaluator's answer is unreadable: {e}"),
        })?;
    if let Some(error) = response.error {
        return Err(RenderError::Jsonnet {
            file: source_path.to_owned(),
            line: None,
            message: error,
        });
    }
    Ok(response.results)
}

/// The child's side: reads the request file named by the last argument, evaluates, prints the
/// response. Returns the process exit code.
pub fn child_main(request_file: &Path) -> i32 {
    let request: ChildRequest = match std::fs::read(request_file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "capstan jsonnet: cannot read the request {}: {e}",
                request_file.display()
            );
            return 2;
        }
    };
    let worker = std::thread::Builder::new()
        .name("jsonnet".to_owned())
        .stack_size(CHILD_STACK_BYTES)
        .spawn(move || respond(&request));
    let response = match worker.map(|h| h.join()) {
        Ok(Ok(response)) => response,
        _ => {
            eprintln!("capstan jsonnet: the evaluation failed unexpectedly");
            return 3;
        }
    };
    match serde_json::to_string(&response) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("capstan jsonnet: cannot encode the answer: {e}");
            4
        }
    }
}

fn respond(request: &ChildRequest) -> ChildResponse {
    let evaluator = match Evaluator::new(
        &request.root,
        &request.source_path,
        &request.options,
        &request.env,
    ) {
        Ok(e) => e,
        Err(e) => {
            return ChildResponse {
                results: HashMap::new(),
                error: Some(e.to_string()),
            };
        }
    };
    let mut results = HashMap::new();
    for file in &request.files {
        let result = match evaluator.evaluate(file) {
            Ok(manifests) => FileResult::Manifests(manifests),
            Err(RenderError::Jsonnet { line, message, .. }) => FileResult::Error { line, message },
            Err(other) => FileResult::Error {
                line: None,
                message: other.to_string(),
            },
        };
        let failed = matches!(result, FileResult::Error { .. });
        results.insert(file.clone(), result);
        // The directory render stops at the first failing file; later ones need no work.
        if failed {
            break;
        }
    }
    ChildResponse {
        results,
        error: None,
    }
}
