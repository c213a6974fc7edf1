//! Native TLS's certificates: the pair given by `--tls-cert` and
//! `--tls-key`, checked at start-up, and swapped on SIGHUP.
//!
//! How a TLS connection is read and written by two threads is `net`'s
//! (`net/stream.rs`); this module only says *which* certificate new
//! handshakes use. It is loaded and checked before the server listens: a
//! missing, unreadable, unparsable, mismatched (key not the certificate's)
//! or expired pair stops the start-up with a message naming the file and
//! the cause.
//!
//! ## Reloading
//!
//! certbot renews the files in place; SIGHUP (`main.rs`) makes
//! `Certificates::reload` read them again. A good new pair replaces the old
//! for every handshake from then on; connections already open keep the
//! session they have (it holds its own `Arc` of the old configuration). A
//! bad new pair is refused with a log line and the old one stays.
//!
//! The one shared thing is the current configuration, an
//! `Arc<ServerConfig>` behind a `RwLock`: each new connection takes a clone
//! of the `Arc` (a read lock held for a reference count), a reload writes
//! it once. An owner thread reached by channels was rejected: every
//! handshake would wait on a round trip to it, for a value that changes a
//! few times a year.

mod validity;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

pub use validity::not_after;

/// The pair in use, and where to read it again.
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

/// One loaded pair, ready for handshakes.
#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// The leaf certificate's `notAfter`.
    expires: SystemTime,
}

/// The certificates the flags name, checked; `None` without `--tls-cert`.
pub fn from_config(config: &Config) -> Result<Option<Certificates>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err("--tls-cert needs --tls-key (the certificate's private key)".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert (the certificate chain)".into()),
        (Some(cert), Some(key)) => Certificates::load(cert, key).map(Some),
    }
}

impl Certificates {
    /// Reads and checks the pair.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Certificates, String> {
        let loaded = load(cert_path, key_path)?;
        Ok(Certificates {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(loaded),
        })
    }

    /// The configuration a new handshake uses.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.read().config.clone()
    }

    /// When the certificate in use expires.
    pub fn expires(&self) -> SystemTime {
        self.read().expires
    }

    /// Reads the files again; on success new handshakes use the new pair,
    /// on failure the old one stays and the error says why.
    pub fn reload(&self) -> Result<SystemTime, String> {
        let loaded = load(&self.cert_path, &self.key_path)?;
        let expires = loaded.expires;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(expires)
    }

    fn read(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Reads, parses and checks one pair: every error names the file and the
/// cause.
fn load(cert_path: &Path, key_path: &Path) -> Result<Loaded, String> {
    let shown = |path: &Path| path.display().to_string();
    let cert_pem = fs::read(cert_path)
        .map_err(|e| format!("--tls-cert {}: cannot read: {e}", shown(cert_path)))?;
    let key_pem = fs::read(key_path)
        .map_err(|e| format!("--tls-key {}: cannot read: {e}", shown(key_path)))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "--tls-cert {}: not a PEM certificate chain: {e}",
                shown(cert_path)
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "--tls-cert {}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\")",
            shown(cert_path)
        ));
    };
    let expires = not_after(leaf).ok_or_else(|| {
        format!(
            "--tls-cert {}: the first certificate cannot be read",
            shown(cert_path)
        )
    })?;
    if let Err(e) = expires.duration_since(SystemTime::now()) {
        let days = e.duration().as_secs() / 86_400;
        return Err(format!(
            "--tls-cert {}: the certificate has expired ({days} days ago); renew it",
            shown(cert_path)
        ));
    }
    // PKCS#8, PKCS#1 (RSA) or SEC1 (EC), whichever the file holds.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "--tls-key {}: not a PEM private key (PKCS#8, RSA or EC): {e}",
            shown(key_path)
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "--tls-key {} does not match --tls-cert {}: the key is not the certificate's",
                shown(key_path),
                shown(cert_path)
            ),
            e => format!("--tls-key {}: unusable: {e}", shown(key_path)),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        expires,
    })
}
