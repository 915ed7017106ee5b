//! The seam between the protocol and the memory it runs over.
//!
//! [`crate::spsc`] is written once against the [`Shared`] trait: the shared
//! words (`head`, `tail`, `closed`, the two futex words), the data region with
//! an access token per borrow, a fence, and park/wake. This module also holds
//! the shipped implementation, [`MemShared`], over `core::sync::atomic` and raw
//! memory; `ringproof-models` implements the same trait with loom's and
//! shuttle's types, so the models run the very code that ships.
//!
//! Every method is `#[inline]` and [`MemShared`]'s access token is `()`, so
//! monomorphisation leaves nothing of the seam in a release build.
//!
//! This is the only module that may name `core::sync::atomic` types (see
//! `clippy.toml`): the protocol reaches atomics only through these traits.
#![allow(clippy::disallowed_types)]

use core::sync::atomic::{AtomicU32, AtomicU64};
use core::time::Duration;

pub use core::sync::atomic::Ordering;

use crate::layout::{
    CLOSED_OFFSET, CONSUMER_GEN_OFFSET, CONSUMER_WAIT_OFFSET, HEAD_OFFSET, HEADER_SIZE,
    PRODUCER_GEN_OFFSET, PRODUCER_WAIT_OFFSET, TAIL_OFFSET,
};
use crate::validate::Checked;

/// A 64-bit shared word.
pub trait Word64 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// Atomic store.
    fn store(&self, value: u64, order: Ordering);
}

/// A 32-bit shared word (flags and futex words).
pub trait Word32 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
}

/// The magic as one native-endian word: the last thing a creator writes.
pub const MAGIC_WORD: u64 = u64::from_ne_bytes(crate::layout::MAGIC);

/// Publishes a segment header whose other bytes are written: one Release
/// store of the magic (the header's commit point).
#[inline]
pub fn publish_magic<W: Word64>(magic: &W) {
    // Release: publishes the header bytes written before this store; pairs
    // with the Acquire load in `magic_published`.
    magic.store(MAGIC_WORD, Ordering::Release);
}

/// Whether a creator has published the header (the magic is not zero). Once
/// it returns true, every header byte the creator wrote is visible.
#[inline]
pub fn magic_published<W: Word64>(magic: &W) -> bool {
    // Acquire: pairs with the Release store in `publish_magic`.
    magic.load(Ordering::Acquire) != 0
}

/// A point in the protocol where a crash-injection experiment may kill the
/// process. The shipped [`Shared`] implementations ignore them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashPoint {
    /// The producer wrote the record header of a reservation.
    AfterReserve,
    /// `push` wrote the first half of a payload.
    MidPayload,
    /// The record is complete, its `tail` store not yet done.
    BeforeCommit,
    /// The `tail` store that commits a record (or a batch) is done.
    AfterCommit,
    /// A batch holds at least one complete, uncommitted record and takes another.
    MidBatch,
    /// The consumer validated a record and handed it out.
    AfterRead,
    /// The consumer is about to store `head`.
    BeforeRelease,
    /// The `head` store that releases records is done.
    AfterRelease,
    /// The producer is about to set `closed`.
    BeforeClose,
}

impl CrashPoint {
    /// Every crash point, in protocol order.
    pub const ALL: [CrashPoint; 9] = [
        CrashPoint::AfterReserve,
        CrashPoint::MidPayload,
        CrashPoint::BeforeCommit,
        CrashPoint::AfterCommit,
        CrashPoint::MidBatch,
        CrashPoint::AfterRead,
        CrashPoint::BeforeRelease,
        CrashPoint::AfterRelease,
        CrashPoint::BeforeClose,
    ];

