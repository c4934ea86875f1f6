//! Jsonnet files of a directory source, evaluated in process with jrsonnet.
//!
//! [`Evaluator`] evaluates one `.jsonnet` file of a [checkout](crate::checkout) the way Argo CD
//! does, and returns its manifests for [`super::directory::render_with`]:
//! - `extVars` and `tlas` are strings, or Jsonnet code when `code: true`; their values first get
//!   the build environment substituted ([`super::env::envsubst`], e.g. `${ARGOCD_APP_NAME}`);
//! - `import`, `importstr` and `importbin` resolve relative to the importing file, then in the
//!   `libs` directories (relative to the repository root, the last listed first, as go-jsonnet
//!   searches its `-J` paths), then in the source directory (Argo CD's first library path);
//!   imports in extVar/TLA code skip the first step;
//! - the output must be an object (one manifest) or an array of objects (one manifest each).
//!
//! What keeps a hostile repository from reaching outside it or taking the process down:
//! - **imports stay in the repository**: an absolute import, or one whose path climbs out of the
//!   repository root, is refused with an error naming the file, line and import (the import
//!   resolver is ours; jrsonnet's file resolver accepts any path). Checkouts hold no symlinks,
//!   so the lexical check is sound;
//! - **recursion is bounded**: jrsonnet's call depth is limited to [`MAX_STACK`] frames
//!   (go-jsonnet's default, which Argo CD uses), and deeper recursion is an error;
//! - **source nesting is bounded**: jrsonnet's parser and static analysis recurse over the
//!   syntax tree on the native stack without a limit, so a file nested a few thousand levels
//!   deep (`{a:{a:…`, `[[[[…`, `-----1`, a long chain of `local`s) overflows a 16 MiB stack and
//!   aborts the process. Before jrsonnet parses any code — the file, each file it `import`s
//!   (not `importstr`/`importbin`, which are not parsed), extVar and TLA code — a lexical scan
//!   ([`check_nesting`]) bounds how deep its syntax tree can be and refuses code deeper than
//!   [`MAX_NESTING`];
//! - jrsonnet panics (it has some, e.g. on more than 65 535 locals in one scope) become errors
//!   instead of aborting the CPU pool;
//! - jrsonnet's reference cycles are collected after every evaluation, so a long-lived worker
//!   thread does not accumulate them.
//!
//! Not bounded (jrsonnet 0.5.0-pre98 offers no hook for any of them):
//! - **time and memory**: there is no way to interrupt an evaluation (no fuel, deadline or
//!   cancellation), so a long-running program keeps its worker thread busy until it finishes,
//!   even after the request has timed out;
//! - **lazy chains**: forcing a chain of lazy values that refer to each other (array elements,
//!   object fields or locals defined from the previous one) recurses natively once per link,
//!   outside jrsonnet's call-depth limit and its stack growth. A short program can build a chain
//!   of any length (`local a = [if i == 0 then 0 else a[i - 1] + 1 for i in
//!   std.range(0, 100000)]; a[100000]`), and a few thousand links overflow a 16 MiB stack and
//!   abort the process. [`super::jsonnet_child`] evaluates in a child process, which contains
//!   both; the repo-server binary always uses it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use capstan_model::JsonnetOptions;
use jrsonnet_evaluator::error::{Error as JrError, ErrorKind as JrErrorKind};
use jrsonnet_evaluator::function::CallLocation;
use jrsonnet_evaluator::manifest::JsonFormat;
use jrsonnet_evaluator::tla::TlaArg;
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{AsPathLike, IStr, ResolvePath, SourcePath, State};
use jrsonnet_gcmodule::Acyclic;
use jrsonnet_ir::{SourceFifo, SourceFile};
use jrsonnet_lexer::{Lexer, SyntaxKind};
use serde_json::Value;

use super::RenderError;
use super::env::envsubst;

/// Most nested Jsonnet calls (go-jsonnet's default `--max-stack`, which Argo CD runs with).
pub const MAX_STACK: usize = 500;

/// Deepest syntax tree a Jsonnet file or snippet may have, as estimated by a lexical scan.
///
/// jrsonnet parses and analyses the tree recursively on the native stack. Measured in a debug
/// build, the worst construct (nested objects, `{a: {a: …`) needs about 7 KiB per level and
/// overflows a 16 MiB stack (the repo-server's CPU-pool threads) at about 2 300 levels; at this
/// limit it needs about 7 MiB, which still fits at the bottom of the deepest allowed recursion
/// (see the tests). Real configurations stay far below it.
pub const MAX_NESTING: usize = 1000;

/// Most trace frames quoted in an error message.
const MAX_FRAMES: usize = 8;

/// Evaluates the Jsonnet files of one source against a checkout; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Evaluator {
    root: PathBuf,
    /// Directories searched after the importing file's, in order, repository-relative.
    search: Vec<String>,
    ext_vars: Vec<Var>,
    tlas: Vec<Var>,
}

#[derive(Clone, Debug)]
struct Var {
    name: String,
    value: String,
    code: bool,
}

