//! [`Shared`] over shuttle: atomics from `shuttle::sync::atomic`, a futex
//! stand-in, and a borrow checker for the data region.
//!
//! shuttle's atomics are sequentially consistent, so these models find
//! interleaving bugs, not ordering bugs (loom covers those). shuttle has no
//! race detector for plain memory, so [`Shared::data`] records every live
//! borrow per 8-byte word and panics when a write borrow overlaps any other
//! borrow of the same word: with only one of each side, that means the
//! producer and the consumer touched the same bytes at the same time.
#![allow(clippy::disallowed_types)] // the plain buffer is a `core::cell::UnsafeCell`

use core::cell::UnsafeCell;
use std::sync::Arc as StdArc;
use std::sync::atomic::AtomicIsize;
use std::time::Duration;

use ringproof::layout::{RECORD_ALIGN, capacity_ok};
use ringproof::spsc;
use ringproof::sync::{CrashPoint, Ordering, Shared};
use ringproof::{Consumer, Corruption, Producer};

use crate::WordTable;
use shuttle::sync::atomic::{AtomicU32, AtomicU64, fence};
use shuttle::sync::{Arc, Condvar, Mutex};

model_word!(
    /// A 64-bit shared word under shuttle.
    ShuttleWord64(AtomicU64): Word64<u64>
);

model_word!(
    /// A 32-bit shared word under shuttle.
    ShuttleWord32(AtomicU32): Word32<u32>
);

/// Live borrows per data word: `n > 0` readers, `-1` one writer, `0` none.
/// (std atomics, not shuttle's: bookkeeping must not add scheduling points.)
type Claims = StdArc<[AtomicIsize]>;

/// The borrow of words `first..last`; dropping it ends the borrow.
#[derive(Debug)]
pub struct Borrow {
    claims: Claims,
    first: usize,
    last: usize,
    write: bool,
}

