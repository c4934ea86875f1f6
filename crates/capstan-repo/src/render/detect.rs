//! Choosing the renderer of a source that does not name one, as Argo CD does.
//!
//! A source that sets `helm`, `kustomize`, `directory` or `plugin` uses that tool; a source
//! with `chart` is a Helm chart from a Helm repository. Otherwise the files directly in the
//! source directory decide: a kustomization file (`kustomization.yaml`, `kustomization.yml`,
//! `Kustomization`) means Kustomize — even next to a `Chart.yaml`, as in Argo CD, whose walk
//! sees `Chart.yaml` first and lets the kustomization win —, a file whose name ends in
//! `Chart.yaml` means Helm, anything else is a plain directory.

use capstan_model::{ApplicationSource, SourceType};

use super::kustomize::KUSTOMIZATION_FILES;

/// The renderer for `source`, given the names of the files directly in its directory.
/// Fails when the source names more than one tool.
pub fn source_type<'a>(
    source: &ApplicationSource,
    top_level_files: impl IntoIterator<Item = &'a str>,
) -> Result<SourceType, String> {
    let explicit = source.explicit_types();
    match explicit.as_slice() {
        [one] => return Ok(*one),
        [] => {}
        many => {
            let names: Vec<&str> = many.iter().map(|t| t.as_str()).collect();
            return Err(format!(
                "the source sets options for several tools ({}); keep only one",
                names.join(", ")
            ));
        }
    }
    if source.is_helm_chart() {
        return Ok(SourceType::Helm);
    }
    Ok(detect(top_level_files))
}

/// The tool implied by the names of the files directly in a source directory.
pub fn detect<'a>(top_level_files: impl IntoIterator<Item = &'a str>) -> SourceType {
    let mut helm = false;
    for name in top_level_files {
        if KUSTOMIZATION_FILES.contains(&name) {
            return SourceType::Kustomize;
        }
        helm |= name.ends_with("Chart.yaml");
    }
    if helm {
        SourceType::Helm
    } else {
        SourceType::Directory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_follows_argo_cd() {
        assert_eq!(detect(["Chart.yaml", "values.yaml"]), SourceType::Helm);
        assert_eq!(
            detect(["kustomization.yaml", "deploy.yaml"]),
            SourceType::Kustomize
        );
        assert_eq!(detect(["Kustomization"]), SourceType::Kustomize);
        assert_eq!(
            detect(["Chart.yaml", "kustomization.yml"]),
            SourceType::Kustomize
        );
        assert_eq!(detect(["deploy.yaml", "README.md"]), SourceType::Directory);
        assert_eq!(detect([]), SourceType::Directory);
    }

    #[test]
    fn explicit_options_win_and_conflicts_are_errors() {
        let mut s = ApplicationSource::git("https://x/r", "app", "HEAD");
        s.directory = Some(Default::default());
        assert_eq!(source_type(&s, ["Chart.yaml"]), Ok(SourceType::Directory));
        s.helm = Some(Default::default());
        assert!(source_type(&s, []).is_err_and(|e| e.contains("Helm, Directory")));
        let mut chart = ApplicationSource::git("https://charts.example", "", "1.2.*");
        chart.chart = "redis".into();
        assert_eq!(source_type(&chart, []), Ok(SourceType::Helm));
    }
}
