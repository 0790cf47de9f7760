//! The real `ionroller` binary, with its standard output already closed by its reader
//! (`ionroller config init hello | head -0`): it ends quietly with exit 0 instead of panicking.

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The reader is gone before the child writes a byte, so its first write fails with EPIPE.
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_ionroller"))
        .args(["config", "init", "hello"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run ionroller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn the_template_is_printed_when_someone_reads_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_ionroller"))
        .args(["config", "init", "hello"])
        .output()
        .expect("run ionroller");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"instances\""));
}
