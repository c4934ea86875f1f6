//! The CLI's configuration: contexts (a server, how to reach it, and the session token
//! `login` got), in `$XDG_CONFIG_HOME/capstan/config` (else `~/.config/capstan/config`), or
//! the file `--config`/`CAPSTAN_CONFIG` names.
//!
//! The file holds session tokens, so it is written with mode 0600 (its directory 0700), by
//! writing a temporary file beside it and renaming it over: a crash mid-write never leaves
//! half a file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The context commands use unless `--server` or `--context` says otherwise.
    #[serde(default)]
    pub current_context: String,
    /// Every context, by name.
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// One server and the session for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// The context's name (the server's address unless `login --name` chose one).
    pub name: String,
    /// Where the API is: `host:port` or a URL.
    pub server: String,
    /// Who logged in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The session (or API) token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_token: String,
    /// Accept any server certificate.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Speak plain HTTP (no TLS).
    #[serde(default, skip_serializing_if = "is_false")]
    pub plaintext: bool,
    /// A PEM file with the CA that signed the server's certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_ca: String,
    /// Use REST instead of gRPC (a proxy on the way blocks gRPC).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rest: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// Where the configuration lives, from the flag or environment variable, else XDG.
pub fn default_path() -> CliResult<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("capstan").join("config"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            CliError::usage("neither XDG_CONFIG_HOME nor HOME is set")
                .hint("name the configuration file with --config or CAPSTAN_CONFIG")
        })?;
    Ok(PathBuf::from(home)
        .join(".config")
        .join("capstan")
        .join("config"))
}

impl Config {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> CliResult<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(CliError::usage(format!(
                    "cannot read the configuration {}: {e}",
                    path.display()
                )));
            }
        };
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str_with_options(&text, crate::secret_yaml_options()).map_err(|e| {
            CliError::usage(format!(
                "the configuration {} does not parse: {e}",
                path.display()
            ))
            .hint("fix it by hand, or delete it and log in again")
        })
    }

    /// Writes to `path` with mode 0600, atomically (see the module docs).
    pub fn save(&self, path: &Path) -> CliResult<()> {
        let write_error = |e: std::io::Error| {
            CliError::other(format!(
                "cannot write the configuration {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(write_error)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(write_error)?;
        }
        let text = serde_saphyr::to_string(self)
            .map_err(|e| CliError::other(format!("cannot write the configuration: {e}")))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config".to_owned());
        let temporary = path.with_file_name(format!(".{file_name}.{}", std::process::id()));
        // A leftover temporary (a crash) is replaced; a new one is made, never one that a
        // symlink points to, and never one someone else could read.
        let _ = std::fs::remove_file(&temporary);
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(write_error)
    }

    /// The context named `name`.
    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The current context, if there is one.
    pub fn current(&self) -> Option<&Context> {
        self.context(&self.current_context)
    }

    /// The context for `server` (by name first, then by address).
    pub fn for_server(&self, server: &str) -> Option<&Context> {
        self.context(server)
            .or_else(|| self.contexts.iter().find(|c| c.server == server))
    }

    /// Adds `context`, or replaces the one with its name, and makes it current.
    pub fn upsert(&mut self, context: Context) {
        self.current_context.clone_from(&context.name);
        match self.contexts.iter_mut().find(|c| c.name == context.name) {
            Some(existing) => *existing = context,
            None => self.contexts.push(context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_with_private_permissions_and_reads_back() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested").join("config");
        let mut config = Config::default();
        config.upsert(Context {
            name: "prod".into(),
            server: "capstan.example:443".into(),
            user: "admin".into(),
            auth_token: "secret-token".into(),
            ..Context::default()
        });
        config.save(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().expect("parent"))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let read = Config::load(&path)?;
        assert_eq!(read, config);
        assert_eq!(read.current().map(|c| c.user.as_str()), Some("admin"));
        assert_eq!(
            read.for_server("capstan.example:443")
                .map(|c| c.name.as_str()),
            Some("prod")
        );
        Ok(())
    }

    #[test]
    fn a_broken_file_is_a_usage_error_naming_it() -> CliResult<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config");
        std::fs::write(&path, "contexts: [unclosed")?;
        let error = Config::load(&path).expect_err("must not parse");
        assert_eq!(error.exit, crate::error::Exit::Usage);
        assert!(error.message.contains("config"), "{error}");
        Ok(())
    }
}
