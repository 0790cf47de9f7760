//! One `ionroller up` per data dir. Two on the embedded log would both run a reconcile loop
//! over every service (and share the simulated cloud's file and trail's projection), so the
//! second refuses to start and names the first. The lock is the operating system's (`flock`),
//! so a killed `up` leaves nothing stale behind: its lock goes with its process.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context};

const LOCK_FILE: &str = "up.lock";

/// Held for as long as `up` runs; dropping it (or the process ending) releases the data dir.
pub struct DataDirLock {
    _file: File,
}

/// Takes the data dir for this process, or says which process has it.
pub fn lock(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the next one's message; the lock itself is what counts.
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .with_context(|| format!("write {}", path.display()))?;
            Ok(DataDirLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // Best effort: the message is still right without the pid.
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            bail!(
                "another `ionroller up`{holder} is running on {}: two on one data dir would both \
                 reconcile every service. Stop it first, or give this one its own --data-dir",
                data_dir.display()
            )
        }
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("lock {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_data_dir_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock(dir.path()).expect("the first takes it");
        let refused = lock(dir.path()).err().expect("the second is refused");
        let message = format!("{refused:#}");
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        assert!(message.contains("--data-dir"), "{message}");
        drop(first);
        lock(dir.path()).expect("free again once the first is gone");
    }
}
