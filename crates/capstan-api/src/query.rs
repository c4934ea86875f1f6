//! Listing Applications the way a fleet needs: filtered on the server (project, cluster,
//! destination namespace, labels, health, sync status, name search), a page at a time with a
//! continue token, and only the fields asked for — so a list of 10,000 Applications does not
//! ship megabytes (Argo CD's unpaginated list is a known cause of API server out-of-memory).
//!
//! [`AppQuery::page`] works on any iterator of stored Applications in key order (the store's
//! listing, or an API replica's watch-fed copy), so every replica answers the same query
//! the same way. The continue token names the last key returned: the next page starts after
//! it, so pages never repeat or skip an Application that exists throughout, while ones
//! created or deleted between pages may or may not appear (as in Kubernetes without a
//! consistent-read resourceVersion).

use std::collections::BTreeSet;

use capstan_model::{Application, ApplicationStatus};
use capstan_store::typed::ObjectRef;
use serde_json::{Map, Value};

/// The default and the largest page size.
pub const DEFAULT_LIMIT: usize = 500;
/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 5_000;

/// A query that cannot be run, with what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// One label requirement of a selector (Kubernetes' syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value` (also true when the label is absent).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)` (also true when the label is absent).
    NotIn(String, BTreeSet<String>),
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &indexmap::IndexMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => !labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// Parses a Kubernetes label selector (`env=prod,tier!=web,team in (a,b),!legacy`); all
/// requirements must hold.
pub fn parse_selector(text: &str) -> Result<Vec<Requirement>, QueryError> {
    let mut requirements = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // One requirement runs to the next top-level comma (commas inside `( )` belong to a set).
        let mut depth = 0usize;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    ',' if depth == 0 => return true,
                    _ => {}
                }
                false
            })
            .map_or(rest.len(), |(i, _)| i);
        let part = rest[..end].trim();
        rest = rest.get(end + 1..).unwrap_or("").trim_start();
        requirements.push(requirement(part)?);
    }
    Ok(requirements)
}

fn requirement(part: &str) -> Result<Requirement, QueryError> {
    let bad = |why: &str| {
        QueryError(format!(
            "label selector {part:?}: {why}; write `key=value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` or `!key`, separated by commas"
        ))
    };
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            Err(bad("the key is empty or has characters labels cannot have"))
        } else {
            Ok(k.to_owned())
        }
    };
    let set = |s: &str| -> Result<BTreeSet<String>, QueryError> {
        let inner = s
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| bad("a set is written in parentheses"))?;
        Ok(inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect())
    };
    if part.is_empty() {
        return Err(bad("an empty requirement"));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, v.trim().to_owned()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, v.trim().to_owned()));
    }
    if let Some((k, s)) = part.split_once(" notin ") {
        return Ok(Requirement::NotIn(key(k)?, set(s)?));
    }
    if let Some((k, s)) = part.split_once(" in ") {
        return Ok(Requirement::In(key(k)?, set(s)?));
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(k)?));
    }
    Ok(Requirement::Exists(key(part)?))
}

/// What to list (every field optional; several values of one field are alternatives).
#[derive(Clone, Debug, Default)]
pub struct AppQuery {
    /// `spec.project` is one of these.
    pub projects: Vec<String>,
    /// The destination's `server` or `name` is one of these.
    pub clusters: Vec<String>,
    /// `spec.destination.namespace` is one of these.
    pub namespaces: Vec<String>,
    /// The Application's labels satisfy every requirement.
    pub selector: Vec<Requirement>,
    /// `status.health.status` is one of these (`Healthy`, `Degraded`, ...).
    pub health: Vec<String>,
    /// `status.sync.status` is one of these (`Synced`, `OutOfSync`, `Unknown`).
    pub sync: Vec<String>,
    /// The name contains this (case-insensitive).
    pub search: String,
    /// At most this many items (0: [`DEFAULT_LIMIT`]).
    pub limit: usize,
    /// Continue after the page that returned this token.
    pub continue_token: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// Set when more items may follow: pass it as [`AppQuery::continue_token`].
    pub continue_token: Option<String>,
}

