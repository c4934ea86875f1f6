//! Custom health checks in Lua, with Argo CD's `health.lua` contract, in a sandbox.
//!
//! A script sees the object as the global `obj` (a Lua table; JSON `null` is `nil`) and
//! returns a table `{status = "...", message = "..."}`.
//!
//! # Sandbox
//!
//! - Libraries: `string`, `table`, `math`, `utf8` and the safe base functions (`assert`,
//!   `error`, `ipairs`, `next`, `pairs`, `pcall`, `rawequal`, `rawget`, `rawlen`, `rawset`,
//!   `select`, `setmetatable`, `getmetatable`, `tonumber`, `tostring`, `type`, `xpcall`).
//!   Never `io`, `debug`, `package`/`require`, `load`, `loadstring`, `dofile`, `loadfile`,
//!   `collectgarbage`, `print`, `string.dump`; `os` only as `os.time` and `os.date` (as in
//!   Argo CD), plus `os.clock` and `os.difftime` when the check sets `useOpenLibs`.
//! - Limits per evaluation ([`LuaLimits`]): VM instructions (an mlua hook every 1,000
//!   instructions counts them and checks the wall-clock deadline), and memory allocated
//!   beyond the object (`Lua::set_memory_limit`). Once a limit is hit, the hook fails on
//!   every call and `pcall`/`xpcall` do not catch the failure, so a script cannot trap it.
//! - `__gc` metamethods are refused (a finalizer would run outside the evaluation), and the
//!   string metatable is locked so one evaluation cannot change another's `string` library.
//!
//! # Compilation and concurrency
//!
//! Each check owns a small pool of Lua states, each holding the compiled script. An
//! evaluation takes a state from the pool (compiling the script into a new state only when
//! the pool is empty), runs the function with a fresh global environment — fresh copies of
//! the library tables, so nothing one evaluation does is visible to the next — and returns
//! the state to the pool if the evaluation succeeded. A state whose evaluation failed is
//! dropped. Concurrent evaluations therefore never share a state; the pool keeps at most
//! [`MAX_IDLE_STATES`] idle states per check.
//!
//! # Known limit
//!
//! The hook runs between VM instructions, so one long call into a C library function (for
//! example `string.find` with a pathological pattern on a long string) is bounded by memory
//! but not interrupted by the clock until it returns. Argo CD's interpreter has the same gap.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mlua::{
    Function, HookTriggers, Lua, LuaOptions, LuaSerdeExt, MultiValue, StdLib, Table,
    Value as LuaValue, VmState,
};
use serde_json::Value;

use super::config::{GroupKindPattern, HealthCustomization, LuaLimits};
use super::{HealthStatusCode, HealthVerdict};

/// Idle Lua states kept per check.
pub const MAX_IDLE_STATES: usize = 4;
const HOOK_EVERY: u32 = 1_000;

const BASE_FUNCTIONS: &[&str] = &[
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "select",
    "getmetatable",
    "tonumber",
    "tostring",
    "type",
    "_VERSION",
];
const LIBRARIES: &[&str] = &["string", "table", "math", "utf8"];
/// The `os` functions every check gets, as in Argo CD (reading the clock is harmless and
/// existing Argo CD checks call `os.time()`).
const OS_FUNCTIONS: &[&str] = &["time", "date"];
/// Further `os` functions a check gets with `useOpenLibs`.
const OS_FUNCTIONS_OPEN: &[&str] = &["clock", "difftime"];
const REMOVED_GLOBALS: &[&str] = &[
    "load",
    "loadstring",
    "loadfile",
    "dofile",
    "require",
    "collectgarbage",
    "print",
    "os",
];

