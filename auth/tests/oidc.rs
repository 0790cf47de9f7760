//! OIDC against a real issuer served by the test: discovery, a JWKS over HTTP, ES256 tokens
//! signed with keys the test generates. Each way a JWT can be wrong is refused with its reason.

#[path = "support/jwt.rs"]
mod jwt;

use std::sync::{Arc, Mutex};

use ionroller_auth::oidc::{Oidc, OidcConfig};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use jwt::{issuer, key, sign};
use serde_json::{json, Value};

fn claims(issuer: &str, audience: &str, exp_from_now: i64, groups: &[&str]) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": issuer, "aud": audience, "sub": "u-123", "email": "ana@example.com",
        "groups": groups, "iat": now, "exp": now + exp_from_now,
    })
}

fn verifier(path: &std::path::Path) -> Oidc {
    Oidc::new(
        OidcConfig::load(path).expect("config"),
        ionroller_auth::tls::http_client()
            .build()
            .expect("HTTP client"),
    )
}

#[tokio::test]
async fn jwts_from_a_configured_issuer_map_to_grants_and_every_flaw_is_refused() {
    let current = key("k1", 7);
    let keys = Arc::new(Mutex::new(vec![current.jwk.clone()]));
    let base = issuer(keys.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("oidc.json");
    std::fs::write(
        &path,
        json!({
            "issuers": [{ "issuer": base, "audience": "ionroller" }],
            "rules": [{ "group": "payments", "role": "deployer", "services": ["payments-*"] }]
        })
        .to_string(),
    )
    .expect("write config");
    let oidc = verifier(&path);
    let now = chrono::Utc::now();

    let good = sign(
        &current,
        "k1",
        &claims(&base, "ionroller", 300, &["payments"]),
    );
    let identity = oidc.authenticate(&good, now).await.expect("a valid token");
    assert_eq!(identity.actor, format!("ana@example.com via {base}"));
    assert!(identity.can_read("payments-api") && !identity.can_read("hello"));

    // A valid token whose groups match no rule proves who it is but may do nothing.
    let outsider = sign(
        &current,
        "k1",
        &claims(&base, "ionroller", 300, &["marketing"]),
    );
    let identity = oidc.authenticate(&outsider, now).await.expect("valid");
    assert!(identity.grants.is_empty());

    let forger = key("k1", 9);
    let ok = |aud: &str, exp: i64| claims(&base, aud, exp, &["payments"]);
    let table = [
        (
            sign(&current, "k1", &ok("ionroller", -600)),
            "ExpiredSignature",
        ),
        (
            sign(
                &current,
                "k1",
                &claims("https://evil.example", "ionroller", 300, &[]),
            ),
            "InvalidIssuer",
        ),
        (
            sign(&current, "k1", &ok("someone-else", 300)),
            "InvalidAudience",
        ),
        (
            sign(&forger, "k1", &ok("ionroller", 300)),
            "InvalidSignature",
        ),
        (
            sign(&current, "k9", &ok("ionroller", 300)),
            "unknown key id",
        ),
        ("not.a.jwt".to_string(), "unreadable JWT header"),
    ];
    for (jwt, reason) in table {
        let why = oidc.authenticate(&jwt, now).await.expect_err(reason);
        assert!(why.contains(reason), "{reason}: {why}");
    }
    // HS256 "signed" with the public key as a shared secret (the classic confusion): refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused = encode(
        &header,
        &ok("ionroller", 300),
        &EncodingKey::from_secret(current.jwk.to_string().as_bytes()).expect("an HMAC key"),
    )
    .expect("sign");
    let why = oidc.authenticate(&confused, now).await.expect_err("HS256");
    assert!(why.contains("not accepted"), "{why}");

    // The issuer rotates in a new key. This verifier fetched the JWKS moments ago, so it
    // refetches no sooner than 30 s (unknown ids cannot make it hammer the issuer) ...
    let next = key("k2", 11);
    keys.lock().expect("keys").push(next.jwk.clone());
    let rotated = sign(&next, "k2", &ok("ionroller", 300));
    let why = oidc
        .authenticate(&rotated, now)
        .await
        .expect_err("rate-limited");
    assert!(why.contains("unknown key id"), "{why}");
    // ... while a verifier that has not fetched yet gets the new key at once.
    assert!(verifier(&path).authenticate(&rotated, now).await.is_ok());
}

#[test]
fn an_issuer_in_clear_text_off_this_machine_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("oidc.json");
    let config = json!({ "issuers": [{ "issuer": "http://id.example.com", "audience": "x" }] });
    std::fs::write(&path, config.to_string()).expect("write");
    let e = OidcConfig::load(&path).expect_err("http off loopback");
    assert!(e.to_string().contains("must be https"), "{e}");
    std::fs::write(&path, r#"{"issuers": [], "rulez": []}"#).expect("write");
    assert!(
        OidcConfig::load(&path).is_err(),
        "a misspelt key is an error"
    );
}
