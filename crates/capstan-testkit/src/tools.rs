//! Where the real tool binaries are: the versions pinned in `tools/versions`, built into the
//! cache by `scripts/tools.sh`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

/// `tools/versions`, compiled in so the testkit and the build script agree on one place.
const VERSIONS: &str = include_str!("../../../tools/versions");

/// The pinned version of a tool (`KUBERNETES`, `ETCD`, `HELM`, `KUSTOMIZE`, `KWOK`,
/// `SCHEMATHESIS`).
pub fn version(tool: &str) -> Option<&'static str> {
    let key = format!("{tool}_VERSION=");
    VERSIONS
        .lines()
        .find_map(|line| line.trim().strip_prefix(key.as_str()))
        .map(str::trim)
}

/// The tool cache directory (`CAPSTAN_TOOLS_DIR`, else `$XDG_CACHE_HOME` or `~/.cache`).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSTAN_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("capstan").join("tools")
}

/// Path of `binary` from the cached build of `tool` (e.g. `("KUBERNETES", "kube-apiserver")`).
pub fn binary(tool: &str, dir_name: &str, binary: &str) -> Result<PathBuf> {
    let version = version(tool).ok_or_else(|| anyhow!("tools/versions has no {tool}_VERSION"))?;
    let path = tools_dir()
        .join(format!("{dir_name}-{version}"))
        .join("bin")
        .join(binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!(
            "{binary} {version} is not built ({} missing); run `bash scripts/tools.sh` first",
            path.display()
        ))
    }
}

/// `etcd`.
pub fn etcd() -> Result<PathBuf> {
    binary("ETCD", "etcd", "etcd")
}

/// A Kubernetes binary: `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`, `kubectl`.
pub fn kubernetes(name: &str) -> Result<PathBuf> {
    binary("KUBERNETES", "kubernetes", name)
}

/// `helm`.
pub fn helm() -> Result<PathBuf> {
    binary("HELM", "helm", "helm")
}

/// `kustomize`.
pub fn kustomize() -> Result<PathBuf> {
    binary("KUSTOMIZE", "kustomize", "kustomize")
}

/// schemathesis' `st` (a Python tool in its own virtual environment).
pub fn schemathesis() -> Result<PathBuf> {
    binary("SCHEMATHESIS", "schemathesis", "st")
}

/// `kwok`.
pub fn kwok() -> Result<PathBuf> {
    binary("KWOK", "kwok", "kwok")
}

/// kwok's "fast" stage configuration (rendered by `scripts/tools.sh` from kwok's module).
pub fn kwok_stages() -> Result<PathBuf> {
    let version = version("KWOK").ok_or_else(|| anyhow!("tools/versions has no KWOK_VERSION"))?;
    let path = tools_dir()
        .join(format!("kwok-{version}"))
        .join("stages-fast.yaml");
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!(
            "{} missing; run `bash scripts/tools.sh` first",
            path.display()
        ))
    }
}
