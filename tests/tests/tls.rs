//! TLS on the listeners, with a certificate the test generates: a request over TLS to the real
//! binary is answered (and authenticated), plain HTTP to the same port is not, and a listener
//! other machines can reach is refused without TLS unless plain HTTP is acknowledged.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET over TLS, trusting only `ca`; the whole answer as text.
async fn get_over_tls(addr: &str, ca: CertificateDer<'static>, path: &str, token: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("trust the test's certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    // A server may close without a TLS close_notify; what was read is the answer.
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_speak_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = certified.cert.der().clone();
    for (base, path) in [
        (&server.url, "/v1/whoami"),
        (&server.trail_url, "/v1/services"),
    ] {
        let addr = base.trim_start_matches("https://");
        let answer = get_over_tls(addr, ca.clone(), path, &server.token).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    let me = get_over_tls(
        server.url.trim_start_matches("https://"),
        ca,
        "/v1/whoami",
        &server.token,
    )
    .await;
    assert!(me.contains("admin via token "), "{me}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::get(server.url.replace("https://", "http://") + "/healthz").await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[test]
fn a_listener_other_machines_can_reach_needs_tls_or_an_acknowledgement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args([
            "up",
            "--listen",
            "0.0.0.0:0",
            "--trail-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ionroller up");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs TLS") && err.contains("--insecure-http"),
        "{err}"
    );
}
