//! `jqPathExpressions`: the fields a jq path expression selects are ignored.
//!
//! Each expression is compiled once (with jaq, a jq implementation in Rust) as `path(EXPR)`,
//! kept compiled, and run on each side; the concrete paths it yields are removed by
//! the `paths` module — the same effect as Argo CD's `del(EXPR)`.
//!
//! Bounds, because an expression is user input evaluated inside the controller:
//! - the library has no fuel or cancellation, so each evaluation runs on its own thread and
//!   the caller waits at most [`TIMEOUT`]. A thread that overran is left to finish (it cannot
//!   be stopped); while it runs, its expression is refused at once, and when
//!   [`MAX_RUNAWAY`] are running nothing new is started. That caps the CPU a bad expression
//!   can hold to a few threads instead of one per comparison;
//! - local definitions (`def`) and the generators that can run without end (`repeat`,
//!   `while`, `until`, `range`, `recurse(f)`) are refused: path expressions never need them,
//!   unbounded recursion could exhaust the thread's stack (which aborts the process) and an
//!   endless stream collected into an array would grow memory until the process fails.
//!   Without them an expression ends, bounded by the object's size; what stays unbounded is
//!   the memory of a single huge value (`"x" * 1e12`), which no check here can see;
//! - at most [`MAX_PATHS`] paths per side;
//! - `env`, `$ENV`, `input` and `now` are not compiled in, so an expression sees nothing but
//!   the object (the controller's environment may hold secrets).
//!
//! A run-time error on one side (`.spec.initContainers[]` where there are none is "cannot
//! iterate over null") selects nothing on that side, as in Argo CD; syntax errors and unknown
//! functions are errors naming the expression.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use jaq_core::load::{Arena, File, Loader, lex};
use jaq_core::{Ctx, Vars, data::JustLut, unwrap_valr};
use jaq_json::{Num, Val};
use serde_json::Value;

use super::DiffError;
use super::paths::{Path, Seg};

/// How long one expression may run on both sides of one comparison.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// How many paths one expression may select on one side.
pub const MAX_PATHS: usize = 10_000;
/// How many overrunning evaluations may still be running before new ones are refused.
pub const MAX_RUNAWAY: usize = 4;
/// Stack of an evaluation thread: deep objects recurse in the interpreter.
const STACK: usize = 8 * 1024 * 1024;

/// Expressions whose evaluation overran [`TIMEOUT`] and is still running.
static RUNAWAY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

type Filter = jaq_core::Filter<JustLut<Val>>;

/// Builtins an expression may not call.
const HIDDEN: [&str; 2] = ["env", "now"];

/// The paths `expression` selects in each of `sides` (in order; `None` selects nothing).
pub(crate) fn select(
    expression: &str,
    sides: [Option<&Value>; 2],
) -> Result<[Vec<Path>; 2], DiffError> {
    {
        let running = RUNAWAY.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains(expression) {
            return Err(DiffError::JqTimeout {
                expression: expression.to_owned(),
                timeout: TIMEOUT,
            });
        }
        if running.len() >= MAX_RUNAWAY {
            return Err(DiffError::JqBusy {
                running: running.len(),
            });
        }
    }
    let owned: [Option<Value>; 2] = sides.map(|s| s.cloned());
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(1);
    let finished = Finished {
        expression: expression.to_owned(),
        done: Arc::clone(&done),
    };
    std::thread::Builder::new()
        .name("capstan-jq".to_owned())
        .stack_size(STACK)
        .spawn(move || {
            let result = evaluate(&finished.expression, owned);
            // The receiver is gone when the caller timed out; nothing to tell then.
            let _ = tx.send(result);
            drop(finished);
        })
        .map_err(DiffError::JqThread)?;
    match rx.recv_timeout(TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(DiffError::JqFailed {
            expression: expression.to_owned(),
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let mut running = RUNAWAY.lock().unwrap_or_else(PoisonError::into_inner);
            // Checked under the lock the thread takes after setting `done`: an entry is only
            // added while the thread has yet to remove it.
            if !done.load(Ordering::SeqCst) {
                running.insert(expression.to_owned());
            }
            tracing::warn!(expression, "jq path expression overran its time limit");
            Err(DiffError::JqTimeout {
                expression: expression.to_owned(),
                timeout: TIMEOUT,
            })
        }
    }
}

/// Marks an evaluation finished when its thread ends, normally or by a panic: the expression
/// leaves [`RUNAWAY`] if its caller had given up on it.
struct Finished {
    expression: String,
    done: Arc<AtomicBool>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        RUNAWAY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.expression);
    }
}

