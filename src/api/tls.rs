//! The operator API over TLS (`[api] tls_cert` / `tls_key`): the PEM files are read and
//! checked at start (a bad file is a config error naming its key), served through a
//! certificate resolver whose certificate `SIGHUP` swaps without a restart. A new
//! certificate that does not load is refused and logged; the one in use stays.
//!
//! The private key is never logged: messages name files and say what is wrong with them.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tracing::{error, info};

use crate::config::{KeyError, TlsFiles};

/// Why the TLS files could not be loaded, naming the file and the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls_cert` is unreadable, not PEM, or holds no certificate.
    #[error("{path}: {reason}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong (never the file's content).
        reason: String,
    },
    /// `tls_key` is unreadable, not a PEM private key, or does not match the certificate.
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong (never the key).
        reason: String,
    },
}

impl TlsError {
    /// The config key the problem belongs to (`api.tls_cert` or `api.tls_key`).
    pub fn key_path(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } => "api.tls_cert",
            TlsError::Key { .. } => "api.tls_key",
        }
    }
}

/// The crypto provider of the API's TLS (ring, as every other TLS of the process).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read `files` into a certificate chain and its signing key; the key must match the
/// first (end-entity) certificate.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.display().to_string(),
        reason: pem_reason(&e, "a PEM private key (PKCS#8, PKCS#1 or SEC1)"),
    })?;
    certified(chain, key, files)
}

/// The certificates of the PEM file at `path`, in order; at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Cert {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(pem_reason(&e, "PEM certificates")))?;
    if chain.is_empty() {
        return Err(bad(
            "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)".into(),
        ));
    }
    Ok(chain)
}

/// `chain` with `key` (as read from `files`), if the key is usable and matches.
fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    files: &TlsFiles,
) -> Result<CertifiedKey, TlsError> {
    let bad = |reason: String| TlsError::Key {
        path: files.key.display().to_string(),
        reason,
    };
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(format!("not a usable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(bad(
            "does not match the certificate of api.tls_cert (its public key differs)".into(),
        )),
        // A key whose public half cannot be computed cannot be compared: accept it, as rustls does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::Cert {
            path: files.cert.display().to_string(),
            reason: format!("the first certificate cannot be read: {e}"),
        }),
    }
}

/// A PEM reading error in words; `expected` says what the file should hold.
fn pem_reason(e: &rustls::pki_types::pem::Error, expected: &str) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read it: {io}"),
        E::NoItemsFound => format!("no {expected} in it"),
        other => format!("not valid PEM ({other}); expected {expected}"),
    }
}

/// The problems of `[api] tls_cert` / `tls_key` (none without TLS), for the config check
/// at start and `check-config`.
pub fn problems(tls: Option<&TlsFiles>) -> Vec<KeyError> {
    match tls.map(load) {
        Some(Err(e)) => vec![KeyError {
            path: e.key_path().to_owned(),
            message: e.to_string(),
        }],
        _ => Vec::new(),
    }
}

/// SHA-256 of the end-entity certificate (DER), in hex: how logs name a certificate.
pub fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| hex::encode(Sha256::digest(c.as_ref())))
        .unwrap_or_default()
}

/// Serves the current certificate to every handshake; [`CertResolver::replace`] swaps it.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Serve `key` from the next handshake on (connections already open keep theirs).
    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write() = Arc::new(key);
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// Re-read `files`: the new certificate if it loads (and its fingerprint), else the
    /// error, the current one kept.
    pub fn reload(&self, files: &TlsFiles) -> Result<String, TlsError> {
        let key = load(files)?;
        let fp = fingerprint(&key);
        self.replace(key);
        Ok(fp)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The server config of the API: TLS 1.2 and 1.3, no client certificates, the
/// certificate from `resolver` (actix adds the ALPN protocols it serves).
pub fn server_config(resolver: Arc<CertResolver>) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}

/// On every `SIGHUP`, re-read `files` into `resolver`; a file that does not load is
/// logged and the certificate in use kept. Must run inside an actix `System`. Other
/// `SIGHUP` listeners (the sessions' reload) hear the signal too.
pub fn reload_on_sighup(resolver: Arc<CertResolver>, files: TlsFiles) {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
            return;
        }
    };
    actix_rt::spawn(async move {
        while hup.recv().await.is_some() {
            let (r, f) = (resolver.clone(), files.clone());
            let reloaded = tokio::task::spawn_blocking(move || r.reload(&f)).await;
            match reloaded {
                Ok(Ok(fp)) => info!(
                    cert = %files.cert.display(),
                    sha256 = %fp,
                    "SIGHUP: TLS certificate reloaded"
                ),
                Ok(Err(e)) => error!(
                    key = e.key_path(),
                    "SIGHUP: TLS certificate reload refused, keeping the one in use: {e}"
                ),
                Err(e) => error!(error = %e, "SIGHUP: TLS certificate reload failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests;
