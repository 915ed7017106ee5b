//! Waiting on the other side of a ring: blocking with peer-death detection,
//! rate limiting, and names removed when they go out of scope.
//!
//! The ring's own blocking calls park for a bounded slice; between slices
//! these helpers ask the kernel whether the peer's role lease is still held.
//! A role's generation word tells "never came" (0) from "came and went".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringproof::shm::{self, Role, ShmConsumer, ShmProducer};

use crate::exit::CliError;
use crate::size::human_duration;

/// Longest single park before checking the peer again.
pub const PARK: Duration = Duration::from_millis(50);

/// Whether a consumer attached at some point and no live process holds the
/// role now.
pub fn consumer_gone(producer: &ShmProducer) -> Result<bool, CliError> {
    // Acquire: pairs with the AcqRel bump of the generation when a consumer
    // claims the role (`shm::Segment` bump_generation).
    let came = producer.shared().generation(false).load(Ordering::Acquire) != 0;
    Ok(came && !producer.segment().role_held(Role::Consumer)?)
}

/// Whether a producer attached at some point and no live process holds the
/// role now.
pub fn producer_gone(consumer: &ShmConsumer) -> Result<bool, CliError> {
    // Acquire: pairs with the AcqRel bump of the generation when a producer
    // claims the role.
    let came = consumer.shared().generation(true).load(Ordering::Acquire) != 0;
    Ok(came && !consumer.segment().role_held(Role::Producer)?)
}

/// What a producer waiting for room does when its consumer has died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConsumerDeath {
    /// Keep waiting: a successor consumer resumes where the dead one
    /// stopped (the unreleased messages are delivered to it).
    WaitForSuccessor,
    /// Give up with exit 3 (the bench and demo children).
    Fail,
}

/// How a wait ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The awaited condition holds.
    Ready,
    /// The timeout passed first.
    TimedOut,
}

fn slice_until(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(PARK),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(PARK))
        }
    }
}

/// Waits until a `len`-byte message fits in the ring, up to `timeout`.
pub fn wait_room(
    producer: &mut ShmProducer,
    len: usize,
    on_death: OnConsumerDeath,
    timeout: Option<Duration>,
) -> Result<Waited, CliError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let Some(park) = slice_until(deadline) else {
            return Ok(Waited::TimedOut);
        };
        if producer.wait_writable(len, Some(park))? {
            return Ok(Waited::Ready);
        }
        if on_death == OnConsumerDeath::Fail && consumer_gone(producer)? {
            return Err(CliError::peer_died(
                "the consumer died while the ring was full",
            ));
        }
    }
}

/// Waits until a message (or the end of stream) can be read, up to
/// `timeout`. A producer that died without closing is exit 3, but only once
/// every message it committed has been read.
pub fn wait_message(
    consumer: &mut ShmConsumer,
    timeout: Option<Duration>,
) -> Result<Waited, CliError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let Some(park) = slice_until(deadline) else {
            return Ok(Waited::TimedOut);
        };
        if consumer.wait_readable(Some(park))? {
            return Ok(Waited::Ready);
        }
        // The producer's last commit happens before its lease is released,
        // so re-check for a message after finding the role free.
        if producer_gone(consumer)? && !consumer.wait_readable(Some(Duration::ZERO))? {
            return Err(CliError::peer_died(
                "the producer died without closing the ring (every message it committed was delivered)",
            ));
        }
    }
}

/// The error for a wait that timed out.
pub fn no_message_within(timeout: Duration) -> CliError {
    CliError::peer_died(format!(
        "no message within {} (--timeout); giving up",
        human_duration(timeout)
    ))
}

/// Keeps a byte stream at or under a rate by sleeping.
#[derive(Debug)]
pub struct Pacer {
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Pacer {
    /// A pacer for `rate` bytes per second (`None`: no limit).
    pub fn new(rate: Option<u64>) -> Self {
        Pacer {
            rate,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `bytes` more and sleeps until the average is back at the rate.
    pub fn account(&mut self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        self.bytes = self.bytes.saturating_add(bytes as u64);
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// A fresh segment name, removed (if it still exists) when dropped.
#[derive(Debug)]
pub struct NameGuard {
    name: String,
}

impl NameGuard {
    /// `/ringproof-<tag>-<pid>-<n>`, unique within this machine while the
    /// process lives.
    pub fn unique(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters; no other memory is published.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        NameGuard {
            name: format!("/ringproof-{tag}-{}-{n}", std::process::id()),
        }
    }

    /// The name, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        let _ = shm::unlink(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_holds_the_rate() {
        let mut pacer = Pacer::new(Some(100_000));
        let start = Instant::now();
        for _ in 0..10 {
            pacer.account(2_000);
        }
        // 20 kB at 100 kB/s takes at least 200 ms.
        assert!(start.elapsed() >= Duration::from_millis(195));
    }

    #[test]
    fn unlimited_pacer_does_not_sleep() {
        let mut pacer = Pacer::new(None);
        let start = Instant::now();
        pacer.account(usize::MAX);
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn guard_names_are_unique_and_valid() {
        let a = NameGuard::unique("t");
        let b = NameGuard::unique("t");
        assert_ne!(a.name(), b.name());
        assert!(shm::validate_name(a.name()).is_ok());
    }
}
