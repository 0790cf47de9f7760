//! Identity and authorization against the real binary: every documented route refuses a
//! request without credentials; a role × route matrix of 401 / 403 / 2xx; a team's token does
//! not reach another team's service; the recorded actor is the verified identity whatever
//! header the client sends; a revoked token is refused on the next request; a cross-site form
//! post cannot drive a rollout.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

/// Creates a token with the CLI (as an admin would) and returns its secret.
fn token(server: &Server, name: &str, role: &str, services: &[&str]) -> String {
    let mut args = vec!["token", "create", name, "--role", role];
    for s in services {
        args.extend(["--service", s]);
    }
    let out = server.cli_ok(&args);
    out.lines()
        .find(|l| l.starts_with("ionr_"))
        .unwrap_or_else(|| panic!("no secret printed: {out}"))
        .to_string()
}

async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn config_for(load_balancer: &str) -> Value {
    let mut config: Value = serde_json::from_str(&example_config()).expect("example config");
    config["endpoint"]["load_balancer"]["name"] = json!(load_balancer);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_guarded_and_each_role_reaches_only_its_services() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let admin = server.token.clone();

    // Every operation the roller documents, without credentials: 401, but for the open ones.
    let doc = server.get("/v1/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{service}", "hello")
                .replace("{name}", "nobody");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (status, body) = call(&server, m, &concrete, None, None).await;
            let open = ["/healthz", "/v1/openapi.json"].contains(&path.as_str());
            if open {
                assert_eq!(status, 200, "{method} {path} should be open");
            } else {
                assert_eq!(status, 401, "{method} {path} without a token: {body}");
                assert_eq!(body["error"], "unauthenticated", "{method} {path}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations documented");
    // A wrong token is refused the same way, without saying why.
    let forged = format!("ionr_{}_{}", "0".repeat(32), "0".repeat(64));
    let (status, body) = call(&server, Method::GET, "/v1/services", Some(&forged), None).await;
    assert_eq!(status, 401);
    assert!(!body.to_string().contains("no such token"), "{body}");

    // Two teams' services, saved by the admin.
    for (service, lb) in [("hello", "hello-lb"), ("payments-api", "payments-lb")] {
        let (status, body) = call(
            &server,
            Method::PUT,
            &format!("/v1/services/{service}/config"),
            Some(&admin),
            Some(config_for(lb)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let viewer = token(&server, "everyone", "viewer", &[]);
    let deployer = token(&server, "payments-ci", "deployer", &["payments-*"]);
    let maintainer = token(&server, "payments-lead", "maintainer", &["payments-*"]);

    let release = |v: &str| json!({ "version": v });
    let table: Vec<(&str, Method, &str, Option<Value>, u16)> = vec![
        // viewer: reads everything, changes nothing.
        (&viewer, Method::GET, "/v1/services/hello", None, 200),
        (
            &viewer,
            Method::GET,
            "/v1/services/payments-api/plan?version=v2",
            None,
            200,
        ),
        (
            &viewer,
            Method::POST,
            "/v1/services/hello/releases",
            Some(release("v1")),
            403,
        ),
        (
            &viewer,
            Method::PUT,
            "/v1/services/hello/config",
            Some(config_for("hello-lb")),
            403,
        ),
        (&viewer, Method::GET, "/v1/tokens", None, 403),
        // the payments team's deployer: its services only, and no config.
        (&deployer, Method::GET, "/v1/services/hello", None, 403),
        (
            &deployer,
            Method::POST,
            "/v1/services/hello/releases",
            Some(release("v1")),
            403,
        ),
        (
            &deployer,
            Method::POST,
            "/v1/services/hello/abort",
            None,
            403,
        ),
        (
            &deployer,
            Method::POST,
            "/v1/services/payments-api/releases",
            Some(release("v1")),
            202,
        ),
        (
            &deployer,
            Method::PUT,
            "/v1/services/payments-api/config",
            Some(config_for("payments-lb")),
            403,
        ),
        // the payments team's maintainer: its configs too, still not hello's.
        (
            &maintainer,
            Method::PUT,
            "/v1/services/payments-api/config",
            Some(config_for("payments-lb")),
            200,
        ),
        (
            &maintainer,
            Method::PUT,
            "/v1/services/hello/config",
            Some(config_for("hello-lb")),
            403,
        ),
        (
            &maintainer,
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "x", "role": "admin"})),
            403,
        ),
        // the admin: everything.
        (
            &admin,
            Method::POST,
            "/v1/services/hello/releases",
            Some(release("v1")),
            202,
        ),
        (&admin, Method::GET, "/v1/tokens", None, 200),
    ];
    for (who, method, path, body, expected) in table {
        let (status, answer) = call(&server, method.clone(), path, Some(who), body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        if status == 403 {
            assert_eq!(answer["error"], "forbidden");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("this needs the role "),
                "{answer}"
            );
        }
    }

    // A team token does not even learn other teams' service names.
    let (_, list) = call(&server, Method::GET, "/v1/services", Some(&deployer), None).await;
    assert_eq!(list["services"], json!(["payments-api"]));

    // The actor is who the token proves, whatever the client claims.
    let forged_actor = http()
        .post(format!("{}/v1/services/payments-api/pause", server.url))
        .bearer_auth(&deployer)
        .header("x-ionroller-actor", "mallory@example.com")
        .send()
        .await
        .expect("pause");
    assert!(forged_actor.status().is_success() || forged_actor.status() == 409);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (events, requested) = loop {
        let events = server.trail_rows("payments-api", 20).await;
        if let Some(r) = events
            .iter()
            .find(|r| r["event_type"] == "release-requested")
        {
            break (events.clone(), r.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no release-requested row: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        requested["actor"]
            .as_str()
            .unwrap_or("")
            .starts_with("payments-ci via token "),
        "{requested}"
    );
    assert!(!events.iter().any(|r| r["actor"] == "mallory@example.com"));

    // A cross-site form post: no token, and a command refuses text/plain even with one.
    let csrf = http()
        .post(format!("{}/v1/services/hello/promote", server.url))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(csrf.status().as_u16(), 401);
    assert!(csrf.headers().get("access-control-allow-origin").is_none());
    for command in ["pause", "promote", "resume", "abort", "rollback"] {
        let plain = http()
            .post(format!("{}/v1/services/hello/{command}", server.url))
            .bearer_auth(&admin)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(plain.status().as_u16(), 415, "{command}");
    }

    // Revocation holds from the next request on.
    server.cli_ok(&["token", "revoke", "payments-ci"]);
    let revoked_at = Instant::now();
    let (status, _) = call(
        &server,
        Method::GET,
        "/v1/services/payments-api",
        Some(&deployer),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(revoked_at.elapsed() < Duration::from_secs(1));

    // The refusals of a known identity are in the audit (rate-limited: one per minute each).
    let denied = server.trail_rows_of_type("access-denied", 30).await;
    assert!(
        denied.iter().any(|r| r["actor"]
            .as_str()
            .unwrap_or("")
            .starts_with("everyone via token ")),
        "{denied:?}"
    );
    // Unauthenticated requests are counted, not recorded.
    let metrics = server
        .request(Method::GET, &format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ionroller_http_unauthenticated_total "))
        .expect("the counter is exposed");
    let count: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(count >= checked as u64 - 2, "{line}");
    // `whoami` says who a token is.
    let me = server.cli_ok(&["whoami"]);
    assert!(me.starts_with("admin via token "), "{me}");
}

/// README's walkthrough needs no token handling: `up` and the CLI run in one directory, and
/// the CLI finds the admin token `up` wrote there (owner-only), with no token in the
/// environment and no config file.
#[test]
fn the_cli_finds_the_local_admin_token_by_itself() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path());
    let file = dir.path().join(".ionroller/admin.token");
    let mode = std::fs::metadata(&file)
        .expect("admin.token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    let run = |cwd: &std::path::Path| {
        std::process::Command::new(binary())
            .arg("whoami")
            .current_dir(cwd)
            .env("IONROLLER_URL", &server.url)
            .env_remove("IONROLLER_TOKEN")
            .env_remove("IONROLLER_CONFIG")
            .env_remove("IONROLLER_DATA_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", cwd)
            .output()
            .expect("run the CLI")
    };
    let out = run(dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("admin via token "),
        "{text}"
    );
    // Elsewhere, without the file, the server says what is missing and how to give it.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let out = run(elsewhere.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "refused: {err}");
    assert!(
        err.contains("401") && err.contains("IONROLLER_TOKEN"),
        "{err}"
    );
}
