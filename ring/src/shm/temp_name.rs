//! A unique segment name for this process that is removed when it goes out
//! of scope, also when a test fails or a measurement returns early.
//!
//! Used by the demo and benchmark commands, and by every test that touches
//! `/dev/shm` (as `ringproof::testing::TempName` too). It only names and
//! removes; it never opens or maps.
#![allow(clippy::disallowed_types)] // a process-local name counter, not a word of the protocol.

use std::format;
use std::path::{Path, PathBuf};
use std::string::String;
use std::sync::atomic::{AtomicU64, Ordering};

/// `/ringproof-<tag>-<pid>-<n>`, unique on this machine while the process
/// lives; the name is unlinked (if it still exists) when the guard drops.
#[derive(Debug)]
pub struct TempName {
    name: String,
}

impl TempName {
    /// A fresh name, `/ringproof-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TempName {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters, which `fetch_add` gives; no
        // other memory is published.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempName {
            name: format!("/ringproof-{tag}-{}-{n}", std::process::id()),
        }
    }

    /// A fresh name for a test, `/ringproof-test-<tag>-<pid>-<n>` (the test
    /// gate counts what is left under that prefix).
    pub fn for_test(tag: &str) -> TempName {
        TempName::new(&format!("test-{tag}"))
    }

    /// The name, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name without its leading `/` (as it appears in `/dev/shm`).
    pub fn bare(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// Its path in `/dev/shm`.
    pub fn path(&self) -> PathBuf {
        Path::new("/dev/shm").join(self.bare())
    }

    /// Whether something has this name (a dangling symbolic link too).
    pub fn exists(&self) -> bool {
        self.path().symlink_metadata().is_ok()
    }

    /// Creates a file of this name holding `bytes`, owner-only (mode 0600)
    /// as ringproof creates its segments: a stand-in for a segment some
    /// other program wrote. Fails if the name exists.
    pub fn create_file(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path())?
            .write_all(bytes)
    }
}

impl Drop for TempName {
    fn drop(&mut self) {
        // `shm_unlink` unlinks whatever has the name in `/dev/shm`, also a
        // FIFO or a link a test put there (not a directory).
        let _ = super::unlink(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_and_removed_on_drop() {
        let a = TempName::new("t");
        let b = TempName::new("t");
        assert_ne!(a.name(), b.name());
        assert!(super::super::validate_name(a.name()).is_ok());
        assert!(
            TempName::for_test("t")
                .name()
                .starts_with("/ringproof-test-t-")
        );
        a.create_file(b"x").unwrap();
        assert!(a.exists());
        let path = a.path();
        drop(a);
        assert!(path.symlink_metadata().is_err());
    }
}
