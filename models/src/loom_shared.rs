//! [`Shared`] over loom: atomics from `loom::sync::atomic`, one
//! `loom::cell::UnsafeCell<()>` per 8-byte data word, and a futex stand-in.
//!
//! The data bytes live in a plain buffer; the loom cells carry no data, only
//! the race detector's state. [`Shared::data`] takes a loom guard on every
//! word a borrow covers and hands the guards back as the access token, so
//! loom checks each borrow against every other access to the same words: a
//! producer write that is not ordered after the consumer's read of the same
//! bytes (or the other way round) fails the model.
#![allow(clippy::disallowed_types)] // the plain buffer is a `core::cell::UnsafeCell`

use core::cell::UnsafeCell;
use std::sync::Arc as StdArc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use loom::cell::{ConstPtr, MutPtr, UnsafeCell as LoomUnsafeCell};
use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
use loom::sync::{Arc, Condvar, Mutex};
use ringproof::layout::{RECORD_ALIGN, capacity_ok};
use ringproof::spsc;
use ringproof::sync::{CrashPoint, Ordering, Shared};
use ringproof::{Consumer, Corruption, Producer};

use crate::WordTable;

model_word!(
    /// A 64-bit shared word under loom.
    LoomWord64(AtomicU64): Word64<u64>
);

model_word!(
    /// A 32-bit shared word under loom.
    LoomWord32(AtomicU32): Word32<u32>
);

/// loom's guard on one data word, live as long as the borrow.
#[derive(Debug)]
pub enum WordAccess {
    /// A read borrow (`loom::cell::UnsafeCell::get`).
    Read(ConstPtr<()>),
    /// A write borrow (`loom::cell::UnsafeCell::get_mut`).
    Write(MutPtr<()>),
}

#[derive(Debug)]
struct Segment {
    words64: WordTable<LoomWord64>,
    words32: WordTable<LoomWord32>,
    /// One word per 8-byte data word, for protocols whose record headers
    /// are atomic ([`Shared::table_word64`]); empty for SPSC. Separate from
    /// `bytes`, as the shipped MPSC segment's record word table lies after
    /// its data region: no payload byte is ever a table word.
    table_words: Box<[LoomWord64]>,
    /// Per MPSC producer slot: 1 once the test killed that producer
    /// ([`crate::ModelShared::kill`]); empty for SPSC.
    dead: Box<[LoomWord32]>,
    capacity: u64,
    /// The data bytes, as 8-byte words (so the region is 8-aligned).
    bytes: Box<[UnsafeCell<u64>]>,
    /// The race detector's view of `bytes`, one cell per word.
    cells: Box<[LoomUnsafeCell<()>]>,
    /// Futex stand-in: parkers wait on `wakeup` under `lock`, which counts
    /// the wakes, so that a wake releases every thread parked before it
    /// whatever the word holds (as `FUTEX_WAKE` does).
    lock: Mutex<u64>,
    wakeup: Condvar,
}

// The atomics, cells, mutex and condvar are loom's, shared between loom
// threads by design; loom runs its threads one at a time on one OS thread.
// SAFETY: `bytes` is accessed only through `Shared::data` pointers, each covered
// by a loom cell guard, so loom fails the model on any unordered conflicting access.
unsafe impl Sync for Segment {}
// SAFETY: as above; nothing in `Segment` is tied to an OS thread.
unsafe impl Send for Segment {}

/// A ring segment under loom: head = tail = 0, open, zeroed data.
#[derive(Clone, Debug)]
pub struct LoomShared(Arc<Segment>, Option<(CrashPoint, u8)>);

