//! Rules for `AppProject`, following Argo CD's project validation (destinations, sources,
//! roles and their Casbin policy lines, group names, sync windows).

use super::cron::check_cron;
use super::duration::parse_go_duration;
use super::glob::check_glob;
use super::meta::check_metadata;
use super::names::{check_dns1123_label, check_dns1123_subdomain};
use super::{Report, Validate, ValidationErrors, check_unique};
use crate::path::FieldPath;
use crate::project::{AppProject, GroupKind, ProjectRole, SyncWindow};

/// Resources a project role's policies may name.
pub const PROJECT_POLICY_RESOURCES: &[&str] = &[
    "applications",
    "applicationsets",
    "repositories",
    "clusters",
    "exec",
    "logs",
];

/// Actions a project role's policies may name (besides `action/…`, `update/…`,
/// `delete/…`).
pub const PROJECT_POLICY_ACTIONS: &[&str] =
    &["get", "create", "update", "delete", "sync", "override", "*"];

impl Validate for AppProject {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        check_metadata(&mut report, &self.metadata);
        let spec = &self.spec;
        let path = FieldPath::root().field("spec");

        let repos = path.field("sourceRepos");
        for (i, repo) in spec.source_repos.iter().enumerate() {
            let p = repos.index(i);
            if repo.is_empty() {
                report.error(
                    &p,
                    "empty; write a repository URL or glob, e.g. https://github.com/org/*",
                );
            } else if repo == "!*" {
                report.error(&p, "\"!*\" denies every repository; remove it");
            } else {
                report.check(&p, check_glob(repo.trim_start_matches('!')));
            }
        }
        check_unique(
            &mut report,
            &repos,
            spec.source_repos.iter().map(String::as_str).enumerate(),
            "repository",
        );

        let namespaces = path.field("sourceNamespaces");
        for (i, ns) in spec.source_namespaces.iter().enumerate() {
            let p = namespaces.index(i);
            if ns.is_empty() {
                report.error(&p, "empty; write a namespace or glob");
            } else {
                report.check(&p, check_glob(ns.trim_start_matches('!')));
            }
        }
        check_unique(
            &mut report,
            &namespaces,
            spec.source_namespaces
                .iter()
                .map(String::as_str)
                .enumerate(),
            "namespace",
        );

        let dests = path.field("destinations");
        let mut keys = Vec::new();
        for (i, d) in spec.destinations.iter().enumerate() {
            let p = dests.index(i);
            if d.server.is_empty() && d.name.is_empty() {
                report.error(&p, "set server or name (globs allowed, e.g. server: '*')");
            }
            for (field, value) in [
                ("server", &d.server),
                ("name", &d.name),
                ("namespace", &d.namespace),
            ] {
                if value == "!*" {
                    report.error(
                        &p.field(field),
                        "\"!*\" matches nothing; remove the destination instead",
                    );
                } else if !value.is_empty() {
                    report.check(&p.field(field), check_glob(value.trim_start_matches('!')));
                }
            }
            let cluster = if d.server.is_empty() {
                &d.name
            } else {
                &d.server
            };
            keys.push(format!("{cluster}/{}", d.namespace));
        }
        check_unique(
            &mut report,
            &dests,
            keys.iter().map(String::as_str).enumerate(),
            "destination",
        );

        let dsas = path.field("destinationServiceAccounts");
        let mut keys = Vec::new();
        for (i, d) in spec.destination_service_accounts.iter().enumerate() {
            let p = dsas.index(i);
            if d.server.is_empty() {
                report.error(
                    &p.field("server"),
                    "required; set the destination server URL (globs allowed)",
                );
            } else if d.server == "!*" {
                report.error(
                    &p.field("server"),
                    "\"!*\" matches nothing; remove the entry instead",
                );
            } else {
                report.check(
                    &p.field("server"),
                    check_glob(d.server.trim_start_matches('!')),
                );
            }
            if d.namespace == "!*" {
                report.error(
                    &p.field("namespace"),
                    "\"!*\" matches nothing; remove the entry instead",
                );
            } else if !d.namespace.is_empty() {
                report.check(
                    &p.field("namespace"),
                    check_glob(d.namespace.trim_start_matches('!')),
                );
            }
            report.check(
                &p.field("defaultServiceAccount"),
                check_service_account(&d.default_service_account),
            );
            keys.push(format!("{}/{}", d.server, d.namespace));
        }
        check_unique(
            &mut report,
            &dsas,
            keys.iter().map(String::as_str).enumerate(),
            "destination",
        );

