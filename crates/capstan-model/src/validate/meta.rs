//! Rules for `metadata` and for label/annotation maps.

use super::Report;
use super::names::{
    check_dns1123_label, check_dns1123_subdomain, check_label_value, check_qualified_name,
};
use crate::meta::ObjectMeta;
use crate::path::FieldPath;
use indexmap::IndexMap;

/// Kubernetes' limit on the total size of an object's annotations.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

pub(crate) fn check_metadata(report: &mut Report, meta: &ObjectMeta) {
    let path = FieldPath::root().field("metadata");
    let name_path = path.field("name");
    if meta.name.is_empty() {
        report.error(
            &name_path,
            "required; set a name of lowercase letters, digits, '-' and '.'",
        );
    } else {
        report.check(&name_path, check_dns1123_subdomain(&meta.name));
    }
    if !meta.namespace.is_empty() {
        report.check(
            &path.field("namespace"),
            check_dns1123_label(&meta.namespace),
        );
    }
    check_labels(report, &path.field("labels"), &meta.labels);
    check_annotations(report, &path.field("annotations"), &meta.annotations);
    let finalizers = path.field("finalizers");
    for (i, f) in meta.finalizers.iter().enumerate() {
        report.check(&finalizers.index(i), check_qualified_name(f));
    }
    super::check_unique(
        report,
        &finalizers,
        meta.finalizers.iter().map(String::as_str).enumerate(),
        "finalizer",
    );
    if let Some(ts) = &meta.creation_timestamp
        && !ts.is_rfc3339()
    {
        report.error(
            &path.field("creationTimestamp"),
            format!("{ts:?} is not an RFC 3339 time; write e.g. 2024-05-01T12:00:00Z"),
        );
    }
    if let Some(ts) = &meta.deletion_timestamp
        && !ts.is_rfc3339()
    {
        report.error(
            &path.field("deletionTimestamp"),
            format!("{ts:?} is not an RFC 3339 time; write e.g. 2024-05-01T12:00:00Z"),
        );
    }
}

pub(crate) fn check_labels(
    report: &mut Report,
    path: &FieldPath,
    labels: &IndexMap<String, String>,
) {
    for (key, value) in labels {
        let p = path.field(key.as_str());
        report.check(&p, check_qualified_name(key));
        report.check(&p, check_label_value(value));
    }
}

pub(crate) fn check_annotations(
    report: &mut Report,
    path: &FieldPath,
    annotations: &IndexMap<String, String>,
) {
    let mut total = 0;
    for (key, value) in annotations {
        report.check(&path.field(key.as_str()), check_qualified_name(key));
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        report.error(
            path,
            format!(
                "annotations take {total} bytes, over the Kubernetes limit of {MAX_ANNOTATIONS_BYTES}; move large values elsewhere"
            ),
        );
    }
}
