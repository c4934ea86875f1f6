//! `capstand admin health`: the health verdict of each object in a file, with the built-in
//! checks and the custom Lua checks of a configuration, as the controller would judge it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use capstan_engine::health::config::group_kind_key;
use capstan_engine::health::{self, HealthAssessor, HealthConfig, HealthStatusCode};
use serde::Serialize;
use serde_json::Value;

use super::input::{self, Source};
use super::{Outcome, write_out};

pub const EXAMPLES: &str = "\
Output: one JSON object per line (JSON Lines), in file order:
  {\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"namespace\":\"default\",\"name\":\"web\",
   \"status\":\"Progressing\",\"message\":\"Waiting for rollout to finish: ...\",\"check\":\"builtin\"}
`status` is null when the kind has no health check. `check` says what decided: \"lua\" (a custom
check from --config), \"builtin\", \"deletion\" (an object being deleted is Progressing), or
\"none\". A failing Lua check (error, endless loop, too much memory) gives status Unknown with
a message naming the check. With `-o json` the same objects come as one JSON array.

Examples:
  # Judge what is running now
  kubectl get deploy,sts,pods -n shop -o yaml | capstand admin health -

  # Try a custom check before rolling it out (argocd-cm keys, or the whole ConfigMap)
  capstand admin health widget.yaml --config argocd-cm.yaml

  # In CI: fail when anything is Degraded, Missing or Unknown
  capstand admin health live.yaml --config health.yaml --fail-on-unhealthy

  # Everything that is not Healthy
  capstand admin health live.yaml | jq -c 'select(.status != \"Healthy\")'

Exit status:
  0  every object was judged (whatever its health)
  1  --fail-on-unhealthy, and an object is Degraded, Missing or Unknown
  2  a usage or input error: unreadable or malformed file (its position is named), an
     invalid configuration or a Lua check that does not compile (the check is named)

The configuration format is in docs/health.md; this command in docs/admin.md.";

/// Output formats of `capstand admin health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (JSON Lines).
    #[default]
    Jsonl,
    /// One JSON array of the same objects.
    Json,
}

/// Arguments of `capstand admin health`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Live objects: multi-document YAML, JSON, or a List as `kubectl get -o yaml` prints it;
    /// `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Health configuration: Argo CD `argocd-cm` keys
    /// (`resource.customizations.health.<group>_<Kind>: <Lua script>`,
    /// `capstan.health.lua.*` limits), or a whole ConfigMap holding them. Without it, only the
    /// built-in checks apply.
    #[arg(long, short = 'c', value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
    /// Exit with status 1 when any object is Degraded, Missing or Unknown.
    #[arg(long)]
    fail_on_unhealthy: bool,
}

/// One line of output. Field names and order are part of the command's interface.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    api_version: &'a str,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    status: Option<HealthStatusCode>,
    message: String,
    check: &'static str,
}

/// Reads a health configuration file, compiling every Lua check.
pub fn load_assessor(path: &Path) -> anyhow::Result<(HealthConfig, HealthAssessor)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    let config = HealthConfig::from_yaml_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let assessor =
        HealthAssessor::new(&config).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((config, assessor))
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let (config, assessor) = match &args.config {
        Some(path) => load_assessor(path)?,
        None => (HealthConfig::default(), HealthAssessor::builtin_only()),
    };
    let source = Source::read(&args.file)?;
    let objects = input::objects(&source)?;
    if objects.is_empty() {
        eprintln!("capstand admin health: no objects in {}", source.name);
    }
    let mut unhealthy = false;
    let mut records = Vec::with_capacity(objects.len());
    for object in &objects {
        let obj = &object.value;
        let (group, kind) = (health::api_group(obj), health::kind(obj));
        let verdict = assessor.assess(obj);
        let check = if is_pending_deletion(obj) {
            "deletion"
        } else if config
            .customizations
            .iter()
            .any(|c| c.pattern.matches(&group_kind_key(group, kind)))
        {
            "lua"
        } else if verdict.is_some() {
            "builtin"
        } else {
            "none"
        };
        unhealthy |= verdict.as_ref().is_some_and(|v| {
            matches!(
                v.status,
                HealthStatusCode::Degraded | HealthStatusCode::Missing | HealthStatusCode::Unknown
            )
        });
        let message = match &verdict {
            Some(v) => v.message.clone(),
            None => format!(
                "no health check for {}; it does not count towards an Application's health",
                group_kind_key(group, kind)
            ),
        };
        records.push(Record {
            api_version: text(obj, &["apiVersion"]),
            kind,
            namespace: text(obj, &["metadata", "namespace"]),
            name: text(obj, &["metadata", "name"]),
            status: verdict.map(|v| v.status),
            message,
            check,
        });
    }
    let mut out = String::new();
    match args.output {
        Format::Jsonl => {
            for record in &records {
                out.push_str(&serde_json::to_string(record)?);
                out.push('\n');
            }
        }
        Format::Json => {
            out = serde_json::to_string_pretty(&records)?;
            out.push('\n');
        }
    }
    write_out(&out)?;
    Ok(if args.fail_on_unhealthy && unhealthy {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Whether the engine judges the object by its deletion alone (see `HealthAssessor::assess`).
fn is_pending_deletion(obj: &Value) -> bool {
    let metadata = obj.get("metadata");
    let deleting = metadata
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null());
    let hook = metadata
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f.as_str() == Some(health::HOOK_FINALIZER)));
    deleting && !hook
}

fn text<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    capstan_engine::resources::str_at(obj, path)
}
