//! The KurrentDB the tests run against: a real server when `IONROLLER_KURRENTDB_URL` names
//! one, otherwise the protocol stand-in (`tests/kurrentdb/standin.py`, a strict single node
//! speaking KurrentDB's gRPC API) started for the test. `scripts/test.sh` installs the
//! stand-in's Python packages and exports `IONROLLER_KURRENTDB_STANDIN_PYTHON` and
//! `IONROLLER_KURRENTDB_PROTOS` (the `.proto` files the `kurrentdb` crate ships).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running stand-in; killed when dropped.
pub struct StandIn {
    child: Child,
    pub url: String,
    /// Where it keeps its log, so a restart on the same port finds it.
    data: PathBuf,
    port: u16,
}

impl StandIn {
    /// Starts a stand-in on a free port with its log in `dir`.
    pub fn start(dir: &Path) -> Result<StandIn, String> {
        StandIn::spawn(dir.join("standin.jsonl"), 0)
    }

    fn spawn(data: PathBuf, port: u16) -> Result<StandIn, String> {
        let python = std::env::var("IONROLLER_KURRENTDB_STANDIN_PYTHON")
            .map_err(|_| "IONROLLER_KURRENTDB_STANDIN_PYTHON is not set".to_string())?;
        let protos = std::env::var("IONROLLER_KURRENTDB_PROTOS")
            .map_err(|_| "IONROLLER_KURRENTDB_PROTOS is not set".to_string())?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kurrentdb/standin.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--protos", &protos, "--port", &port.to_string()])
            .arg("--data")
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the KurrentDB stand-in: {e}"))?;
        let stdout = child.stdout.take().ok_or("the stand-in's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("read the stand-in's port: {e}"))?;
        let port: u16 = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("the stand-in did not start: {line:?}"))?;
        Ok(StandIn {
            child,
            url: format!("kurrentdb://admin:changeit@127.0.0.1:{port}?tls=false"),
            data,
            port,
        })
    }

    /// Kills the node and starts it again on the same port with the same log, as a server
    /// restart would look to a client.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut again = StandIn::spawn(self.data.clone(), self.port)?;
        std::mem::swap(&mut self.child, &mut again.child);
        Ok(())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A KurrentDB to test against: the real server's URL, or a stand-in started in `dir` (and
/// kept alive by the returned handle). `None` skips the test, loudly; in CI (`CI=true`) a
/// missing stand-in fails instead, so a green CI run means these tests ran.
pub fn test_server(dir: &Path) -> Option<(String, Option<StandIn>)> {
    if let Ok(url) = std::env::var("IONROLLER_KURRENTDB_URL") {
        if !url.is_empty() {
            return Some((url, None));
        }
    }
    match StandIn::start(dir) {
        Ok(standin) => Some((standin.url.clone(), Some(standin))),
        Err(why) => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "the KurrentDB stand-in cannot start in CI ({why}): run the tests through \
                 scripts/test.sh"
            );
            eprintln!(
                "\n*** SKIPPING a KurrentDB test: {why}. Run scripts/test.sh, or set \
                 IONROLLER_KURRENTDB_URL to a real server. ***\n"
            );
            None
        }
    }
}
