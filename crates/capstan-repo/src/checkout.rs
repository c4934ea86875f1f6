//! Writing a commit's files to a temporary directory, for tools that need files on disk.
//!
//! Only Helm, Kustomize and plugins need this; directory sources are read straight from the
//! object database. The checkout is made from [`crate::tree::read_dir`] over the whole
//! repository, so it inherits its refusals (symlinks out of the repository, oversized files)
//! and its limits, and it contains **no symlinks**: a link to a file inside the repository is
//! written as a copy of that file, and a link to a directory is left out. A checkout therefore
//! cannot point a tool at anything outside it, and the lexical path checks the renderers do on
//! options (`valueFiles`, kustomize resources) are sound.

use std::path::{Path, PathBuf};

use crate::render::RenderError;
use crate::tree::{SkippedFile, TreeError, TreeLimits, read_dir, validate_path};

/// A commit's files on disk; the directory is removed when this is dropped.
#[derive(Debug)]
pub struct Checkout {
    dir: tempfile::TempDir,
    /// The commit checked out.
    pub commit: gix::ObjectId,
    /// Files written.
    pub files: usize,
    /// Entries left out (links to directories, submodules), with the reason.
    pub skipped: Vec<SkippedFile>,
}

impl Checkout {
    /// The repository root on disk.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of the source at `path` in this checkout.
    pub fn source_dir(&self, path: &str) -> Result<PathBuf, TreeError> {
        source_dir(self.root(), path)
    }
}

/// The directory of the source at `path` (a clean relative path, see
/// [`crate::tree::validate_path`]) under the checkout root `root`.
pub fn source_dir(root: &Path, path: &str) -> Result<PathBuf, TreeError> {
    Ok(validate_path(path)?
        .iter()
        .fold(root.to_path_buf(), |dir, part| dir.join(part)))
}

/// Writes the files of `commit` into a new temporary directory under `parent`.
///
/// Blocking: call it from a blocking thread.
pub fn checkout(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    parent: &Path,
    limits: &TreeLimits,
) -> Result<Checkout, RenderError> {
    let listing = read_dir(repo, commit, "", true, limits)?;
    std::fs::create_dir_all(parent)
        .map_err(RenderError::io(format!("creating {}", parent.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("checkout-")
        .tempdir_in(parent)
        .map_err(RenderError::io(format!(
            "creating a checkout directory in {}",
            parent.display()
        )))?;
    for file in &listing.files {
        // read_dir only returns clean relative paths (no `..`, no leading `/`).
        let path: PathBuf = dir.path().join(&file.repo_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(RenderError::io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, &file.data)
            .map_err(RenderError::io(format!("writing {}", file.repo_path)))?;
    }
    Ok(Checkout {
        dir,
        commit,
        files: listing.files.len(),
        skipped: listing.skipped,
    })
}

/// Joins a `/`-separated relative path onto `base`, resolving `.` and `..` lexically, and
/// returns `None` when the result is absolute or leaves `root`.
///
/// Sound only for directories without symlinks, such as a [`Checkout`].
pub fn join_inside(root: &Path, base: &Path, relative: &str) -> Option<PathBuf> {
    if relative.starts_with('/') || relative.contains(['\0', '\\']) {
        return None;
    }
    let start = base.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = start
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other.to_owned()),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_inside_stays_in_the_root() {
        let root = Path::new("/co");
        let base = Path::new("/co/apps/web");
        let ok = |rel| join_inside(root, base, rel);
        assert_eq!(ok("values.yaml"), Some("/co/apps/web/values.yaml".into()));
        assert_eq!(
            ok("../common/v.yaml"),
            Some("/co/apps/common/v.yaml".into())
        );
        assert_eq!(ok("./../../top.yaml"), Some("/co/top.yaml".into()));
        assert_eq!(ok("../../../etc/passwd"), None);
        assert_eq!(ok("/etc/passwd"), None);
        assert_eq!(ok("a/../../../../x"), None);
        assert_eq!(join_inside(root, Path::new("/elsewhere"), "x"), None);
    }
}
