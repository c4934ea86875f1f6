//! Orphaned resources (`AppProject.spec.orphanedResources`, Argo CD's monitoring): top-level
//! objects in an Application's destination namespace that no Application tracks. With
//! `warn: true` the Application gets an `OrphanedResourceWarning` condition naming how many
//! there are and a few of them.
//!
//! Never orphans (Argo CD's exceptions): objects with an owner (a ReplicaSet's Pods belong
//! to it), kinds the project denies in namespaces (the cluster administrator's), the
//! `default` ServiceAccount, the `kube-root-ca.crt` ConfigMap, the `kubernetes` Service in
//! `default`, and what the project's `ignore` list matches (group, kind and name globs; an
//! empty field matches anything).

use capstan_engine::cache::ClusterCache;
use capstan_engine::resources::ResourceKey;
use capstan_model::OrphanedResourceKey;
use globset::Glob;

use crate::project::ProjectPolicy;

/// The condition type Argo CD uses.
pub const ORPHANED_RESOURCE_WARNING: &str = "OrphanedResourceWarning";

/// How many orphans a condition names before "and N more".
const NAMED: usize = 5;

/// The orphans in `namespace`, sorted.
pub fn find(
    cache: &ClusterCache,
    namespace: &str,
    rules: &ProjectPolicy,
    ignore: &[OrphanedResourceKey],
) -> Vec<ResourceKey> {
    if namespace.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<ResourceKey> = cache
        .kinds()
        .into_iter()
        .filter(|k| k.namespaced)
        .flat_map(|k| cache.keys(&k.group_kind, namespace))
        .filter(|key| {
            !always_ignored(key)
                && !ignored(key, ignore)
                && rules.check_resource(key, true).is_none()
                && cache.apps_of(key).is_empty()
                && cache.node(key).is_some_and(|n| n.parents.is_empty())
        })
        .collect();
    found.sort();
    found
}

/// The condition's message for `orphans` (at least one).
pub fn message(orphans: &[ResourceKey]) -> String {
    let named: Vec<String> = orphans
        .iter()
        .take(NAMED)
        .map(|k| {
            if k.group.is_empty() {
                format!("{}/{}", k.kind, k.name)
            } else {
                format!("{}/{}/{}", k.group, k.kind, k.name)
            }
        })
        .collect();
    let more = orphans.len().saturating_sub(NAMED);
    format!(
        "Application has {} orphaned resources: {}{}",
        orphans.len(),
        named.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn always_ignored(key: &ResourceKey) -> bool {
    let core = key.group.is_empty();
    (core && key.kind == "ServiceAccount" && key.name == "default")
        || (core && key.kind == "ConfigMap" && key.name == "kube-root-ca.crt")
        || (core && key.kind == "Service" && key.name == "kubernetes" && key.namespace == "default")
}

fn ignored(key: &ResourceKey, ignore: &[OrphanedResourceKey]) -> bool {
    let matches = |pattern: &str, value: &str| {
        pattern.is_empty() || Glob::new(pattern).is_ok_and(|g| g.compile_matcher().is_match(value))
    };
    ignore.iter().any(|i| {
        matches(&i.group, &key.group) && matches(&i.kind, &key.kind) && matches(&i.name, &key.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, kind: &str, ns: &str, name: &str) -> ResourceKey {
        ResourceKey {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_exceptions_and_the_ignore_list() {
        assert!(always_ignored(&key("", "ServiceAccount", "web", "default")));
        assert!(always_ignored(&key(
            "",
            "ConfigMap",
            "web",
            "kube-root-ca.crt"
        )));
        assert!(always_ignored(&key("", "Service", "default", "kubernetes")));
        assert!(!always_ignored(&key("", "Service", "web", "kubernetes")));
        let ignore = [
            OrphanedResourceKey {
                group: String::new(),
                kind: "Secret".into(),
                name: "cert-*".into(),
            },
            OrphanedResourceKey {
                group: "apps".into(),
                kind: String::new(),
                name: String::new(),
            },
        ];
        assert!(ignored(&key("", "Secret", "web", "cert-web"), &ignore));
        assert!(!ignored(&key("", "Secret", "web", "db-password"), &ignore));
        assert!(ignored(
            &key("apps", "Deployment", "web", "anything"),
            &ignore
        ));
    }

    #[test]
    fn the_message_names_a_few_and_counts_the_rest() {
        let orphans: Vec<ResourceKey> = (0..7)
            .map(|i| key("", "ConfigMap", "web", &format!("debug-{i}")))
            .collect();
        assert_eq!(
            message(&orphans[..1]),
            "Application has 1 orphaned resources: ConfigMap/debug-0"
        );
        let long = message(&orphans);
        assert!(long.starts_with("Application has 7 orphaned resources: ConfigMap/debug-0"));
        assert!(long.ends_with("and 2 more"), "{long}");
    }
}
