//! What the `ringproof` integration tests share: a unique segment name that
//! is removed on drop (also when the test fails).

/// A unique segment name (`.0`, with its leading `/`), removed on drop.
pub struct Name(pub String);

impl Name {
    /// A fresh name; `tag` says which test it belongs to.
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        // Relaxed: only uniqueness matters; nothing else is published.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Name(format!("/ringproof-test-{tag}-{}-{n}", std::process::id()))
    }

    /// Its path in `/dev/shm`.
    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }

    /// Whether something has this name.
    pub fn exists(&self) -> bool {
        std::path::Path::new(&self.path())
            .symlink_metadata()
            .is_ok()
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        // `shm_unlink` is an unlink in /dev/shm; this also removes what a
        // test put there that is not a segment (a FIFO, a link).
        let _ = std::fs::remove_file(self.path());
    }
}