        for (field, list) in [
            ("clusterResourceWhitelist", &spec.cluster_resource_whitelist),
            ("clusterResourceBlacklist", &spec.cluster_resource_blacklist),
            (
                "namespaceResourceBlacklist",
                &spec.namespace_resource_blacklist,
            ),
        ] {
            check_group_kinds(&mut report, &path.field(field), list);
        }
        if let Some(list) = &spec.namespace_resource_whitelist {
            check_group_kinds(&mut report, &path.field("namespaceResourceWhitelist"), list);
        }

        let roles = path.field("roles");
        for (i, role) in spec.roles.iter().enumerate() {
            check_role(&mut report, &roles.index(i), &self.metadata.name, role);
        }
        check_unique(
            &mut report,
            &roles,
            spec.roles.iter().map(|r| r.name.as_str()).enumerate(),
            "role",
        );

        let windows = path.field("syncWindows");
        for (i, w) in spec.sync_windows.iter().enumerate() {
            check_window(&mut report, &windows.index(i), w);
        }
        let window_keys: Vec<String> = spec
            .sync_windows
            .iter()
            .map(|w| {
                format!(
                    "{} {} for {}",
                    w.kind.map(|k| k.as_str()).unwrap_or(""),
                    w.schedule,
                    w.duration
                )
            })
            .collect();
        check_unique(
            &mut report,
            &windows,
            window_keys.iter().map(String::as_str).enumerate(),
            "window",
        );

        let keys_path = path.field("signatureKeys");
        for (i, k) in spec.signature_keys.iter().enumerate() {
            let id = &k.key_id;
            let hex = id.chars().all(|c| c.is_ascii_hexdigit());
            if !(hex && (id.len() == 16 || id.len() == 40)) {
                report.error(
                    &keys_path.index(i).field("keyID"),
                    format!("{id:?} is not a GPG key id; write the 16 hex digit long key id (or the 40-digit fingerprint)"),
                );
            }
        }
        report.finish()
    }
}

fn check_service_account(sa: &str) -> Result<(), String> {
    if sa.is_empty() {
        return Err("required; name the service account, as name or namespace:name".to_owned());
    }
    let (ns, name) = match sa.split_once(':') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, sa),
    };
    if let Some(ns) = ns {
        check_dns1123_label(ns).map_err(|e| format!("namespace of {sa:?}: {e}"))?;
    }
    check_dns1123_subdomain(name).map_err(|e| format!("service account of {sa:?}: {e}"))
}

fn check_group_kinds(report: &mut Report, path: &FieldPath, list: &[GroupKind]) {
    for (i, gk) in list.iter().enumerate() {
        if gk.kind.is_empty() {
            report.error(
                &path.index(i).field("kind"),
                "required; set the kind, or * for every kind",
            );
        } else {
            report.check(&path.index(i).field("kind"), check_glob(&gk.kind));
        }
        if !gk.group.is_empty() {
            report.check(&path.index(i).field("group"), check_glob(&gk.group));
        }
    }
}

fn is_role_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !name.is_empty()
        && name.chars().all(|c| alnum(c) || c == '-' || c == '_')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

