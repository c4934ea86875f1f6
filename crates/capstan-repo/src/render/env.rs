//! The build environment every renderer sees, as Argo CD defines it.
//!
//! Tools run with `ARGOCD_APP_NAME`, `ARGOCD_APP_NAMESPACE`, `ARGOCD_APP_PROJECT_NAME`,
//! `ARGOCD_APP_REVISION`, `ARGOCD_APP_REVISION_SHORT`, `ARGOCD_APP_REVISION_SHORT_8`,
//! `ARGOCD_APP_SOURCE_REPO_URL`, `ARGOCD_APP_SOURCE_PATH`,
//! `ARGOCD_APP_SOURCE_TARGET_REVISION`, `KUBE_VERSION` and `KUBE_API_VERSIONS`, and the same
//! values again under Capstan's own names (`CAPSTAN_APP_NAME`, …). The same variables can be
//! substituted into some options (`${ARGOCD_APP_REVISION}` in a Kustomize image or a Helm
//! parameter) with [`envsubst`].

/// Which Application a render is for; the source of the build environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppContext {
    /// The Application's name.
    pub name: String,
    /// The destination namespace.
    pub namespace: String,
    /// The project.
    pub project: String,
    /// The resolved commit SHA (or chart version).
    pub revision: String,
    /// The source's repository URL.
    pub repo_url: String,
    /// The source's path.
    pub path: String,
    /// The source's `targetRevision` as written.
    pub target_revision: String,
    /// The destination cluster's Kubernetes version (`1.37.2`), when known.
    pub kube_version: String,
    /// The destination cluster's API versions (`apps/v1`, `apps/v1/Deployment`, …).
    pub api_versions: Vec<String>,
}

impl AppContext {
    /// The environment variables of the build environment, in a fixed order.
    pub fn build_env(&self) -> Vec<(String, String)> {
        let short = |n: usize| self.revision.chars().take(n).collect::<String>();
        let pairs = [
            ("APP_NAME", self.name.clone()),
            ("APP_NAMESPACE", self.namespace.clone()),
            ("APP_PROJECT_NAME", self.project.clone()),
            ("APP_REVISION", self.revision.clone()),
            ("APP_REVISION_SHORT", short(7)),
            ("APP_REVISION_SHORT_8", short(8)),
            ("APP_SOURCE_REPO_URL", self.repo_url.clone()),
            ("APP_SOURCE_PATH", self.path.clone()),
            ("APP_SOURCE_TARGET_REVISION", self.target_revision.clone()),
        ];
        let mut env = Vec::with_capacity(pairs.len() * 2 + 4);
        for prefix in ["ARGOCD_", "CAPSTAN_"] {
            env.extend(
                pairs
                    .iter()
                    .map(|(k, v)| (format!("{prefix}{k}"), v.clone())),
            );
        }
        let api_versions = self.api_versions.join(",");
        env.push(("KUBE_VERSION".to_owned(), self.kube_version.clone()));
        env.push(("KUBE_API_VERSIONS".to_owned(), api_versions.clone()));
        env.push(("CAPSTAN_KUBE_VERSION".to_owned(), self.kube_version.clone()));
        env.push(("CAPSTAN_KUBE_API_VERSIONS".to_owned(), api_versions));
        env
    }
}

/// Replaces `$NAME` and `${NAME}` in `text` with the value of `NAME` in `env` (the empty text
/// when it is not set), like Argo CD's substitution. A `$` not followed by a name is kept.
pub fn envsubst(text: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = braced.find('}')
            && !braced[..end].is_empty()
            && braced[..end].chars().all(is_name_char)
        {
            out.push_str(lookup(&braced[..end]));
            rest = &braced[end + 1..];
            continue;
        }
        let len = after
            .char_indices()
            .find(|&(i, c)| !(is_name_char(c) && !(i == 0 && c.is_ascii_digit())))
            .map_or(after.len(), |(i, _)| i);
        if len == 0 {
            out.push('$');
            rest = after;
        } else {
            out.push_str(lookup(&after[..len]));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_env_has_argo_and_capstan_names() {
        let ctx = AppContext {
            name: "guestbook".into(),
            revision: "0123456789abcdef".into(),
            kube_version: "1.37.2".into(),
            api_versions: vec!["apps/v1".into(), "v1".into()],
            ..AppContext::default()
        };
        let env = ctx.build_env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ARGOCD_APP_NAME"), Some("guestbook"));
        assert_eq!(get("CAPSTAN_APP_NAME"), Some("guestbook"));
        assert_eq!(get("ARGOCD_APP_REVISION_SHORT"), Some("0123456"));
        assert_eq!(get("ARGOCD_APP_REVISION_SHORT_8"), Some("01234567"));
        assert_eq!(get("KUBE_VERSION"), Some("1.37.2"));
        assert_eq!(get("KUBE_API_VERSIONS"), Some("apps/v1,v1"));
    }

    #[test]
    fn envsubst_forms() {
        let env = vec![
            ("ARGOCD_APP_NAME".to_owned(), "web".to_owned()),
            ("REV".to_owned(), "abc".to_owned()),
        ];
        assert_eq!(envsubst("app=${ARGOCD_APP_NAME}", &env), "app=web");
        assert_eq!(envsubst("img:$REV-x", &env), "img:abc-x");
        assert_eq!(envsubst("$MISSING|${MISSING}", &env), "|");
        assert_eq!(
            envsubst("cost $5 and $ alone, ${", &env),
            "cost $5 and $ alone, ${"
        );
        assert_eq!(envsubst("no vars", &env), "no vars");
        assert_eq!(envsubst("ünïcode $REV ü", &env), "ünïcode abc ü");
    }
}
