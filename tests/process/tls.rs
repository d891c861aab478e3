//! The operator API over TLS (`[api] tls_cert` / `tls_key`) with certificates of a CA
//! made in the test: `ctl --ca-cert` over https, the certificate error without it, a
//! plain-HTTP client getting nothing, `SIGHUP` swapping the certificate (and refusing
//! a bad one), the console cookie `Secure`, bad files refused at start, and the
//! warning for a plain-HTTP API on a non-loopback address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use crate::support::{self, Supervisor, ADMIN_TOKEN, WAIT};

/// A test CA and the files of the API's certificate (`cert.pem`, `key.pem`) and the CA
/// (`ca.pem`) in `dir` (the cluster's forwarding test uses it too).
pub(crate) struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    dir: PathBuf,
}

impl Pki {
    /// A new CA, and a first server certificate written.
    pub(crate) fn new(dir: &Path) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ccr-supervisor test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
        let pki = Pki {
            ca,
            ca_key,
            dir: dir.to_owned(),
        };
        pki.issue();
        pki
    }

    /// A new server certificate for 127.0.0.1 and localhost, written over the files;
    /// the SHA-256 of its DER.
    fn issue(&self) -> String {
        let (cert, key) = self.leaf();
        self.write(&cert.pem(), &key.serialize_pem());
        fingerprint(cert.der())
    }

    fn leaf(&self) -> (rcgen::Certificate, KeyPair) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("server certificate");
        (cert, key)
    }

    fn write(&self, cert: &str, key: &str) {
        std::fs::write(self.dir.join("key.pem"), key).expect("write key.pem");
        std::fs::write(self.dir.join("cert.pem"), cert).expect("write cert.pem");
    }

    /// The path of file `name` of this PKI (`ca.pem`, `cert.pem`, `key.pem`).
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("utf-8").to_owned()
    }

    /// The `[api]` lines that turn TLS on.
    fn api_toml(&self) -> String {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            self.path("cert.pem"),
            self.path("key.pem")
        )
    }

    /// A rustls client config that trusts this CA only.
    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA as a root");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

fn fingerprint(der: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(der.as_ref()))
}

/// A simulator, a config with TLS on and the supervisor running it.
async fn tls_supervisor(dir: &Path, pki: &Pki, ids: &[&str]) -> (ccr_sim::SimHandle, Supervisor) {
    let sim = support::start_sim(ids).await;
    let toml = support::config_toml(
        &sim.base_url(),
        ids,
        &dir.join("ledger.db"),
        &pki.api_toml(),
    );
    let cfg = support::write_file(dir, "config.toml", &toml);
    let sup = Supervisor::spawn(&cfg).await;
    (sim, sup)
}

fn addr_of(api: &str) -> SocketAddr {
    api.strip_prefix("https://")
        .expect("an https:// API")
        .parse()
        .expect("host:port")
}

/// Handshake with `addr` trusting the CA only; the SHA-256 of the certificate served.
async fn served_fingerprint(addr: SocketAddr, config: rustls::ClientConfig) -> String {
    tokio::task::spawn_blocking(move || {
        let name = ServerName::try_from("localhost").expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).expect("TLS handshake");
        }
        let certs = conn.peer_certificates().expect("a certificate");
        fingerprint(&certs[0])
    })
    .await
    .expect("handshake thread")
}

