//! loom and shuttle models of the shipped ringproof protocol.
//!
//! [`ringproof::spsc`] is written once over [`ringproof::sync::Shared`]. This
//! crate implements that trait twice, and the tests in `tests/` run the
//! shipped `Producer` and `Consumer` over them:
//!
//! - [`loom_shared::LoomShared`]: loom atomics (every allowed reordering of
//!   the C11 model, exhaustively up to a preemption bound) and one
//!   `loom::cell::UnsafeCell` per 8-byte data word, so that a producer write
//!   not ordered with a consumer read of the same word is reported.
//! - [`shuttle_shared::ShuttleShared`]: shuttle atomics (sequentially
//!   consistent, randomised and PCT schedules over long runs) with a checker
//!   that fails when both sides hold overlapping data borrows.
//!
//! - [`shuttle_namespace::World`]: an in-memory [`ringproof::shm::Namespace`]
//!   (names, files, OFD-style byte locks, processes that die at a chosen
//!   step), over which `tests/shuttle_lifecycle.rs` runs the shipped
//!   lifecycle functions of [`ringproof::shm::lifecycle`].
//!
//! Both park on a `Mutex` + `Condvar` pair that stands in for the futex and
//! ignore park timeouts, so a lost wake-up is a deadlock the checker reports.
//!
//! [`pattern`] and [`Budget`] are shared by the scenarios. See `README.md`
//! for what is proven and how to run each model.

pub mod loom_shared;
pub mod shuttle_namespace;
pub mod shuttle_shared;

use ringproof::sync::Shared;
use ringproof::{Consumer, Error, Producer};

/// The bytes of message `index`, `len` long: distinct per message and per
/// byte, so a torn, stale or reordered message fails the comparison.
pub fn pattern(index: u64, len: usize) -> Vec<u8> {
    let tag = SplitMix(index).next_u64() as u8;
    (0..len)
        .map(|i| tag.wrapping_mul(37).wrapping_add(i as u8 ^ 0x5a))
        .collect()
}

/// A count read from the environment, with a default for plain `cargo test`.
///
/// # Panics
///
/// When the variable is set but is not a number (a test setting).
pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
        Err(_) => default,
    }
}

/// Exploration limits of one test, read from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Budget;

impl Budget {
    /// loom preemption bound: `RINGPROOF_LOOM_PREEMPTIONS`, else `default`.
    pub fn loom_preemptions(default: usize) -> usize {
        env_count("RINGPROOF_LOOM_PREEMPTIONS", default)
    }

    /// shuttle iterations per scheduler: `RINGPROOF_SHUTTLE_ITERATIONS`, else `default`.
    pub fn shuttle_iterations(default: usize) -> usize {
        env_count("RINGPROOF_SHUTTLE_ITERATIONS", default)
    }

    /// Messages per shuttle run: `RINGPROOF_SHUTTLE_MESSAGES`, else `default`.
    pub fn shuttle_messages(default: usize) -> usize {
        env_count("RINGPROOF_SHUTTLE_MESSAGES", default)
    }
}

/// Pushes `message`, spinning while the ring is full; returns how many times
/// it found the ring full.
///
/// # Errors
///
/// Any error other than [`Error::Full`].
pub fn push_retry<S: Shared>(producer: &mut Producer<S>, message: &[u8]) -> Result<usize, Error> {
    let mut full = 0;
    loop {
        match producer.push(message) {
            Ok(()) => return Ok(full),
            Err(Error::Full) => {
                full += 1;
                producer.shared().spin();
            }
            Err(other) => return Err(other),
        }
    }
}

/// Pops the next message, spinning while the ring is empty.
///
/// # Errors
///
/// Any error other than [`Error::Empty`] ([`Error::Closed`] at end of stream).
pub fn pop_retry<S: Shared>(consumer: &mut Consumer<S>) -> Result<Vec<u8>, Error> {
    loop {
        match consumer.pop() {
            Err(Error::Empty) => consumer.shared().spin(),
            other => return other,
        }
    }
}

/// A small deterministic generator (splitmix64) for message sizes and
/// operation choices; seeded from shuttle's replayable randomness.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}
