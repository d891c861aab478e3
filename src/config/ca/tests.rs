//! Unit tests of `ca_file`: what a usable bundle is, each way a file is refused (at its
//! key, in words, never a panic), the keys of both sections, and the trust roots.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::config::{load_from_str, ConfigError};

const BASE: &str = "[sim]\nembedded = true\n[api]\nauth = \"disabled\"\n";

/// A CA certificate, PEM (also for other modules' tests of `ca_file`).
pub(crate) fn ca_pem(name: &str) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn problems(toml: &str) -> Vec<(String, String)> {
    match load_from_str(&format!("{toml}\n{BASE}"), HashMap::new()) {
        Err(ConfigError::Invalid(list)) => list.into_iter().map(|e| (e.path, e.message)).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn a_bundle_of_cas_loads_and_replaces_the_public_roots() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# two CAs and a comment\n{}\n{}",
        ca_pem("one"),
        ca_pem("two")
    );
    let path = write(dir.path(), "bundle.pem", &text);
    let ca = CaFile::read(Path::new(&path)).unwrap();
    assert_eq!(ca.certificates().len(), 2);
    assert_eq!(
        format!("{ca:?}"),
        format!("CaFile({path:?}, 2 certificates)")
    );
    assert_eq!(
        trust_roots(Some(&ca)).len(),
        2,
        "instead of the public roots"
    );
    let public = trust_roots(None).len();
    assert!(public > 100, "the web PKI's roots: {public}");
    let config = client_config(Some(&ca), &[b"h2"]);
    assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
}

#[test]
fn each_unusable_file_is_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let cases = [
        (
            d.join("absent.pem").to_str().unwrap().to_owned(),
            "cannot read it",
        ),
        (d.to_str().unwrap().to_owned(), "cannot read it"),
        (write(d, "empty.pem", ""), "no certificate in it"),
        (write(d, "key.pem", &key), "no certificate in it"),
        (
            write(
                d,
                "bad64.pem",
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            ),
            "not valid PEM",
        ),
        (
            write(
                d,
                "notder.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
            "certificate 1 of the file is not usable",
        ),
    ];
    for (path, expected) in cases {
        let err = CaFile::read(Path::new(&path)).unwrap_err();
        assert!(err.contains(expected), "{path}: {err}");
        assert!(!err.contains("AAAA") && !err.contains("PRIVATE"), "{err}");
    }
    let big = d.join("big.pem");
    std::fs::write(&big, vec![b'#'; MAX_CA_FILE_BYTES as usize + 1]).unwrap();
    let err = CaFile::read(&big).unwrap_err();
    assert!(err.contains("larger than"), "{err}");
}

#[test]
fn both_sections_take_ca_file_and_report_a_bad_one_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "ca.pem", &ca_pem("db"));
    let empty = write(dir.path(), "empty.pem", "");
    let toml = format!(
        "[ledger]\nbackend = \"postgres\"\nurl_env = \"U\"\nca_file = \"{good}\"\n\
         [cluster]\nca_file = \"{good}\"\n"
    );
    let c = load_from_str(&format!("{toml}\n{BASE}"), HashMap::new()).unwrap();
    let pg = c.ledger.postgres().unwrap();
    assert_eq!(pg.ca_file.as_ref().unwrap().certificates().len(), 1);
    assert_eq!(c.cluster.ca_file.as_ref().unwrap().path, Path::new(&good));

    let p = problems(&format!(
        "[ledger]\nbackend = \"postgres\"\nurl_env = \"U\"\nca_file = \"{empty}\"\n\
         [cluster]\nca_file = \"\"\n"
    ));
    let paths: Vec<&str> = p.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["ledger.ca_file", "cluster.ca_file"], "{p:?}");
    assert!(
        p[0].1.contains(&empty) && p[0].1.contains("no certificate"),
        "{p:?}"
    );
    assert!(p[1].1.contains("non-empty file path"), "{p:?}");

    // Like the other PostgreSQL keys, refused with SQLite (even a good file).
    let sqlite = problems(&format!("[ledger]\nca_file = \"{good}\"\n"));
    assert_eq!(sqlite[0].0, "ledger.ca_file");
    assert!(
        sqlite[0].1.contains("only taken with backend"),
        "{sqlite:?}"
    );
}