/// Checks that `expression` compiles, without running it (for validating settings early).
pub fn check(expression: &str) -> Result<(), DiffError> {
    compiled(expression).map(drop)
}

/// Compiled filters by expression: compiling (mostly the standard library's definitions)
/// costs milliseconds, running a path expression on one object microseconds.
static COMPILED: Mutex<BTreeMap<String, Arc<Filter>>> = Mutex::new(BTreeMap::new());
/// Distinct expressions kept compiled; past that the cache starts over (settings name a
/// handful, so this only bounds memory against churn).
const MAX_COMPILED: usize = 512;

fn compiled(expression: &str) -> Result<Arc<Filter>, DiffError> {
    if let Some(f) = COMPILED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(expression)
    {
        return Ok(Arc::clone(f));
    }
    let filter = Arc::new(compile(expression)?);
    let mut cache = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= MAX_COMPILED {
        cache.clear();
    }
    cache.insert(expression.to_owned(), Arc::clone(&filter));
    Ok(filter)
}

fn evaluate(expression: &str, sides: [Option<Value>; 2]) -> Result<[Vec<Path>; 2], DiffError> {
    let filter = compiled(expression)?;
    let mut out: [Vec<Path>; 2] = Default::default();
    for (side, paths) in sides.into_iter().zip(out.iter_mut()) {
        if let Some(v) = side {
            *paths = run(&filter, expression, to_val(&v))?;
        }
    }
    Ok(out)
}

fn run(filter: &Filter, expression: &str, input: Val) -> Result<Vec<Path>, DiffError> {
    let ctx = Ctx::<JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut paths = Vec::new();
    for item in filter.id.run((ctx, input)).map(unwrap_valr) {
        let Ok(path) = item else {
            // As `del(EXPR)` failing in Argo CD: nothing is ignored on this side, not even
            // what was selected before the error.
            tracing::debug!(expression, "jq path expression failed on an object");
            return Ok(Vec::new());
        };
        if paths.len() == MAX_PATHS {
            return Err(DiffError::JqTooManyPaths {
                expression: expression.to_owned(),
                max: MAX_PATHS,
            });
        }
        if let Some(p) = to_path(&path) {
            paths.push(p);
        }
    }
    Ok(paths)
}

/// A path as `path(...)` yields it, when it names a field: strings and non-negative integers.
/// Slices (`.[1:3]`) and negative indices name nothing a field can be removed at and are
/// skipped.
fn to_path(v: &Val) -> Option<Path> {
    let Val::Arr(parts) = v else { return None };
    parts
        .iter()
        .map(|p| match p {
            Val::TStr(s) => Some(Seg::Key(String::from_utf8_lossy(s).into_owned())),
            Val::Num(n) => n
                .as_isize()
                .and_then(|i| usize::try_from(i).ok())
                .map(Seg::Index),
            _ => None,
        })
        .collect()
}

fn to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Val::from(s.clone()),
        Value::Array(a) => a.iter().map(to_val).collect(),
        Value::Object(m) => Val::obj(
            m.iter()
                .map(|(k, v)| (Val::from(k.clone()), to_val(v)))
                .collect(),
        ),
    }
}

