//! The shipped backend of the [`Shared`] seam: a checked segment in memory
//! (a shared mapping or a heap buffer), accessed with `core` atomics, parked
//! on futexes ([`crate::wait`]), with a [`CrashHook`] type parameter that is
//! [`NoHook`] in every shipped build.
//!
//! Any protocol runs over [`MemShared`]: it asks for the words its layout
//! declares by offset, and `MemShared` checks that each offset is a word of
//! the header (a check on a constant, which compiles away). The header size
//! is the type parameter `L` ([`Spsc`] unless a view is made from another
//! protocol's checked segment, e.g. [`MemShared::from_mpsc`]).
#![allow(clippy::disallowed_types)]

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64};
use core::time::Duration;

use crate::layout::{SegmentLayout, Spsc};
use crate::mpsc::layout::Mpsc;
use crate::sync::{CrashHook, CrashPoint, NoHook, Ordering, Shared, Word32, Word64};
use crate::validate::Checked;

/// Implements the seam's `$word` trait for the `core` atomic `$atomic` of
/// `$int` by calling its inherent methods.
macro_rules! core_word {
    ($atomic:ident: $word:ident<$int:ty>) => {
        impl $word for $atomic {
            #[inline(always)]
            fn load(&self, order: Ordering) -> $int {
                $atomic::load(self, order)
            }
            #[inline(always)]
            fn store(&self, value: $int, order: Ordering) {
                $atomic::store(self, value, order);
            }
            #[inline(always)]
            fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                $atomic::compare_exchange(self, current, new, success, failure)
            }
            #[inline(always)]
            fn fetch_add(&self, value: $int, order: Ordering) -> $int {
                $atomic::fetch_add(self, value, order)
            }
        }
    };
}

core_word!(AtomicU64: Word64<u64>);
core_word!(AtomicU32: Word32<u32>);

/// The shipped [`Shared`]: a checked segment in memory, accessed with `core`
/// atomics, parked on futexes.
///
/// `O` is whatever keeps the memory alive (an `Arc` of a mapping or of a heap
/// buffer); it is never touched on the hot path. `H` runs at each
/// [`CrashPoint`]: [`NoHook`] except in crash-injection experiments. `L`
/// is the protocol's header layout ([`Spsc`] or [`Mpsc`]).
#[derive(Debug)]
pub struct MemShared<O = (), H = NoHook, L = Spsc> {
    base: *mut u8,
    capacity: u64,
    owner: O,
    hook: H,
    layout: PhantomData<L>,
}

// MemShared is a (pointer, length) into memory every thread may access, plus
// an owner and a hook that are themselves Send.
// SAFETY: all concurrent access to the shared words goes through atomics, and
// access to data bytes follows the protocol's ownership rules.
unsafe impl<O: Send, H: Send, L> Send for MemShared<O, H, L> {}

impl<O> MemShared<O> {
    /// Wraps a segment that [`crate::validate::attach`] has checked; `owner`
    /// keeps its memory alive.
    ///
    /// # Safety
    ///
    /// The memory behind `checked` stays mapped while `owner` lives, and is
    /// accessed only through atomics or under the protocol. A protocol
    /// allows one side per role (one producer and one consumer for
    /// [`crate::spsc`]): while a side made over this view lives, no other
    /// side of the same role over the same memory may be used, in this
    /// process or another.
    pub unsafe fn new(checked: Checked, owner: O) -> Self {
        MemShared::from_parts(checked.base(), checked.capacity(), owner, NoHook)
    }
}

impl<O> MemShared<O, NoHook, Mpsc> {
    /// Wraps an MPSC segment that [`crate::mpsc::validate::attach`] has
    /// checked; `owner` keeps its memory alive.
    ///
    /// # Safety
    ///
    /// As [`MemShared::new`]; [`crate::mpsc`] allows one consumer and one
    /// producer per slot.
    pub unsafe fn from_mpsc(checked: crate::mpsc::validate::Checked, owner: O) -> Self {
        MemShared::from_parts(checked.base(), checked.capacity(), owner, NoHook)
    }
}

impl<O, H, L> MemShared<O, H, L> {
    /// The same view with `hook` run at each [`CrashPoint`] (for
    /// crash-injection experiments).
    pub fn with_hook<H2: CrashHook>(self, hook: H2) -> MemShared<O, H2, L> {
        MemShared::from_parts(self.base, self.capacity, self.owner, hook)
    }

    /// The view of a checked segment at `base` (the constructors' contract).
    const fn from_parts(base: *mut u8, capacity: u64, owner: O, hook: H) -> Self {
        MemShared {
            base,
            capacity,
            owner,
            hook,
            layout: PhantomData,
        }
    }

    /// What keeps the memory alive.
    pub fn owner(&self) -> &O {
        &self.owner
    }

    /// The hook run at each [`CrashPoint`].
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

impl<O, H, L: SegmentLayout> MemShared<O, H, L> {
    /// Whether `offset` is a `size`-aligned word of `size` bytes inside the
    /// header (`size` a power of two).
    #[inline(always)]
    const fn header_word(offset: usize, size: usize) -> bool {
        offset % size == 0 && offset + size <= L::HEADER_SIZE
    }
}

// SAFETY: `capacity` is checked and fixed; `data` stays in the
// `L::HEADER_SIZE + capacity` bytes `attach` checked, `table_word64` in the
// `capacity` bytes after them that `attach` checked for a word-table
// layout; each header word is the fixed header bytes at its offset, checked
// to lie before the data region.
unsafe impl<O, H: CrashHook, L: SegmentLayout> Shared for MemShared<O, H, L> {
    type W64 = AtomicU64;
    type W32 = AtomicU32;
    type Access = ();

