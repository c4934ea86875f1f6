use std::time::{Duration, Instant};

use crate::health::HealthStatusCode::{Degraded, Healthy, Progressing, Unknown};
use crate::health::{
    HealthAssessor, HealthConfig, HealthConfigError, HealthStatusCode, HealthVerdict,
};
use serde_json::{Value, json};

/// The cert-manager Certificate check from Argo CD's documentation, in our own words.
const CERTIFICATE_CHECK: &str = r#"
hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for i, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message
      return hs
    end
    if condition.type == "Ready" and condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for certificate"
return hs
"#;

fn certificate(ready: Option<(&str, &str)>) -> Value {
    let mut obj = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                         "metadata": {"name": "web-tls", "namespace": "default"},
                         "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com"], "issuerRef": {"name": "letsencrypt"}}});
    if let Some((status, message)) = ready {
        obj["status"] = json!({"conditions": [{"type": "Ready", "status": status, "message": message, "reason": "x"}]});
    }
    obj
}

fn assessor(yaml: &str) -> HealthAssessor {
    let config = HealthConfig::from_yaml_str(yaml).expect("config parses");
    HealthAssessor::new(&config).expect("scripts compile")
}

/// The cert-manager Certificate check from Argo CD's docs, with the default limits.
fn certificate_check() -> HealthAssessor {
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        "resource.customizations.health.cert-manager.io_Certificate".to_owned(),
        CERTIFICATE_CHECK.to_owned(),
    );
    HealthAssessor::new(&HealthConfig::from_data(&data).expect("config")).expect("compiles")
}

fn one_check(key: &str, script: &str) -> HealthAssessor {
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        format!("resource.customizations.health.{key}"),
        script.to_owned(),
    );
    data.insert(
        "capstan.health.lua.maxMemoryBytes".to_owned(),
        (4 * 1024 * 1024).to_string(),
    );
    let config = HealthConfig::from_data(&data).expect("config");
    HealthAssessor::new(&config).expect("compiles")
}

fn verdict(assessor: &HealthAssessor, obj: &Value) -> HealthVerdict {
    assessor.assess(obj).expect("has a check")
}

#[test]
fn certificate_check_from_the_docs() {
    let a = certificate_check();
    assert_eq!(
        verdict(
            &a,
            &certificate(Some((
                "True",
                "Certificate is up to date and has not expired"
            )))
        ),
        HealthVerdict::new(Healthy, "Certificate is up to date and has not expired")
    );
    assert_eq!(
        verdict(
            &a,
            &certificate(Some((
                "False",
                "Issuing certificate as Secret does not exist"
            )))
        ),
        HealthVerdict::new(Degraded, "Issuing certificate as Secret does not exist")
    );
    assert_eq!(
        verdict(&a, &certificate(None)),
        HealthVerdict::new(Progressing, "Waiting for certificate")
    );
    // Global `hs` from one evaluation does not leak into the next.
    assert_eq!(verdict(&a, &certificate(None)).status, Progressing);
}

#[test]
fn json_null_is_nil_and_numbers_work() {
    let a = one_check(
        "example.com_Widget",
        r#"
        if obj.status.gone ~= nil then return {status = "Degraded", message = "null was not nil"} end
        local n = obj.spec.replicas + 1
        return {status = "Healthy", message = string.format("%d replicas, %s", n, obj.spec.name:upper())}
        "#,
    );
    let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                     "spec": {"replicas": 2, "name": "w"}, "status": {"gone": null}});
    assert_eq!(
        verdict(&a, &obj),
        HealthVerdict::new(Healthy, "3 replicas, W")
    );
}

#[test]
fn wildcards_and_precedence() {
    let a = assessor(
        r#"
resource.customizations.health.*.example.com_*: 'return {status = "Degraded", message = "any example"}'
resource.customizations.health.widgets.example.com_*: 'return {status = "Suspended", message = "widgets group"}'
resource.customizations.health.widgets.example.com_Gadget: 'return {status = "Progressing", message = "exact"}'
resource.customizations.health.apps_Deploy*: 'return {status = "Healthy", message = "custom deployment"}'
resource.customizations.health.PersistentVolumeClaim: 'return {status = "Healthy", message = "custom pvc"}'
"#,
    );
    let obj = |api_version: &str, kind: &str| json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
    let check = |api_version: &str, kind: &str| {
        a.assess(&obj(api_version, kind))
            .map(|v| (v.status, v.message))
    };
    assert_eq!(
        check("widgets.example.com/v1", "Gadget"),
        Some((Progressing, "exact".to_owned()))
    );
    assert_eq!(
        check("widgets.example.com/v1", "Thing"),
        Some((HealthStatusCode::Suspended, "widgets group".to_owned()))
    );
    assert_eq!(
        check("other.example.com/v2", "Thing"),
        Some((Degraded, "any example".to_owned()))
    );
    assert_eq!(check("example.com/v1", "Thing"), None);
    // Custom checks override built-ins.
    assert_eq!(
        check("apps/v1", "Deployment"),
        Some((Healthy, "custom deployment".to_owned()))
    );
    assert_eq!(
        check("v1", "PersistentVolumeClaim"),
        Some((Healthy, "custom pvc".to_owned()))
    );
    // Kinds not matched keep their built-in check.
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x", "generation": 1}, "status": {}});
    assert_eq!(
        a.assess(&sts).map(|v| v.message),
        Some("Waiting for statefulset spec update to be observed...".to_owned())
    );
}

