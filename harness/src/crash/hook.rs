//! The crash hook: [`CrashShared`], the shipped [`MemShared`] with a
//! [`Shared::crash_point`] that kills the process at an armed crossing.
//!
//! Owns the per-process crossing counts; touches nothing in the segment that
//! `MemShared` does not.

use std::cell::Cell;
use std::time::Duration;

use nix::sys::signal::{Signal, raise};

use ringproof::shm::Claim;
use ringproof::sync::{CrashPoint, MemShared, Shared};

use super::EXIT_PANIC;

/// The shipped [`MemShared`] over a shared-memory segment, plus a crash hook:
/// armed with `(point, k)`, it kills the process with `SIGKILL` at the k-th
/// crossing of `point`. It also counts the crossings of every point.
#[derive(Debug)]
pub struct CrashShared {
    inner: MemShared<Claim>,
    armed: Option<CrashPoint>,
    left: Cell<u64>,
    crossings: [Cell<u64>; CrashPoint::ALL.len()],
}

impl CrashShared {
    /// Wraps `inner`; `arm` is the point and the crossing (1-based) to die at.
    pub fn new(inner: MemShared<Claim>, arm: Option<(CrashPoint, u64)>) -> Self {
        CrashShared {
            inner,
            armed: arm.map(|(point, _)| point),
            left: Cell::new(arm.map_or(0, |(_, k)| k)),
            crossings: Default::default(),
        }
    }

    /// The wrapped view.
    pub fn inner(&self) -> &MemShared<Claim> {
        &self.inner
    }

    /// Crossings of `point` so far.
    pub fn crossings(&self, point: CrashPoint) -> u64 {
        self.crossings[point_index(point)].get()
    }
}

pub(super) fn point_index(point: CrashPoint) -> usize {
    CrashPoint::ALL
        .iter()
        .position(|p| *p == point)
        .unwrap_or(0)
}

type Inner = MemShared<Claim>;

// SAFETY: every method delegates to `MemShared`, whose guarantees (constant
// power-of-two capacity, valid data pointers, distinct words) carry over
// unchanged; `crash_point` touches only this process's own cells.
unsafe impl Shared for CrashShared {
    type W64 = <Inner as Shared>::W64;
    type W32 = <Inner as Shared>::W32;
    type Access = <Inner as Shared>::Access;

    #[inline]
    fn head(&self) -> &Self::W64 {
        self.inner.head()
    }
    #[inline]
    fn tail(&self) -> &Self::W64 {
        self.inner.tail()
    }
    #[inline]
    fn closed(&self) -> &Self::W32 {
        self.inner.closed()
    }
    #[inline]
    fn producer_wait(&self) -> &Self::W32 {
        self.inner.producer_wait()
    }
    #[inline]
    fn consumer_wait(&self) -> &Self::W32 {
        self.inner.consumer_wait()
    }
    #[inline]
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    #[inline]
    unsafe fn data(&self, offset: usize, len: usize, write: bool) -> (Self::Access, *mut u8) {
        // SAFETY: the caller upholds `Shared::data`'s contract, which is the
        // inner one's.
        unsafe { self.inner.data(offset, len, write) }
    }
    #[inline]
    fn fence_seq_cst(&self) {
        self.inner.fence_seq_cst();
    }
    #[inline]
    fn park(&self, word: &Self::W32, expected: u32, timeout: Option<Duration>) {
        self.inner.park(word, expected, timeout);
    }
    #[inline]
    fn wake(&self, word: &Self::W32) {
        self.inner.wake(word);
    }
    #[inline]
    fn spin(&self) {
        self.inner.spin();
    }

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

/// Kills this process with `SIGKILL` (no handler, no unwinding, no flush).
fn die() -> ! {
    let _ = raise(Signal::SIGKILL);
    // SAFETY: `_exit` ends the process at once; SIGKILL cannot be blocked,
    // so this line is only reached if `raise` itself failed.
    unsafe { libc::_exit(EXIT_PANIC) }
}