impl Drop for Borrow {
    fn drop(&mut self) {
        for claim in &self.claims[self.first..self.last] {
            let delta = if self.write { 1 } else { -1 };
            // Relaxed: bookkeeping on one OS thread; shuttle orders the tasks.
            claim.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Segment {
    words64: WordTable<ShuttleWord64>,
    words32: WordTable<ShuttleWord32>,
    /// One word per 8-byte data word, for protocols whose record headers
    /// are atomic ([`Shared::table_word64`]); empty for SPSC. Separate from
    /// `bytes`, as the shipped MPSC segment's record word table lies after
    /// its data region: no payload byte is ever a table word.
    table_words: Box<[ShuttleWord64]>,
    /// Per MPSC producer slot: 1 once the test killed that producer
    /// ([`crate::ModelShared::kill`]); empty for SPSC.
    dead: Box<[ShuttleWord32]>,
    capacity: u64,
    /// The data bytes, as 8-byte words (so the region is 8-aligned).
    bytes: Box<[UnsafeCell<u64>]>,
    claims: Claims,
    /// Futex stand-in: parkers wait on `wakeup` under `lock`, which counts
    /// the wakes, so that a wake releases every thread parked before it
    /// whatever the word holds (as `FUTEX_WAKE` does).
    lock: Mutex<u64>,
    wakeup: Condvar,
}

// SAFETY: shuttle runs its tasks one at a time on one OS thread; `bytes` is
// accessed only through pointers from `Shared::data`, whose borrows `claims`
// checks for overlap between a writer and anyone else.
unsafe impl Sync for Segment {}
// SAFETY: as above; nothing in `Segment` is tied to an OS thread.
unsafe impl Send for Segment {}

/// A ring segment under shuttle: head = tail = 0, open, zeroed data.
#[derive(Clone, Debug)]
pub struct ShuttleShared(Arc<Segment>, Option<(CrashPoint, u8)>);

impl ShuttleShared {
    /// A fresh segment of `capacity` data bytes.
    ///
    /// # Panics
    ///
    /// When `capacity` is not one the ring accepts.
    pub fn new(capacity: u64) -> Self {
        Self::with_words(capacity, &spsc::WORDS64, &spsc::WORDS32, 0)
    }

    /// A fresh segment of `capacity` data bytes with the header words a
    /// protocol lists (`(offset, name)`, e.g. [`ringproof::mpsc::WORDS64`]);
    /// with `slots` producer slots (MPSC), also a word per 8 data bytes and
    /// a liveness flag per slot.
    ///
    /// # Panics
    ///
    /// When `capacity` is not one the ring accepts.
    pub fn with_words(
        capacity: u64,
        words64: &[(usize, &str)],
        words32: &[(usize, &str)],
        slots: usize,
    ) -> Self {
        assert!(capacity_ok(capacity), "bad model capacity {capacity}");
        let words = (capacity / RECORD_ALIGN) as usize;
        let table_words = if slots > 0 { words } else { 0 };
        ShuttleShared(
            Arc::new(Segment {
                words64: WordTable::new(words64, || ShuttleWord64::new(0)),
                words32: WordTable::new(words32, || ShuttleWord32::new(0)),
                table_words: (0..table_words).map(|_| ShuttleWord64::new(0)).collect(),
                dead: (0..slots).map(|_| ShuttleWord32::new(0)).collect(),
                capacity,
                bytes: (0..words).map(|_| UnsafeCell::new(0)).collect(),
                claims: (0..words).map(|_| AtomicIsize::new(0)).collect(),
                lock: Mutex::new(0),
                wakeup: Condvar::new(),
            }),
            None,
        )
    }
}

/// A producer and a consumer over a fresh segment of `capacity` bytes.
///
/// # Errors
///
/// What `Producer::new` or `Consumer::new` return (never, for a fresh segment).
pub fn channel(
    capacity: u64,
) -> Result<(Producer<ShuttleShared>, Consumer<ShuttleShared>), Corruption> {
    let shared = ShuttleShared::new(capacity);
    Ok((Producer::new(shared.clone())?, Consumer::new(shared)?))
}

// SAFETY: `capacity` is fixed and checked by `capacity_ok`; `data` stays inside
// `bytes`, which lives as long as the `Arc`; each word is one entry of a table
// keyed by distinct offsets, apart from the data bytes.
unsafe impl Shared for ShuttleShared {
    type W64 = ShuttleWord64;
    type W32 = ShuttleWord32;
    type Access = Borrow;

    const SPINS: u32 = 4;

    fn word64(&self, offset: usize) -> &ShuttleWord64 {
        self.0.words64.get(offset)
    }
    fn word32(&self, offset: usize) -> &ShuttleWord32 {
        self.0.words32.get(offset)
    }
    fn capacity(&self) -> u64 {
        self.0.capacity
    }
    fn table_word64(&self, offset: usize) -> &ShuttleWord64 {
        assert!(offset % 8 == 0, "unaligned data word {offset}");
        match self.0.table_words.get(offset / 8) {
            Some(word) => word,
            None => panic!("the model segment has no data word at {offset}"),
        }
    }

    unsafe fn data(&self, offset: usize, len: usize, write: bool) -> (Borrow, *mut u8) {
        let end = offset + len;
        assert!(
            end as u64 <= self.0.capacity,
            "data({offset}, {len}) out of range"
        );
        let word = RECORD_ALIGN as usize;
        let (first, last) = (offset / word, end.div_ceil(word));
        for (i, claim) in self.0.claims[first..last].iter().enumerate() {
            // Relaxed: bookkeeping on one OS thread; shuttle orders the tasks.
            let live = claim.load(std::sync::atomic::Ordering::Relaxed);
            let clash = if write { live != 0 } else { live < 0 };
            assert!(
                !clash,
                "data race on data word {}: a {} borrow overlaps a live {} borrow",
                first + i,
                if write { "write" } else { "read" },
                if live < 0 { "write" } else { "read" },
            );
            let delta = if write { -1 } else { 1 };
            // Relaxed: as above.
            claim.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: `offset <= capacity` (asserted above), and `bytes` holds
        // `capacity` bytes; the pointer comes from the whole slice, so it may
        // cover `len` bytes, and `UnsafeCell` permits writes through it.
        let ptr = unsafe {
            UnsafeCell::raw_get(self.0.bytes.as_ptr())
                .cast::<u8>()
                .add(offset)
        };
        let borrow = Borrow {
            claims: StdArc::clone(&self.0.claims),
            first,
            last,
            write,
        };
        (borrow, ptr)
    }

    fn fence_seq_cst(&self) {
        // SeqCst: the fence the protocol asks for; its pairs are named in ring/src/spsc/.
        fence(Ordering::SeqCst);
    }

    fn park(&self, word: &ShuttleWord32, expected: u32, _timeout: Option<Duration>) {
        // The timeout is ignored: a wake-up that never comes is a deadlock.
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        // SeqCst: the futex's own check, made under the lock `wake` takes.
        if word.0.load(Ordering::SeqCst) != expected {
            return;
        }
        let parked_at = *guard;
        while *guard == parked_at {
            guard = self.0.wakeup.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn wake(&self, _word: &ShuttleWord32) {
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        *guard += 1;
        self.0.wakeup.notify_all();
    }

    fn crash_point(&self, point: CrashPoint) {
        crate::die_if(self, self.1, point);
    }

    fn spin(&self) {
        shuttle::thread::yield_now();
    }
}

/// shuttle settings for the models: no warning about non-SeqCst orderings
/// (shuttle runs them as SeqCst, which these models document).
pub fn config() -> shuttle::Config {
    let mut config = shuttle::Config::new();
    config.silence_warnings = true;
    config
}

/// PCT depth of every shuttle model: the number of priority change points
/// per run.
pub const PCT_DEPTH: usize = 3;

/// Runs `scenario` under the PCT (`pct`) or the random scheduler for
/// `RINGPROOF_SHUTTLE_ITERATIONS` (else `default_iterations`) iterations, or
/// replays the schedule in `RINGPROOF_SHUTTLE_REPLAY` when it is set.
/// Returns the iterations run (0 for a replay) and how long they took.
pub fn explore(
    pct: bool,
    default_iterations: usize,
    scenario: fn(),
) -> (usize, std::time::Duration) {
    let iterations = crate::Budget::shuttle_iterations(default_iterations);
    explore_n(pct, iterations, scenario)
}

/// [`explore`] for exactly `iterations` iterations (a replay still wins).
pub fn explore_n(pct: bool, iterations: usize, scenario: fn()) -> (usize, std::time::Duration) {
    if let Ok(schedule) = std::env::var("RINGPROOF_SHUTTLE_REPLAY") {
        shuttle::replay(scenario, &schedule);
        return (0, std::time::Duration::ZERO);
    }
    let start = std::time::Instant::now();
    if pct {
        shuttle::Runner::new(
            shuttle::scheduler::PctScheduler::new(PCT_DEPTH, iterations),
            config(),
        )
        .run(scenario);
    } else {
        shuttle::Runner::new(
            shuttle::scheduler::RandomScheduler::new(iterations),
            config(),
        )
        .run(scenario);
    }
    (iterations, start.elapsed())
}

impl crate::ModelShared for ShuttleShared {
    fn dead_flag(&self, slot: u8) -> &ShuttleWord32 {
        &self.0.dead[slot as usize]
    }

    fn dying_at(self, point: CrashPoint, slot: u8) -> Self {
        ShuttleShared(self.0, Some((point, slot)))
    }
}
