use crate::health::HealthStatusCode::{
    self, Degraded, Healthy, Missing, Progressing, Suspended, Unknown,
};
use crate::health::{AppResource, HealthAssessor, is_worse};
use serde_json::{Value, json};

const ORDER: [HealthStatusCode; 6] = [Healthy, Suspended, Progressing, Missing, Degraded, Unknown];

#[test]
fn order_matches_argo_cd_is_worse() {
    for (i, a) in ORDER.iter().enumerate() {
        for (j, b) in ORDER.iter().enumerate() {
            assert_eq!(is_worse(*a, *b), j > i, "{a} -> {b}");
        }
    }
}

fn pvc(name: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "status": {"phase": phase}})
}

fn res<'a>(live: Option<&'a Value>, target: Option<&'a Value>) -> AppResource<'a> {
    let obj = live.or(target).expect("one of live/target");
    AppResource {
        group: crate::health::api_group(obj),
        kind: crate::health::kind(obj),
        target,
        live,
    }
}

#[test]
fn worst_status_wins() {
    let assessor = HealthAssessor::builtin_only();
    let bound = pvc("a", "Bound");
    let pending = pvc("b", "Pending");
    let lost = pvc("c", "Lost");
    let suspended_cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}, "spec": {"suspend": true}});

    let health = assessor.app_health(&[res(Some(&bound), None)]);
    assert_eq!(health.status, Healthy);
    let health = assessor.app_health(&[res(Some(&bound), None), res(Some(&suspended_cron), None)]);
    assert_eq!(health.status, Suspended);
    let health = assessor.app_health(&[
        res(Some(&suspended_cron), None),
        res(Some(&pending), None),
        res(Some(&bound), None),
    ]);
    assert_eq!(health.status, Progressing);
    let health = assessor.app_health(&[res(Some(&lost), None), res(Some(&pending), None)]);
    assert_eq!(health.status, Degraded);
    assert_eq!(health.resources.len(), 2);
    assert_eq!(
        health.resources[0].as_ref().map(|v| v.status),
        Some(Degraded)
    );
}

#[test]
fn unknown_from_a_check_counts_but_no_check_does_not() {
    let assessor = HealthAssessor::builtin_only();
    let unknown_pvc =
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}});
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}});
    let bound = pvc("a", "Bound");
    let health = assessor.app_health(&[res(Some(&config_map), None), res(Some(&bound), None)]);
    assert_eq!(health.status, Healthy);
    assert_eq!(health.resources[0], None);
    let health = assessor.app_health(&[res(Some(&unknown_pvc), None), res(Some(&bound), None)]);
    assert_eq!(health.status, Unknown);
}

#[test]
fn missing_resources_do_not_degrade_unless_nothing_is_live() {
    let assessor = HealthAssessor::builtin_only();
    let bound = pvc("a", "Bound");
    let desired = pvc("b", "");
    let health = assessor.app_health(&[res(Some(&bound), Some(&bound)), res(None, Some(&desired))]);
    assert_eq!(health.status, Healthy);
    assert_eq!(
        health.resources[1].as_ref().map(|v| v.status),
        Some(Missing)
    );
    let health = assessor.app_health(&[res(None, Some(&desired))]);
    assert_eq!(health.status, Missing);
    // An empty app is Healthy.
    assert_eq!(assessor.app_health(&[]).status, Healthy);
}

#[test]
fn hooks_ignored_resources_and_child_apps_are_left_out() {
    let assessor = HealthAssessor::builtin_only();
    let bound = pvc("a", "Bound");
    let mut hook = pvc("hook", "Lost");
    hook["metadata"]["annotations"] = json!({"argocd.argoproj.io/hook": "PreSync"});
    let mut helm_hook = pvc("helm-hook", "Lost");
    helm_hook["metadata"]["annotations"] = json!({"helm.sh/hook": "pre-install"});
    let mut ignored = pvc("ignored", "Lost");
    ignored["metadata"]["annotations"] = json!({"argocd.argoproj.io/ignore-healthcheck": "true"});
    let mut skipped = pvc("skipped", "Pending");
    skipped["metadata"]["annotations"] = json!({"argocd.argoproj.io/hook": "Skip"});
    let health = assessor.app_health(&[
        res(Some(&bound), None),
        res(Some(&hook), None),
        res(Some(&helm_hook), None),
        res(Some(&ignored), None),
        res(None, Some(&skipped)),
    ]);
    assert_eq!(health.status, Healthy);
    assert_eq!(health.resources[1..], [None, None, None, None]);

    // A child Application that is Unknown does not make its parent Unknown (needs a check).
    let config = crate::health::HealthConfig::from_yaml_str(
        "resource.customizations.health.argoproj.io_Application: |\n  return {status = obj.status.health.status}\n",
    )
    .expect("config");
    let assessor = HealthAssessor::new(&config).expect("compiles");
    let child = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "child"},
                       "status": {"health": {"status": "Unknown"}}});
    let degraded_child = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "child2"},
                                "status": {"health": {"status": "Degraded"}}});
    let health = assessor.app_health(&[res(Some(&bound), None), res(Some(&child), None)]);
    assert_eq!(health.status, Healthy);
    assert_eq!(
        health.resources[1].as_ref().map(|v| v.status),
        Some(Unknown)
    );
    let health = assessor.app_health(&[res(Some(&bound), None), res(Some(&degraded_child), None)]);
    assert_eq!(health.status, Degraded);
}
