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

/// Defines `$name`, a newtype over a model's atomic type (`$atomic`, of
/// `$int`), and implements the seam's `$word` trait for it by forwarding.
/// (The newtype is needed: neither the trait nor the atomic is ours.)
macro_rules! model_word {
    ($(#[$meta:meta])* $name:ident($atomic:ty): $word:ident<$int:ty>) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name($atomic);

        impl $name {
            /// A word holding `value`.
            pub fn new(value: $int) -> Self {
                $name(<$atomic>::new(value))
            }
        }

        impl ringproof::sync::$word for $name {
            fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }
            fn store(&self, value: $int, order: Ordering) {
                self.0.store(value, order);
            }
            fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange(current, new, success, failure)
            }
            fn fetch_add(&self, value: $int, order: Ordering) -> $int {
                self.0.fetch_add(value, order)
            }
        }
    };
}

pub mod loom_shared;
pub mod shuttle_namespace;
pub mod shuttle_shared;

use ringproof::mpsc::{self, Liveness};
use ringproof::sync::{CrashPoint, Ordering, Shared, Word32};
use ringproof::{Consumer, Producer, PushError, ReadError};

/// The words of a model segment, by header offset: the ones a protocol's
/// layout lists (e.g. [`ringproof::spsc::WORDS64`]), each made fresh.
#[derive(Debug)]
pub struct WordTable<W>(Vec<(usize, W)>);

impl<W> WordTable<W> {
    /// One word per `(offset, name)`, each from `make`.
    ///
    /// # Panics
    ///
    /// When two entries share an offset.
    pub fn new(words: &[(usize, &str)], make: impl Fn() -> W) -> Self {
        let mut table: Vec<(usize, W)> = Vec::with_capacity(words.len());
        for &(offset, name) in words {
            assert!(
                table.iter().all(|(o, _)| *o != offset),
                "two words at header offset {offset} ({name})"
            );
            table.push((offset, make()));
        }
        WordTable(table)
    }

    /// The word at `offset`.
    ///
    /// # Panics
    ///
    /// When the protocol asks for a word its layout does not list: the
    /// model would otherwise hand out a word the shipped header lacks.
    pub fn get(&self, offset: usize) -> &W {
        match self.0.iter().find(|(o, _)| *o == offset) {
            Some((_, word)) => word,
            None => panic!("the model segment has no word at header offset {offset}"),
        }
    }
}

/// A model segment that can run MPSC producers that die: a liveness flag
/// per slot, and a view whose producer dies at a chosen [`CrashPoint`].
pub trait ModelShared: Shared + Clone {
    /// The flag of `slot`: 1 once its producer is dead.
    fn dead_flag(&self, slot: u8) -> &Self::W32;

    /// This view, whose producer in `slot` dies when it crosses `point`:
    /// it is marked dead and its thread unwinds to [`run_until_killed`]
    /// (no destructor of the protocol runs on the way: a `Grant` is dropped
    /// only if one is live, so pick points outside one, or use
    /// `mem::forget` and [`ModelShared::kill`] for death mid-payload).
    #[must_use]
    fn dying_at(self, point: CrashPoint, slot: u8) -> Self;

    /// Marks the producer of `slot` dead. Call it from that producer's
    /// thread, after its last access to the segment.
    fn kill(&self, slot: u8) {
        // Release: the dead producer's accesses happen before the consumer
        // acts on its death; pairs with the Acquire load in `alive`.
        self.dead_flag(slot).store(1, Ordering::Release);
    }
}

/// The consumer's [`Liveness`] over a model segment's flags.
#[derive(Clone, Debug)]
pub struct ModelLiveness<S>(pub S);

// SAFETY: a flag is set only by `ModelShared::kill`, called by the dying
// producer after its last access, with Release.
unsafe impl<S: ModelShared> Liveness for ModelLiveness<S> {
    fn alive(&self, slot: u8, _generation: u32) -> bool {
        // Acquire: pairs with the Release store in `ModelShared::kill`.
        self.0.dead_flag(slot).load(Ordering::Acquire) == 0
    }
}

/// The unwinding payload of a producer killed at a crash point.
#[derive(Debug)]
pub struct Killed;

/// Kills the producer of `dying` when `point` is its crash point: marks it
/// dead and unwinds (without running the panic hook) to [`run_until_killed`].
pub fn die_if<S: ModelShared>(shared: &S, dying: Option<(CrashPoint, u8)>, point: CrashPoint) {
    if let Some((at, slot)) = dying {
        if at == point {
            shared.kill(slot);
            std::panic::resume_unwind(Box::new(Killed));
        }
    }
}

/// Runs `body` (a producer's work); returns `false` when the producer was
/// killed at its crash point, re-raises any other panic.
pub fn run_until_killed(body: impl FnOnce()) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(()) => true,
        Err(payload) if payload.is::<Killed>() => false,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// The producers (slots `0..producers`) and the consumer of a fresh MPSC
