//! An OIDC issuer for tests and benchmarks: P-256 keys from fixed seeds, ES256 tokens signed
//! with them, and discovery plus a JWKS served over HTTP on a free port.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};

pub struct Key {
    pub der: Vec<u8>,
    pub jwk: Value,
}

/// A P-256 key from a fixed seed, as PKCS#8 (to sign) and as a JWK named `kid` (to publish).
pub fn key(kid: &str, seed: u8) -> Key {
    let secret = p256::SecretKey::from_slice(&[seed; 32]).expect("a valid P-256 scalar");
    let der = secret.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec();
    // Uncompressed SEC1: 0x04 ‖ x ‖ y.
    let point = secret.public_key().to_sec1_bytes();
    assert_eq!(point.len(), 65, "an uncompressed point");
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    Key { der, jwk }
}

pub fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_ec_der(&key.der)).expect("sign")
}

/// Serves discovery and the JWKS (whatever `keys` holds at the time) on a free port.
pub async fn issuer(keys: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let discovery = json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let d = discovery.clone();
                async move { Json(d) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                let keys = keys.lock().map(|k| k.clone()).unwrap_or_default();
                async move { Json(json!({ "keys": keys })) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}