/// Why a Lua health check gave no verdict of its own. Each message names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuaCheckError {
    /// The script has a syntax error.
    #[error("health check {check:?} does not compile: {message}")]
    Compile {
        /// The check's group/kind pattern.
        check: String,
        /// The Lua compiler's message.
        message: String,
    },
    /// The interpreter could not be prepared.
    #[error("health check {check:?} could not set up its Lua interpreter: {message}")]
    Setup {
        /// The check's group/kind pattern.
        check: String,
        /// What failed.
        message: String,
    },
    /// The object could not be turned into a Lua table.
    #[error("health check {check:?} could not receive the object: {message}")]
    Input {
        /// The check's group/kind pattern.
        check: String,
        /// What failed.
        message: String,
    },
    /// The script executed too many instructions.
    #[error("health check {check:?} stopped: it exceeded its limit of {limit} Lua instructions")]
    InstructionLimit {
        /// The check's group/kind pattern.
        check: String,
        /// The limit.
        limit: u64,
    },
    /// The script ran too long.
    #[error("health check {check:?} stopped: it ran longer than {} ms", timeout.as_millis())]
    Timeout {
        /// The check's group/kind pattern.
        check: String,
        /// The limit.
        timeout: Duration,
    },
    /// The script allocated too much memory.
    #[error("health check {check:?} stopped: it exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The check's group/kind pattern.
        check: String,
        /// The limit.
        limit: usize,
    },
    /// The script raised an error.
    #[error("health check {check:?} failed: {message}")]
    Runtime {
        /// The check's group/kind pattern.
        check: String,
        /// The Lua error.
        message: String,
    },
    /// The script returned something other than a table.
    #[error(
        "health check {check:?} returned {found}; expected a table like {{status = \"Healthy\", message = \"...\"}}"
    )]
    NotATable {
        /// The check's group/kind pattern.
        check: String,
        /// What it returned.
        found: String,
    },
    /// The script returned a status that is not a health status.
    #[error(
        "health check {check:?} returned an invalid health status {status:?}; expected one of Healthy, Progressing, Degraded, Suspended, Missing, Unknown"
    )]
    InvalidStatus {
        /// The check's group/kind pattern.
        check: String,
        /// What it returned as the status.
        status: String,
    },
    /// The script returned a message that is not a string.
    #[error("health check {check:?} returned a message of type {found}; expected a string")]
    InvalidMessage {
        /// The check's group/kind pattern.
        check: String,
        /// The message's Lua type.
        found: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum Abort {
    Instructions,
    Timeout,
}

/// What the hook needs to know about the running evaluation.
#[derive(Debug, Default)]
struct BudgetState {
    instructions_left: u64,
    deadline: Option<Instant>,
    aborted: Option<Abort>,
}

#[derive(Debug, Default)]
struct Budget(Mutex<BudgetState>);

impl Budget {
    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        // A panic while holding this lock cannot leave it inconsistent: every field is
        // overwritten at the start of an evaluation.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn aborted(&self) -> Option<Abort> {
        self.lock().aborted
    }
}

/// A compiled custom health check with its pool of Lua states.
pub struct LuaCheck {
    pattern: GroupKindPattern,
    script: String,
    use_open_libs: bool,
    limits: LuaLimits,
    idle: Mutex<Vec<Worker>>,
}

impl std::fmt::Debug for LuaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaCheck")
            .field("pattern", &self.pattern)
            .field("use_open_libs", &self.use_open_libs)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LuaCheck {
    /// Compiles a customisation; the first Lua state goes into the pool.
    pub fn compile(
        customization: &HealthCustomization,
        limits: &LuaLimits,
    ) -> Result<Self, LuaCheckError> {
        let check = Self {
            pattern: customization.pattern.clone(),
            script: customization.script.clone(),
            use_open_libs: customization.use_open_libs,
            limits: *limits,
            idle: Mutex::new(Vec::new()),
        };
        let worker = check.new_worker()?;
        check.idle_states().push(worker);
        Ok(check)
    }

    /// The group/kind pattern this check applies to.
    pub fn pattern(&self) -> &GroupKindPattern {
        &self.pattern
    }

    fn name(&self) -> String {
        self.pattern.as_str().to_owned()
    }

    fn idle_states(&self) -> MutexGuard<'_, Vec<Worker>> {
        // The pool is a plain list; a panic elsewhere cannot corrupt it.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the script on an object.
    pub fn evaluate(&self, obj: &Value) -> Result<HealthVerdict, LuaCheckError> {
        let popped = self.idle_states().pop();
        let worker = match popped {
            Some(worker) => worker,
            None => self.new_worker()?,
        };
        let result = worker.run(self, obj);
        if result.is_ok() {
            let mut idle = self.idle_states();
            if idle.len() < MAX_IDLE_STATES {
                idle.push(worker);
            }
        }
        result
    }

    fn new_worker(&self) -> Result<Worker, LuaCheckError> {
        let setup = |e: mlua::Error| LuaCheckError::Setup {
            check: self.name(),
            message: e.to_string(),
        };
        // `os` is loaded so its clock functions can be copied; the table itself is never exposed.
        let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(setup)?;
        let budget = Arc::new(Budget::default());
        let template = build_template(&lua, &budget, self.use_open_libs).map_err(setup)?;

        let func = lua
            .load(self.script.as_str())
            .set_name(format!("={}", self.pattern))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map_err(|e| LuaCheckError::Compile {
                check: self.name(),
                message: lua_message(&e),
            })?;

        let hook_budget = Arc::clone(&budget);
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_lua, _debug| {
                let mut state = hook_budget.lock();
                if state.aborted.is_none() {
                    state.instructions_left = state
                        .instructions_left
                        .saturating_sub(u64::from(HOOK_EVERY));
                    if state.instructions_left == 0 {
                        state.aborted = Some(Abort::Instructions);
                    } else if state.deadline.is_some_and(|d| Instant::now() >= d) {
                        state.aborted = Some(Abort::Timeout);
                    }
                }
                match state.aborted {
                    None => Ok(VmState::Continue),
                    Some(_) => Err(mlua::Error::runtime("health check limit exceeded")),
                }
            },
        )
        .map_err(setup)?;

        Ok(Worker {
            lua,
            func,
            template,
            budget,
        })
    }
}

