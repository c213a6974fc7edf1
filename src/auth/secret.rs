//! Where the sign-in key comes from: the HS256 secret from exactly one of
//! its three sources (a flag, a file, the environment), or the public key's
//! file, and the verifier built from them and the other `--jwt-*` flags
//! (`from_config`), once, at start-up.
//!
//! A secret given two ways is an error rather than one silently winning:
//! the operator would not know which secret signs. Every error names the
//! source (the flag, the file, the variable), never the secret.

use std::path::Path;

use super::{AuthConfig, Secret};
use crate::config::Config;

/// The environment variable that may hold the HS256 secret.
pub const JWT_SECRET_ENV: &str = "THREADCHAT_JWT_SECRET";

/// The HS256 secret the flags give, from exactly one of `--jwt-secret`,
/// `--jwt-secret-file` or the environment (`JWT_SECRET_ENV`).
pub fn secret_of(config: &Config) -> Result<Option<Secret>, String> {
    if let Some(secret) = &config.jwt_secret {
        if config.jwt_secret_file.is_some() {
            return Err("give the JWT secret once: --jwt-secret or --jwt-secret-file".into());
        }
        return Ok(Some(secret.clone()));
    }
    let env = std::env::var(JWT_SECRET_ENV).ok();
    secret_from(None, config.jwt_secret_file.as_deref(), env.as_deref())
}

/// How logins are checked: `None` when sign-in is off (no secret, no
/// key), else the verifier built from the flags. A bad key or a secret too
/// short to be safe is an error naming it (the file, the rule, never the
/// secret).
pub fn from_config(config: &Config) -> Result<Option<AuthConfig>, String> {
    let secret = secret_of(config)?;
    let auth = match (secret, &config.jwt_public_key) {
        (Some(_), Some(_)) => {
            return Err("give either a JWT secret or --jwt-public-key, not both".into());
        }
        (Some(secret), None) => AuthConfig::hs256(secret.as_bytes())?,
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
            AuthConfig::from_public_key_pem(&pem)
                .map_err(|e| format!("--jwt-public-key {}: {e}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(
        auth.with_issuer(config.jwt_issuer.clone())
            .with_audience(config.jwt_audience.clone())
            .with_leeway(config.jwt_leeway)
            .with_max_lifetime(config.jwt_max_lifetime),
    ))
}

/// The HS256 secret from exactly one of: the flag's value, a file (its
/// trailing line break trimmed), the environment variable `JWT_SECRET_ENV`
/// (whose value the caller reads and passes). `None` when none is given; an
/// error when several are, or the one given is empty. The flag is the least
/// safe of the three: other users can see a command line in `ps`.
pub fn secret_from(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, String> {
    let given: Vec<&str> = [
        flag.map(|_| "--jwt-secret"),
        file.map(|_| "--jwt-secret-file"),
        env.map(|_| JWT_SECRET_ENV),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(format!(
            "give the JWT secret one way only; found {}",
            given.join(" and ")
        ));
    }
    if let Some(value) = flag {
        if value.is_empty() {
            return Err("--jwt-secret is empty".to_string());
        }
        return Ok(Some(Secret(value.as_bytes().to_vec())));
    }
    if let Some(path) = file {
        let mut bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWT secret file {}: {e}", path.display()))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(format!("the JWT secret file {} is empty", path.display()));
        }
        warn_if_others_can_read(path);
        return Ok(Some(Secret(bytes)));
    }
    if let Some(value) = env {
        if value.is_empty() {
            return Err(format!("{JWT_SECRET_ENV} is set but empty"));
        }
        return Ok(Some(Secret(value.as_bytes().to_vec())));
    }
    Ok(None)
}

/// A secret file readable by group or others is worth a warning (naming the
/// file, never its content), as ssh does for private keys.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            log::warn!(
                "the JWT secret file {} is readable by other users (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comes_from_exactly_one_place() {
        assert!(secret_from(None, None, None).unwrap().is_none());
        let from_flag = secret_from(Some("abc"), None, None).unwrap().unwrap();
        assert_eq!(from_flag.as_bytes(), b"abc");
        let from_env = secret_from(None, None, Some("xyz")).unwrap().unwrap();
        assert_eq!(from_env.as_bytes(), b"xyz");

        let err = secret_from(Some("abc"), None, Some("xyz")).unwrap_err();
        assert!(
            err.contains("--jwt-secret and THREADCHAT_JWT_SECRET"),
            "{err}"
        );
        // The error names the sources, never the values.
        assert!(!err.contains("abc") && !err.contains("xyz"));
        let path = Path::new("/nonexistent");
        assert!(secret_from(Some("a"), Some(path), None).is_err());
        assert!(secret_from(None, Some(path), Some("x")).is_err());

        assert!(
            secret_from(Some(""), None, None)
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            secret_from(None, None, Some(""))
                .unwrap_err()
                .contains("empty")
        );
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn with(name: &str, content: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("threadchat-auth-{}-{name}", std::process::id()));
            std::fs::write(&path, content).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn secret_file_loses_its_trailing_line_break_only() {
        let unix = TempFile::with("unix", b"  the secret \n");
        let secret = secret_from(None, Some(&unix.0), None).unwrap().unwrap();
        assert_eq!(secret.as_bytes(), b"  the secret ");

        let dos = TempFile::with("dos", b"the secret\r\n");
        let secret = secret_from(None, Some(&dos.0), None).unwrap().unwrap();
        assert_eq!(secret.as_bytes(), b"the secret");

        let empty = TempFile::with("empty", b"\n");
        let err = secret_from(None, Some(&empty.0), None).unwrap_err();
        assert!(err.contains("is empty"), "{err}");

        let missing = Path::new("/nonexistent/threadchat-secret");
        let err = secret_from(None, Some(missing), None).unwrap_err();
        assert!(
            err.contains("cannot read") && err.contains("/nonexistent"),
            "{err}"
        );
    }
}
