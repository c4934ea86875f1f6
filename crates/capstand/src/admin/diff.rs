//! `capstand admin diff`: compares desired manifests with live objects the way the controller
//! does (normalisation, projection, the configured `ignoreDifferences`, Secret masking), and
//! prints which resources differ and how.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use capstan_engine::resources::ResourceKey;
use serde::Serialize;
use serde_json::Value;

use super::ignore::IgnoreRules;
use super::input::{self, Located, Source};
use super::{Outcome, write_out};

pub const EXAMPLES: &str = "\
Objects are paired by group, kind, namespace and name (not by version). A desired manifest
without a namespace is paired with the live object in --namespace, if given. An object in
only one file is a difference (missing live, or not desired).

Output (text): a block per resource, `===== <group/Kind> <namespace/name>: <state> ======`
where state is `equal`, `differs`, `missing live` or `not desired`, followed by the unified
diff from live to desired in YAML. Secret values are masked. `-o json` prints a JSON array
of {group, kind, namespace, name, modified, unified, live, desired}, where live and desired
are the normalised objects the comparison saw (null when absent).

Examples:
  # Does my manifest match what runs?
  kubectl get deploy web -n shop -o yaml > live.yaml
  capstand admin diff --live live.yaml --desired web.yaml --namespace shop

  # Check that an ignoreDifferences rule hides the autoscaler's replicas
  capstand admin diff --live live.yaml --desired web.yaml --config argocd-cm.yaml

  # Rendered manifests on stdin
  kustomize build overlays/prod | capstand admin diff --live live.yaml --desired -

Exit status:
  0  no differences
  1  differences
  2  a usage or input error: unreadable or malformed file (its position is named), an
     invalid configuration (the key is named), the same object twice in one file

The configuration format is in docs/admin.md; what counts as a difference in docs/diff.md.";

/// Output formats of `capstand admin diff`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header per resource and its unified diff.
    #[default]
    Text,
    /// One JSON array, an object per resource.
    Json,
}

/// Arguments of `capstand admin diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Live objects, e.g. from `kubectl get -o yaml`: multi-document YAML, JSON or a List;
    /// `-` reads standard input.
    #[arg(long, value_name = "LIVE")]
    live: PathBuf,
    /// Desired manifests, e.g. rendered from Git: multi-document YAML, JSON or a List; `-`
    /// reads standard input.
    #[arg(long, value_name = "DESIRED")]
    desired: PathBuf,
    /// Configuration with system-wide ignoreDifferences: Argo CD `argocd-cm` keys
    /// (`resource.customizations.ignoreDifferences.<group>_<Kind>`), an `ignoreDifferences:`
    /// list in an Application's form, or a whole ConfigMap; the same file `admin health`
    /// reads.
    #[arg(long, short = 'c', value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Namespace of desired manifests that name none (an Application's destination
    /// namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

/// One resource of the JSON output. Field names and order are part of the interface.
#[derive(Debug, Serialize)]
struct Record {
    group: String,
    kind: String,
    namespace: String,
    name: String,
    modified: bool,
    unified: String,
    live: Option<Value>,
    desired: Option<Value>,
}

impl Record {
    fn state(&self) -> &'static str {
        match (&self.live, &self.desired) {
            (None, _) => "missing live",
            (_, None) => "not desired",
            _ if self.modified => "differs",
            _ => "equal",
        }
    }
}

/// Objects of one file by key, refusing the same object twice.
fn index(
    objects: Vec<Located>,
) -> anyhow::Result<(Vec<ResourceKey>, BTreeMap<ResourceKey, Located>)> {
    let mut order = Vec::with_capacity(objects.len());
    let mut by_key: BTreeMap<ResourceKey, Located> = BTreeMap::new();
    for object in objects {
        let key = ResourceKey::of(&object.value);
        if let Some(first) = by_key.get(&key) {
            bail!(
                "{}: {key} appears a second time (first at {}); each object may appear once per file",
                object.origin,
                first.origin
            );
        }
        order.push(key.clone());
        by_key.insert(key, object);
    }
    Ok((order, by_key))
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    if args.live.as_os_str() == "-" && args.desired.as_os_str() == "-" {
        bail!("--live and --desired cannot both read standard input (`-`)");
    }
    let rules = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration {}", path.display()))?;
            IgnoreRules::from_yaml_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => IgnoreRules::default(),
    };
    let live_source = Source::read(&args.live)?;
    let desired_source = Source::read(&args.desired)?;
    let (live_order, mut live) = index(input::objects(&live_source)?)?;
    let (desired_order, mut desired) = index(input::objects(&desired_source)?)?;

    // Pair in the desired file's order, then the live objects nothing asked for.
    let mut pairs: Vec<(ResourceKey, Option<Located>, Option<Located>)> = Vec::new();
    for key in desired_order {
        let Some(mut d) = desired.remove(&key) else {
            continue;
        };
        let defaulted = match &args.namespace {
            Some(ns) if key.namespace.is_empty() => Some(key.clone().in_namespace(ns)),
            _ => None,
        };
        let (key, l) = match defaulted.and_then(|k| live.remove(&k).map(|l| (k, l))) {
            Some((k, l)) => {
                // As the controller does for a namespaced manifest: it lives in the
                // destination namespace, which rules naming a namespace then match.
                if let Some(meta) = d.value.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("namespace".to_owned(), Value::String(k.namespace.clone()));
                }
                (k, Some(l))
            }
            None => {
                let l = live.remove(&key);
                (key, l)
            }
        };
        pairs.push((key, Some(d), l));
    }
    for key in live_order {
        // Paired objects were taken out of `live` above.
        if let Some(l) = live.remove(&key) {
            pairs.push((key, None, Some(l)));
        }
    }

    let mut records = Vec::with_capacity(pairs.len());
    for (key, d, l) in pairs {
        let reference = d.as_ref().or(l.as_ref()).map(|o| &o.value);
        let ignore = reference.map(|o| rules.for_object(o)).unwrap_or_default();
        let result = capstan_engine::diff::diff(
            d.as_ref().map(|o| &o.value),
            l.as_ref().map(|o| &o.value),
            &ignore,
        )
        .map_err(|e| match &args.config {
            // Most comparison errors come from an ignoreDifferences rule.
            Some(config) => {
                anyhow::anyhow!("{key}: {e} (ignoreDifferences from {})", config.display())
            }
            None => anyhow::anyhow!("{key}: {e}"),
        })?;
        records.push(Record {
            group: key.group,
            kind: key.kind,
            namespace: key.namespace,
            name: key.name,
            modified: result.modified,
            unified: result.unified,
            live: result.live,
            desired: result.desired,
        });
    }

    let differing = records.iter().filter(|r| r.modified).count();
    let out = match args.output {
        Format::Text => text_report(&records),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&records)?;
            s.push('\n');
            s
        }
    };
    write_out(&out)?;
    eprintln!(
        "capstand admin diff: {differing} of {} resource(s) differ{}",
        records.len(),
        if rules.is_empty() {
            ""
        } else {
            " (after the configured ignoreDifferences)"
        }
    );
    Ok(if differing > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn text_report(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        let key = ResourceKey {
            group: record.group.clone(),
            kind: record.kind.clone(),
            namespace: record.namespace.clone(),
            name: record.name.clone(),
        };
        out.push_str(&format!("===== {key}: {} ======\n", record.state()));
        if record.modified {
            out.push_str(&record.unified);
            if !record.unified.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}
