//! Helpers for tests that touch `/dev/shm`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A unique segment name for a test, `/ringproof-test-<tag>-<pid>-<n>`,
/// removed when the guard drops (also when the test panics).
#[derive(Debug)]
pub struct TestName {
    name: String,
}

impl TestName {
    /// A fresh name; `tag` says which test it belongs to.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters; no other memory is published.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TestName {
            name: format!("/ringproof-test-{tag}-{}-{n}", std::process::id()),
        }
    }

    /// The name with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name without its leading `/` (as it appears in `/dev/shm`).
    pub fn bare(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// The segment's path in `/dev/shm`.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(self.bare())
    }

    /// Creates a file of this name holding `bytes`, owner-only (mode 0600)
    /// as ringproof creates its segments, and fully allocated: a stand-in
    /// for a segment some other program wrote.
    pub fn create_file(&self, bytes: &[u8]) {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path())
            .expect("create a test segment file");
        file.write_all(bytes).expect("write a test segment file");
    }

    /// Whether a segment of this name exists.
    pub fn exists(&self) -> bool {
        self.path().exists()
    }
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}