impl Evaluator {
    /// An evaluator for the source at `source_path` of the checkout at `root`, with the
    /// source's Jsonnet options and the build environment `env` (substituted into the
    /// variables' values).
    ///
    /// Fails when a library path leaves the repository. A leading `/` in a library path means
    /// the repository root, as in Argo CD.
    pub fn new(
        root: &Path,
        source_path: &str,
        options: &JsonnetOptions,
        env: &[(String, String)],
    ) -> Result<Self, RenderError> {
        let source_dir = crate::tree::validate_path(source_path)?.join("/");
        let mut libs = Vec::with_capacity(options.libs.len());
        for (i, lib) in options.libs.iter().enumerate() {
            let dir =
                join("", lib.trim_start_matches('/')).ok_or_else(|| RenderError::PathRefused {
                    field: format!("spec.source.directory.jsonnet.libs[{i}]"),
                    path: lib.clone(),
                    reason: "it leaves the repository",
                })?;
            libs.push(dir);
        }
        let mut search: Vec<String> = libs.into_iter().rev().collect();
        search.push(source_dir);
        let vars = |vars: &[capstan_model::JsonnetVar]| {
            vars.iter()
                .map(|v| Var {
                    name: v.name.clone(),
                    value: envsubst(&v.value, env),
                    code: v.code,
                })
                .collect()
        };
        Ok(Self {
            root: root.to_owned(),
            search,
            ext_vars: vars(&options.ext_vars),
            tlas: vars(&options.tlas),
        })
    }

    /// Evaluates the file at `repo_path` (relative to the repository root) and returns its
    /// manifests: the object it evaluates to, or the objects of the array it evaluates to.
    ///
    /// Errors name the file (repository-relative), the line when jrsonnet knows it, and the
    /// innermost frames of the Jsonnet stack trace.
    pub fn evaluate(&self, repo_path: &str) -> Result<Vec<Value>, RenderError> {
        let fail = |line: Option<usize>, message: String| RenderError::Jsonnet {
            file: repo_path.to_owned(),
            line,
            message,
        };
        let text = {
            // jrsonnet panics on some inputs (more than 65 535 locals in one scope); a panic on
            // the CPU pool would abort the process.
            let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.evaluate_to_json(repo_path)
                    .map_err(|e| (line_in(&e, repo_path), describe(&e)))
            }));
            // The evaluation's values, closures and the standard library reference each other
            // through jrsonnet's cycle-collected pointers; everything is dropped by now.
            jrsonnet_gcmodule::collect_thread_cycles();
            match evaluated {
                Ok(Ok(text)) => text,
                Ok(Err((line, message))) => {
                    // Our own messages about the file itself start with `file:line: `.
                    let own = message
                        .strip_prefix(repo_path)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .and_then(|rest| rest.split_once(": "))
                        .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest)));
                    return Err(match (line, own) {
                        (None, Some((n, rest))) => fail(Some(n), rest.to_owned()),
                        _ => fail(line, message),
                    });
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    return Err(fail(
                        None,
                        format!("the Jsonnet evaluator failed ({what}); simplify the file"),
                    ));
                }
            }
        };
        let output: Value = serde_json::from_str(&text).map_err(|e| {
            fail(
                None,
                format!("the output cannot be read back as JSON ({e}); nest it less deeply"),
            )
        })?;
        match output {
            Value::Object(_) => Ok(vec![output]),
            Value::Array(items) => {
                if let Some((i, item)) = items.iter().enumerate().find(|(_, v)| !v.is_object()) {
                    return Err(fail(
                        None,
                        format!(
                            "element {i} of the output array is {}; a .jsonnet file must evaluate to an object or an array of objects",
                            describe_json(item)
                        ),
                    ));
                }
                Ok(items)
            }
            other => Err(fail(
                None,
                format!(
                    "the output is {}; a .jsonnet file must evaluate to an object or an array of objects",
                    describe_json(&other)
                ),
            )),
        }
    }

    /// Runs jrsonnet: file, TLAs, manifest as minified JSON.
    fn evaluate_to_json(&self, repo_path: &str) -> Result<String, JrError> {
        let _depth = jrsonnet_evaluator::stack::limit_stack_depth(MAX_STACK);
        let std = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
        std.settings_mut().trace_printer = Rc::new(LogTrace);
        for var in &self.ext_vars {
            if var.code {
                std.add_ext_code(&var.name, &var.value)?;
            } else {
                std.add_ext_str(var.name.as_str().into(), var.value.as_str().into());
            }
        }
        let imports = RepoImports::new(self.root.clone(), self.search.clone());
        imports.check_file(repo_path, None)?;
        let mut builder = State::builder();
        builder.import_resolver(imports).context_initializer(std);
        let state = builder.build();
        let Some(_entered) = state.try_enter() else {
            return Err(jr_error(
                "internal error: a Jsonnet evaluation is already running on this thread".into(),
            ));
        };
        #[allow(
            clippy::mutable_key_type,
            reason = "jrsonnet's TLA map is keyed by its interned strings"
        )]
        let tlas: HashMap<IStr, TlaArg> = self
            .tlas
            .iter()
            .map(|v| {
                let arg = if v.code {
                    TlaArg::InlineCode(v.value.clone())
                } else {
                    TlaArg::String(v.value.as_str().into())
                };
                (v.name.as_str().into(), arg)
            })
            .collect();
        let main = SourcePath::new(SourceFile::new(PathBuf::from(repo_path)));
        let value = state.import_resolved(main)?;
        let value = jrsonnet_evaluator::apply_tla(&tlas, value)?;
        value.manifest(JsonFormat::minify())
    }
}