/// model segment of `capacity` bytes made by `make`.
///
/// # Panics
///
/// When a side cannot be made (never, for a fresh segment).
pub fn mpsc_channel<S: ModelShared>(
    producers: u8,
    make: impl FnOnce(&[(usize, &str)], &[(usize, &str)], usize) -> S,
) -> (Vec<mpsc::Producer<S>>, mpsc::Consumer<S, ModelLiveness<S>>) {
    let words32 = &mpsc::WORDS32[..mpsc::WORDS32_FIXED + producers as usize];
    let shared = make(&mpsc::WORDS64, words32, producers as usize);
    let sides = (0..producers)
        .map(|slot| mpsc::Producer::new(shared.clone(), slot).expect("producer"))
        .collect();
    let liveness = ModelLiveness(shared.clone());
    let consumer = mpsc::Consumer::new(shared, liveness).expect("consumer");
    (sides, consumer)
}

/// Pushes `message` from an MPSC producer, spinning while the ring is full.
///
/// # Errors
///
/// Any error other than [`mpsc::PushError::Full`].
pub fn mpsc_push_retry<S: Shared>(
    producer: &mut mpsc::Producer<S>,
    message: &[u8],
) -> Result<(), mpsc::PushError> {
    loop {
        match producer.push(message) {
            Err(mpsc::PushError::Full) => producer.shared().spin(),
            other => return other,
        }
    }
}

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

    /// Preemptions the MPSC loom models add to each scenario's own bound:
    /// `RINGPROOF_LOOM_MPSC_EXTRA`, else 0. (Their state space grows about
    /// tenfold per preemption, so they do not follow
    /// `RINGPROOF_LOOM_PREEMPTIONS`.)
    pub fn loom_mpsc_extra() -> usize {
        env_count("RINGPROOF_LOOM_MPSC_EXTRA", 0)
    }

    /// shuttle iterations per scheduler of the MPSC models:
    /// `RINGPROOF_SHUTTLE_MPSC_ITERATIONS`, else
    /// `RINGPROOF_SHUTTLE_ITERATIONS`, else `default`. (An MPSC run has
    /// several producers and costs several times an SPSC one.)
    pub fn shuttle_mpsc_iterations(default: usize) -> usize {
        env_count(
            "RINGPROOF_SHUTTLE_MPSC_ITERATIONS",
            Self::shuttle_iterations(default),
        )
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
/// Any error other than [`PushError::Full`].
pub fn push_retry<S: Shared>(
    producer: &mut Producer<S>,
    message: &[u8],
) -> Result<usize, PushError> {
    let mut full = 0;
    loop {
        match producer.push(message) {
            Ok(()) => return Ok(full),
            Err(PushError::Full) => {
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
/// Any error other than [`ReadError::Empty`] ([`ReadError::Closed`] at end
/// of stream).
pub fn pop_retry<S: Shared>(consumer: &mut Consumer<S>) -> Result<Vec<u8>, ReadError> {
    loop {
        match consumer.pop() {
            Err(ReadError::Empty) => consumer.shared().spin(),
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

#[cfg(test)]
mod tests {
    use ringproof::sync::{Ordering, Word32, Word64};

    use crate::WordTable;
    use crate::loom_shared::{LoomWord32, LoomWord64};
    use crate::shuttle_shared::{ShuttleWord32, ShuttleWord64};

    /// The forwarding of every word operation, on one thread.
    fn exercise<W64: Word64, W32: Word32>(wide: &W64, narrow: &W32) {
        // Relaxed: one thread, nothing to order (every load and store below).
        let r = Ordering::Relaxed;
        assert_eq!(wide.compare_exchange(5, 7, r, r), Ok(5));
        assert_eq!(wide.compare_exchange(5, 9, r, r), Err(7));
        assert_eq!(wide.fetch_add(3, r), 7);
        wide.store(wide.load(r) + 1, r);
        assert_eq!(wide.load(r), 11);
        assert_eq!(narrow.compare_exchange(0, u32::MAX, r, r), Ok(0));
        assert_eq!(narrow.compare_exchange(0, 1, r, r), Err(u32::MAX));
        assert_eq!(narrow.fetch_add(2, r), u32::MAX);
        assert_eq!(narrow.load(r), 1, "wraps");
    }

    #[test]
    fn loom_words_forward_every_operation() {
        loom::model(|| exercise(&LoomWord64::new(5), &LoomWord32::new(0)));
    }

    #[test]
    fn shuttle_words_forward_every_operation() {
        shuttle::check_random(
            || exercise(&ShuttleWord64::new(5), &ShuttleWord32::new(0)),
            1,
        );
    }

    #[test]
    fn word_table_finds_each_listed_word_and_refuses_others() {
        let table = WordTable::new(&[(8, "a"), (16, "b")], || std::cell::Cell::new(0));
        table.get(16).set(3);
        assert_eq!((table.get(8).get(), table.get(16).get()), (0, 3));
        let caught = std::panic::catch_unwind(|| {
            let table = WordTable::new(&[(8, "a")], || 0u8);
            let _ = table.get(24);
        });
        assert!(caught.is_err(), "an unlisted offset was handed out");
    }
}
