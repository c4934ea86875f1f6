//! Reading the files of a path at a commit straight from the object database (no checkout).
//!
//! [`read_dir`] lists a directory of a commit (optionally recursively) and loads its blobs,
//! within [`TreeLimits`]. It refuses hostile input with an error that names the file:
//! - a source path that is absolute or contains `..` ([`validate_path`]);
//! - a symlink whose target is absolute or leaves the repository (Argo CD refuses these too);
//! - a file over the size limit, more bytes or files in total than allowed;
//! - tree entries with impossible names (`..`, `/`, NUL), which a hostile server could send.
//!
//! Symlinks that stay inside the repository are followed to files (the file's content appears
//! under the link's path, as a checkout would show it). A link to a directory is not followed,
//! like Argo CD's directory walk, and is reported as skipped; so are dangling links and
//! submodule (gitlink) entries, whose commits are not in this repository.

use std::collections::VecDeque;

/// How much [`read_dir`] may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeLimits {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of all files read, in bytes.
    pub max_total_bytes: u64,
    /// Most files read.
    pub max_files: usize,
}

impl Default for TreeLimits {
    /// 10 MiB per file, 100 MiB and 10 000 files in total.
    fn default() -> Self {
        Self {
            max_file_bytes: 10 << 20,
            max_total_bytes: 100 << 20,
            max_files: 10_000,
        }
    }
}

/// Errors of tree reading.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The requested source path is not a clean relative path.
    #[error(
        "source path {path:?} is not allowed: {reason}; use a relative path inside the repository such as \"apps/guestbook\""
    )]
    InvalidPath {
        /// The path given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The source path does not exist at this commit.
    #[error(
        "path {path:?} does not exist at commit {commit}; check spec.source.path and targetRevision"
    )]
    PathNotFound {
        /// The path.
        path: String,
        /// The commit.
        commit: gix::ObjectId,
    },
    /// The source path names a file, not a directory.
    #[error(
        "path {path:?} at commit {commit} is not a directory; spec.source.path must name a directory"
    )]
    NotADirectory {
        /// The path.
        path: String,
        /// The commit.
        commit: gix::ObjectId,
    },
    /// A symlink points outside the repository.
    #[error(
        "symlink {path:?} points outside the repository (target {target:?}); symlinks must stay inside the repository"
    )]
    SymlinkOutsideRepo {
        /// The link's path in the repository.
        path: String,
        /// Its target.
        target: String,
    },
    /// A chain of symlinks was too long or looped.
    #[error("symlink {path:?} is part of a loop or a chain of more than {max} links")]
    SymlinkLoop {
        /// The link's path in the repository.
        path: String,
        /// The maximum chain length.
        max: usize,
    },
    /// A file is larger than allowed.
    #[error(
        "file {path:?} is {size} bytes, over the limit of {limit} bytes per file; make it smaller or raise the repo-server's file size limit"
    )]
    FileTooLarge {
        /// The file's path in the repository.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The files together are larger than allowed.
    #[error(
        "reading {path:?} exceeds the limit of {limit} bytes for all files of a source; narrow spec.source.path or include/exclude"
    )]
    TotalTooLarge {
        /// The file that crossed the limit.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// There are more files than allowed.
    #[error("{path:?} holds more than {limit} files; narrow spec.source.path or include/exclude")]
    TooManyFiles {
        /// The source path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// A tree entry has a name no honest repository has.
    #[error(
        "tree entry {name:?} under {dir:?} has an invalid name; the repository is corrupt or hostile"
    )]
    HostileEntry {
        /// The directory holding it.
        dir: String,
        /// The name.
        name: String,
    },
    /// Reading an object failed.
    #[error(
        "reading {what} at commit {commit} failed; the local copy may be incomplete, fetch again"
    )]
    Object {
        /// What was being read.
        what: String,
        /// The commit.
        commit: gix::ObjectId,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A file read from the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the source path, `/`-separated.
    pub path: String,
    /// Path relative to the repository root.
    pub repo_path: String,
    /// The content.
    pub data: Vec<u8>,
}

/// An entry that was not read, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedFile {
    /// Path relative to the source path.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The result of [`read_dir`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Files read, in path order.
    pub files: Vec<SourceFile>,
    /// Entries skipped (submodules, links to directories, dangling links).
    pub skipped: Vec<SkippedFile>,
}