fn compile(expression: &str) -> Result<Filter, DiffError> {
    let syntax = |problem: String| DiffError::JqSyntax {
        expression: expression.to_owned(),
        problem,
    };
    // Parse the expression alone first, so positions in errors are the user's.
    let tokens = lex::Lexer::new(expression)
        .lex()
        .map_err(|errs| syntax(describe_lex(expression, &errs)))?;
    if let Some(reason) = refused(&tokens) {
        return Err(DiffError::JqUnsupported {
            expression: expression.to_owned(),
            reason,
        });
    }
    if jaq_core::load::parse(expression, |p| p.term()).is_none() {
        let program = File {
            code: expression,
            path: (),
        };
        let arena = Arena::default();
        let problem = match Loader::new(defs()).load(&arena, program) {
            Err(errs) => describe_load(expression, errs.into_iter().map(|(_, e)| e)),
            Ok(_) => "not a single jq expression".to_owned(),
        };
        return Err(syntax(problem));
    }
    // The expression is one complete term, so wrapping it cannot change how it parses.
    let code = format!("path({expression})");
    let arena = Arena::default();
    let program = File {
        code: code.as_str(),
        path: (),
    };
    let modules = Loader::new(defs())
        .load(&arena, program)
        .map_err(|errs| syntax(describe_load(&code, errs.into_iter().map(|(_, e)| e))))?;
    jaq_core::Compiler::default()
        .with_funs(
            jaq_core::funs()
                // Nothing outside the object: the controller's environment may hold
                // secrets, and the time would make results differ run to run.
                .chain(jaq_std::funs().filter(|(name, _, _)| !HIDDEN.contains(name)))
                .chain(jaq_json::funs()),
        )
        .compile(modules)
        .map_err(|errs| {
            let undefined: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, es)| es)
                .map(|(name, what)| match what {
                    jaq_core::compile::Undefined::Filter(arity) => {
                        format!("undefined filter {name}/{arity}")
                    }
                    other => format!("undefined {} {name}", other.as_str()),
                })
                .collect();
            syntax(undefined.join(", "))
        })
}

fn defs() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
}

/// Generators that can yield without end (`recurse` only with an argument: bare `recurse`
/// is `..`, bounded by the object).
const ENDLESS: [&str; 4] = ["repeat", "while", "until", "range"];

/// Why `tokens` are refused, if they are: a local definition, or an endless generator.
fn refused(tokens: &[lex::Token<&str>]) -> Option<&'static str> {
    tokens.iter().enumerate().find_map(|(i, lex::Token(s, tok))| match tok {
        lex::Tok::Word if *s == "def" => {
            Some("local definitions (def) are not allowed in path expressions")
        }
        lex::Tok::Word
            if ENDLESS.contains(s)
                || (*s == "recurse"
                    && matches!(tokens.get(i + 1), Some(lex::Token(b, lex::Tok::Block(_))) if b.starts_with('('))) =>
        {
            Some(
                "generators that can run without end (repeat, while, until, range, recurse(f)) are not allowed in path expressions",
            )
        }
        lex::Tok::Block(inner) => refused(inner),
        lex::Tok::Str(parts) => parts.iter().find_map(|p| match p {
            lex::StrPart::Term(t) => refused(std::slice::from_ref(t)),
            _ => None,
        }),
        _ => None,
    })
}

/// The 1-based column of `part` inside `whole` (both from the same string).
fn column(whole: &str, part: &str) -> usize {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    whole
        .get(..start.min(whole.len()))
        .map_or(1, |s| s.chars().count() + 1)
}

