//! The crash hook: [`KillAt`], the [`CrashHook`] the shipped [`MemShared`]
//! runs at each crash point, killing the process at an armed crossing
//! ([`CrashShared`] is the two together).
//!
//! Owns the per-process crossing counts; touches nothing in the segment.

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use nix::sys::signal::{Signal, raise};

use ringproof::layout::Spsc;
use ringproof::mem::MemShared;
use ringproof::mpsc::layout::Mpsc;
use ringproof::shm::{Claim, MpscClaim};
use ringproof::sync::{CrashHook, CrashPoint};

use super::EXIT_PANIC;

/// The crash hook: armed with `(point, k)`, it kills the process with
/// `SIGKILL` at the k-th crossing of `point`. It also counts the crossings of
/// every point.
#[derive(Debug)]
pub struct KillAt {
    armed: Option<CrashPoint>,
    left: Cell<u64>,
    crossings: [Cell<u64>; CrashPoint::ALL.len()],
}

impl KillAt {
    /// `arm` is the point and the crossing (1-based) to die at.
    pub fn new(arm: Option<(CrashPoint, u64)>) -> Self {
        KillAt {
            armed: arm.map(|(point, _)| point),
            left: Cell::new(arm.map_or(0, |(_, k)| k)),
            crossings: Default::default(),
        }
    }

    /// Crossings of `point` so far.
    pub fn crossings(&self, point: CrashPoint) -> u64 {
        self.crossings[point_index(point)].get()
    }
}

impl CrashHook for KillAt {
    fn crash_point(&self, point: CrashPoint) {
        let cell = &self.crossings[point_index(point)];
        cell.set(cell.get() + 1);
        if self.armed == Some(point) {
            let left = self.left.get().saturating_sub(1);
            self.left.set(left);
            if left == 0 {
                die();
            }
        }
    }
}

/// The shipped backend over a shared-memory segment, with the crash hook:
/// one type for both layouts (`L`: [`Spsc`] or [`Mpsc`]).
pub type CrashShared<O = Claim, L = Spsc> = MemShared<O, KillAt, L>;

/// [`CrashShared`] over an MPSC segment.
pub type CrashMpsc = CrashShared<MpscClaim, Mpsc>;

/// Where this process writes the monotonic time (ns) of its death, if
/// anywhere: a word of the side page, set by a child before it arms
/// [`KillAt`] (each child is its own process, so one global is one child's).
static DEATH_STAMP: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

/// A word and the value [`KillAt`] waits for (with a deadline) before it
/// kills the process: a producer armed inside its claim waits until the
/// consumer is seen waiting on it, so that the time from the `SIGKILL` to
/// the consumer passing the dead claim can be measured.
static AWAIT_WORD: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());
static AWAIT_VALUE: AtomicU64 = AtomicU64::new(0);
/// The longest such wait.
const AWAIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Makes [`KillAt`] wait, before it kills, until `word` holds `value` (or
/// [`AWAIT_DEADLINE`] passed).
pub(super) fn await_before_death(word: &AtomicU64, value: u64) {
    // Relaxed (both): read by this same thread in `die`.
    AWAIT_VALUE.store(value, Ordering::Relaxed);
    AWAIT_WORD.store(std::ptr::from_ref(word).cast_mut(), Ordering::Relaxed);
}

/// Makes [`KillAt`] write the monotonic time of this process's death into
/// `word` just before the `SIGKILL`.
pub(super) fn stamp_death_into(word: &AtomicU64) {
    // Relaxed: read by this same thread in `die`.
    DEATH_STAMP.store(std::ptr::from_ref(word).cast_mut(), Ordering::Relaxed);
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
pub(super) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

pub(super) fn point_index(point: CrashPoint) -> usize {
    CrashPoint::ALL
        .iter()
        .position(|p| *p == point)
        .unwrap_or(0)
}

/// Kills this process with `SIGKILL` (no handler, no unwinding, no flush).
fn die() -> ! {
    // Relaxed (both): written by this thread in `await_before_death`.
    let awaited = AWAIT_WORD.load(Ordering::Relaxed);
    let value = AWAIT_VALUE.load(Ordering::Relaxed);
    // SAFETY: as for `stamp` below: a word of the side page, mapped until
    // this child process ends.
    if let Some(word) = unsafe { awaited.as_ref() } {
        let deadline = std::time::Instant::now() + AWAIT_DEADLINE;
        // Relaxed: a condition to wait for, which orders nothing; another
        // process (the consumer) writes it.
        while word.load(Ordering::Relaxed) != value && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    // Relaxed: written by this thread in `stamp_death_into`.
    let stamp = DEATH_STAMP.load(Ordering::Relaxed);
    // SAFETY: a non-null pointer was made from a `&AtomicU64` of the side
    // page, an anonymous shared mapping that stays mapped until this child
    // process ends (it is unmapped only by the driver's `SidePage`).
    if let Some(word) = unsafe { stamp.as_ref() } {
        // Relaxed: read by the driver after `waitpid`.
        word.store(monotonic_ns(), Ordering::Relaxed);
    }
    let _ = raise(Signal::SIGKILL);
    // SAFETY: `_exit` ends the process at once; SIGKILL cannot be blocked,
    // so this line is only reached if `raise` itself failed.
    unsafe { libc::_exit(EXIT_PANIC) }
}
