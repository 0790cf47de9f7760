//! TLS on the listeners, with a certificate the test generates: the CLI reaches both APIs over
//! https when told to trust that certificate (`--ca-cert`), finds the local admin token by
//! itself, and refuses a server it cannot verify; plain HTTP to the same port gets no answer;
//! and a listener other machines can reach is refused without TLS unless plain HTTP is
//! acknowledged.

mod support;

use std::process::{Command, Stdio};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_both_apis_over_tls_trusting_the_given_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The names `up` prints its URLs with (127.0.0.1) and the one people type (localhost).
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate a certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let cert = cert.to_str().expect("utf-8");
    let data_dir = dir.path().join("data");
    let server = Server::start_with(
        &data_dir,
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    assert!(
        server.trail_url.starts_with("https://"),
        "{}",
        server.trail_url
    );

    // The roller, then trail, each through the CLI with the CA given as a flag.
    let me = server.cli_ok(&["--ca-cert", cert, "whoami"]);
    assert!(me.contains("admin via token "), "{me}");
    server.cli_ok(&["--ca-cert", cert, "audit"]);

    // The CA from the environment, and the token found by itself (the admin token `up` wrote),
    // as a local user runs it: no token handling over https either.
    let out = Command::new(binary())
        .args([
            "--server",
            &server.url,
            "--trail",
            &server.trail_url,
            "whoami",
        ])
        .env_remove("IONROLLER_TOKEN")
        .env("IONROLLER_CA_CERT", cert)
        .env("IONROLLER_DATA_DIR", &data_dir)
        .env("HOME", dir.path())
        .output()
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("admin via token "),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the CA the system's trust store does not vouch for the server: refused, with a
    // reason that names the certificate.
    let out = server.cli(&["whoami"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "unreachable: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // A CA file that holds no certificate is named as such.
    let out = server.cli(&["--ca-cert", key.to_str().expect("utf-8"), "whoami"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = http()
        .get(server.url.replace("https://", "http://") + "/healthz")
        .send()
        .await;
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