/// Splits a source path into components, refusing absolute paths, `..`, backslashes and NUL.
/// `""`, `"."` and `"./"` name the repository root.
pub fn validate_path(path: &str) -> Result<Vec<String>, TreeError> {
    let refuse = |reason| TreeError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.starts_with('/') {
        return Err(refuse("it is absolute"));
    }
    if path.contains(['\0', '\\']) {
        return Err(refuse("it contains a NUL byte or a backslash"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("it contains \"..\"")),
            other => parts.push(other.to_owned()),
        }
    }
    Ok(parts)
}

/// Most symlinks followed to resolve one path.
const MAX_LINKS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tree,
    Blob,
    Link,
    Submodule,
}

struct Walker<'r> {
    repo: &'r gix::Repository,
    commit: gix::ObjectId,
    root: gix::ObjectId,
}

impl Walker<'_> {
    fn err(
        &self,
        what: String,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> TreeError {
        let commit = self.commit;
        move |source| TreeError::Object {
            what,
            commit,
            source,
        }
    }

    /// The entries of a tree: (name, kind, id).
    fn entries(
        &self,
        tree: gix::ObjectId,
        dir: &str,
    ) -> Result<Vec<(String, Kind, gix::ObjectId)>, TreeError> {
        let object = self
            .repo
            .find_object(tree)
            .map_err(|e| self.err(format!("directory {dir:?}"))(Box::new(e)))?;
        let tree = object
            .try_into_tree()
            .map_err(|e| self.err(format!("directory {dir:?}"))(Box::new(e)))?;
        let decoded = tree
            .decode()
            .map_err(|e| self.err(format!("directory {dir:?}"))(Box::new(e)))?;
        let mut out = Vec::with_capacity(decoded.entries.len());
        for entry in &decoded.entries {
            let name = entry.filename.to_string();
            if name.is_empty()
                || name == "."
                || name == ".."
                || name.contains(['/', '\0'])
                || std::str::from_utf8(entry.filename.as_ref()).is_err()
            {
                return Err(TreeError::HostileEntry {
                    dir: dir.to_owned(),
                    name,
                });
            }
            let kind = match entry.mode.kind() {
                gix::object::tree::EntryKind::Tree => Kind::Tree,
                gix::object::tree::EntryKind::Blob
                | gix::object::tree::EntryKind::BlobExecutable => Kind::Blob,
                gix::object::tree::EntryKind::Link => Kind::Link,
                gix::object::tree::EntryKind::Commit => Kind::Submodule,
            };
            out.push((name, kind, entry.oid.to_owned()));
        }
        Ok(out)
    }

    /// Looks `parts` up from the root, following symlinks met on the way.
    fn lookup(
        &self,
        parts: &[String],
        hops: &mut usize,
        origin: &str,
    ) -> Result<Option<(Kind, gix::ObjectId, Vec<String>)>, TreeError> {
        let mut current = self.root;
        let mut resolved: Vec<String> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let dir = resolved.join("/");
            let Some((_, kind, id)) = self
                .entries(current, &dir)?
                .into_iter()
                .find(|(name, _, _)| name == part)
            else {
                return Ok(None);
            };
            let here: Vec<String> = resolved.iter().cloned().chain([part.clone()]).collect();
            let last = i + 1 == parts.len();
            match kind {
                Kind::Link => {
                    let target_parts = self.link_target(&here, id, hops, origin)?;
                    let rest: Vec<String> = target_parts
                        .into_iter()
                        .chain(parts[i + 1..].iter().cloned())
                        .collect();
                    return self.lookup(&rest, hops, origin);
                }
                Kind::Tree if !last => {
                    current = id;
                    resolved = here;
                }
                _ if last => return Ok(Some((kind, id, here))),
                _ => return Ok(None),
            }
        }
        Ok(Some((Kind::Tree, current, resolved)))
    }

    /// Reads a link's target and resolves it against the link's directory; refuses targets
    /// outside the repository.
    fn link_target(
        &self,
        link: &[String],
        blob: gix::ObjectId,
        hops: &mut usize,
        origin: &str,
    ) -> Result<Vec<String>, TreeError> {
        *hops += 1;
        let path = link.join("/");
        if *hops > MAX_LINKS {
            return Err(TreeError::SymlinkLoop {
                path: origin.to_owned(),
                max: MAX_LINKS,
            });
        }
        let object = self
            .repo
            .find_object(blob)
            .map_err(|e| self.err(format!("symlink {path:?}"))(Box::new(e)))?;
        let target = String::from_utf8_lossy(&object.data).into_owned();
        let outside = || TreeError::SymlinkOutsideRepo {
            path: path.clone(),
            target: target.clone(),
        };
        if target.starts_with('/') || target.contains(['\0', '\\']) {
            return Err(outside());
        }
        let mut parts: Vec<String> = link[..link.len().saturating_sub(1)].to_vec();
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(outside());
                    }
                }
                other => parts.push(other.to_owned()),
            }
        }
        Ok(parts)
    }
}

