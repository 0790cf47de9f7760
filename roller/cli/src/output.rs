//! Everything the commands print to standard output goes through here.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe (`ionroller events hello | head`) fails
//! with `BrokenPipe`, and `println!` would panic on it. Writing through [`print`] turns that
//! into [`StdoutClosed`], which `main` ends with a quiet exit 0: the reader has what it wanted.
//! Restoring SIGPIPE's default instead would also kill `ionroller up` (a server) when one of
//! its sockets or its terminal went away, and would end with a signal rather than exit 0.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::OnceLock;

use serde_json::Value;

/// How commands print what a server answered: text for people, or the API's own JSON
/// (`-o json`), whose field names are the API's and documented in its OpenAPI document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Chosen once per process from `-o`, before any command runs: every command prints in it,
/// and passing it through each of them would say nothing more.
static FORMAT: OnceLock<Format> = OnceLock::new();

pub fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

pub fn json() -> bool {
    FORMAT.get() == Some(&Format::Json)
}

/// A line for people only: with `-o json` standard output carries JSON alone.
pub fn say(text: impl fmt::Display) -> anyhow::Result<()> {
    if json() {
        Ok(())
    } else {
        line(text)
    }
}

/// A whole answer: its JSON, indented, or `text()` for people.
pub fn answer(value: &Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json() {
        line(serde_json::to_string_pretty(value)?)
    } else {
        print(&text())
    }
}

/// One record of a list or a live stream: a line of JSON (NDJSON, so `jq` and line-based
/// tools read it as it comes), or `text()`.
pub fn record(value: &Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json() {
        line(serde_json::to_string(value)?)
    } else {
        line(text())
    }
}

/// Standard output was closed by its reader; not a failure of the command.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` as it is and flushes, so a follower's lines appear as they happen.
pub fn print(text: &str) -> anyhow::Result<()> {
    write_to(&mut std::io::stdout().lock(), text)
}

/// Writes `text` and a newline.
pub fn line(text: impl fmt::Display) -> anyhow::Result<()> {
    print(&format!("{text}\n"))
}

fn write_to(out: &mut impl Write, text: &str) -> anyhow::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("write to standard output")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_write_errors() {
        let closed = write_to(&mut Failing(ErrorKind::BrokenPipe), "x").expect_err("fails");
        assert!(closed.is::<StdoutClosed>());
        let full = write_to(&mut Failing(ErrorKind::StorageFull), "x").expect_err("fails");
        assert!(!full.is::<StdoutClosed>());
        assert!(format!("{full:#}").starts_with("write to standard output"));
    }

    #[test]
    fn text_is_written_as_it_is() {
        let mut out = Vec::new();
        write_to(&mut out, "a\nb").expect("writes");
        assert_eq!(out, b"a\nb");
    }
}