    #[inline(always)]
    fn word64(&self, offset: usize) -> &AtomicU64 {
        assert!(
            Self::header_word(offset, 8),
            "no 64-bit header word at {offset}"
        );
        // SAFETY: `offset` is an 8-aligned word inside the header (asserted);
        // `base` is 8-aligned (checked by `attach`), so the word is aligned,
        // and every access to it is atomic.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }

    #[inline(always)]
    fn word32(&self, offset: usize) -> &AtomicU32 {
        assert!(
            Self::header_word(offset, 4),
            "no 32-bit header word at {offset}"
        );
        // SAFETY: as in `word64`, 4-aligned.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }
    }

    #[inline(always)]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline(always)]
    fn table_word64(&self, offset: usize) -> &AtomicU64 {
        assert!(
            L::WORD_TABLE && offset % 8 == 0 && (offset as u64) < self.capacity,
            "no record table word for data byte {offset}"
        );
        let at = L::HEADER_SIZE + self.capacity as usize + offset;
        // SAFETY: the layout has a word table (asserted), which `attach`
        // checked lies in the segment: `capacity` bytes right after the
        // `capacity` data bytes. `offset` is 8-aligned and below the capacity
        // (asserted), so the aligned word lies inside the table (`base`,
        // `L::HEADER_SIZE` and `capacity` are multiples of 8), overlapping no
        // data byte; the protocol reaches it only atomically.
        unsafe { AtomicU64::from_ptr(self.base.add(at).cast()) }
    }

    #[inline(always)]
    unsafe fn data(&self, offset: usize, len: usize, _write: bool) -> ((), *mut u8) {
        debug_assert!(offset as u64 + len as u64 <= self.capacity);
        // SAFETY: the caller keeps `offset + len <= capacity`, and the data
        // region is the `capacity` bytes after the header.
        ((), unsafe { self.base.add(L::HEADER_SIZE + offset) })
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

    #[inline(always)]
    fn crash_point(&self, point: CrashPoint) {
        self.hook.crash_point(point);
    }
}

#[cfg(all(test, feature = "std", target_os = "linux"))]
mod tests {
    use super::*;
    use crate::heap::AlignedBuf;
    use crate::layout::MIN_CAPACITY;
    use crate::spsc::Words;
    use crate::validate::attach;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use std::vec::Vec;

    /// A view over a fresh heap segment of the smallest capacity.
    fn fresh_view() -> MemShared<Arc<AlignedBuf>> {
        let buf = Arc::new(AlignedBuf::segment(MIN_CAPACITY).expect("segment"));
        // SAFETY: the buffer is readable for its length while `buf` lives.
        let checked = unsafe { attach(buf.as_ptr(), buf.len()) }.expect("fresh header");
        // SAFETY: the Arc keeps the buffer alive; no side runs over this view.
        unsafe { MemShared::new(checked, buf) }
    }

    #[test]
    fn words_compare_exchange_and_fetch_add_on_the_header_bytes() {
        let view = fresh_view();
        let word = view.word64(crate::layout::HEAD_OFFSET);
        // Relaxed: one thread, no other access to order (all below).
        assert_eq!(
            word.compare_exchange(0, 40, Ordering::Relaxed, Ordering::Relaxed),
            Ok(0)
        );
        assert_eq!(
            word.compare_exchange(0, 80, Ordering::Relaxed, Ordering::Relaxed),
            Err(40)
        );
        assert_eq!(Word64::fetch_add(word, 8, Ordering::Relaxed), 40);
        assert_eq!(
            view.head().load(Ordering::Relaxed),
            48,
            "the same word as `head`"
        );
        let flag = view.word32(crate::layout::CLOSED_OFFSET);
        assert_eq!(
            flag.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed),
            Ok(0)
        );
        assert_eq!(
            flag.compare_exchange(0, 2, Ordering::Relaxed, Ordering::Relaxed),
            Err(1)
        );
        assert_eq!(
            Word32::fetch_add(flag, u32::MAX, Ordering::Relaxed),
            1,
            "wraps"
        );
        assert_eq!(view.closed().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_word_outside_the_header_or_unaligned_is_refused() {
        let view = fresh_view();
        let last64 = crate::layout::HEADER_SIZE - 8;
        let last32 = crate::layout::HEADER_SIZE - 4;
        // The last word of each size is inside; one past it, or off its
        // alignment, is not.
        let _ = view.word64(last64);
        let _ = view.word32(last32);
        for (offset, wide) in [
            (last64 + 8, true),
            (4, true),
            (last32 + 4, false),
            (2, false),
        ] {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if wide {
                    let _ = view.word64(offset);
                } else {
                    let _ = view.word32(offset);
                }
            }));
            assert!(
                caught.is_err(),
                "offset {offset} (64-bit: {wide}) was accepted"
            );
        }
    }

    struct Count(std::cell::Cell<u32>);

    impl CrashHook for Count {
        fn crash_point(&self, _point: CrashPoint) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn with_hook_runs_the_hook_at_every_crash_point_of_a_push() {
        let view = fresh_view().with_hook(Count(std::cell::Cell::new(0)));
        let mut producer = crate::Producer::new(view).expect("producer");
        producer.push(b"x").expect("push");
        // AfterReserve, MidPayload, BeforeCommit, AfterCommit.
        assert_eq!(producer.shared().hook().0.get(), 4);
    }

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