/// Runs a hostile script and checks it ends in an Unknown verdict naming the check, fast.
fn hostile(script: &str, needle: &str) {
    let a = one_check("example.com_Evil", script);
    let obj = json!({"apiVersion": "example.com/v1", "kind": "Evil", "metadata": {"name": "x"}});
    let started = Instant::now();
    let v = verdict(&a, &obj);
    let took = started.elapsed();
    assert_eq!(v.status, Unknown, "{script}: {v:?}");
    assert!(
        v.message.contains("health check \"example.com/Evil\""),
        "{script}: {}",
        v.message
    );
    assert!(
        v.message.contains(needle),
        "{script}: expected {needle:?} in {:?}",
        v.message
    );
    assert!(took < Duration::from_secs(5), "{script} took {took:?}");
    // The check keeps working afterwards (a fresh state replaces a failed one).
    let again = verdict(&a, &obj);
    assert_eq!(again.status, Unknown);
}

#[test]
fn infinite_loop_is_stopped() {
    hostile("while true do end", "Lua instructions");
    hostile(
        "local i = 0 repeat i = i + 1 until false",
        "Lua instructions",
    );
}

#[test]
fn pcall_cannot_swallow_the_limit() {
    hostile(
        "while true do pcall(function() while true do end end) end",
        "Lua instructions",
    );
    hostile(
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
        "Lua instructions",
    );
}