impl LoomShared {
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
        LoomShared(
            Arc::new(Segment {
                words64: WordTable::new(words64, || LoomWord64::new(0)),
                words32: WordTable::new(words32, || LoomWord32::new(0)),
                table_words: (0..table_words).map(|_| LoomWord64::new(0)).collect(),
                dead: (0..slots).map(|_| LoomWord32::new(0)).collect(),
                capacity,
                bytes: (0..words).map(|_| UnsafeCell::new(0)).collect(),
                cells: (0..words).map(|_| LoomUnsafeCell::new(())).collect(),
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
pub fn channel(capacity: u64) -> Result<(Producer<LoomShared>, Consumer<LoomShared>), Corruption> {
    let shared = LoomShared::new(capacity);
    Ok((Producer::new(shared.clone())?, Consumer::new(shared)?))
}

// SAFETY: `capacity` is fixed and checked by `capacity_ok`; `data` stays inside
// `bytes`, which lives as long as the `Arc`; each word is one entry of a table
// keyed by distinct offsets, apart from the data bytes.
unsafe impl Shared for LoomShared {
    type W64 = LoomWord64;
    type W32 = LoomWord32;
    type Access = Vec<WordAccess>;

    // No spin phase under loom: a spin is a yield, and loom does not run
    // the other thread's steps between a yield and the next load in every
    // order, which hides the park/wake races. The spin loop itself (a retry
    // of the same check) runs in the shuttle models.
    const SPINS: u32 = 0;

    fn word64(&self, offset: usize) -> &LoomWord64 {
        self.0.words64.get(offset)
    }
    fn word32(&self, offset: usize) -> &LoomWord32 {
        self.0.words32.get(offset)
    }
    fn capacity(&self) -> u64 {
        self.0.capacity
    }
    fn table_word64(&self, offset: usize) -> &LoomWord64 {
        assert!(offset % 8 == 0, "unaligned data word {offset}");
        match self.0.table_words.get(offset / 8) {
            Some(word) => word,
            None => panic!("the model segment has no data word at {offset}"),
        }
    }

    unsafe fn data(&self, offset: usize, len: usize, write: bool) -> (Vec<WordAccess>, *mut u8) {
        let end = offset + len;
        assert!(
            end as u64 <= self.0.capacity,
            "data({offset}, {len}) out of range"
        );
        let word = RECORD_ALIGN as usize;
        let guards = self.0.cells[offset / word..end.div_ceil(word)]
            .iter()
            .map(|cell| {
                if write {
                    WordAccess::Write(cell.get_mut())
                } else {
                    WordAccess::Read(cell.get())
                }
            })
            .collect();
        // SAFETY: `offset <= capacity` (asserted above), and `bytes` holds
        // `capacity` bytes; the pointer comes from the whole slice, so it may
        // cover `len` bytes, and `UnsafeCell` permits writes through it.
        let ptr = unsafe {
            UnsafeCell::raw_get(self.0.bytes.as_ptr())
                .cast::<u8>()
                .add(offset)
        };
        (guards, ptr)
    }

    fn fence_seq_cst(&self) {
        // SeqCst: the fence the protocol asks for; its pairs are named in ring/src/spsc/.
        fence(Ordering::SeqCst);
    }

    fn park(&self, word: &LoomWord32, expected: u32, _timeout: Option<Duration>) {
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

    fn wake(&self, _word: &LoomWord32) {
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        *guard += 1;
        self.0.wakeup.notify_all();
    }

    fn crash_point(&self, point: CrashPoint) {
        crate::die_if(self, self.1, point);
    }

    fn spin(&self) {
        loom::thread::yield_now();
    }
}

/// Runs `model` under loom, exhaustively up to `preemptions` preemptions per
/// execution (`RINGPROOF_LOOM_PREEMPTIONS` overrides the default), and prints
/// the bound, the number of executions explored and the time taken.
pub fn check<F>(name: &str, preemptions: usize, model: F)
where
    F: Fn() + Send + Sync + 'static,
{
    check_at(name, crate::Budget::loom_preemptions(preemptions), model);
}

/// [`check`] at exactly `bound` preemptions, whatever
/// `RINGPROOF_LOOM_PREEMPTIONS` says: for models whose state space grows too
/// fast for the bound the other models run at in CI (they size their own
/// bound).
pub fn check_at<F>(name: &str, bound: usize, model: F)
where
    F: Fn() + Send + Sync + 'static,
{
    let executions = StdArc::new(AtomicUsize::new(0));
    let counter = StdArc::clone(&executions);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.max_branches = 100_000;
    let start = Instant::now();
    builder.check(move || {
        // Relaxed: a plain count, read after the model returns.
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    eprintln!(
        "loom {name}: preemption bound {bound}, {} executions explored, {:.2?}",
        // Relaxed: every model run has finished (`check` returned).
        executions.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed()
    );
}

impl crate::ModelShared for LoomShared {
    fn dead_flag(&self, slot: u8) -> &LoomWord32 {
        &self.0.dead[slot as usize]
    }

    fn dying_at(self, point: CrashPoint, slot: u8) -> Self {
        LoomShared(self.0, Some((point, slot)))
    }
}