/// One Lua state with the compiled script.
struct Worker {
    lua: Lua,
    func: Function,
    /// What a script's global environment holds; copied for every evaluation.
    template: Table,
    budget: Arc<Budget>,
}

impl Worker {
    fn run(&self, check: &LuaCheck, obj: &Value) -> Result<HealthVerdict, LuaCheckError> {
        let limits = &check.limits;
        let runtime = |e: mlua::Error| self.classify(check, &e);
        let env = self.fresh_env().map_err(runtime)?;
        let options = mlua::serde::SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false)
            .set_array_metatable(false);
        let lua_obj = self
            .lua
            .to_value_with(obj, options)
            .map_err(|e| LuaCheckError::Input {
                check: check.name(),
                message: e.to_string(),
            })?;
        env.raw_set("obj", lua_obj).map_err(runtime)?;
        self.func.set_environment(env).map_err(runtime)?;

        {
            let mut budget = self.budget.lock();
            budget.instructions_left = limits.max_instructions.max(1);
            budget.deadline = Some(Instant::now() + limits.timeout);
            budget.aborted = None;
        }
        let base = self.lua.used_memory();
        self.lua
            .set_memory_limit(base.saturating_add(limits.max_memory_bytes))
            .map_err(runtime)?;

        let returned = self.func.call::<LuaValue>(());
        let verdict = returned
            .map_err(|e| self.classify(check, &e))
            .and_then(|value| to_verdict(check, value));

        // Drop everything this evaluation made before the next one, still under the budget.
        let _ = self.func.set_environment(self.template.clone());
        let _ = self.lua.gc_collect();
        let _ = self.lua.set_memory_limit(0);
        verdict
    }

    fn fresh_env(&self) -> mlua::Result<Table> {
        let env = self.lua.create_table()?;
        for pair in self.template.pairs::<LuaValue, LuaValue>() {
            let (key, value) = pair?;
            let value = match value {
                LuaValue::Table(lib) => {
                    let copy = self.lua.create_table()?;
                    for entry in lib.pairs::<LuaValue, LuaValue>() {
                        let (k, v) = entry?;
                        copy.raw_set(k, v)?;
                    }
                    LuaValue::Table(copy)
                }
                other => other,
            };
            env.raw_set(key, value)?;
        }
        env.raw_set("_G", env.clone())?;
        Ok(env)
    }

    fn classify(&self, check: &LuaCheck, err: &mlua::Error) -> LuaCheckError {
        match self.budget.aborted() {
            Some(Abort::Instructions) => LuaCheckError::InstructionLimit {
                check: check.name(),
                limit: check.limits.max_instructions,
            },
            Some(Abort::Timeout) => LuaCheckError::Timeout {
                check: check.name(),
                timeout: check.limits.timeout,
            },
            None if is_memory_error(err) => LuaCheckError::MemoryLimit {
                check: check.name(),
                limit: check.limits.max_memory_bytes,
            },
            None => LuaCheckError::Runtime {
                check: check.name(),
                message: lua_message(err),
            },
        }
    }
}