#[test]
fn wall_clock_limit() {
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        "resource.customizations.health.Evil".to_owned(),
        "while true do end".to_owned(),
    );
    data.insert(
        "capstan.health.lua.maxInstructions".to_owned(),
        u64::MAX.to_string(),
    );
    data.insert(
        "capstan.health.lua.timeoutMillis".to_owned(),
        "200".to_owned(),
    );
    let a =
        HealthAssessor::new(&HealthConfig::from_data(&data).expect("config")).expect("compiles");
    let started = Instant::now();
    let v = verdict(&a, &json!({"apiVersion": "v1", "kind": "Evil"}));
    assert_eq!(v.status, Unknown);
    assert!(
        v.message.contains("ran longer than 200 ms"),
        "{}",
        v.message
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn memory_bomb_is_stopped() {
    hostile(
        "local t = {} while true do t[#t + 1] = string.rep('x', 1024) .. #t end",
        "memory limit",
    );
    hostile("local s = 'x' while true do s = s .. s end", "memory limit");
    hostile("return {status = string.rep('x', 1 << 30)}", "memory limit");
    hostile(
        "while true do pcall(function() local s = 'x' while true do s = s .. s end end) end",
        "",
    );
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    // Lua's stack grows until the memory limit or Lua's own stack limit stops it.
    hostile(
        "local function f() return f() + 1 end return f()",
        "stopped",
    );
    hostile(
        "local function f() pcall(f) end f() return {status = 'Bad'}",
        "invalid health status",
    );
    // Unbounded pcall nesting ends at Lua's C-call limit, which the innermost pcall reports.
    let a = one_check(
        "Nested",
        "local function f() return {status = 'Healthy', message = tostring(select('#', pcall(f)))} end return f()",
    );
    assert_eq!(
        verdict(&a, &json!({"apiVersion": "v1", "kind": "Nested"})),
        HealthVerdict::new(Healthy, "2")
    );
}

#[test]
fn metamethods_on_the_result_are_not_run() {
    hostile(
        "return setmetatable({}, {__index = function() while true do end end})",
        "invalid health status \"\"",
    );
}

#[test]
fn unsafe_libraries_are_absent() {
    hostile(
        "os.execute('touch /tmp/capstan-pwned')",
        "attempt to call a nil value (field 'execute')",
    );
    hostile(
        "os.remove('/tmp/x')",
        "attempt to call a nil value (field 'remove')",
    );
    hostile("io.open('/etc/passwd')", "attempt to index a nil value");
    hostile("require('os')", "attempt to call a nil value");
    hostile("load('return 1')()", "attempt to call a nil value");
    hostile("loadstring('return 1')()", "attempt to call a nil value");
    hostile("dofile('/etc/passwd')", "attempt to call a nil value");
    hostile("debug.sethook()", "attempt to index a nil value");
    hostile("collectgarbage('stop')", "attempt to call a nil value");
    hostile("print('hello')", "attempt to call a nil value");
    hostile(
        "return string.dump(function() end)",
        "attempt to call a nil value",
    );
    hostile(
        "getmetatable('').__index.upper = nil",
        "attempt to index a boolean value",
    );
    hostile(
        "setmetatable({}, {__gc = function() while true do end end}) return {status = 'Healthy'}",
        "__gc metamethods are not allowed",
    );
    assert!(!std::path::Path::new("/tmp/capstan-pwned").exists());
}

#[test]
fn every_check_reads_the_clock_and_open_libs_add_only_clock_functions() {
    // As in Argo CD, os.time and os.date need no flag; nothing else of `os` ever appears.
    let plain = assessor(
        r#"
resource.customizations.health.Clock: |
  return {status = "Healthy", message = type(os.time()) .. " " .. type(os.date("%Y")) .. " " .. tostring(os.clock) .. " " .. tostring(os.execute)}
"#,
    );
    assert_eq!(
        verdict(&plain, &json!({"apiVersion": "v1", "kind": "Clock"})),
        HealthVerdict::new(Healthy, "number string nil nil")
    );
    let open = assessor(
        r#"
resource.customizations.health.Clock: |
  return {status = "Healthy", message = type(os.clock()) .. " " .. tostring(os.execute) .. " " .. tostring(os.getenv)}
resource.customizations.useOpenLibs.Clock: "true"
"#,
    );
    assert_eq!(
        verdict(&open, &json!({"apiVersion": "v1", "kind": "Clock"})),
        HealthVerdict::new(Healthy, "number nil nil")
    );
    hostile(
        "os.execute('true') return {status = 'Healthy'}",
        "attempt to call a nil value",
    );
}

#[test]
fn runtime_errors_and_bad_returns() {
    hostile("error('boom')", "boom");
    hostile("return obj.status.phase", "attempt to index a nil value");
    hostile("return 'Healthy'", "returned a string; expected a table");
    hostile("return", "returned nothing (nil)");
    hostile("return 42", "returned a integer");
    hostile(
        "return {status = 'Great'}",
        "invalid health status \"Great\"",
    );
    hostile("return {}", "invalid health status \"\"");
    hostile(
        "return {status = 'Healthy', message = {}}",
        "message of type table",
    );
}

#[test]
fn syntax_errors_are_reported_at_configuration() {
    let config = HealthConfig::from_yaml_str(
        "resource.customizations.health.Broken: 'return {'\nresource.customizations.health.Fine: 'return {status = \"Healthy\"}'\n",
    )
    .expect("config");
    let err = HealthAssessor::new(&config).expect_err("does not compile");
    assert!(matches!(&err, HealthConfigError::Compile(errors) if errors.len() == 1));
    let text = err.to_string();
    assert!(
        text.contains("health check \"Broken\" does not compile"),
        "{text}"
    );
}

#[test]
fn a_user_pcall_still_works() {
    let a = one_check(
        "Caught",
        "local ok, err = pcall(function() error('inner') end)\n\
         local ok2, r = pcall(function(x) return x * 2 end, 21)\n\
         local ok3, h = xpcall(function() error('x') end, function(e) return 'handled' end)\n\
         return {status = 'Healthy', message = tostring(ok) .. ' ' .. tostring(ok2) .. ' ' .. r .. ' ' .. h}",
    );
    assert_eq!(
        verdict(&a, &json!({"apiVersion": "v1", "kind": "Caught"})),
        HealthVerdict::new(Healthy, "false true 42 handled")
    );
}

#[test]
fn concurrent_evaluations() {
    let a = certificate_check();
    std::thread::scope(|s| {
        for t in 0..8 {
            let a = &a;
            s.spawn(move || {
                for i in 0..50 {
                    let ready = (t + i) % 2 == 0;
                    let obj = certificate(Some((if ready { "True" } else { "False" }, "m")));
                    let v = verdict(a, &obj);
                    assert_eq!(v.status, if ready { Healthy } else { Degraded });
                }
            });
        }
    });
}