/// `std.trace` output goes to the repo-server's debug log, not its standard error.
#[derive(Acyclic)]
#[allow(
    unsafe_code,
    reason = "derive(Acyclic) emits `unsafe impl`; a unit struct holds no cycles"
)]
struct LogTrace;

impl jrsonnet_stdlib::TracePrinter for LogTrace {
    fn print_trace(&self, loc: CallLocation<'_>, value: IStr) {
        let at = loc.0.map(|span| {
            let [start] = span.0.map_source_locations(&[span.1]);
            format!("{}:{}", source_name(span.0.source_path()), start.line)
        });
        let text: String = value.chars().take(1000).collect();
        tracing::debug!(at = at.as_deref().unwrap_or("?"), message = %text, "jsonnet std.trace");
    }
}

/// Resolves and loads imports inside the repository only.
#[derive(Acyclic)]
#[allow(
    unsafe_code,
    reason = "derive(Acyclic) emits `unsafe impl`; a path and strings hold no cycles"
)]
struct RepoImports {
    root: PathBuf,
    search: Vec<String>,
    /// Per importing file, the paths it imports as code (`import`, not `importstr`/`importbin`).
    code_imports: RefCell<HashMap<String, HashSet<String>>>,
    /// Files whose nesting was checked and found acceptable.
    checked: RefCell<HashSet<String>>,
}

impl RepoImports {
    fn new(root: PathBuf, search: Vec<String>) -> Self {
        Self {
            root,
            search,
            code_imports: RefCell::default(),
            checked: RefCell::default(),
        }
    }

    /// Checks that the file at `path` (repository-relative) is not nested too deeply to parse;
    /// jrsonnet reads only files that passed ([`Evaluator`] checks the main file, the resolver
    /// every file imported as code).
    fn check_file(&self, path: &str, imported_by: Option<&str>) -> jrsonnet_evaluator::Result<()> {
        if self.checked.borrow().contains(path) {
            return Ok(());
        }
        // Unreadable or non-UTF-8 files are left for jrsonnet to report when it loads them.
        if let Ok(code) = std::fs::read_to_string(self.root.join(path)) {
            check_code(path, &code, imported_by)?;
        }
        self.checked.borrow_mut().insert(path.to_owned());
        Ok(())
    }

    /// Whether the file `importer` imports `path` as code.
    fn imports_as_code(&self, importer: &str, path: &str) -> bool {
        if let Some(paths) = self.code_imports.borrow().get(importer) {
            return paths.contains(path);
        }
        let paths = std::fs::read_to_string(self.root.join(importer))
            .map(|code| code_imports(&code))
            .unwrap_or_default();
        let found = paths.contains(path);
        self.code_imports
            .borrow_mut()
            .insert(importer.to_owned(), paths);
        found
    }
}

/// Refuses `code` (named `name`) when it nests deeper than [`MAX_NESTING`].
fn check_code(name: &str, code: &str, imported_by: Option<&str>) -> jrsonnet_evaluator::Result<()> {
    match check_nesting(code, MAX_NESTING) {
        Ok(()) => Ok(()),
        Err(line) => Err(jr_error(format!(
            "{name}:{line}: the code nests more than {MAX_NESTING} levels deep (brackets, operators, locals, conditionals and calls){}; the repo-server refuses it to protect its stack, so split it into functions or files",
            imported_by.map_or_else(String::new, |by| format!(" (imported by {by})"))
        ))),
    }
}

/// The paths `code` imports with `import` (which jrsonnet parses as Jsonnet), as opposed to
/// `importstr` and `importbin` (which it reads as text or bytes).
fn code_imports(code: &str) -> HashSet<String> {
    use SyntaxKind::*;
    let mut out = HashSet::new();
    let mut after_import = false;
    for lexeme in Lexer::new(code) {
        match lexeme.kind {
            WHITESPACE
            | SINGLE_LINE_SLASH_COMMENT
            | SINGLE_LINE_HASH_COMMENT
            | MULTI_LINE_COMMENT => continue,
            // `import ('x')` is `import 'x'`.
            L_PAREN if after_import => continue,
            IMPORT_KW => {
                after_import = true;
                continue;
            }
            kind if after_import => {
                if let Some(path) = string_literal(kind, lexeme.text) {
                    out.insert(path);
                }
            }
            _ => {}
        }
        after_import = false;
    }
    out
}

/// The value of a string literal token, decoded as jrsonnet's parser does.
fn string_literal(kind: SyntaxKind, text: &str) -> Option<String> {
    use SyntaxKind::*;
    let inner = |skip: usize| text.get(skip..text.len().checked_sub(1)?);
    match kind {
        STRING_DOUBLE | STRING_SINGLE => jrsonnet_ir::unescape::unescape(inner(1)?),
        STRING_DOUBLE_VERBATIM => Some(inner(2)?.replace("\"\"", "\"")),
        STRING_SINGLE_VERBATIM => Some(inner(2)?.replace("''", "'")),
        STRING_BLOCK => {
            let block = jrsonnet_lexer::collect_lexed_str_block(text.get(3..)?).ok()?;
            let mut out = block.lines.join("\n");
            if !block.truncate {
                out.push('\n');
            }
            Some(out)
        }
        _ => None,
    }
}

