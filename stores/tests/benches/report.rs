//! Shared by the bench binaries (included with `#[path]`): where figures are written and
//! what machine they were measured on.
#![allow(dead_code)] // Each bench uses what it needs.

use std::path::Path;

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `path`.
pub fn replace_section(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
        return Err(std::io::Error::other(format!(
            "{} has no {begin} ... {end} markers",
            path.display()
        )));
    };
    std::fs::write(path, format!("{}{begin}\n{body}{}", &text[..b], &text[e..]))
}

/// The file after `--write` on the command line, where the figures go (none: print only).
/// (The store and AWS benches parse their other arguments beside it and do not use this.)
#[allow(dead_code)]
pub fn write_target() -> Option<std::path::PathBuf> {
    std::env::args()
        .skip_while(|a| a != "--write")
        .nth(1)
        .map(std::path::PathBuf::from)
}

/// Cores, CPU model and memory, for the figures' heading.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB RAM, virtual disk")
}

/// This process's resident memory, in KiB (0 where /proc is not there).
pub fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// The `p` quantile (0 to 1) of `samples`, which it sorts.
pub fn percentile(samples: &mut [std::time::Duration], p: f64) -> std::time::Duration {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}
