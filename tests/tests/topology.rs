//! The production topology, checked without a container engine (none runs where ionroller is
//! tested): `docker-compose config` accepts `docker-compose.yml` under each profile, hadolint
//! accepts the `Dockerfile`, and every command, flag and environment variable the compose file
//! gives `ionroller` and `trail` exists in the binaries built beside this test (their `--help`
//! says so), so a renamed flag cannot leave the compose file behind.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{binary, trail_binary};

/// The AWS SDK's standard variables the roller reads (through `aws-config`), which its own
/// `--help` does not list.
const AWS_STANDARD: &[&str] = &[
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tool the test command installs (scripts/lib/topology_tools.sh), or a loud skip; in CI a
/// missing tool fails the test.
fn tool(var: &str) -> Option<PathBuf> {
    match std::env::var(var) {
        Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "{var} is not set in CI: run the tests through scripts/test.sh"
            );
            eprintln!("\n*** SKIPPING the topology test: {var} is not set (scripts/test.sh sets it) ***\n");
            None
        }
    }
}

/// `docker-compose config` for one profile, as JSON, in a copy of the file beside stand-in
/// secrets and the variables the file requires.
fn compose_config(compose: &Path, python: &Path, profile: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo().join("docker-compose.yml"),
        dir.path().join("docker-compose.yml"),
    )
    .expect("copy the compose file");
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    for file in ["tls.crt", "tls.key"] {
        std::fs::write(dir.path().join("secrets").join(file), "").expect("secret file");
    }
    let out = Command::new(compose)
        .current_dir(dir.path())
        .args(["--profile", profile, "config"])
        .env("POSTGRES_PASSWORD", "pg-secret")
        .env("KURRENTDB_ADMIN_PASSWORD", "kdbsecret")
        .env("KURRENTDB_OPS_PASSWORD", "opssecret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config --profile {profile}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&out.stdout)?;
            child.wait_with_output()
        })
        .expect("convert the config to JSON");
    serde_json::from_slice(&json.stdout).expect("compose config as JSON")
}

fn help(binary: &Path, subcommand: &str) -> String {
    let out = Command::new(binary)
        .args([subcommand, "--help"])
        .output()
        .expect("run --help");
    assert!(
        out.status.success(),
        "{} {subcommand} --help",
        binary.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_compose_file_and_dockerfile_are_valid_and_name_only_what_the_binaries_have() {
    let (Some(compose), Some(hadolint), Some(python)) = (
        tool("IONROLLER_DOCKER_COMPOSE"),
        tool("IONROLLER_HADOLINT"),
        tool("IONROLLER_TOPOLOGY_PYTHON"),
    ) else {
        return;
    };
    let lint = Command::new(&hadolint)
        .arg(repo().join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        lint.status.success(),
        "hadolint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    for name in ["ionroller", "trail"] {
        assert!(
            dockerfile.contains(&format!("--bin {name}"))
                && dockerfile.contains(&format!("target/release/{name}")),
            "the Dockerfile builds and copies {name}"
        );
    }

    let mut checked = BTreeSet::new();
    for profile in ["kurrentdb", "postgres"] {
        let config = compose_config(&compose, &python, profile);
        let services = config["services"].as_object().expect("services");
        let ours: Vec<(&String, &Value)> = services
            .iter()
            .filter(|(_, s)| {
                s["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("ionroller"))
            })
            .collect();
        let names: BTreeSet<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.iter().any(|n| n.starts_with("roller"))
                && names.iter().any(|n| n.starts_with("trail")),
            "profile {profile} runs the roller and trail as separate services: {names:?}"
        );
        for (name, service) in ours {
            let entrypoint = strings(&service["entrypoint"]);
            let program = entrypoint.first().map_or("ionroller", String::as_str);
            let bin = match program {
                "ionroller" => binary(),
                "trail" => trail_binary(),
                other => panic!("{name}: unknown program {other}"),
            };
            let command = strings(&service["command"]);
            let subcommand = command
                .iter()
                .find(|a| !a.starts_with('-'))
                .unwrap_or_else(|| panic!("{name}: no subcommand in {command:?}"));
            let text = help(&bin, subcommand);
            for flag in command.iter().filter(|a| a.starts_with("--")) {
                let flag = flag.split('=').next().unwrap_or(flag);
                assert!(
                    text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                    "{name}: `{program} {subcommand}` has no {flag}"
                );
            }
            let environment = service["environment"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for key in environment.keys() {
                let known =
                    AWS_STANDARD.contains(&key.as_str()) || text.contains(&format!("[env: {key}"));
                assert!(known, "{name}: `{program} {subcommand}` reads no {key}");
            }
            assert!(
                service["healthcheck"]["test"].is_array(),
                "{name} has a health check"
            );
            assert_eq!(service["restart"], "unless-stopped", "{name} restarts");
            checked.insert(name.clone());
        }
    }
    assert_eq!(checked.len(), 4, "{checked:?}");
}
