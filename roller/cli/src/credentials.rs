//! Where the CLI finds the token it sends, first found wins:
//! 1. `--token`, or `IONROLLER_TOKEN`;
//! 2. the user's config file, `{"token": "..."}` (`IONROLLER_CONFIG`, else
//!    `$XDG_CONFIG_HOME/ionroller/config.json`, else `~/.config/ionroller/config.json`);
//! 3. when the server is on this machine (a loopback URL), the admin token the first
//!    `ionroller up` wrote to its data dir (`IONROLLER_DATA_DIR`, else `.ionroller`), so the
//!    local walkthrough needs no step of its own.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file in the data dir that holds the first admin token (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// `up`'s default data dir, relative to where it runs.
pub const DEFAULT_DATA_DIR: &str = ".ionroller";

pub fn find_token(flag: Option<String>, server: &str) -> anyhow::Result<Option<String>> {
    if let Some(token) = flag.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(path) = config_file() {
        if let Some(token) = token_in_config(&path)? {
            return Ok(Some(token));
        }
    }
    if is_loopback(server) {
        let dir = std::env::var_os("IONROLLER_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        return read_token_file(&dir.join(ADMIN_TOKEN_FILE));
    }
    Ok(None)
}

fn config_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("IONROLLER_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("ionroller").join("config.json"))
}

fn token_in_config(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON ({{\"token\": \"...\"}})", path.display()))?;
    Ok(value["token"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string))
}

fn read_token_file(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn is_loopback(server: &str) -> bool {
    url::Url::parse(server).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_on_this_machine_gets_the_local_admin_token() {
        let table = [
            ("http://127.0.0.1:7878", true),
            ("http://localhost:7878", true),
            ("http://[::1]:7878", true),
            ("https://roller.example.com", false),
            ("http://10.0.0.5:7878", false),
            ("not a url", false),
        ];
        for (url, local) in table {
            assert_eq!(is_loopback(url), local, "{url}");
        }
    }

    #[test]
    fn the_config_file_holds_a_token_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        assert_eq!(token_in_config(&path).expect("missing is fine"), None);
        std::fs::write(&path, r#"{"token": " ionr_x "}"#).expect("write");
        assert_eq!(token_in_config(&path).expect("read"), Some("ionr_x".into()));
        std::fs::write(&path, "token=1").expect("write");
        assert!(token_in_config(&path).is_err());
        assert_eq!(
            find_token(Some("t".into()), "http://x").expect("flag"),
            Some("t".into())
        );
    }
}