    /// A stable name (`after-reserve`, …) for command lines and reports.
    pub const fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterReserve => "after-reserve",
            CrashPoint::MidPayload => "mid-payload",
            CrashPoint::BeforeCommit => "before-commit",
            CrashPoint::AfterCommit => "after-commit",
            CrashPoint::MidBatch => "mid-batch",
            CrashPoint::AfterRead => "after-read",
            CrashPoint::BeforeRelease => "before-release",
            CrashPoint::AfterRelease => "after-release",
            CrashPoint::BeforeClose => "before-close",
        }
    }

    /// Whether the producer (true) or the consumer (false) crosses this point.
    pub const fn is_producer(self) -> bool {
        !matches!(
            self,
            CrashPoint::AfterRead | CrashPoint::BeforeRelease | CrashPoint::AfterRelease
        )
    }
}

/// Everything the SPSC protocol touches in a segment.
///
/// # Safety
///
/// Implementors guarantee that
/// - [`capacity`](Shared::capacity) is constant, a power of two and at least
///   [`crate::layout::MIN_CAPACITY`];
/// - for `offset + len <= capacity`, [`data`](Shared::data) returns a pointer
///   valid for reads and writes of `len` bytes for as long as `self` lives;
/// - the words returned by the accessors are distinct and outlive `&self`.
///
/// They need not (and cannot) guarantee what another process writes there:
/// the protocol checks every value it reads.
pub unsafe trait Shared {
    /// The 64-bit word type (`head`, `tail`).
    type W64: Word64;
    /// The 32-bit word type (`closed` and the futex words).
    type W32: Word32;
    /// Token held while a borrow of data bytes is live: `()` in the shipped
    /// build, a race detector's guard in the models.
    type Access;

    /// Released position, written by the consumer.
    fn head(&self) -> &Self::W64;
    /// Committed position, written by the producer.
    fn tail(&self) -> &Self::W64;
    /// End-of-stream flag, written by the producer.
    fn closed(&self) -> &Self::W32;
    /// Futex word the producer parks on while the ring is full.
    fn producer_wait(&self) -> &Self::W32;
    /// Futex word the consumer parks on while the ring is empty.
    fn consumer_wait(&self) -> &Self::W32;
    /// Size of the data region in bytes.
    fn capacity(&self) -> u64;

    /// Begins a borrow of data bytes `offset..offset + len`, for writing when
    /// `write`; returns the access token and a pointer to the first byte.
    ///
    /// # Safety
    ///
    /// `offset + len <= self.capacity()`, and the protocol owns these bytes
    /// for the side that calls (see the ownership rules in [`crate::spsc`])
    /// until the token is dropped.
    unsafe fn data(&self, offset: usize, len: usize, write: bool) -> (Self::Access, *mut u8);

    /// A sequentially consistent fence (the Dekker handshake around parking).
    fn fence_seq_cst(&self);

    /// Blocks while `word` holds `expected`, at most `timeout` (`None`: until
    /// woken). May return early for any reason; callers re-check.
    fn park(&self, word: &Self::W32, expected: u32, timeout: Option<Duration>);

    /// Wakes every thread or process parked on `word`.
    fn wake(&self, word: &Self::W32);

    /// How many times the blocking calls spin before they park. The models
    /// lower it: loom and shuttle make every spin a yield, so a long spin
    /// phase would keep them from reaching the park path while the other
    /// side is mid-operation.
    const SPINS: u32 = 256;

    /// One iteration of a spin loop.
    #[inline]
    fn spin(&self) {
        core::hint::spin_loop();
    }

    /// Called at each [`CrashPoint`]; does nothing unless an experiment
    /// overrides it.
    #[inline(always)]
    fn crash_point(&self, _point: CrashPoint) {}
}

impl Word64 for AtomicU64 {
    #[inline(always)]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
    #[inline(always)]
    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order);
    }
}

impl Word32 for AtomicU32 {
    #[inline(always)]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline(always)]
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order);
    }
}

/// The shipped [`Shared`]: a checked segment in memory (a shared mapping or a
/// heap buffer), accessed with `core` atomics, parked on futexes.
///
/// `O` is whatever keeps the memory alive (an `Arc` of a mapping or of a heap
/// buffer); it is never touched on the hot path.
#[derive(Debug)]
pub struct MemShared<O = ()> {
    base: *mut u8,
    capacity: u64,
    owner: O,
}

