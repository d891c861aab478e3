//! `ca_file` keys (`[ledger] ca_file`, `[cluster] ca_file`): a PEM bundle of the certificate
//! authorities to trust for a TLS connection the service makes, read and checked when the
//! config loads, so a missing or wrong file is a config error naming its key, not a failed
//! handshake later. [`client_config`] turns one (or none) into the rustls client settings.
//!
//! A `ca_file` replaces the public roots rather than adding to them, as libpq's
//! `sslrootcert` and `ctl --ca-cert` do: a private CA's deployment then trusts no public
//! authority to vouch for its database or its instances. Without one, the public web PKI's
//! roots (Mozilla's, the `webpki-roots` crate) are trusted.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::fields::{Errors, Table};

/// Largest `ca_file` read: a system-wide bundle of every public root is about 220 KB.
pub const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// A `ca_file`: its path and the CA certificates in it (at least one, each usable as a
/// trust root). Certificates are public: `Debug` shows the path and how many.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The file, as configured.
    pub path: PathBuf,
    certs: Arc<[CertificateDer<'static>]>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaFile({:?}, {} certificates)",
            self.path,
            self.certs.len()
        )
    }
}

impl CaFile {
    /// Read and check the PEM bundle at `path`: readable, at most [`MAX_CA_FILE_BYTES`],
    /// valid PEM, one certificate or more, each usable as a trust root. The error says what
    /// is wrong in words (never the file's content).
    pub fn read(path: &Path) -> Result<CaFile, String> {
        let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
        let mut pem = Vec::new();
        file.by_ref()
            .take(MAX_CA_FILE_BYTES + 1)
            .read_to_end(&mut pem)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            return Err(format!(
                "larger than {MAX_CA_FILE_BYTES} bytes: not a bundle of CA certificates"
            ));
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not valid PEM ({e}); expected CA certificates"))?;
        if certs.is_empty() {
            return Err(
                "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks of CA certificates)"
                    .into(),
            );
        }
        for (i, cert) in certs.iter().enumerate() {
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| format!("certificate {} of the file is not usable: {e}", i + 1))?;
        }
        Ok(CaFile {
            path: path.to_owned(),
            certs: certs.into(),
        })
    }

    /// The CA certificates, in the file's order.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// The authorities a TLS client trusts: `ca`'s certificates instead of the public roots,
/// or the public web PKI's roots without one.
pub fn trust_roots(ca: Option<&CaFile>) -> rustls::RootCertStore {
    match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            // Each was checked when the file was read.
            roots.add_parsable_certificates(ca.certificates().iter().cloned());
            roots
        }
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    }
}

/// The rustls client settings of a connection the service makes: ring (as every TLS of
/// the process), TLS 1.2 and 1.3, the server's certificate and name verified against
/// [`trust_roots`], no client certificate, and the ALPN protocols `alpn` (none: no ALPN).
pub fn client_config(ca: Option<&CaFile>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring's provider has every suite of both versions: this cannot fail.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(trust_roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Read the optional `ca_file` key of `t`: absent is `None`; a file that cannot be used is
/// an error at the key's path, and `None`.
pub(super) fn ca_file(t: &mut Table, errs: &mut Errors) -> Option<CaFile> {
    let value = t.string(errs, "ca_file")?;
    if value.trim().is_empty() || value.contains('\0') {
        errs.push(
            t.key_path("ca_file"),
            "must be a non-empty file path (a PEM bundle of CA certificates)",
        );
        return None;
    }
    let path = PathBuf::from(value);
    match CaFile::read(&path) {
        Ok(ca) => Some(ca),
        Err(reason) => {
            errs.push(
                t.key_path("ca_file"),
                format!("{}: {reason}", path.display()),
            );
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