fn describe_lex(code: &str, errs: &[lex::Error<&str>]) -> String {
    errs.iter()
        .map(|(expected, rest)| {
            let what = match expected {
                lex::Expect::Delim(d) => match *d {
                    "(" => "closing parenthesis",
                    "[" => "closing bracket",
                    "{" => "closing brace",
                    _ => "closing quote",
                },
                other => other.as_str(),
            };
            format!("expected {what} at column {}", column(code, rest))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_load<'a>(
    code: &str,
    errs: impl Iterator<Item = jaq_core::load::Error<&'a str>>,
) -> String {
    errs.map(|e| match e {
        jaq_core::load::Error::Io(io) => io
            .into_iter()
            .map(|(path, msg)| format!("cannot load module {path}: {msg}"))
            .collect::<Vec<_>>()
            .join("; "),
        jaq_core::load::Error::Lex(lexed) => describe_lex(code, &lexed),
        jaq_core::load::Error::Parse(parsed) => parsed
            .iter()
            .map(|(expected, found)| {
                if found.is_empty() {
                    format!("expected {} at the end", expected.as_str())
                } else {
                    format!(
                        "expected {}, found {found:?} at column {}",
                        expected.as_str(),
                        column(code, found)
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
    .collect::<Vec<_>>()
    .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::diff::paths::{remove_paths, to_pointer};

    fn pointers(expr: &str, v: &Value) -> Vec<String> {
        let [paths, _] = select(expr, [Some(v), None]).expect("evaluates");
        paths.iter().map(|p| to_pointer(p)).collect()
    }

    fn pod() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"foo": "1", "bar": "2"}},
            "spec": {"template": {"spec": {
                "initContainers": [
                    {"name": "setup", "image": "busybox"},
                    {"name": "istio-init", "image": "istio/proxyv2"}
                ],
                "containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    #[test]
    fn selects_list_items_and_quoted_keys() {
        let v = pod();
        assert_eq!(
            pointers(
                r#".spec.template.spec.initContainers[] | select(.name == "istio-init")"#,
                &v
            ),
            vec!["/spec/template/spec/initContainers/1"]
        );
        assert_eq!(
            pointers(r#".metadata.annotations."foo""#, &v),
            vec!["/metadata/annotations/foo"]
        );
        assert_eq!(
            pointers(
                r#".spec.template.spec.containers[] | select(.name | startswith("we")) | .image"#,
                &v
            ),
            vec!["/spec/template/spec/containers/0/image"]
        );
        assert_eq!(
            pointers(
                r#".metadata.annotations | .[] | select(test("^[12]$"))"#,
                &v
            ),
            vec!["/metadata/annotations/foo", "/metadata/annotations/bar"]
        );
        // Deleting what was selected leaves the rest.
        let mut pruned = v.clone();
        let [paths, _] = select(
            r#".spec.template.spec.initContainers[] | select(.name == "istio-init")"#,
            [Some(&v), None],
        )
        .expect("evaluates");
        remove_paths(&mut pruned, paths);
        assert_eq!(
            pruned["spec"]["template"]["spec"]["initContainers"],
            json!([{"name": "setup", "image": "busybox"}])
        );
    }

    #[test]
    fn a_run_time_error_selects_nothing() {
        let v = json!({"spec": {}});
        assert!(pointers(".spec.initContainers[] | select(.name == \"x\")", &v).is_empty());
        assert_eq!(pointers(".spec.missing", &v), vec!["/spec/missing"]);
    }

    #[test]
    fn syntax_errors_name_the_expression_and_the_problem() {
        for (expr, needle) in [
            (".spec.template[", "closing bracket"),
            (".a | | .b", "expected term"),
            (".a | nosuchfn", "undefined filter nosuchfn/0"),
            ("def f: f; f", "local definitions"),
            (".a | [.[] | def g: .; g]", "local definitions"),
            (".a) | (.b", "expected"),
        ] {
            let err = select(expr, [Some(&json!({})), None]).expect_err(expr);
            let msg = err.to_string();
            assert!(msg.contains(expr), "{msg}");
            assert!(msg.contains(needle), "{expr}: {msg}");
        }
    }

    #[test]
    fn no_environment_access() {
        for expr in ["env | .HOME", "$ENV | .HOME", "now", "input"] {
            let err = select(expr, [Some(&json!({})), None]).expect_err(expr);
            assert!(err.to_string().contains("undefined"), "{expr}: {err}");
        }
    }

    #[test]
    fn endless_generators_are_refused_and_output_is_bounded() {
        for expr in [
            "recurse(.)",
            "select([repeat(.)] | false)",
            ".a | until(false; .)",
            "select(last(range(1e18)) < 0)",
            r#""\(while(true; .))""#,
        ] {
            let err = select(expr, [Some(&json!({})), None]).expect_err(expr);
            assert!(
                matches!(err, DiffError::JqUnsupported { .. }),
                "{expr}: {err}"
            );
        }
        // `..` (bare `recurse`) is bounded by the object and allowed.
        let big = json!({"items": (0..MAX_PATHS).collect::<Vec<_>>()});
        assert_eq!(
            pointers(".items | ..", &json!({"items": [1, [2]]})).len(),
            4
        );
        let err = select(".items | ..", [Some(&big), None]).expect_err("too many");
        assert!(matches!(err, DiffError::JqTooManyPaths { .. }), "{err}");
    }

    #[test]
    fn a_runaway_expression_times_out_and_is_refused_while_it_runs() {
        // Quadratic work over a big list: seconds in a debug build, long past the limit, yet
        // it ends, so the test leaves no thread spinning for good.
        let big = json!({"a": (0..6000).collect::<Vec<_>>()});
        let expr = "select([.a[] as $x | .a[] | select(. == $x)] | length < 0)";
        let err = select(expr, [Some(&big), None]).expect_err("runs away");
        assert!(matches!(err, DiffError::JqTimeout { .. }), "{err}");
        let started = std::time::Instant::now();
        let again = select(expr, [Some(&big), None]).expect_err("still running");
        assert!(matches!(again, DiffError::JqTimeout { .. }), "{again}");
        assert!(started.elapsed() < TIMEOUT, "refused at once");
    }
}
