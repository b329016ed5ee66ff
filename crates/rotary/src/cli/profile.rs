//! Profiles: endpoint and access key per name in `<config dir>/rotary/config.toml`,
//! the secret key in a 0600 file beside it. Environment variables win.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use rotary_client::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub endpoint: String,
    pub access_key: String,
}

pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("ROTARY_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    Ok(dirs::config_dir().context("no config directory (set ROTARY_CONFIG_DIR)")?.join("rotary"))
}

fn secret_path(profile: &str) -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join(format!("{profile}.secret")))
}

pub fn load() -> anyhow::Result<ConfigFile> {
    let path = config_dir()?.join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Writes the profile and its secret key (mode 0600).
pub fn save(name: &str, profile: Profile, secret: &SecretString) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut cfg = load()?;
    cfg.profiles.insert(name.to_owned(), profile);
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&cfg)?).with_context(|| format!("failed to write {}", path.display()))?;
    let sp = secret_path(name)?;
    let _ = std::fs::remove_file(&sp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&sp)
        .with_context(|| format!("failed to write {}", sp.display()))?;
    f.write_all(secret.expose_secret().as_bytes())?;
    f.write_all(b"\n")?;
    Ok(path)
}

/// A signing client: `ROTARY_ENDPOINT` / `ROTARY_ACCESS_KEY` /
/// `ROTARY_SECRET_KEY` first, then the profile.
pub fn client(profile: &str) -> anyhow::Result<Client> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cfg = load()?;
    let p = cfg.profiles.get(profile);
    let endpoint = env("ROTARY_ENDPOINT").or_else(|| p.map(|p| p.endpoint.clone()));
    let access = env("ROTARY_ACCESS_KEY").or_else(|| p.map(|p| p.access_key.clone()));
    let (Some(endpoint), Some(access)) = (endpoint, access) else {
        bail!("no credentials: run `rotary login` or set ROTARY_ENDPOINT, ROTARY_ACCESS_KEY and ROTARY_SECRET_KEY");
    };
    let secret = match env("ROTARY_SECRET_KEY") {
        Some(s) => SecretString::from(s),
        None => {
            let sp = secret_path(profile)?;
            let text = std::fs::read_to_string(&sp)
                .with_context(|| format!("no secret key for profile {profile:?} ({})", sp.display()))?;
            SecretString::from(text.trim().to_owned())
        }
    };
    Ok(Client::new(&endpoint, &access, secret))
}