/// The child's stderr once it contains `needle` (read from a pipe as it comes: a
/// bounded poll), at most [`WAIT`].
async fn stderr_with(sup: &Supervisor, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = sup.stderr_now();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on stderr within {WAIT:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run `ccr-supervisor ctl ARGS` (with `env`) to its end.
async fn ctl(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    let mut cmd = support::command(&all);
    cmd.envs(env.iter().copied());
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("ctl ends in time")
        .expect("run ctl")
}

#[actix_rt::test]
async fn ctl_over_https_with_the_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let (_sim, sup) = tls_supervisor(dir.path(), &pki, &["tls-1"]).await;
    assert!(sup.api.starts_with("https://127.0.0.1:"), "{}", sup.api);
    let ca = pki.path("ca.pem");

    let out = ctl(
        &[
            "--url",
            &sup.api,
            "--ca-cert",
            &ca,
            "--token",
            ADMIN_TOKEN,
            "sessions",
        ],
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tls-1"), "{stdout}");

    // The CA from the environment, and `health` with no token.
    let out = ctl(
        &["--url", &sup.api, "health"],
        &[("CCR_SUPERVISOR_CA_CERT", ca.as_str())],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");

    // Without the CA: a clear certificate error.
    let out = ctl(
        &["--url", &sup.api, "--token", ADMIN_TOKEN, "sessions"],
        &[],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca-cert"),
        "{stderr}"
    );

    // Plain HTTP to the TLS port gets no answer of the API.
    let plain = sup.api.replace("https://", "http://");
    let out = ctl(&["--url", &plain, "health"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    let answer = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .get(format!("{plain}/readyz"))
        .send()
        .await;
    assert!(
        answer.as_ref().map_or(true, |r| r.status().as_u16() != 200),
        "plain HTTP answered: {:?}",
        answer.map(|r| r.status())
    );
    assert!(
        !sup.stderr_now().contains("clear text"),
        "no plain-HTTP warning under TLS"
    );
}

#[actix_rt::test]
async fn sighup_swaps_the_certificate_and_keeps_it_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let first = fingerprint(&CertificateDer::from_pem_file(pki.path("cert.pem")).expect("cert"));
    let (_sim, sup) = tls_supervisor(dir.path(), &pki, &[]).await;
    let addr = addr_of(&sup.api);
    assert_eq!(served_fingerprint(addr, pki.client_config()).await, first);

    let second = pki.issue();
    sup.signal(libc::SIGHUP);
    // Poll new handshakes (bounded) until the new certificate is served.
    let deadline = Instant::now() + WAIT;
    loop {
        let now = served_fingerprint(addr, pki.client_config()).await;
        if now == second {
            break;
        }
        assert_eq!(now, first, "only the old or the new certificate");
        assert!(
            Instant::now() < deadline,
            "new certificate not served within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A certificate with a key that is not its own: refused, the second one kept.
    let (cert, _) = pki.leaf();
    let (_, stray) = pki.leaf();
    pki.write(&cert.pem(), &stray.serialize_pem());
    sup.signal(libc::SIGHUP);
    let log = stderr_with(&sup, "TLS certificate reload refused").await;
    assert!(log.contains("api.tls_key"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "key material logged: {log}");
    assert_eq!(served_fingerprint(addr, pki.client_config()).await, second);
}

#[actix_rt::test]
async fn the_console_cookie_is_secure_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let (_sim, sup) = tls_supervisor(dir.path(), &pki, &[]).await;
    let browser = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(pki.client_config())))
        .disable_redirects()
        .timeout(WAIT)
        .finish();
    let line = support::console_sign_in(&browser, &sup.api, ADMIN_TOKEN).await;
    assert!(line.starts_with("ccr_console="), "{line}");
    assert!(line.to_ascii_lowercase().contains("secure"), "{line}");
}

#[actix_rt::test]
async fn bad_tls_files_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let (_, stray) = pki.leaf();
    std::fs::write(dir.path().join("stray.pem"), stray.serialize_pem()).expect("write");
    let cases = [
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                pki.path("cert.pem"),
                pki.path("stray.pem")
            ),
            "api.tls_key:",
            "does not match",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                pki.path("absent.pem"),
                pki.path("key.pem")
            ),
            "api.tls_cert:",
            "absent.pem: cannot read it",
        ),
        (
            format!("tls_cert = \"{}\"\n", pki.path("cert.pem")),
            "api.tls_key:",
            "set both tls_cert and tls_key",
        ),
    ];
    for (i, (api, key, says)) in cases.iter().enumerate() {
        let toml = support::config_toml("http://127.0.0.1:9", &[], &dir.path().join("l.db"), api);
        let cfg = support::write_file(dir.path(), &format!("c{i}.toml"), &toml);
        let cfg = cfg.to_str().expect("utf-8");
        for args in [vec!["--config", cfg], vec!["check-config", "--config", cfg]] {
            let (out, _) = support::run_to_exit(&args, WAIT).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(key) && stderr.contains(says),
                "{args:?}: {stderr}"
            );
            assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
        }
    }
}

#[actix_rt::test]
async fn plain_http_on_a_public_address_warns_loudly() {
    let setup = support::Setup::new(&[], "").await;
    let sup =
        Supervisor::spawn_with_env(&setup.cfg, &[("CCR_SUPERVISOR__API__BIND", "0.0.0.0:0")]).await;
    let log = stderr_with(&sup, "clear text").await;
    assert!(
        log.contains("WARN") && log.contains("without TLS") && log.contains("clear text"),
        "{log}"
    );
}