impl AppQuery {
    fn limit(&self) -> Result<usize, QueryError> {
        match self.limit {
            0 => Ok(DEFAULT_LIMIT),
            n if n > MAX_LIMIT => Err(QueryError(format!(
                "limit {n} is over the maximum of {MAX_LIMIT}; page with the continue token"
            ))),
            n => Ok(n),
        }
    }

    /// Whether the Application matches the filters.
    pub fn matches(
        &self,
        at: &ObjectRef,
        app: &Application,
        status: Option<&ApplicationStatus>,
    ) -> bool {
        let any =
            |wanted: &[String], value: &str| wanted.is_empty() || wanted.iter().any(|w| w == value);
        let dest = &app.spec.destination;
        any(&self.projects, app.spec.project_or_default())
            && (self.clusters.is_empty()
                || self.clusters.iter().any(|c| {
                    (!dest.server.is_empty() && *c == dest.server)
                        || (!dest.name.is_empty() && *c == dest.name)
                }))
            && any(&self.namespaces, &dest.namespace)
            && self
                .selector
                .iter()
                .all(|r| r.matches(&app.metadata.labels))
            && any(
                &self.health,
                status
                    .and_then(|s| s.health.status)
                    .map_or("Unknown", |h| h.as_str()),
            )
            && any(
                &self.sync,
                status
                    .and_then(|s| s.sync.status)
                    .map_or("Unknown", |s| s.as_str()),
            )
            && (self.search.is_empty()
                || at
                    .name
                    .to_ascii_lowercase()
                    .contains(&self.search.to_ascii_lowercase()))
    }

