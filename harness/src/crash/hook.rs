//! The crash hook: [`KillAt`], the [`CrashHook`] the shipped [`MemShared`]
//! runs at each crash point, killing the process at an armed crossing
//! ([`CrashShared`] is the two together).
//!
//! Owns the per-process crossing counts; touches nothing in the segment.

use std::cell::Cell;

use nix::sys::signal::{Signal, raise};

use ringproof::mem::MemShared;
use ringproof::shm::Claim;
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

/// The shipped backend over a shared-memory segment, with the crash hook.
pub type CrashShared = MemShared<Claim, KillAt>;

pub(super) fn point_index(point: CrashPoint) -> usize {
    CrashPoint::ALL
        .iter()
        .position(|p| *p == point)
        .unwrap_or(0)
}

/// Kills this process with `SIGKILL` (no handler, no unwinding, no flush).
fn die() -> ! {
    let _ = raise(Signal::SIGKILL);
    // SAFETY: `_exit` ends the process at once; SIGKILL cannot be blocked,
    // so this line is only reached if `raise` itself failed.
    unsafe { libc::_exit(EXIT_PANIC) }
}
