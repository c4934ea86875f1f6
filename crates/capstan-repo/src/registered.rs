//! Credentials of registered repositories (`Repository` objects in the store): which one a
//! source's URL names, and what Git and Helm credentials it holds. Shared by the controller
//! (rendering) and the API (webhooks refreshing a repository's refs).

use capstan_model::RepositorySpec;

use crate::git::{Credentials, RepoUrl};
use crate::render::helm::HelmCredentials;

/// The registered repository for `url` among `registered` (URLs compared in their normal
/// form, so `.git`, case and trailing slashes do not matter).
pub fn find<'a>(
    registered: impl IntoIterator<Item = &'a RepositorySpec>,
    url: &str,
) -> Option<&'a RepositorySpec> {
    let wanted = RepoUrl::parse(url).ok()?;
    registered
        .into_iter()
        .find(|spec| RepoUrl::parse(&spec.url).is_ok_and(|u| u == wanted))
}

/// Git credentials of a registered repository: a bearer token, else user and password.
pub fn git_credentials(spec: &RepositorySpec) -> Credentials {
    if !spec.bearer_token.expose().is_empty() {
        Credentials::Bearer {
            token: spec.bearer_token.expose().to_owned(),
        }
    } else if !spec.username.is_empty() || !spec.password.expose().is_empty() {
        Credentials::Basic {
            username: spec.username.clone(),
            password: spec.password.expose().to_owned(),
        }
    } else {
        Credentials::None
    }
}

/// Helm repository credentials of a registered repository.
pub fn helm_credentials(spec: &RepositorySpec) -> HelmCredentials {
    HelmCredentials {
        username: spec.username.clone(),
        password: spec.password.expose().to_owned(),
        ..Default::default()
    }
}