// MemShared is a (pointer, length) into memory every thread may access, plus
// an owner that is itself Send.
// SAFETY: all concurrent access to the shared words goes through atomics, and
// access to data bytes follows the protocol's ownership rules.
unsafe impl<O: Send> Send for MemShared<O> {}

impl<O> MemShared<O> {
    /// Wraps a segment that [`crate::validate::attach`] has checked; `owner`
    /// keeps its memory alive.
    ///
    /// # Safety
    ///
    /// The memory behind `checked` stays mapped while `owner` lives, and is
    /// accessed only through atomics or under the protocol. The protocol
    /// allows one producer and one consumer: while a [`crate::Producer`]
    /// (or [`crate::Consumer`]) made over this view lives, no other side of
    /// the same role over the same memory may be used, in this process or
    /// another.
    pub unsafe fn new(checked: Checked, owner: O) -> Self {
        MemShared {
            base: checked.base(),
            capacity: checked.capacity(),
            owner,
        }
    }

    /// What keeps the memory alive.
    pub fn owner(&self) -> &O {
        &self.owner
    }

    /// The generation word of the producer (`true`) or consumer role.
    pub fn generation(&self, producer: bool) -> &AtomicU32 {
        let offset = if producer {
            PRODUCER_GEN_OFFSET
        } else {
            CONSUMER_GEN_OFFSET
        };
        // SAFETY: both are aligned 32-bit words of the header.
        unsafe { self.word32(offset) }
    }

    /// # Safety
    ///
    /// `offset` is one of the word offsets of [`crate::layout`], 8-aligned for
    /// a 64-bit word, inside the header that `new` was given.
    #[inline(always)]
    unsafe fn word64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the caller passes a layout offset inside the header; `base`
        // is 8-aligned (checked by `attach`), so the word is aligned, and
        // every access to it is atomic.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }

    /// # Safety
    ///
    /// As [`MemShared::word64`], 4-aligned.
    #[inline(always)]
    unsafe fn word32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `word64`.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }
    }
}

// SAFETY: `capacity` comes from a checked header and never changes; `data`
// stays inside the `HEADER_SIZE + capacity` bytes `attach` checked; the words
// are distinct layout offsets.
unsafe impl<O> Shared for MemShared<O> {
    type W64 = AtomicU64;
    type W32 = AtomicU32;
    type Access = ();

    #[inline(always)]
    fn head(&self) -> &AtomicU64 {
        // SAFETY: HEAD_OFFSET is an aligned 64-bit word of the header.
        unsafe { self.word64(HEAD_OFFSET) }
    }
    #[inline(always)]
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: TAIL_OFFSET is an aligned 64-bit word of the header.
        unsafe { self.word64(TAIL_OFFSET) }
    }
    #[inline(always)]
    fn closed(&self) -> &AtomicU32 {
        // SAFETY: CLOSED_OFFSET is an aligned 32-bit word of the header.
        unsafe { self.word32(CLOSED_OFFSET) }
    }
    #[inline(always)]
    fn producer_wait(&self) -> &AtomicU32 {
        // SAFETY: PRODUCER_WAIT_OFFSET is an aligned 32-bit word of the header.
        unsafe { self.word32(PRODUCER_WAIT_OFFSET) }
    }
    #[inline(always)]
    fn consumer_wait(&self) -> &AtomicU32 {
        // SAFETY: CONSUMER_WAIT_OFFSET is an aligned 32-bit word of the header.
        unsafe { self.word32(CONSUMER_WAIT_OFFSET) }
    }
    #[inline(always)]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline(always)]
    unsafe fn data(&self, offset: usize, len: usize, _write: bool) -> ((), *mut u8) {
        debug_assert!(offset as u64 + len as u64 <= self.capacity);
        // SAFETY: the caller keeps `offset + len <= capacity`, and the data
        // region is the `capacity` bytes after the header.
        ((), unsafe { self.base.add(HEADER_SIZE + offset) })
    }

    #[inline(always)]
    fn fence_seq_cst(&self) {
        // SeqCst: the Dekker fence of the park handshake; it pairs with the
        // other side's fence (see `Producer::wake_consumer`, `Consumer::release_to`).
        core::sync::atomic::fence(Ordering::SeqCst);
    }

    #[inline]
    fn park(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::wait::futex_wait(word, expected, timeout);
    }

    #[inline]
    fn wake(&self, word: &AtomicU32) {
        crate::wait::futex_wake(word);
    }
}