/// Builds the table a script's environment is copied from, and strips the state's real
/// globals of everything unsafe.
fn build_template(lua: &Lua, budget: &Arc<Budget>, open_libs: bool) -> mlua::Result<Table> {
    let globals = lua.globals();
    let template = lua.create_table()?;
    for name in BASE_FUNCTIONS {
        template.raw_set(*name, globals.raw_get::<LuaValue>(*name)?)?;
    }
    for name in LIBRARIES {
        let lib: Table = globals.raw_get(*name)?;
        if *name == "string" {
            // Compiled chunks could be loaded back by an unsafe host; no reason to expose it.
            lib.raw_set("dump", LuaValue::Nil)?;
        }
        template.raw_set(*name, lib)?;
    }
    let os: Table = globals.raw_get("os")?;
    let safe_os = lua.create_table()?;
    let extra: &[&str] = if open_libs { OS_FUNCTIONS_OPEN } else { &[] };
    for name in OS_FUNCTIONS.iter().chain(extra) {
        safe_os.raw_set(*name, os.raw_get::<LuaValue>(*name)?)?;
    }
    template.raw_set("os", safe_os)?;

    // Strings share one metatable whose __index is the real `string` table; lock it so
    // `getmetatable("")` cannot reach (and change) it.
    let string_meta: Table = lua
        .load("return getmetatable('')")
        .set_name("=capstan-sandbox")
        .call(())?;
    string_meta.raw_set("__metatable", false)?;

    let original_setmetatable: Function = globals.raw_get("setmetatable")?;
    template.raw_set(
        "setmetatable",
        lua.create_function(move |_, (table, meta): (LuaValue, LuaValue)| {
            if let LuaValue::Table(meta) = &meta
                && !meta.raw_get::<LuaValue>("__gc")?.is_nil()
            {
                return Err(mlua::Error::runtime(
                    "__gc metamethods are not allowed in health checks",
                ));
            }
            original_setmetatable.call::<LuaValue>((table, meta))
        })?,
    )?;

    let pcall_budget = Arc::clone(budget);
    template.raw_set(
        "pcall",
        lua.create_function(move |lua, (f, args): (LuaValue, MultiValue)| {
            protected_call(lua, &pcall_budget, f, args, None)
        })?,
    )?;
    let xpcall_budget = Arc::clone(budget);
    template.raw_set(
        "xpcall",
        lua.create_function(
            move |lua, (f, handler, args): (LuaValue, Function, MultiValue)| {
                protected_call(lua, &xpcall_budget, f, args, Some(handler))
            },
        )?,
    )?;

    for name in REMOVED_GLOBALS {
        globals.raw_set(*name, LuaValue::Nil)?;
    }
    Ok(template)
}

/// `pcall`/`xpcall` that let a limit failure through: once the budget is spent (or memory
/// ran out), the error propagates instead of being returned as `false, message`.
fn protected_call(
    lua: &Lua,
    budget: &Budget,
    f: LuaValue,
    args: MultiValue,
    handler: Option<Function>,
) -> mlua::Result<MultiValue> {
    let result = match &f {
        LuaValue::Function(f) => f.call::<MultiValue>(args),
        other => Err(mlua::Error::runtime(format!(
            "attempt to call a {} value",
            other.type_name()
        ))),
    };
    match result {
        Ok(mut values) => {
            values.push_front(LuaValue::Boolean(true));
            Ok(values)
        }
        Err(err) if budget.aborted().is_some() || is_memory_error(&err) => Err(err),
        Err(err) => {
            let message = LuaValue::String(lua.create_string(lua_message(&err))?);
            let reported = match handler {
                Some(handler) => handler.call::<LuaValue>(message)?,
                None => message,
            };
            Ok(MultiValue::from_iter([LuaValue::Boolean(false), reported]))
        }
    }
}

fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// The message of a Lua error without mlua's stack traceback.
fn lua_message(err: &mlua::Error) -> String {
    match err {
        mlua::Error::RuntimeError(message) | mlua::Error::SyntaxError { message, .. } => message
            .split_once("\nstack traceback:")
            .map_or(message.as_str(), |(head, _)| head)
            .to_owned(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        mlua::Error::WithContext { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}

fn to_verdict(check: &LuaCheck, value: LuaValue) -> Result<HealthVerdict, LuaCheckError> {
    let LuaValue::Table(table) = value else {
        let found = match &value {
            LuaValue::Nil => "nothing (nil)".to_owned(),
            other => format!("a {}", other.type_name()),
        };
        return Err(LuaCheckError::NotATable {
            check: check.name(),
            found,
        });
    };
    let status = match table.raw_get::<LuaValue>("status") {
        Ok(LuaValue::String(s)) => s.to_string_lossy(),
        Ok(LuaValue::Nil) => String::new(),
        Ok(other) => format!("<{}>", other.type_name()),
        Err(e) => format!("<{e}>"),
    };
    let status: HealthStatusCode = status.parse().map_err(|_| LuaCheckError::InvalidStatus {
        check: check.name(),
        status: status.clone(),
    })?;
    let message = match table.raw_get::<LuaValue>("message") {
        Ok(LuaValue::String(s)) => s.to_string_lossy(),
        Ok(LuaValue::Nil) => String::new(),
        Ok(other) => {
            return Err(LuaCheckError::InvalidMessage {
                check: check.name(),
                found: other.type_name().to_owned(),
            });
        }
        Err(e) => {
            return Err(LuaCheckError::Runtime {
                check: check.name(),
                message: e.to_string(),
            });
        }
    };
    Ok(HealthVerdict { status, message })
}