fn check_role(report: &mut Report, path: &FieldPath, project: &str, role: &ProjectRole) {
    if !is_role_name(&role.name) {
        report.error(
            &path.field("name"),
            format!(
                "{:?} is not a valid role name; use letters, digits, '-' and '_', starting and ending with a letter or digit",
                role.name
            ),
        );
    }
    let policies = path.field("policies");
    for (i, policy) in role.policies.iter().enumerate() {
        report.check(
            &policies.index(i),
            check_policy(project, &role.name, policy),
        );
    }
    check_unique(
        report,
        &policies,
        role.policies.iter().map(String::as_str).enumerate(),
        "policy",
    );
    let groups = path.field("groups");
    for (i, group) in role.groups.iter().enumerate() {
        report.check(&groups.index(i), check_group_name(group));
    }
    check_unique(
        report,
        &groups,
        role.groups.iter().map(String::as_str).enumerate(),
        "group",
    );
    let tokens = path.field("jwtTokens");
    for (i, t) in role.jwt_tokens.iter().enumerate() {
        if t.expires_at != 0 && t.expires_at < t.issued_at {
            report.error(
                &tokens.index(i).field("exp"),
                "expires before it was issued; fix iat or exp",
            );
        }
    }
}

/// Checks one Casbin policy line of a project role:
/// `p, proj:<project>:<role>, <resource>, <action>, <project>/<object>, allow|deny`.
pub fn check_policy(project: &str, role: &str, policy: &str) -> Result<(), String> {
    let parts: Vec<&str> = policy.split(',').map(str::trim).collect();
    if parts.len() != 6 || parts[0] != "p" {
        return Err(format!(
            "{policy:?} is not a policy line; write p, proj:{project}:{role}, <resource>, <action>, {project}/<object>, allow|deny"
        ));
    }
    let subject = format!("proj:{project}:{role}");
    if parts[1] != subject {
        return Err(format!(
            "policy subject must be {subject}, not {:?}",
            parts[1]
        ));
    }
    if !PROJECT_POLICY_RESOURCES.contains(&parts[2]) {
        return Err(format!(
            "policy resource {:?} is not allowed in a project; use one of {}",
            parts[2],
            crate::suggest::quoted_list(PROJECT_POLICY_RESOURCES)
        ));
    }
    let action = parts[3];
    let action_ok = PROJECT_POLICY_ACTIONS.contains(&action)
        || ["action/", "update/", "delete/"]
            .iter()
            .any(|prefix| action.starts_with(prefix));
    if !action_ok {
        return Err(format!(
            "policy action {action:?} is not valid; use one of {} or action/<group>/<kind>/<name>",
            crate::suggest::quoted_list(PROJECT_POLICY_ACTIONS)
        ));
    }
    let object = parts[4];
    let object_ok = object
        .strip_prefix(project)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| {
            let segs: Vec<&str> = rest.split('/').collect();
            (1..=2).contains(&segs.len())
                && segs.iter().all(|s| {
                    !s.is_empty()
                        && s.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '-' | '.')
                        })
                })
        });
    if !object_ok {
        return Err(format!(
            "policy object {object:?} must be {project}/*, {project}/<app> or {project}/<namespace>/<app>"
        ));
    }
    if parts[5] != "allow" && parts[5] != "deny" {
        return Err(format!(
            "policy effect {:?} must be allow or deny",
            parts[5]
        ));
    }
    Ok(())
}

/// Checks an SSO group name bound to a role, as Argo CD does.
pub fn check_group_name(group: &str) -> Result<(), String> {
    let trimmed = group.trim();
    let inner = if trimmed.len() > 1 && trimmed.starts_with('"') && trimmed.ends_with('"') {
        &trimmed[1..trimmed.len() - 1]
    } else if trimmed.contains(',') {
        return Err(format!("group {group:?} contains ',' and must be quoted"));
    } else {
        trimmed
    };
    if inner.is_empty() {
        return Err("group name is empty; remove it or name an SSO group".to_owned());
    }
    if inner.contains(['"', '\n', '\r', '\t']) {
        return Err(format!(
            "group {group:?} contains quotes, tabs or line breaks; remove them"
        ));
    }
    if group.starts_with(char::is_whitespace) || group.ends_with(char::is_whitespace) {
        return Err(format!(
            "group {group:?} has leading or trailing spaces; remove them"
        ));
    }
    Ok(())
}

