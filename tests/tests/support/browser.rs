//! The browser tests' runner: headless Chromium (Debian's package) driven by playwright-core
//! from `tests/browser`, which `scripts/test.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of `tests/browser/SCRIPT` when Chromium, node and playwright-core are here; in CI
/// their absence fails the test, elsewhere it skips loudly.
pub fn browser_script(script: &str) -> Option<PathBuf> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let have_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ready = Path::new(&chromium).exists()
        && have_node
        && dir.join("node_modules/playwright-core").exists();
    if ready {
        return Some(dir.join(script));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("the browser tests need {chromium}, node and tests/browser/node_modules in CI; scripts/test.sh installs them");
    }
    eprintln!("\n*** SKIPPING a browser test: Chromium, node or playwright-core is missing. Run scripts/test.sh to install them. ***\n");
    None
}
