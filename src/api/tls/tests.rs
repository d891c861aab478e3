//! Unit tests of the TLS files: loading, the errors naming their key, and reloads.

use std::path::{Path, PathBuf};

use super::*;

/// A self-signed certificate for localhost and its key, as PEM.
fn pair() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    (c.cert.pem(), c.key_pair.serialize_pem())
}

fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
    let (c, k): (PathBuf, PathBuf) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    TlsFiles { cert: c, key: k }
}

#[test]
fn a_matching_pair_loads_and_names_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let f = files(dir.path(), &cert, &key);
    let loaded = load(&f).expect("loads");
    assert_eq!(loaded.cert.len(), 1);
    assert_eq!(fingerprint(&loaded).len(), 64);
    assert!(problems(Some(&f)).is_empty());
    assert!(problems(None).is_empty());
}

#[test]
fn each_bad_file_is_reported_at_its_key_without_the_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let (_, other_key) = pair();

    let mismatch = problems(Some(&files(dir.path(), &cert, &other_key)));
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0].path, "api.tls_key");
    assert!(
        mismatch[0].message.contains("does not match"),
        "{mismatch:?}"
    );
    assert!(mismatch[0].message.contains("key.pem"), "{mismatch:?}");

    let not_pem = problems(Some(&files(dir.path(), "hello", &key)));
    assert_eq!(not_pem[0].path, "api.tls_cert", "{not_pem:?}");
    assert!(not_pem[0].message.contains("no certificate"), "{not_pem:?}");

    // A key where the certificate should be: no certificate in it.
    let swapped = problems(Some(&files(dir.path(), &key, &cert)));
    assert_eq!(swapped[0].path, "api.tls_cert", "{swapped:?}");
    assert!(
        !swapped[0].message.contains("PRIVATE KEY-----"),
        "key material echoed: {swapped:?}"
    );

    let no_key = problems(Some(&files(dir.path(), &cert, &cert)));
    assert_eq!(no_key[0].path, "api.tls_key", "{no_key:?}");

    let missing = TlsFiles {
        cert: dir.path().join("absent.pem"),
        key: dir.path().join("key.pem"),
    };
    let gone = problems(Some(&missing));
    assert_eq!(gone[0].path, "api.tls_cert");
    assert!(gone[0].message.contains("cannot read it"), "{gone:?}");
    assert!(gone[0].message.contains("absent.pem"), "{gone:?}");
}

#[test]
fn a_reload_swaps_a_good_pair_and_keeps_the_old_one_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let f = files(dir.path(), &cert, &key);
    let resolver = CertResolver::new(load(&f).unwrap());
    let first = fingerprint(&resolver.current());

    let (cert2, key2) = pair();
    let f = files(dir.path(), &cert2, &key2);
    let second = resolver.reload(&f).expect("a good pair reloads");
    assert_ne!(first, second);
    assert_eq!(fingerprint(&resolver.current()), second);

    let (_, stray) = pair();
    let f = files(dir.path(), &cert, &stray);
    let err = resolver
        .reload(&f)
        .expect_err("a mismatched pair is refused");
    assert_eq!(err.key_path(), "api.tls_key");
    assert_eq!(
        fingerprint(&resolver.current()),
        second,
        "old certificate kept"
    );
}

#[test]
fn the_server_config_builds() {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path(), &c.cert.pem(), &c.key_pair.serialize_pem());
    let config = server_config(CertResolver::new(load(&f).unwrap())).expect("config");
    assert!(config.alpn_protocols.is_empty(), "actix adds its own");
}