fn check_window(report: &mut Report, path: &FieldPath, w: &SyncWindow) {
    if w.kind.is_none() {
        report.error(&path.field("kind"), "required; set allow or deny");
    }
    if w.schedule.is_empty() {
        report.error(
            &path.field("schedule"),
            "required; set a 5-field cron expression, e.g. \"0 22 * * *\"",
        );
    } else {
        report.check(&path.field("schedule"), check_cron(&w.schedule));
    }
    if w.duration.is_empty() {
        report.error(
            &path.field("duration"),
            "required; set how long the window stays open, e.g. 1h",
        );
    } else {
        match parse_go_duration(&w.duration) {
            Ok(d) if d.is_zero() => report.error(
                &path.field("duration"),
                "is zero, so the window never opens; set a positive duration such as 1h",
            ),
            Ok(_) => {}
            Err(e) => report.error(&path.field("duration"), e.to_string()),
        }
    }
    if w.applications.is_empty() && w.namespaces.is_empty() && w.clusters.is_empty() {
        report.error(
            path,
            "set applications, namespaces or clusters to say which Applications the window applies to (\"*\" for all)",
        );
    }
    for (field, list) in [
        ("applications", &w.applications),
        ("namespaces", &w.namespaces),
        ("clusters", &w.clusters),
    ] {
        for (i, pattern) in list.iter().enumerate() {
            report.check(&path.field(field).index(i), check_glob(pattern));
        }
    }
    if !w.time_zone.is_empty() {
        report.check(&path.field("timeZone"), check_time_zone(&w.time_zone));
    }
    if w.description.chars().count() > 255 {
        report.error(
            &path.field("description"),
            "is longer than 255 characters; shorten it",
        );
    }
}

/// Checks the shape of an IANA time zone name (`UTC`, `Europe/Berlin`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+2`). The zone database itself is not
/// consulted (the model has no I/O).
fn check_time_zone(tz: &str) -> Result<(), String> {
    let ok = tz.split('/').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    }) && tz.starts_with(|c: char| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tz:?} is not a time zone name; write an IANA name such as UTC or Europe/Berlin"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let ok = "p, proj:team:dev, applications, sync, team/*, allow";
        assert_eq!(check_policy("team", "dev", ok), Ok(()));
        assert!(
            check_policy(
                "team",
                "dev",
                "p, proj:team:dev, applications, action/apps/Deployment/restart, team/ns/app, deny"
            )
            .is_ok()
        );
        let err = |p: &str| check_policy("team", "dev", p).expect_err(p);
        assert!(err("p, proj:team:dev, applications, sync, team/*").contains("not a policy line"));
        assert!(
            err("p, proj:other:dev, applications, sync, team/*, allow")
                .contains("subject must be proj:team:dev")
        );
        assert!(
            err("p, proj:team:dev, accounts, get, team/*, allow").contains("resource \"accounts\"")
        );
        assert!(
            err("p, proj:team:dev, applications, fly, team/*, allow").contains("action \"fly\"")
        );
        assert!(
            err("p, proj:team:dev, applications, get, other/*, allow").contains("must be team/*")
        );
        assert!(
            err("p, proj:team:dev, applications, get, team/*, maybe").contains("allow or deny")
        );
    }

    #[test]
    fn groups_and_zones() {
        assert!(check_group_name("my-org:team").is_ok());
        assert!(check_group_name("\"a,b\"").is_ok());
        assert!(check_group_name("a,b").is_err());
        assert!(check_group_name(" a").is_err());
        assert!(check_group_name("").is_err());
        assert!(check_time_zone("Europe/Berlin").is_ok());
        assert!(check_time_zone("Etc/GMT+2").is_ok());
        assert!(check_time_zone("Not a zone").is_err());
    }
}