#[cfg(all(test, feature = "std", target_os = "linux"))]
mod tests {
    use super::*;
    use crate::heap::AlignedBuf;
    use crate::layout::MIN_CAPACITY;
    use crate::validate::attach;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use std::vec::Vec;

    /// Both parties arrive, then both leave (round `round`, from 1) and wait
    /// for the same moment, `go` nanoseconds after `start`, so that their
    /// next steps overlap (the one to arrive last would otherwise be done
    /// before the other has seen it arrive).
    fn barrier(arrived: &AtomicU64, go: &AtomicU64, start: Instant, round: u64) {
        // AcqRel: what each party did before arriving (`go` included) happens
        // before what the other does after leaving; pairs with the Acquire load below.
        arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        // Acquire: pairs with the other party's AcqRel increment.
        while arrived.load(Ordering::Acquire) < 2 * round {
            spins += 1;
            if spins % 1024 == 0 {
                std::thread::yield_now();
            }
            core::hint::spin_loop();
        }
        // Relaxed: written before the leader arrived (ordered by the barrier).
        let go = go.load(Ordering::Relaxed);
        while (start.elapsed().as_nanos() as u64) < go {
            core::hint::spin_loop();
        }
    }

    /// Pins the calling thread to the `nth` CPU it may run on, so that the two
    /// parties of the litmus test below run in parallel whenever both run (on
    /// a busy machine the scheduler would otherwise often time-slice them on
    /// one CPU, where no reordering can be seen). Does nothing with one CPU.
    fn pin_to_nth_cpu(nth: usize) {
        // SAFETY: a zeroed cpu_set_t is a valid (empty) set.
        let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        let size = core::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `set` is a valid cpu_set_t of `size` bytes; 0 is this thread.
        if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
            return;
        }
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE and `set` is initialised.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect();
        if allowed.len() < 2 {
            return;
        }
        // SAFETY: as above.
        unsafe { libc::CPU_ZERO(&mut set) };
        // SAFETY: as above.
        unsafe { libc::CPU_SET(allowed[nth % allowed.len()], &mut set) };
        // SAFETY: `set` is a valid cpu_set_t; a failure only leaves the thread unpinned.
        unsafe { libc::sched_setaffinity(0, size, &set) };
    }

    /// `MemShared::fence_seq_cst` on real hardware, in the park handshake's
    /// shape (a store-buffering litmus test on the same words): the consumer
    /// stores `consumer_wait`, fences, loads `tail` (`wait_readable`); the
    /// producer stores `tail`, fences, loads `consumer_wait`
    /// (`wake_consumer`). With the two `SeqCst` fences, at least one side sees
    /// the other's store in every round, so a consumer never parks on a
    /// message nobody wakes it for.
    ///
    /// The models replace this backend's fence with loom's, so only a run on
    /// the machine checks this one (`ci/ordering-mutants` removes it). Without
    /// it, x86's store buffer lets both loads run ahead of the stores: with the
    /// two threads pinned to two CPUs, a hundred or more of the 200,000 rounds
    /// miss both stores (measured on a busy 2-core machine, every run of
    /// several). On one CPU nothing can be seen, and the test only shows
    /// that the fence does no harm.
    ///
    /// Rounds: `RINGPROOF_FENCE_ROUNDS` (default 200,000), at most 3 s.
    #[test]
    fn fence_seq_cst_lets_no_round_of_the_park_handshake_miss_both_stores() {
        let rounds: u64 = std::env::var("RINGPROOF_FENCE_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(200_000);
        let limit = Duration::from_secs(3);
        let buf = Arc::new(AlignedBuf::segment(MIN_CAPACITY).expect("segment"));
        let view = || {
            // SAFETY: the buffer is readable for its length while `buf` lives.
            let checked = unsafe { attach(buf.as_ptr(), buf.len()) }.expect("fresh header");
            // SAFETY: the Arc keeps the buffer alive; no side runs over these
            // views, they only load and store the shared words.
            unsafe { MemShared::new(checked, Arc::clone(&buf)) }
        };
        let (consumer, producer) = (view(), view());
        // The round at which both sides stop (0: not yet). A round number,
        // not a flag: the consumer may run a round ahead of the producer, and
        // a flag set for round r + 1 would stop the producer at round r,
        // leaving the consumer waiting in the barrier for ever.
        let (arrived, stop) = (&AtomicU64::new(0), &AtomicU64::new(0));
        let go = &AtomicU64::new(0);
        let start = Instant::now();
        let (consumer_missed, producer_missed, done) = std::thread::scope(|scope| {
            let consumer_side = scope.spawn(move || {
                pin_to_nth_cpu(0);
                let mut missed = Vec::new();
                let mut round = 1;
                loop {
                    let last = round > rounds || start.elapsed() > limit;
                    if last {
                        // Relaxed: published to the producer by the barrier.
                        stop.store(round, Ordering::Relaxed);
                    }
                    // Relaxed: as above; both sides start 2 µs from now.
                    go.store(start.elapsed().as_nanos() as u64 + 2_000, Ordering::Relaxed);
                    barrier(arrived, go, start, round);
                    if last {
                        return (missed, round - 1);
                    }
                    // Relaxed, then the fence: `Consumer::wait_readable`.
                    consumer
                        .consumer_wait()
                        .store(round as u32, Ordering::Relaxed);
                    consumer.fence_seq_cst();
                    // Relaxed: ordered by the fence above (what is tested).
                    if consumer.tail().load(Ordering::Relaxed) < round {
                        missed.push(round);
                    }
                    round += 1;
                }
            });
            let producer_side = scope.spawn(move || {
                pin_to_nth_cpu(1);
                let mut missed = Vec::new();
                let mut round = 1;
                loop {
                    barrier(arrived, go, start, round);
                    // Relaxed: ordered by the barrier.
                    if stop.load(Ordering::Relaxed) == round {
                        return missed;
                    }
                    // Relaxed, then the fence: `Producer::publish` and `wake_consumer`.
                    producer.tail().store(round, Ordering::Relaxed);
                    producer.fence_seq_cst();
                    // Relaxed: ordered by the fence above (what is tested).
                    if producer.consumer_wait().load(Ordering::Relaxed) < round as u32 {
                        missed.push(round);
                    }
                    round += 1;
                }
            });
            let (consumer_missed, done) = consumer_side.join().expect("consumer side");
            let producer_missed = producer_side.join().expect("producer side");
            (consumer_missed, producer_missed, done)
        });
        let both: Vec<u64> = consumer_missed
            .iter()
            .filter(|round| producer_missed.binary_search(round).is_ok())
            .copied()
            .collect();
        std::println!(
            "{done} rounds in {:?}: the consumer missed the producer's store in {}, \
             the producer the consumer's in {}, both in {}",
            start.elapsed(),
            consumer_missed.len(),
            producer_missed.len(),
            both.len()
        );
        assert!(done > 0, "no round ran");
        assert!(
            both.is_empty(),
            "in {} of {done} rounds (first: {:?}) both sides missed the other's store: \
             a consumer would park on a message and never be woken",
            both.len(),
            &both[..both.len().min(5)]
        );
    }
}
