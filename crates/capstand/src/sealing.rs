//! Encryption at rest for the credentials in the store (`capstan_store::sealed`): the key
//! flags, reading key files, and generating the all-in-one's key on first start.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use capstan_store::sealed::{KEY_BYTES, Keyring};
use tracing::info;

/// The file the all-in-one keeps its generated key in, in the data directory.
pub const KEY_FILE: &str = "encryption.key";

/// Flags of the encryption key.
#[derive(Debug, clap::Args)]
pub struct EncryptionArgs {
    /// The key that encrypts credentials in the store (cluster and repository credentials,
    /// the session signing secret): a file holding 32 random bytes, base64 or hex (e.g.
    /// `head -c 32 /dev/urandom | base64 > key`). Default for the all-in-one: DATA_DIR/encryption.key,
    /// generated on first start — keep a copy apart from backups of the store, or the backup
    /// holds the key to its own secrets.
    #[arg(long, value_name = "FILE", env = "CAPSTAN_ENCRYPTION_KEY_FILE")]
    encryption_key_file: Option<PathBuf>,
    /// A previous key, still accepted for reading while values are rewritten under the new
    /// one (after rotating the key). Repeat for more.
    #[arg(
        long = "encryption-old-key-file",
        value_name = "FILE",
        env = "CAPSTAN_ENCRYPTION_OLD_KEY_FILES",
        value_delimiter = ','
    )]
    encryption_old_key_files: Vec<PathBuf>,
}

/// Reads a key file: 32 bytes as base64 or hex, surrounding whitespace ignored.
fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the encryption key {}", path.display()))?;
    let text = text.trim();
    let bytes = if text.len() == KEY_BYTES * 2 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .with_context(|| {
                format!(
                    "the encryption key {} is neither base64 nor hex",
                    path.display()
                )
            })?
    };
    anyhow::ensure!(
        bytes.len() == KEY_BYTES,
        "the encryption key {} has {} bytes; it needs {KEY_BYTES}",
        path.display(),
        bytes.len()
    );
    Ok(bytes)
}

impl EncryptionArgs {
    /// The keyring from --encryption-key-file, which must be given (replicas sharing a store
    /// must share the key: none is generated).
    pub fn required_keyring(&self) -> anyhow::Result<Keyring> {
        anyhow::ensure!(
            self.encryption_key_file.is_some(),
            "--encryption-key-file is required: every replica on this store needs the same key \
             (make one with `head -c 32 /dev/urandom | base64 > key`)"
        );
        self.keyring(Path::new("."))
    }

    /// The keyring: the key file given, else `DATA_DIR/encryption.key`, created (0600) when
    /// it does not exist yet.
    pub fn keyring(&self, data_dir: &Path) -> anyhow::Result<Keyring> {
        let path = match &self.encryption_key_file {
            Some(path) => path.clone(),
            None => {
                let path = data_dir.join(KEY_FILE);
                if !path.exists() {
                    let key =
                        base64::engine::general_purpose::STANDARD.encode(Keyring::generate_key());
                    crate::api::write_secret(&path, &key).with_context(|| {
                        format!("writing a new encryption key to {}", path.display())
                    })?;
                    info!(file = %path.display(), "generated the key that encrypts credentials in the store");
                }
                path
            }
        };
        let current = read_key(&path)?;
        let old = self
            .encryption_old_key_files
            .iter()
            .map(|p| read_key(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let old: Vec<&[u8]> = old.iter().map(Vec::as_slice).collect();
        let keyring = Keyring::new(&current, &old).map_err(anyhow::Error::msg)?;
        info!(
            key_id = keyring.key_id(),
            "credentials in the store are encrypted"
        );
        Ok(keyring)
    }
}