    /// The page of `items` (in key order) this query asks for.
    pub fn page<'a, T: 'a>(
        &self,
        items: impl IntoIterator<
            Item = (
                &'a ObjectRef,
                &'a Application,
                Option<&'a ApplicationStatus>,
                T,
            ),
        >,
    ) -> Result<Page<T>, QueryError> {
        let limit = self.limit()?;
        let after = self
            .continue_token
            .as_deref()
            .map(decode_token)
            .transpose()?;
        let mut page = Vec::new();
        let mut last = None;
        let mut more = false;
        for (at, app, status, item) in items {
            if after.as_ref().is_some_and(|a| at <= a) || !self.matches(at, app, status) {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            last = Some(at.clone());
            page.push(item);
        }
        Ok(Page {
            items: page,
            continue_token: if more {
                last.map(|l| encode_token(&l))
            } else {
                None
            },
        })
    }
}

/// Tokens are the last key, `namespace/name`, hex-encoded so they are opaque and URL-safe.
fn encode_token(at: &ObjectRef) -> String {
    format!("{}/{}", at.namespace, at.name)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_token(token: &str) -> Result<ObjectRef, QueryError> {
    let bad = || {
        QueryError(
            "the continue token is not one this API returned; list again from the start".into(),
        )
    };
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or(""), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (namespace, name) = text.split_once('/').ok_or_else(bad)?;
    Ok(ObjectRef::new(namespace, name))
}

/// Keeps only the given dotted paths of `value` (`metadata.name`, `status.sync.status`);
/// arrays keep their length, each element pruned alike. No paths: `value` unchanged.
pub fn select_fields(value: &Value, paths: &[&str]) -> Value {
    if paths.is_empty() {
        return value.clone();
    }
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
    prune(value, &split.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

fn prune(value: &Value, paths: &[&[&str]]) -> Value {
    if paths.iter().any(|p| p.is_empty()) {
        return value.clone();
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                let rest: Vec<&[&str]> = paths
                    .iter()
                    .filter(|p| p[0] == key)
                    .map(|p| &p[1..])
                    .collect();
                if !rest.is_empty() {
                    out.insert(key.clone(), prune(child, &rest));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| prune(i, paths)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(
        name: &str,
        project: &str,
        server: &str,
        ns: &str,
        labels: &[(&str, &str)],
    ) -> Application {
        // Parsed once; each Application is a copy with its own fields.
        static TEMPLATE: std::sync::LazyLock<Application> = std::sync::LazyLock::new(|| {
            capstan_model::parse_application_yaml(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: t\nspec:\n  project: default\n  source:\n    repoURL: https://git.example.com/r.git\n    path: t\n  destination:\n    server: https://x\n    namespace: t\n",
            )
            .expect("valid")
        });
        let mut app = TEMPLATE.clone();
        app.metadata.name = name.into();
        app.spec.project = project.into();
        app.spec.destination.server = server.into();
        app.spec.destination.namespace = ns.into();
        if let Some(source) = app.spec.source.as_mut() {
            source.path = name.into();
        }
        for (k, v) in labels {
            app.metadata.labels.insert((*k).into(), (*v).into());
        }
        app
    }

    fn status(
        sync: capstan_model::SyncStatusCode,
        health: capstan_model::HealthStatusCode,
    ) -> ApplicationStatus {
        let mut s = ApplicationStatus::default();
        s.sync.status = Some(sync);
        s.health.status = Some(health);
        s
    }

    type Row = (ObjectRef, Application, Option<ApplicationStatus>);

    /// 10,000 Applications over 4 projects, 3 clusters, in key order.
    fn fleet() -> Vec<Row> {
        use capstan_model::{HealthStatusCode as H, SyncStatusCode as S};
        (0..10_000)
            .map(|i| {
                let name = format!("app-{i:05}");
                let project = ["web", "data", "ml", "ops"][i % 4];
                let server = [
                    "https://a.example.com",
                    "https://b.example.com",
                    "https://c.example.com",
                ][i % 3];
                let tier = if i % 2 == 0 { "frontend" } else { "backend" };
                let labels: Vec<(&str, &str)> = if i % 10 == 0 {
                    vec![("tier", tier), ("legacy", "yes")]
                } else {
                    vec![("tier", tier)]
                };
                let a = app(&name, project, server, &format!("ns-{}", i % 7), &labels);
                let st = (i % 5 != 0).then(|| {
                    status(
                        if i % 3 == 0 { S::OutOfSync } else { S::Synced },
                        if i % 11 == 0 { H::Degraded } else { H::Healthy },
                    )
                });
                (ObjectRef::new("capstan", name), a, st)
            })
            .collect()
    }

    fn run(rows: &[Row], q: &AppQuery) -> Page<String> {
        q.page(
            rows.iter()
                .map(|(at, a, s)| (at, a, s.as_ref(), at.name.clone())),
        )
        .expect("runs")
    }

    fn naive(rows: &[Row], q: &AppQuery) -> Vec<String> {
        rows.iter()
            .filter(|(at, a, s)| q.matches(at, a, s.as_ref()))
            .map(|(at, ..)| at.name.clone())
            .collect()
    }

    #[test]
    fn pages_cover_every_match_exactly_once_in_order() {
        let rows = fleet();
        let mut q = AppQuery {
            projects: vec!["web".into(), "ml".into()],
            selector: parse_selector("tier=frontend,!legacy").expect("parses"),
            limit: 333,
            ..AppQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = run(&rows, &q);
            assert!(page.items.len() <= 333);
            seen.extend(page.items);
            match page.continue_token {
                Some(token) => q.continue_token = Some(token),
                None => break,
            }
        }
        assert_eq!(
            seen,
            naive(
                &rows,
                &AppQuery {
                    limit: 0,
                    continue_token: None,
                    ..q.clone()
                }
            )
        );
        assert!(!seen.is_empty());
    }

    #[test]
    fn every_filter_narrows_as_it_says() {
        let rows = fleet();
        let check = |q: AppQuery, expect: &dyn Fn(&Row) -> bool| {
            let got = run(
                &rows,
                &AppQuery {
                    limit: MAX_LIMIT,
                    ..q
                },
            );
            let want: Vec<String> = rows
                .iter()
                .filter(|r| expect(r))
                .take(MAX_LIMIT)
                .map(|(at, ..)| at.name.clone())
                .collect();
            assert_eq!(got.items, want);
        };
        check(
            AppQuery {
                clusters: vec!["https://b.example.com".into()],
                ..AppQuery::default()
            },
            &|(_, a, _)| a.spec.destination.server == "https://b.example.com",
        );
        check(
            AppQuery {
                namespaces: vec!["ns-3".into()],
                ..AppQuery::default()
            },
            &|(_, a, _)| a.spec.destination.namespace == "ns-3",
        );
        check(
            AppQuery {
                sync: vec!["OutOfSync".into()],
                health: vec!["Degraded".into()],
                ..AppQuery::default()
            },
            &|(_, _, s)| {
                s.as_ref().is_some_and(|s| {
                    s.sync.status == Some(capstan_model::SyncStatusCode::OutOfSync)
                        && s.health.status == Some(capstan_model::HealthStatusCode::Degraded)
                })
            },
        );
        // No status yet counts as Unknown.
        check(
            AppQuery {
                sync: vec!["Unknown".into()],
                ..AppQuery::default()
            },
            &|(_, _, s)| s.is_none(),
        );
        check(
            AppQuery {
                search: "APP-0012".into(),
                ..AppQuery::default()
            },
            &|(at, ..)| at.name.starts_with("app-0012"),
        );
    }

    #[test]
    fn a_first_page_of_ten_thousand_is_small() {
        let rows = fleet();
        let page = run(
            &rows,
            &AppQuery {
                limit: 50,
                ..AppQuery::default()
            },
        );
        assert_eq!(page.items.len(), 50);
        assert!(page.continue_token.is_some());
        // Field selection: what a list view needs of each Application.
        let full = serde_json::to_value(&rows[0].1).expect("json");
        let slim = select_fields(&full, &["metadata.name", "spec.destination.namespace"]);
        assert_eq!(
            slim,
            serde_json::json!({"metadata": {"name": "app-00000"}, "spec": {"destination": {"namespace": "ns-0"}}})
        );
        assert!(slim.to_string().len() * 2 < full.to_string().len());
    }

    #[test]
    fn selectors_parse_like_kubernetes_and_bad_ones_say_how_to_write_them() {
        assert_eq!(
            parse_selector("env=prod, tier != web,team in (a, b),zone notin (x),owner,!legacy")
                .expect("parses"),
            vec![
                Requirement::Equals("env".into(), "prod".into()),
                Requirement::NotEquals("tier".into(), "web".into()),
                Requirement::In("team".into(), ["a".to_owned(), "b".to_owned()].into()),
                Requirement::NotIn("zone".into(), ["x".to_owned()].into()),
                Requirement::Exists("owner".into()),
                Requirement::DoesNotExist("legacy".into()),
            ]
        );
        assert_eq!(parse_selector("").expect("empty is everything"), vec![]);
        for bad in ["env=prod,,x", "team in a,b", "bad key=1", "=v"] {
            let err = parse_selector(bad).expect_err(bad);
            assert!(err.0.contains("write `key=value`"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_tokens_and_limits_are_refused() {
        let rows = fleet();
        for token in ["zz", "abc", "ffff"] {
            let q = AppQuery {
                continue_token: Some(token.into()),
                ..AppQuery::default()
            };
            let err = q
                .page(rows.iter().map(|(at, a, s)| (at, a, s.as_ref(), ())))
                .expect_err(token);
            assert!(err.0.contains("continue token"), "{err}");
        }
        let q = AppQuery {
            limit: MAX_LIMIT + 1,
            ..AppQuery::default()
        };
        assert!(
            q.page(rows.iter().map(|(at, a, s)| (at, a, s.as_ref(), ())))
                .is_err()
        );
    }
}