impl jrsonnet_evaluator::ImportResolver for RepoImports {
    fn resolve_from(
        &self,
        from: &SourcePath,
        path: &dyn AsPathLike,
    ) -> jrsonnet_evaluator::Result<SourcePath> {
        let path = match path.as_path() {
            ResolvePath::Str(s) => s.to_owned(),
            ResolvePath::Path(p) => p.to_string_lossy().into_owned(),
        };
        let importer = from
            .downcast_ref::<SourceFile>()
            .map(|f| f.path().to_string_lossy().into_owned());
        let what = match &importer {
            Some(file) => format!(
                "{}: import {path:?}",
                at_line(&self.root, file, &path).unwrap_or_else(|| file.clone())
            ),
            None => format!("import {path:?} in extVar or TLA code"),
        };
        if path.starts_with('/') {
            return Err(jr_error(format!(
                "{what} is refused: absolute imports are not allowed; import a path relative to the file or to a jsonnet.libs directory"
            )));
        }
        if path.contains(['\0', '\\']) {
            return Err(jr_error(format!(
                "{what} is refused: backslashes and NUL are not allowed in import paths"
            )));
        }
        let mut candidates = Vec::with_capacity(self.search.len() + 1);
        if let Some(file) = &importer {
            let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
            let Some(direct) = join(dir, &path) else {
                return Err(jr_error(format!(
                    "{what} is refused: it resolves outside the repository; import files inside the repository"
                )));
            };
            candidates.push(direct);
        }
        // A library directory from which the path climbs out is just not a match.
        for found in self.search.iter().filter_map(|dir| join(dir, &path)) {
            if !candidates.contains(&found) {
                candidates.push(found);
            }
        }
        for candidate in &candidates {
            if !candidate.is_empty() && self.root.join(candidate).is_file() {
                // What jrsonnet will parse must be checked before it does; extVar/TLA code is
                // checked as a whole, so its imports count as code.
                let as_code = match &importer {
                    Some(file) => self.imports_as_code(file, &path),
                    None => true,
                };
                if as_code {
                    self.check_file(
                        candidate,
                        Some(importer.as_deref().unwrap_or("extVar or TLA code")),
                    )?;
                }
                return Ok(SourcePath::new(SourceFile::new(PathBuf::from(candidate))));
            }
        }
        if candidates.is_empty() {
            return Err(jr_error(format!(
                "{what} is refused: it resolves outside the repository; import files inside the repository"
            )));
        }
        Err(jr_error(format!(
            "{what}: file not found (looked for {}); check the path, or add its directory to spec.source.directory.jsonnet.libs",
            candidates
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> jrsonnet_evaluator::Result<Vec<u8>> {
        if let Some(file) = resolved.downcast_ref::<SourceFile>() {
            // Files reach here only through `resolve_from` or as the main file, both checked.
            let name = file.path().to_string_lossy();
            return std::fs::read(self.root.join(file.path()))
                .map_err(|e| jr_error(format!("reading {name}: {e}")));
        }
        if let Some(SourceFifo(_, data)) = resolved.downcast_ref::<SourceFifo>() {
            // extVar and TLA code, always parsed.
            if let Ok(code) = std::str::from_utf8(data) {
                check_code("extVar or TLA code", code, None)?;
            }
            return Ok(data.to_vec());
        }
        Err(jr_error(format!("cannot load {resolved}")))
    }
}

/// An error with just `message` (jrsonnet prints it as is).
fn jr_error(message: String) -> JrError {
    JrError::new(JrErrorKind::ImportCallbackError(message))
}

/// Joins the relative `path` onto the repository-relative directory `dir` (`""` is the root),
/// resolving `.` and `..`; `None` when the result leaves the repository.
fn join(dir: &str, path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// `file:line` of the first line of `file` that mentions `import`, for errors from the
/// resolver (which jrsonnet gives no location).
fn at_line(root: &Path, file: &str, import: &str) -> Option<String> {
    let text = std::fs::read_to_string(root.join(file)).ok()?;
    let quoted = [format!("\"{import}\""), format!("'{import}'")];
    let line = text
        .lines()
        .position(|l| quoted.iter().any(|q| l.contains(q.as_str())))?;
    Some(format!("{file}:{}", line + 1))
}

/// A conservative bound on the depth of the syntax tree jrsonnet builds for `code`, checked
/// against `max`; `Err` holds the 1-based line where the bound was crossed.
///
/// Every bracket nests; inside one, each operator, `.`, `if`, `function`, `assert`, `error`,
/// `import*` and closed inner bracket may nest the rest of the element one level deeper (a
/// `,` ends the element), and each `local` nests everything after it up to the closing bracket.
/// Strings and comments are single tokens, so their contents do not count. Code that does
/// not lex is left for jrsonnet's parser to report.
pub fn check_nesting(code: &str, max: usize) -> Result<(), usize> {
    #[derive(Default)]
    struct Frame {
        /// Levels that last until the frame closes (`local`s and what came before them).
        kept: usize,
        /// Levels of the current element.
        element: usize,
    }
    let mut outer: Vec<Frame> = Vec::new();
    let mut top = Frame::default();
    let mut depth = 0usize;
    for lexeme in Lexer::new(code) {
        use SyntaxKind::*;
        match lexeme.kind {
            L_PAREN | L_BRACK | L_BRACE => {
                outer.push(std::mem::take(&mut top));
                depth += 1;
            }
            R_PAREN | R_BRACK | R_BRACE => {
                // An unbalanced closer is left for jrsonnet's parser to report.
                let Some(parent) = outer.pop() else { continue };
                depth -= 1 + top.kept + top.element;
                top = parent;
                // The bracketed expression may be the operand of a suffix (call, index).
                top.element += 1;
                depth += 1;
            }
            COMMA => {
                depth -= top.element;
                top.element = 0;
            }
            LOCAL_KW => {
                top.kept += top.element + 1;
                top.element = 0;
                depth += 1;
            }
            OR | NULL_COAELSE | AND | BIT_OR | BIT_XOR | BIT_AND | EQ | NE | LT | GT | LE | GE
            | LHS | RHS | PLUS | MINUS | MUL | DIV | MODULO | NOT | BIT_NOT | DOT | IF_KW
            | FUNCTION_KW | ASSERT_KW | ERROR_KW | IMPORT_KW | IMPORTSTR_KW | IMPORTBIN_KW
            | IN_KW => {
                top.element += 1;
                depth += 1;
            }
            _ => {}
        }
        if depth > max {
            let offset = (lexeme.range.0 as usize).min(code.len());
            let line = code.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            return Err(line + 1);
        }
    }
    Ok(())
}

/// The name of a source in messages: the repository-relative path of a file.
fn source_name(path: &SourcePath) -> String {
    match path.downcast_ref::<SourceFile>() {
        Some(file) => file.path().to_string_lossy().into_owned(),
        None if path.downcast_ref::<SourceFifo>().is_some() => "<extVar or TLA code>".to_owned(),
        None => path.to_string(),
    }
}

/// The 1-based line in `file` nearest to where the error happened, if jrsonnet knows it.
fn line_in(error: &JrError, file: &str) -> Option<usize> {
    let in_file = |span: &jrsonnet_evaluator::Span| {
        span.0
            .source_path()
            .downcast_ref::<SourceFile>()
            .is_some_and(|f| f.path() == Path::new(file))
    };
    if let JrErrorKind::ImportSyntaxError { path, error } = error.error()
        && path
            .source_path()
            .downcast_ref::<SourceFile>()
            .is_some_and(|f| f.path() == Path::new(file))
    {
        let [at] = path.map_source_locations(&[error.location.1]);
        return Some(at.line);
    }
    error
        .trace()
        .0
        .iter()
        .filter_map(|frame| frame.location.as_ref())
        .find(|span| in_file(span))
        .map(|span| {
            let [at] = span.0.map_source_locations(&[span.1]);
            at.line
        })
}

/// jrsonnet's error and the innermost frames of its stack trace, on one line.
fn describe(error: &JrError) -> String {
    let mut out = match error.error() {
        JrErrorKind::StackOverflow => format!(
            "the Jsonnet call stack exceeded {MAX_STACK} frames (the repo-server's limit, as go-jsonnet's default); reduce the recursion depth"
        ),
        JrErrorKind::ImportSyntaxError { path, error } => {
            let [at] = path.map_source_locations(&[error.location.1]);
            format!(
                "syntax error at {}:{}:{}: {}",
                source_name(path.source_path()),
                at.line,
                at.column,
                error.message
            )
        }
        other => other.to_string().replace('\n', " "),
    };
    // Consecutive identical frames (recursion) are shown once, with a count; the frame jrsonnet
    // adds for a syntax error repeats the location already given.
    let mut frames: Vec<(String, usize)> = Vec::new();
    for frame in &error.trace().0 {
        if frame.desc == "parse imported" {
            continue;
        }
        let mut text = String::new();
        if let Some(span) = &frame.location {
            let [at] = span.0.map_source_locations(&[span.1]);
            text = format!(
                "at {}:{}:{}",
                source_name(span.0.source_path()),
                at.line,
                at.column
            );
            if !frame.desc.is_empty() {
                text.push(' ');
            }
        }
        text.push_str(&frame.desc);
        match frames.last_mut() {
            Some((last, n)) if *last == text => *n += 1,
            _ => frames.push((text, 1)),
        }
    }
    for (text, n) in frames.iter().take(MAX_FRAMES) {
        out.push_str("; ");
        out.push_str(text);
        if *n > 1 {
            out.push_str(&format!(" ({n} times)"));
        }
    }
    if frames.len() > MAX_FRAMES {
        out.push_str(&format!("; … {} more frames", frames.len() - MAX_FRAMES));
    }
    out
}

fn describe_json(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::JsonnetVar;

    /// Runs `f` on a thread with the repo-server workers' 16 MiB stack.
    fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(f)
            .expect("spawn a test thread")
            .join()
            .expect("the evaluation thread did not panic")
    }

    struct Repo {
        dir: tempfile::TempDir,
    }

    impl Repo {
        fn new(files: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            for (path, text) in files {
                let path = dir.path().join(path);
                std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
                std::fs::write(path, text).expect("write");
            }
            Self { dir }
        }

        fn eval(&self, file: &str, options: &JsonnetOptions) -> Result<Vec<Value>, RenderError> {
            let env = vec![("ARGOCD_APP_NAME".to_owned(), "guestbook".to_owned())];
            let ev = Evaluator::new(self.dir.path(), "app", options, &env)?;
            let file = file.to_owned();
            on_worker_stack(move || ev.evaluate(&file))
        }
    }

    fn var(name: &str, value: &str, code: bool) -> JsonnetVar {
        JsonnetVar {
            name: name.into(),
            value: value.into(),
            code,
        }
    }

    fn err(r: Result<Vec<Value>, RenderError>) -> String {
        let e = r.expect_err("should fail").to_string();
        eprintln!("{e}");
        e
    }

    #[test]
    fn objects_arrays_and_non_objects() {
        let repo = Repo::new(&[
            (
                "app/obj.jsonnet",
                "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }",
            ),
            ("app/arr.jsonnet", "[{ kind: 'A' }, { kind: 'B' }]"),
            ("app/str.jsonnet", "'hello'"),
            ("app/mixed.jsonnet", "[{}, 1]"),
            ("app/null.jsonnet", "null"),
            ("app/fn.jsonnet", "{ f: function(x) x }"),
        ]);
        let o = JsonnetOptions::default();
        let out = repo.eval("app/obj.jsonnet", &o).expect("object");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["metadata"]["name"], "a");
        let out = repo.eval("app/arr.jsonnet", &o).expect("array");
        assert_eq!(out.len(), 2);
        let e = err(repo.eval("app/str.jsonnet", &o));
        assert!(e.starts_with("app/str.jsonnet: "), "{e}");
        assert!(e.contains("the output is a string"), "{e}");
        let e = err(repo.eval("app/mixed.jsonnet", &o));
        assert!(
            e.contains("element 1 of the output array is a number"),
            "{e}"
        );
        assert!(err(repo.eval("app/null.jsonnet", &o)).contains("the output is null"));
        assert!(err(repo.eval("app/fn.jsonnet", &o)).contains("function"));
    }

    #[test]
    fn variables_envsubst_and_tlas() {
        let repo = Repo::new(&[
            (
                "app/main.jsonnet",
                "function(replicas, name='x') { kind: 'K', replicas: replicas, name: name, app: std.extVar('app'), n: std.extVar('n') }",
            ),
            ("app/lib.libsonnet", "{ v: 42 }"),
        ]);
        let o = JsonnetOptions {
            ext_vars: vec![
                var("app", "${ARGOCD_APP_NAME}-$ARGOCD_APP_NAME", false),
                var("n", "(import 'lib.libsonnet').v + 1", true),
            ],
            tlas: vec![
                var("replicas", "1 + 2", true),
                var("name", "n-${ARGOCD_APP_NAME}", false),
            ],
            libs: Vec::new(),
        };
        let out = repo.eval("app/main.jsonnet", &o).expect("evaluates");
        assert_eq!(out[0]["replicas"], 3);
        assert_eq!(out[0]["name"], "n-guestbook");
        assert_eq!(out[0]["app"], "guestbook-guestbook");
        assert_eq!(
            out[0]["n"], 43,
            "extVar code imports from the source directory"
        );

        let missing = JsonnetOptions::default();
        let e = err(repo.eval("app/main.jsonnet", &missing));
        assert!(e.contains("replicas"), "{e}");
        let bad = JsonnetOptions {
            ext_vars: vec![var("app", "{", true), var("n", "1", true)],
            tlas: vec![var("replicas", "1", true)],
            libs: Vec::new(),
        };
        let e = err(repo.eval("app/main.jsonnet", &bad));
        assert!(e.contains("syntax error"), "{e}");
    }

    #[test]
    fn imports_relative_libs_and_source_dir() {
        let repo = Repo::new(&[
            (
                "app/main.jsonnet",
                "local a = import 'sub/a.libsonnet'; local k = import 'k.libsonnet'; local c = import '../common/c.libsonnet'; { kind: 'K', a: a, k: k, c: c, s: importstr 'data.txt', b: std.length(importbin 'data.txt') }",
            ),
            ("app/sub/a.libsonnet", "import 'b.libsonnet'"),
            ("app/sub/b.libsonnet", "'b'"),
            ("app/data.txt", "hello"),
            ("common/c.libsonnet", "'c'"),
            ("vendor/one/k.libsonnet", "'one'"),
            ("vendor/two/k.libsonnet", "'two'"),
        ]);
        let o = JsonnetOptions {
            libs: vec!["vendor/one".into(), "/vendor/two".into()],
            ..JsonnetOptions::default()
        };
        let out = repo.eval("app/main.jsonnet", &o).expect("evaluates");
        assert_eq!(out[0]["a"], "b");
        assert_eq!(
            out[0]["k"], "two",
            "the last library wins, as in go-jsonnet"
        );
        assert_eq!(out[0]["c"], "c");
        assert_eq!(out[0]["s"], "hello");
        assert_eq!(out[0]["b"], 5);

        let e = err(repo.eval("app/main.jsonnet", &JsonnetOptions::default()));
        assert!(
            e.starts_with("app/main.jsonnet:1: jsonnet: import \"k.libsonnet\": file not found"),
            "{e}"
        );

        let outside = JsonnetOptions {
            libs: vec!["../elsewhere".into()],
            ..JsonnetOptions::default()
        };
        let e = Evaluator::new(repo.dir.path(), "app", &outside, &[]).expect_err("refused");
        assert!(e.to_string().contains("jsonnet.libs[0]"), "{e}");
    }

    #[test]
    fn hostile_imports_are_refused() {
        let repo = Repo::new(&[
            ("app/up.jsonnet", "import '../../../../etc/passwd'"),
            ("app/abs.jsonnet", "importstr '/etc/passwd'"),
            ("app/lib.jsonnet", "importstr 'x/../../../etc/hostname'"),
            ("app/code.jsonnet", "{ kind: std.extVar('x') }"),
        ]);
        let o = JsonnetOptions {
            libs: vec!["app".into()],
            ..JsonnetOptions::default()
        };
        for file in ["app/up.jsonnet", "app/abs.jsonnet", "app/lib.jsonnet"] {
            let e = err(repo.eval(file, &o));
            assert!(
                e.starts_with(&format!("{file}:1: jsonnet: import ")),
                "{file}: {e}"
            );
            assert!(e.contains("is refused"), "{file}: {e}");
        }
        let code = JsonnetOptions {
            ext_vars: vec![var("x", "importstr '../../etc/passwd'", true)],
            ..JsonnetOptions::default()
        };
        let e = err(repo.eval("app/code.jsonnet", &code));
        assert!(e.contains("is refused"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let repo = Repo::new(&[
            ("app/syntax.jsonnet", "{\n  a: 1,\n  b: ,\n}"),
            ("app/boom.jsonnet", "local x = 1;\n\nerror 'boom'"),
            (
                "app/deep.jsonnet",
                "local f(n) = f(n + 1) + 1;\n{ v: f(0) }",
            ),
            ("app/uses.jsonnet", "local l = import 'bad.libsonnet';\nl.v"),
            ("app/bad.libsonnet", "{ v: }"),
        ]);
        let o = JsonnetOptions::default();
        let e = err(repo.eval("app/syntax.jsonnet", &o));
        assert!(e.starts_with("app/syntax.jsonnet:3: "), "{e}");
        assert!(e.contains("syntax error"), "{e}");
        let e = err(repo.eval("app/boom.jsonnet", &o));
        assert!(e.starts_with("app/boom.jsonnet:3: "), "{e}");
        assert!(e.contains("boom"), "{e}");
        let e = err(repo.eval("app/deep.jsonnet", &o));
        assert!(e.starts_with("app/deep.jsonnet:1: "), "{e}");
        assert!(e.contains("call stack exceeded 500 frames"), "{e}");
        assert!(e.contains("function <f> call (499 times)"), "{e}");
        let e = err(repo.eval("app/uses.jsonnet", &o));
        assert!(e.contains("syntax error at app/bad.libsonnet:1"), "{e}");
    }

    #[test]
    fn deep_source_nesting_is_refused_not_a_crash() {
        let n = 200_000;
        let cases = [
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1", "-".repeat(n)),
            format!("1{}", "+1".repeat(n)),
            format!("{{}}{}", "()".repeat(n)),
            format!("{}1", "local a = 1;\n".repeat(n)),
            format!("{}1", "if true then 1 else ".repeat(n)),
        ];
        for (i, code) in cases.iter().enumerate() {
            let file = format!("app/f{i}.jsonnet");
            let repo = Repo::new(&[(file.as_str(), code.as_str())]);
            let e = err(repo.eval(&file, &JsonnetOptions::default()));
            assert!(e.contains("nests more than 1000 levels"), "{i}: {e}");
            assert!(e.starts_with(&format!("{file}:")), "{i}: {e}");
        }
        // Deep but allowed code of each kind evaluates on a worker's stack.
        let n = MAX_NESTING / 2 - 2;
        let ok = [
            format!(
                "{{kind: 'K', v: std.length({}1{})}}",
                "[".repeat(n),
                "]".repeat(n)
            ),
            format!("{{kind: 'K', v: {}1}}", "-".repeat(n)),
            format!("{{kind: 'K', v: 1{}}}", "+1".repeat(n)),
            format!("{}{{kind: 'K'}}", "local a = 1;\n".repeat(n)),
            format!("{{kind: 'K', v: {}1}}", "if true then 1 else ".repeat(n)),
        ];
        for (i, code) in ok.iter().enumerate() {
            let file = format!("app/ok{i}.jsonnet");
            let repo = Repo::new(&[(file.as_str(), code.as_str())]);
            let r = repo.eval(&file, &JsonnetOptions::default());
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }

    #[test]
    fn evaluator_panics_become_errors() {
        // jrsonnet's analyser has 16-bit local slots.
        let binds: Vec<String> = (0..70_000).map(|i| format!("a{i} = {i}")).collect();
        let code = format!("local {}; {{ kind: 'K' }}", binds.join(", "));
        let repo = Repo::new(&[("app/many.jsonnet", code.as_str())]);
        let e = err(repo.eval("app/many.jsonnet", &JsonnetOptions::default()));
        assert!(e.contains("the Jsonnet evaluator failed"), "{e}");
    }

    #[test]
    fn deep_imports_parse_deep_in_the_call_stack() {
        // An import evaluated at the bottom of the deepest allowed recursion still has the
        // stack to parse the most deeply nested file allowed.
        let n = MAX_NESTING - 2;
        let lib = format!("{}1{}", "{a: ".repeat(n), "}".repeat(n));
        let depth = MAX_STACK - 10;
        // At the bottom of a recursion, and at the bottom of a deeply nested output.
        let calls = format!(
            "local f(n) = if n == 0 then import 'deep.libsonnet' else f(n - 1);\n{{ kind: 'K', v: std.length(f({depth})) }}"
        );
        // (Output nesting is limited to 128 levels by reading it back as JSON.)
        let nested = "local g(n) = if n == 0 then std.length(import 'deep.libsonnet') else { a: g(n - 1) };\n{ kind: 'K', v: g(120) }";
        let repo = Repo::new(&[
            ("app/calls.jsonnet", calls.as_str()),
            ("app/nested.jsonnet", nested),
            ("app/deep.libsonnet", lib.as_str()),
        ]);
        let o = JsonnetOptions::default();
        let out = repo.eval("app/calls.jsonnet", &o).expect("evaluates");
        assert_eq!(out[0]["v"], 1);
        let out = repo.eval("app/nested.jsonnet", &o).expect("evaluates");
        assert!(out[0]["v"]["a"]["a"].is_object());
    }

    #[test]
    fn only_code_imports_are_checked_for_nesting() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let yaml = "- item. a - b.\n".repeat(5000);
        let repo = Repo::new(&[
            (
                "app/text.jsonnet",
                "{ kind: 'K', yaml: std.length(importstr 'list.yaml'), deep: std.length(importstr 'deep.libsonnet') }",
            ),
            (
                "app/code.jsonnet",
                "{ kind: 'K', v: import 'deep.libsonnet' }",
            ),
            (
                "app/paren.jsonnet",
                "{ kind: 'K', v: import ( @'deep.libsonnet' ) }",
            ),
            ("app/list.yaml", yaml.as_str()),
            ("app/deep.libsonnet", deep.as_str()),
        ]);
        let o = JsonnetOptions::default();
        let out = repo
            .eval("app/text.jsonnet", &o)
            .expect("text imports are not code");
        assert_eq!(out[0]["yaml"], yaml.len());
        for file in ["app/code.jsonnet", "app/paren.jsonnet"] {
            let e = err(repo.eval(file, &o));
            assert!(
                e.contains("app/deep.libsonnet:1: the code nests more than 1000 levels deep")
                    && e.contains(&format!("(imported by {file})")),
                "{file}: {e}"
            );
        }
    }

    #[test]
    fn code_imports_are_found_lexically() {
        let code = r#"
            local a = import "a.libsonnet";  // import 'commented.libsonnet'
            local b = importstr 'b.txt';
            local c = importbin 'c.bin';
            local d = import ( @'d''s.libsonnet' );
            local e = import 'eA.libsonnet';
            { s: "import 'not-code.libsonnet'" }
        "#;
        let mut found: Vec<String> = code_imports(code).into_iter().collect();
        found.sort();
        assert_eq!(found, ["a.libsonnet", "d's.libsonnet", "eA.libsonnet"]);
    }

    #[test]
    fn nesting_estimate() {
        assert_eq!(check_nesting("{ a: [1, 2, 3], b: 'x' }", 2), Ok(()));
        assert_eq!(check_nesting("[[[1]]]", 2), Err(1));
        assert_eq!(
            check_nesting("// [[[[[[\n'[[[[[[' + |||\n  [[[[\n|||", 3),
            Ok(())
        );
        // Siblings do not add up; locals do.
        let siblings = format!("[{}]", vec!["1 + 2 + 3"; 1000].join(", "));
        assert_eq!(check_nesting(&siblings, 10), Ok(()));
        let locals = "local a = 1, b = 2;\n".repeat(20);
        assert_eq!(check_nesting(&format!("{locals}a"), 10), Err(11));
        // Call chains nest although every bracket closes.
        assert!(check_nesting(&format!("f{}", "(1)".repeat(50)), 20).is_err());
    }

    #[test]
    fn cycles_are_collected() {
        let repo = Repo::new(&[(
            "app/main.jsonnet",
            "local o = { a: self.b, b: 1, f(x):: o.a + x }; { kind: 'K', v: o.f(1) }",
        )]);
        let ev = Evaluator::new(repo.dir.path(), "app", &JsonnetOptions::default(), &[])
            .expect("evaluator");
        let tracked = on_worker_stack(move || {
            for _ in 0..3 {
                ev.evaluate("app/main.jsonnet").expect("evaluates");
            }
            jrsonnet_gcmodule::count_thread_tracked()
        });
        assert_eq!(tracked, 0);
    }
}