/// Reads the files under `path` at `commit`, recursing into sub-directories when `recursive`;
/// see the module docs for limits, symlinks and refusals.
pub fn read_dir(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    path: &str,
    recursive: bool,
    limits: &TreeLimits,
) -> Result<Listing, TreeError> {
    let parts = validate_path(path)?;
    let object_err = |what: &str| {
        let what = what.to_owned();
        move |e: Box<dyn std::error::Error + Send + Sync>| TreeError::Object {
            what,
            commit,
            source: e,
        }
    };
    let commit_obj = repo
        .find_commit(commit)
        .map_err(|e| object_err("the commit")(Box::new(e)))?;
    let root = commit_obj
        .tree_id()
        .map_err(|e| object_err("the commit's tree")(Box::new(e)))?
        .detach();
    let walker = Walker { repo, commit, root };
    let mut hops = 0;
    let (kind, start, start_parts) =
        walker
            .lookup(&parts, &mut hops, path)?
            .ok_or_else(|| TreeError::PathNotFound {
                path: path.to_owned(),
                commit,
            })?;
    if kind != Kind::Tree {
        return Err(TreeError::NotADirectory {
            path: path.to_owned(),
            commit,
        });
    }

    let mut listing = Listing::default();
    let mut total: u64 = 0;
    // (tree id, path relative to the source path, path in the repository)
    let mut queue = VecDeque::from([(start, String::new(), start_parts.join("/"))]);
    while let Some((tree, rel_dir, repo_dir)) = queue.pop_front() {
        for (name, kind, id) in walker.entries(tree, &repo_dir)? {
            let rel = join(&rel_dir, &name);
            let repo_path = join(&repo_dir, &name);
            let (kind, id) = match kind {
                Kind::Link => {
                    let mut hops = 0;
                    let link: Vec<String> = repo_path.split('/').map(str::to_owned).collect();
                    let target = walker.link_target(&link, id, &mut hops, &repo_path)?;
                    match walker.lookup(&target, &mut hops, &repo_path)? {
                        Some((Kind::Blob, id, _)) => (Kind::Blob, id),
                        Some((Kind::Tree, _, _)) => {
                            listing.skipped.push(SkippedFile {
                                path: rel,
                                reason: "symlink to a directory is not followed".to_owned(),
                            });
                            continue;
                        }
                        Some(_) | None => {
                            listing.skipped.push(SkippedFile {
                                path: rel,
                                reason: "dangling symlink".to_owned(),
                            });
                            continue;
                        }
                    }
                }
                other => (other, id),
            };
            match kind {
                Kind::Tree => {
                    if recursive {
                        queue.push_back((id, rel, repo_path));
                    }
                }
                Kind::Submodule => listing.skipped.push(SkippedFile {
                    path: rel,
                    reason: "submodule (gitlink) entries are not followed".to_owned(),
                }),
                Kind::Blob => {
                    if listing.files.len() >= limits.max_files {
                        return Err(TreeError::TooManyFiles {
                            path: path.to_owned(),
                            limit: limits.max_files,
                        });
                    }
                    let header = repo
                        .find_header(id)
                        .map_err(|e| object_err(&format!("file {repo_path:?}"))(Box::new(e)))?;
                    let size = header.size();
                    if size > limits.max_file_bytes {
                        return Err(TreeError::FileTooLarge {
                            path: repo_path,
                            size,
                            limit: limits.max_file_bytes,
                        });
                    }
                    total = total.saturating_add(size);
                    if total > limits.max_total_bytes {
                        return Err(TreeError::TotalTooLarge {
                            path: repo_path,
                            limit: limits.max_total_bytes,
                        });
                    }
                    let object = repo
                        .find_object(id)
                        .map_err(|e| object_err(&format!("file {repo_path:?}"))(Box::new(e)))?;
                    listing.files.push(SourceFile {
                        path: rel,
                        repo_path,
                        data: object.detach().data,
                    });
                }
                Kind::Link => {}
            }
        }
    }
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    listing.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_paths() {
        assert_eq!(validate_path("").expect("root"), Vec::<String>::new());
        assert_eq!(validate_path("./a//b/").expect("ok"), ["a", "b"]);
        for bad in ["/etc", "../x", "a/../../b", "a\\b", "a\0"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        let err = validate_path("a/../b").expect_err("dotdot");
        assert!(err.to_string().contains("a/../b"), "{err}");
    }
}
